import numpy as np
import pytest
import torch

from hybridmem.errors import ConfigError, DataError
from hybridmem.eval.features import WeightsNotFound
from hybridmem.eval.lpips import LPIPS, load_lpips, lpips_per_frame


def test_alexnet_layout_matches_torchvision_keys():
    keys = set(LPIPS("alex").features.state_dict())
    expected = {f"{index}.{kind}" for index in (0, 3, 6, 8, 10) for kind in ("weight", "bias")}
    assert keys == expected


def test_vgg16_layout_matches_torchvision_keys():
    keys = set(LPIPS("vgg").features.state_dict())
    convs = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
    assert keys == {f"{index}.{kind}" for index in convs for kind in ("weight", "bias")}


def test_head_keys_match_lpips_release():
    heads = {key for key in LPIPS("alex").state_dict() if key.startswith("lin")}
    assert heads == {f"lin{index}.model.1.weight" for index in range(5)}


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ConfigError, match="alex, vgg"):
        LPIPS("resnet")


def test_load_and_distance(tiny_weights):
    model = load_lpips(tiny_weights, "alex")
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, size=(3, 64, 72, 3), dtype=np.uint8)
    noisy = np.clip(video.astype(int) + rng.integers(-40, 41, size=video.shape), 0, 255).astype(np.uint8)
    np.testing.assert_allclose(lpips_per_frame(model, video, video), 0.0, atol=1e-7)
    distance = lpips_per_frame(model, noisy, video)
    assert distance.shape == (3,) and (distance > 0).all()
    # loaded weights are the saved ones, not a fresh random init
    saved = torch.load(tiny_weights / "lpips" / "alexnet.pth", weights_only=True)
    torch.testing.assert_close(model.features[0].weight, saved["features.0.weight"])


def test_vgg_distance_is_computed_from_loaded_weights(tmp_path):
    model = LPIPS("vgg")
    torch.save({f"features.{k}": v for k, v in model.features.state_dict().items()}, tmp_path / "vgg16.pth")
    rng = np.random.default_rng(1)
    video = rng.integers(0, 256, size=(1, 32, 32, 3), dtype=np.uint8)
    assert lpips_per_frame(model, video, 255 - video)[0] != 0.0


def test_frames_below_the_backbone_minimum_raise_data_error():
    video = np.zeros((1, 30, 40, 3), dtype=np.uint8)
    with pytest.raises(DataError, match="at least 31 px"):
        lpips_per_frame(LPIPS("alex"), video, video)
    assert lpips_per_frame(LPIPS("vgg"), video, video)[0] == pytest.approx(0.0, abs=1e-7)


def test_missing_files_raise_weights_not_found(tmp_path):
    with pytest.raises(WeightsNotFound, match="alex.pth"):
        load_lpips(tmp_path, "alex")
