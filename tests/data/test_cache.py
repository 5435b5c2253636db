import numpy as np
import pytest
import torch

from hybridmem import geometry
from hybridmem.data import cache, encode
from hybridmem.data.clip import Clip, Event
from hybridmem.errors import DataError
from hybridmem.geometry import look_at


def make_clip(context=9, target=5, size=(8, 12)):
    frames = np.arange(context + target, dtype=np.uint8)[:, None, None, None] * np.ones(
        (1, *size, 3), np.uint8
    )
    cameras = np.stack([look_at((float(i), 0.0, 1.0), (float(i), 5.0, 1.0)) for i in range(context + target)])
    return Clip(
        frames=frames,
        cameras=cameras,
        intrinsics=np.array([10.0, 10.0, 6.0, 4.0]),
        context_frames=context,
        fps=8.0,
        events=[Event(1, "exit", 3)],
        caption="a dog walks",
        source="clip_a",
    )


def test_latent_cameras_are_relative_to_first_target_latent_frame():
    clip = make_clip()
    cameras, fc, ft = encode.latent_cameras(clip.cameras, clip.context_frames, temporal_stride=4)
    assert (fc, ft) == (3, 2) and cameras.shape == (5, 4, 4) and cameras.dtype == np.float32
    np.testing.assert_allclose(cameras[fc], np.eye(4), atol=1e-6)
    # camera x moves by one metre a frame; latent frames are video frames 0, 4, 8 | 9, 13
    np.testing.assert_allclose(cameras[:, 0, 3], [-9.0, -5.0, -1.0, 0.0, 4.0], atol=1e-5)


def test_latent_cameras_reject_segments_that_are_not_4k_plus_1():
    clip = make_clip(context=8)
    with pytest.raises(DataError, match="context segment has 8 frames"):
        encode.latent_cameras(clip.cameras, clip.context_frames, temporal_stride=4)


def test_normalised_intrinsics():
    normalised = geometry.normalised_intrinsics([10, 20, 6, 4], 12, 8)
    np.testing.assert_allclose(normalised, [10 / 12, 2.5, 0.5, 0.5])


class FakePosterior:
    def __init__(self, mean):
        self.mean, self.logvar = mean, torch.full_like(mean, -1.0)

    def mode(self):
        return self.mean


class FakeVAE:
    """Temporal stride 4, spatial stride 4, 2 channels: latent = per-block mean of the first channel."""

    class config:  # noqa: N801
        temporal_factor = 4

    def normalize(self, latents):
        return (latents - 0.5) * 2.0

    def encode(self, frames):  # B T 3 H W
        index = torch.from_numpy(encode.latent_frame_indices(frames.shape[1], 4))
        picked = frames[:, index, :1]  # B F 1 H W
        pooled = torch.nn.functional.avg_pool3d(picked.transpose(1, 2), (1, 4, 4)).transpose(1, 2)
        return FakePosterior(torch.cat([pooled, -pooled], dim=2))


def test_encode_clip_and_round_trip_through_dataset(tmp_path):
    clip = make_clip()
    tensors, metadata = encode.encode_clip(FakeVAE(), clip, "cpu", store_logvar=True)
    assert tensors["context_latents"].shape == (3, 2, 2, 3)
    assert tensors["target_latents"].shape == (2, 2, 2, 3)
    # frame value v maps to v / 127.5 - 1; target latent frame 1 is clip frame 9 + 4 = 13
    expected = (13 / 127.5 - 1 - 0.5) * 2.0  # normalised by the VAE's (z - shift) * scale
    torch.testing.assert_close(tensors["target_latents"][1, 0], torch.full((2, 3), expected))
    # logvar of (z - 0.5) * 2 is logvar + log 4
    torch.testing.assert_close(tensors["target_logvar"], torch.full((2, 2, 2, 3), -1.0 + np.log(4.0)))
    cache.write_index(tmp_path, {"split": "train"})
    cache.write_clip_entry(tmp_path, "clip_b", tensors, metadata)
    cache.write_clip_entry(tmp_path, "clip_a", tensors, metadata)
    assert not [p for p in (tmp_path / "clips").iterdir() if p.name.startswith(".")]

    dataset = cache.LatentCacheDataset(tmp_path)
    assert len(dataset) == 2 and dataset.clip_ids == ["clip_a", "clip_b"]
    item = dataset[0]
    assert item["caption"] == "a dog walks" and item["events"] == [
        {"subject_id": 1, "kind": "exit", "frame": 3}
    ]
    for key in ("context_latents", "target_latents", "cameras", "intrinsics"):
        assert torch.equal(item[key], tensors[key])
    batch = cache.collate_latents([dataset[0], dataset[1]])
    assert batch["context_latents"].shape == (2, 3, 2, 2, 3) and batch["caption"] == ["a dog walks"] * 2


