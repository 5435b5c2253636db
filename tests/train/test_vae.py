import json

import numpy as np
import pytest
import torch

from hybridmem.data.clip import Clip
from hybridmem.errors import CheckpointError, DataError
from hybridmem.models.checkpoint import load_model
from hybridmem.train.logging import read_metrics
from hybridmem.train.vae import image_gradient_l1, psnr, train_vae

from .helpers import tiny_vae_config


def synthetic_clip(folder, frames=18, size=16):
    seed = int(folder.name)
    rows, cols = np.mgrid[0:size, 0:size]
    video = np.stack(
        [
            np.stack([(rows * 9 + t * 5 + seed * 40) % 256, (cols * 7) % 256, (rows + cols) * 4 % 256], -1)
            for t in range(frames)
        ]
    ).astype(np.uint8)
    return Clip(
        frames=video,
        cameras=np.tile(np.eye(4), (frames, 1, 1)),
        intrinsics=np.array([8, 8, 8, 8.0]),
        context_frames=9 if frames > 9 else frames,
        fps=8.0,
    )


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    for name in ("0", "1", "2"):
        (tmp_path / "data" / "train" / name).mkdir(parents=True)
    monkeypatch.setattr("hybridmem.data.hmworld.load_clip", synthetic_clip)
    return tmp_path / "data"


def config(data, out, **overrides):
    return tiny_vae_config(data, out, **{"val_every": 4, "edge_weight": 0.5, **overrides})


def test_train_vae_resume_psnr_and_latent_normalisation(dataset, tmp_path):
    straight = train_vae(config(dataset, tmp_path / "straight"))
    train_vae(config(dataset, tmp_path / "resumed", steps=2))
    resumed = train_vae(config(dataset, tmp_path / "resumed", resume=True))
    torch.testing.assert_close(torch.tensor(resumed["losses"]), torch.tensor(straight["losses"][2:]))
    assert len(read_metrics(tmp_path / "straight", "val_psnr")) == 1
    assert straight["val_psnr"] > 0
    # validation reconstructed the whole 9-frame context and target segments of each validation clip
    validation = json.loads((tmp_path / "straight" / "validation.json").read_text())
    assert validation["step"] == 4 and list(validation["psnr_by_frame"]) == ["9"]
    assert validation["psnr"] == pytest.approx(straight["val_psnr"])

    vae = load_model(tmp_path / "straight" / "final")
    channels = vae.config.latent_channels
    assert len(vae.config.latent_shift) == channels and len(vae.config.latent_scale) == channels
    assert vae.config.latent_scale != (1.0,) * channels


def test_fitted_normalisation_whitens_the_whole_segments_it_saw(dataset):
    from hybridmem.data.encode import list_clip_folders
    from hybridmem.models.vae import build_vae
    from hybridmem.train.vae import ClipWindows, fit_normalization, to_model_range

    torch.manual_seed(0)
    vae = build_vae("tiny").eval()
    data = ClipWindows(list_clip_folders(dataset, "train"), 5)
    # 6 segments over 3 clips: every context, then every target (9 frames each, as encode caches them)
    shift, scale = fit_normalization(vae, data, count=6, device=torch.device("cpu"))
    vae.set_latent_normalization(shift, scale)
    with torch.no_grad():
        latents = torch.cat(
            [
                vae.normalize(vae.encode(to_model_range([segment], "cpu")).mode())
                for i in range(3)
                for segment in data.segments(i)
            ],
            dim=1,
        )  # 1 F C h w
    assert latents.shape[1] == 6 * 3  # 9-frame segments: 3 latent frames each
    per_channel = latents.transpose(0, 2).flatten(1)  # C M
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(len(shift)), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_channel.std(1), torch.ones(len(shift)), atol=1e-3, rtol=0)


class ForgetsAfterNineFrames:
    """A stand-in VAE that reconstructs frames 0..8 of any segment exactly and returns grey after them:
    what the first VAE did on 33-frame segments after training on 9-frame windows."""

    training = False

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def encode(self, frames):
        class Posterior:
            def mode(self):
                return frames

        return Posterior()

    def decode(self, latents):
        decoded = latents.clone()
        decoded[:, 9:] = 0.0
        return decoded


def test_validation_covers_whole_segments_and_finds_a_vae_that_forgets():
    from hybridmem.train.vae import validate_segments

    class Segments:
        def __len__(self):
            return 2

        def segments(self, index):
            rng = np.random.default_rng(index)
            return tuple(rng.integers(0, 256, (33, 8, 8, 3), dtype=np.uint8) for _ in range(2))

    scores = validate_segments(ForgetsAfterNineFrames(), Segments(), count=2, device=torch.device("cpu"))
    curve = scores["psnr_by_frame"]["33"]
    assert scores["segments"] == 4 and len(curve) == 33
    assert min(curve[:9]) == pytest.approx(100.0)  # exact where a 9-frame window would have looked
    assert max(curve[9:]) < 12.0 and scores["worst_frame_psnr"] < 12.0  # found past the window
    assert 0 < scores["copy_last_psnr"] < 15.0  # random frames: copy-last is poor too


def test_refuses_short_clips_and_overwrites(dataset, tmp_path):
    with pytest.raises(DataError, match="fewer than --frames"):
        train_vae(config(dataset, tmp_path / "run", frames=21))
    train_vae(config(dataset, tmp_path / "run", steps=1, val_every=0))
    with pytest.raises(CheckpointError, match="--resume"):
        train_vae(config(dataset, tmp_path / "run", steps=1))


def test_psnr_and_edge_term():
    frames = torch.zeros(1, 1, 3, 4, 4)
    assert psnr(frames, frames) == pytest.approx(100.0)
    assert psnr(frames + 0.2, frames) == pytest.approx(10 * np.log10(1 / 0.01), rel=1e-4)
    ramp = torch.arange(4.0).expand(1, 1, 3, 4, 4)
    assert image_gradient_l1(ramp + 5.0, ramp) == 0
    assert image_gradient_l1(ramp * 2, ramp) > 0
