"""Generation pipeline: a tiny fake planner/renderer for the machinery (in-process), the real renderer for
the invariants, determinism across processes and worker counts, and resume after a kill."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hybridmem.data.hmworld import load_clip
from hybridmem.errors import ConfigError
from hybridmem.geometry import intrinsics_from_fov, look_at, project_points
from hybridmem.world import generate as gen
from hybridmem.world import layout, taxonomy
from hybridmem.world.config import WorldConfig

TINY = dict(width=32, height=32, context_frames=9, target_frames=9, min_hidden_frames=3, supersample=1)


# 1. fake planner / renderer: subject s is a 4x4 square that hides for a random gap starting at frame 3


def fake_plan_clip(
    rng,
    *,
    scene,
    subject_names,
    num_frames,
    fps,
    width,
    height,
    horizontal_fov_deg=70.0,
    path_families=("line",),
):
    num_subjects = len(subject_names)
    gaps = rng.integers(0, 9, size=num_subjects)
    columns = rng.integers(0, width - 4, size=num_subjects)
    positions = np.zeros((num_subjects, num_frames, 3))
    positions[..., 0] = columns[:, None]
    positions[..., 1] = gaps[:, None]
    cameras = np.stack([look_at([0, -5, 1], [0, 0, 1])] * num_frames)
    trajectory = next(iter(taxonomy.CAMERA_TRAJECTORIES))
    plan = SimpleNamespace(
        scene=scene, subject_names=list(subject_names), path_families=[path_families[0]] * num_subjects,
        camera_trajectory=trajectory, cameras=cameras, intrinsics=intrinsics_from_fov(width, height, 70.0),
        positions=positions, headings=np.zeros((num_subjects, num_frames)), num_frames=num_frames,
    )  # fmt: skip
    plan.to_dict = lambda: {"gaps": gaps.tolist(), "columns": columns.tolist()}
    return plan


class FakeRenderer:
    def __init__(self, width, height, supersample=2):
        self.width, self.height = width, height

    def render(self, plan):
        num_subjects, num_frames = plan.positions.shape[:2]
        ids = np.zeros((num_frames, self.height, self.width), dtype=np.uint8)
        for s in range(num_subjects):
            column, gap = int(plan.positions[s, 0, 0]), int(plan.positions[s, 0, 1])
            for t in range(num_frames):
                if not 3 <= t < 3 + gap:
                    ids[t, 4 + 8 * s : 8 + 8 * s, column : column + 4] = s + 1
        frames = np.where(ids[..., None] > 0, 200, 40).astype(np.uint8).repeat(3, axis=-1)
        return SimpleNamespace(
            frames=frames, instance_ids=ids, full_pixels=np.full((num_subjects, num_frames), 16.0)
        )

    def close(self):
        pass


@pytest.fixture
def fake_backend(monkeypatch):
    monkeypatch.setattr(gen, "_planner", lambda: fake_plan_clip)
    monkeypatch.setattr(gen, "_make_renderer", lambda config: FakeRenderer(config.width, config.height))


def _annotations(out: Path) -> dict:
    """Every annotation file and the ids of every clip (videos are lossy, everything else is exact)."""
    found = {}
    for folder in sorted(p for p in out.glob("*/[0-9]*") if p.is_dir()):
        for name in ("camera.json", "character.json", "check.json", "caption.txt", "metadata.json"):
            found[f"{folder.parent.name}/{folder.name}/{name}"] = (folder / name).read_text()
        with np.load(folder / "ids.npz") as archive:
            found[f"{folder.parent.name}/{folder.name}/ids"] = archive["ids"].tobytes()
    return found


def test_fake_run_writes_accepted_clips_manifest_and_rejections(tmp_path, fake_backend):
    config = WorldConfig(**TINY, max_subjects=2)
    summary = gen.generate(config, tmp_path, num_clips=4, split="train", progress=False)
    assert summary.accepted == 4 and summary.skipped == 0 and summary.rejections
    assert set(summary.rejections) <= {
        "hidden_too_short",
        "no_reentry_in_target",
        "no_exit_after_seen_in_context",
    }
    manifest = gen.read_manifest(tmp_path)
    assert [entry["clip"] for entry in manifest] == [f"train/{k:06d}" for k in range(4)]
    for entry in manifest:
        assert entry["split"] == "train" and entry["scene"] in taxonomy.SCENES
        assert any(e["kind"] == "entry" and e["frame"] >= 9 for e in entry["events"])
        clip = load_clip(tmp_path / entry["clip"], load_frames=False)
        assert clip.metadata["candidate_seed"] == entry["candidate_seed"]
    captions = (tmp_path / "captions.jsonl").read_text().splitlines()
    assert len(captions) == 4 and json.loads(captions[0])["caption"].startswith("In a ")
    assert json.loads((tmp_path / "dataset.json").read_text())["config"]["width"] == 32


def test_shards_together_equal_the_unsharded_run(tmp_path, fake_backend):
    config = WorldConfig(**TINY, max_subjects=2, val_fraction=0.3, test_fraction=0.3)
    gen.generate(config, tmp_path / "all", num_clips=6, progress=False)
    for shard in range(3):
        gen.generate(config, tmp_path / "sharded", num_clips=6, shard=(shard, 3), progress=False)
    assert _annotations(tmp_path / "all") == _annotations(tmp_path / "sharded")
    assert gen.read_manifest(tmp_path / "all") == gen.read_manifest(tmp_path / "sharded")
    assert {entry["split"] for entry in gen.read_manifest(tmp_path / "all")} >= {"train"}


def test_resume_skips_finished_and_cleans_stale_temp(tmp_path, fake_backend):
    config = WorldConfig(**TINY)
    gen.generate(config, tmp_path, num_clips=2, split="train", progress=False)
    before = _annotations(tmp_path)
    # a killed run leaves a half-written temporary folder of clip 2, and clip 1 is deleted by hand
    stale = layout.temp_folder_for(tmp_path / "train" / "000002")
    stale.mkdir()
    (stale / "cond.mp4").write_bytes(b"half")
    summary = gen.generate(config, tmp_path, num_clips=3, split="train", progress=False)
    assert summary.skipped == 2 and summary.accepted == 1
    assert not stale.exists()
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["000000", "000001", "000002"]
    after = _annotations(tmp_path)
    assert {k: v for k, v in after.items() if "000002" not in k} == before


def test_changed_settings_refuse_to_mix(tmp_path, fake_backend):
    gen.generate(WorldConfig(**TINY), tmp_path, num_clips=1, split="train", progress=False)
    with pytest.raises(ConfigError, match="width: 32 there, 48 now"):
        gen.generate(
            WorldConfig(**{**TINY, "width": 48}), tmp_path, num_clips=1, split="train", progress=False
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_clips": 0}, "--num-clips"),
        ({"num_clips": 1, "workers": 0}, "--workers"),
        ({"num_clips": 1, "shard": (2, 2)}, "--shard"),
        ({"num_clips": 1, "split": "dev"}, "valid splits"),
    ],
)
def test_bad_run_arguments_write_nothing(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        gen.generate(WorldConfig(**TINY), tmp_path / "out", progress=False, **kwargs)
    assert not (tmp_path / "out").exists()


def test_gives_up_after_max_attempts(tmp_path, fake_backend):
    config = WorldConfig(**{**TINY, "min_hidden_frames": 17}, max_attempts=2)
    with pytest.raises(gen.GenerationError, match="max_attempts=2"):
        gen.generate(config, tmp_path, num_clips=1, split="train", progress=False)
    assert not (tmp_path / "train" / "000000").exists()


# 3. the real planner and renderer (tiny clips)

REAL = dict(width=32, height=32, context_frames=9, target_frames=9, min_hidden_frames=2, supersample=1)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """Three clips rendered in this process (workers=1) with the real planner and renderer."""
    out = tmp_path_factory.mktemp("real") / "workers1"
    gen.generate(WorldConfig(**REAL), out, num_clips=3, split="train", workers=1, progress=False)
    return out


def test_generated_clips_satisfy_the_event_rule_and_match_the_geometry(real_run):
    from hybridmem.world.plan import ClipPlan, subject_points

    config = WorldConfig(**REAL)
    for entry in gen.read_manifest(real_run):
        clip = load_clip(real_run / entry["clip"])
        context = clip.context_frames
        # 1. the acceptance rule, from the stored events and visibility
        accepted = False
        for track in clip.subjects:
            exits = [e.frame for e in clip.events if e.subject_id == track.subject_id and e.kind == "exit"]
            entries = [e.frame for e in clip.events if e.subject_id == track.subject_id and e.kind == "entry"]
            seen = track.visible_fraction[:context] >= config.visible_threshold
            for entry_frame in entries:
                before = [f for f in exits if f < entry_frame]
                if seen.any() and before and entry_frame >= context:
                    hidden = entry_frame - max(before)
                    accepted |= hidden >= config.min_hidden_frames
                    assert (
                        track.visible_fraction[max(before) : entry_frame] < config.visible_threshold
                    ).all()
        assert accepted, entry["clip"]
        # 2. boxes and visible fractions agree with the exact ids
        for track in clip.subjects:
            mask = clip.instance_ids == track.subject_id
            assert np.isnan(track.boxes[~mask.any(axis=(1, 2))]).all()
        # 3. masks agree with the subjects' 3D bodies projected through the stored cameras
        plan = ClipPlan.from_dict(clip.metadata["plan"])
        np.testing.assert_allclose(plan.cameras, clip.cameras)
        checked = 0
        for s, track in enumerate(clip.subjects):
            for t in range(clip.num_frames):
                mask = clip.instance_ids[t] == track.subject_id
                if mask.sum() < 6 or track.visible_fraction[t] < 0.5:
                    continue
                uv, depth = project_points(subject_points(plan, s, t), clip.cameras[t], clip.intrinsics)
                inside = (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < 32) & (uv[:, 1] >= 0) & (uv[:, 1] < 32)
                assert inside.any(), (entry["clip"], s, t)
                x0, y0, x1, y1 = track.boxes[t]
                margin = 2 + 0.25 * max(x1 - x0, y1 - y0)
                u, v = uv[inside].T
                in_box = (u >= x0 - margin) & (u <= x1 + margin) & (v >= y0 - margin) & (v <= y1 + margin)
                assert in_box.mean() >= 0.8, (entry["clip"], s, t, in_box.mean())
                checked += 1
        assert checked > 0


def test_determinism_across_processes_and_worker_counts(real_run, tmp_path):
    """workers=2 renders in fresh spawned processes; annotations and ids must equal the in-process run."""
    out = tmp_path / "workers2"
    gen.generate(WorldConfig(**REAL), out, num_clips=3, split="train", workers=2, progress=False)
    first, second = _annotations(real_run), _annotations(out)
    assert len(first) == 3 * 6 and first == second


def test_resume_after_killing_a_run(tmp_path):
    """Kill a real `hybridmem world generate` mid-run; rerunning yields exactly the requested clips."""
    out = tmp_path / "killed"
    flags = "--split train --no-progress --width 32 --height 32 --context-frames 9 --target-frames 9"
    flags += " --min-hidden-frames 2 --supersample 1 --num-clips 4"
    command = [sys.executable, "-m", "hybridmem.cli", "world", "generate", "--out", str(out), *flags.split()]
    process = subprocess.Popen(command, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and not list(out.glob("train/*")):
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert subprocess.run(command, stderr=subprocess.DEVNULL).returncode == 0
    names = sorted(p.name for p in (out / "train").iterdir())
    assert names == ["000000", "000001", "000002", "000003"]  # no .tmp-* left, nothing extra
    for name in names:
        load_clip(out / "train" / name)  # complete and readable
    assert [entry["clip"] for entry in gen.read_manifest(out)] == [f"train/{name}" for name in names]


def test_renderer_start_failure_is_reported_not_retried(tmp_path, monkeypatch):
    def broken_renderer(config):
        raise RuntimeError("no EGL display")

    monkeypatch.setattr(gen, "_make_renderer", broken_renderer)
    with pytest.raises(RuntimeError, match="no EGL display"):
        gen.generate(WorldConfig(**TINY), tmp_path, num_clips=1, split="train", progress=False)
    assert not (tmp_path / "train" / "000000").exists()