def test_collate_rejects_mixed_shapes(tmp_path):
    a = {"context_latents": torch.zeros(2, 1), "clip_id": "a"}
    b = {"context_latents": torch.zeros(3, 1), "clip_id": "b"}
    with pytest.raises(DataError, match="different 'context_latents' shapes"):
        cache.collate_latents([a, b])


def test_missing_and_corrupt_cache_raise(tmp_path):
    with pytest.raises(DataError, match="hybridmem encode"):
        cache.LatentCacheDataset(tmp_path)
    cache.write_index(tmp_path, {})
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="bad.safetensors"):
        cache.LatentCacheDataset(tmp_path)[0]


def test_encode_split_resumes_and_skips_done_clips(tmp_path, monkeypatch):
    data = tmp_path / "data" / "train"
    for name in ("000000", "000001", "000002"):
        (data / name).mkdir(parents=True)
    loaded = []

    def fake_load_clip(folder):
        loaded.append(folder.name)
        return make_clip()

    class FakeModelVAE(FakeVAE):
        class config:  # noqa: N801
            temporal_factor = 4

            @staticmethod
            def to_dict():
                return {"name": "fake"}

    import hybridmem.models.checkpoint as model_checkpoint
    import hybridmem.runfolder as runfolder

    monkeypatch.setattr("hybridmem.data.hmworld.load_clip", fake_load_clip, raising=False)
    monkeypatch.setattr(model_checkpoint, "load_model", lambda folder, map_location="cpu": FakeModelVAE())
    monkeypatch.setattr(runfolder, "resolve_model_folder", lambda path, ema=True: path)
    out = tmp_path / "cache"
    cache.write_index(out, {"vae_config": {"name": "fake"}, "store_logvar": False})
    cache.write_clip_entry(out, "000001", *encode.encode_clip(FakeVAE(), make_clip(), "cpu"))
    summary = encode.encode_split(tmp_path / "data", "vae", out, "train", "cpu", progress=False)
    assert summary == {"encoded": 2, "skipped": 1, "total": 3}
    assert loaded == ["000000", "000002"]
    assert cache.cached_clip_ids(out) == ["000000", "000001", "000002"]
    sharded = tmp_path / "sharded"
    for shard in ((1, 2), (0, 2)):
        encode.encode_split(tmp_path / "data", "vae", sharded, "train", "cpu", progress=False, shard=shard)
        if shard == (1, 2):
            assert cache.cached_clip_ids(sharded) == ["000001"]
    assert cache.cached_clip_ids(sharded) == ["000000", "000001", "000002"]
    with pytest.raises(DataError, match="another VAE"):
        encode.encode_split(tmp_path / "data", "vae", out, "train", "cpu", store_logvar=True, progress=False)
    with pytest.raises(DataError, match="splits found"):
        encode.encode_split(tmp_path / "data", "vae", out, "val", "cpu", progress=False)


def test_fill_cache_encodes_only_what_the_cache_lacks_and_checks_every_model_output(tmp_path, monkeypatch):
    """The protocol both encode commands share (encode_split, encode --official): a rerun calls encode_one
    for no clip (so it loads no model), a changed clip is refused by name, and a constant model output of
    any kind (latents, the caption's embedding) is an error naming the models."""
    from hybridmem import runlock
    from hybridmem.errors import CheckpointError

    data = tmp_path / "data" / "train"
    for name in ("000000", "000001"):
        (data / name).mkdir(parents=True)
        (data / name / "metadata.json").write_text(name)
    monkeypatch.setattr("hybridmem.data.hmworld.load_clip", lambda folder: make_clip(), raising=False)
    encoded = []

    def encode_one(clip):
        encoded.append(clip.source)
        tensors, metadata = encode.encode_clip(FakeVAE(), clip, "cpu")
        return {**tensors, "caption_embedding": torch.arange(6.0).reshape(2, 3)}, metadata

    out, folders = encode.open_split(tmp_path / "data", "train", tmp_path / "cache", (0, 1))
    made_from = {"vae_sha256": "v", "store_logvar": False}
    fill = dict(shard=(0, 1), overwrite=False, progress=False, desc="encode", models="the fakes")
    summary = encode.fill_cache(out, folders, {"split": "train"}, made_from, encode_one, **fill)
    assert summary == {"encoded": 2, "skipped": 0, "total": 2} and len(encoded) == 2
    entry = cache.read_entry_metadata(out / cache.CLIPS_DIR / "000001.safetensors")
    assert entry["made_from"] == {**made_from, "clip_sha256": runlock.clip_sha256(folders[1])}
    assert cache.read_index(out)["split"] == "train"
    # a rerun finds every clip current: nothing encoded, no model loaded
    summary = encode.fill_cache(out, folders, {"split": "train"}, made_from, encode_one, **fill)
    assert summary == {"encoded": 0, "skipped": 2, "total": 2} and len(encoded) == 2
    # a clip edited at the same path: refused, named, until --overwrite
    (folders[0] / "metadata.json").write_text("edited")
    with pytest.raises(DataError, match="000000 \\(the clip's contents changed\\)"):
        encode.fill_cache(out, folders, {"split": "train"}, made_from, encode_one, **fill)

    def broken_caption(clip):
        tensors, metadata = encode_one(clip)
        return {**tensors, "caption_embedding": torch.zeros(2, 3)}, metadata

    with pytest.raises(CheckpointError, match="its caption_embedding are all 0.*the fakes"):
        encode.fill_cache(
            out, folders, {"split": "train"}, made_from, broken_caption, **{**fill, "overwrite": True}
        )


def test_encode_stores_the_encoded_warp_of_the_context():
    from hybridmem.warp import rotation_warp

    clip = make_clip()
    tensors, _ = encode.encode_clip(FakeVAE(), clip, "cpu", store_warp=True)
    warped, _ = rotation_warp(
        clip.frames[clip.context], clip.cameras[clip.context], clip.cameras[clip.target], clip.intrinsics
    )
    vae = FakeVAE()
    expected = vae.normalize(vae.encode(encode.frames_to_tensor(warped)).mode())[0]
    torch.testing.assert_close(tensors["target_warp_latents"], expected.float())
    assert "target_warp_latents" not in encode.encode_clip(FakeVAE(), clip, "cpu")[0]


def test_encode_stores_the_warp_of_the_source_it_is_asked_for(tmp_path):
    from hybridmem.warp import rotation_warp

    clip = make_clip()
    tensors, _ = encode.encode_clip(FakeVAE(), clip, "cpu", store_warp=True, warp_source="last")
    warped, _ = rotation_warp(
        clip.frames[clip.context][-1:],
        clip.cameras[clip.context][-1:],
        clip.cameras[clip.target],
        clip.intrinsics,
    )
    vae = FakeVAE()
    expected = vae.normalize(vae.encode(encode.frames_to_tensor(warped)).mode())[0]
    torch.testing.assert_close(tensors["target_warp_latents"], expected.float())
    # the index records a non-default source, and a cache made with one source refuses the other
    index = {"vae_config": {}, "split": "train", "store_warp": True}
    encode.check_same_cache(tmp_path, index, dict(index))
    with pytest.raises(DataError, match="warp_source: context there, last now"):
        encode.check_same_cache(tmp_path, index, {**index, "warp_source": "last"})


def test_encode_refuses_a_warp_source_without_the_warp(tmp_path):
    from hybridmem.errors import ConfigError

    with pytest.raises(ConfigError, match="--warp-source needs --store-warp"):
        encode.encode_split(tmp_path / "data", "vae", tmp_path / "cache", "train", "cpu", warp_source="last")
    with pytest.raises(ConfigError, match="--warp-source 'first' is unknown"):
        encode.encode_split(
            tmp_path / "data", "vae", tmp_path / "cache", "train", "cpu", store_warp=True, warp_source="first"
        )
    assert not (tmp_path / "cache").exists()  # refused before anything is written
