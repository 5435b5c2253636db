"""Generating HM-World: candidate seeds -> plan -> render -> events -> accepted clip folders, in parallel.

    from hybridmem.world.config import WorldConfig
    from hybridmem.world.generate import generate
    summary = generate(WorldConfig(width=64, height=64), "runs/world", num_clips=8, split="train", workers=2)

Layout of an output folder:
    DIR/dataset.json            generator version, the WorldConfig and the held-out names (written first)
    DIR/<split>/<index:06d>/    one clip (see hybridmem.world.layout)
    DIR/manifest.jsonl          one line per finished clip: split, seeds, scene, subjects, events, caption
    DIR/captions.jsonl          one line per finished clip: {"clip", "caption"}

Determinism. Candidate `attempt` of clip `index` in `split` uses the seed
SeedSequence([config.seed, split code, index, attempt]); a clip is the first accepted candidate. So clip k's
content depends only on the base seed, its split and k, never on the number of workers or the shard.
Shard i of N takes the clips with index % N == i, so all shards together make exactly the unsharded run.

Resume and crashes. A clip is written into this run's staging folder (DIR/.staging/<host>-<pid>-<start>/...)
and renamed into place only when complete, and never over a clip that is already there, so a clip folder
that exists is complete (all of CLIP_FILES) and is skipped on the next run; staging folders of dead runs are
deleted before anything is rendered. A folder missing some of CLIP_FILES (made by an older version, or by
hand) is refused, naming the missing files. The manifest is rebuilt from the clip folders at the end of
every run (so the last shard to finish writes the complete one; rerun any shard to rebuild it).

Concurrency. Each shard i/N of a folder is locked (hybridmem.runlock): a second run of the same shard is
refused while the first lives; different shards run side by side. Runs whose shards overlap (0/1 beside
0/2) are still safe: the first to finish a clip publishes it, the other discards its identical copy.
A render worker that dies (killed, out of memory) ends the run with an error; finished clips are kept.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import socket
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hybridmem import jsonio, publish, runlock
from hybridmem.data.clip import Clip, SubjectTrack
from hybridmem.data.counterfactual import COUNTERFACTUAL_SPLITS, COUNTERFACTUALS_FILE
from hybridmem.errors import ConfigError, DataError, HybridmemError
from hybridmem.world import events, layout, splits
from hybridmem.world.config import GENERATOR_VERSION, WorldConfig
from hybridmem.world.counterfactual import render_counterfactuals

# Changing what a seed produces is a new generator version (config.GENERATOR_VERSION); dataset.json refuses
# to mix versions in one folder.
DATASET_FILE = "dataset.json"
MANIFEST_FILE = "manifest.jsonl"
CAPTIONS_FILE = "captions.jsonl"
STAGING_DIR = ".staging"
# what layout.write_clip writes for a generated clip (it always has instance ids); metadata.json comes last
CLIP_FILES = (
    "cond.mp4", "tgt.mp4", "cond_mask.mp4", "tgt_mask.mp4", "ids.npz", "camera.json", "character.json",
    "check.json", "caption.txt", "metadata.json",
)  # fmt: skip


class GenerationError(HybridmemError):
    """Some clips found no accepted candidate within `max_attempts`, or a render worker died."""


@dataclass
class GenerationSummary:
    """What one run did; `rejections` counts rejected candidates by reason (events.REJECTION_REASONS)."""

    requested: int = 0  # clips this shard owns
    skipped: int = 0  # already finished by an earlier run
    accepted: int = 0  # written by this run
    failed: list[str] = field(default_factory=list)  # clips that exhausted max_attempts
    rejections: Counter = field(default_factory=Counter)
    frames_rendered: int = 0
    seconds: float = 0.0

    @property
    def candidates(self) -> int:
        return self.accepted + sum(self.rejections.values())

    @property
    def rejection_rate(self) -> float:
        return sum(self.rejections.values()) / max(self.candidates, 1)

    def to_dict(self) -> dict:
        return {
            "requested": self.requested,
            "skipped": self.skipped,
            "accepted": self.accepted,
            "failed": list(self.failed),
            "rejections": dict(self.rejections),
            "rejection_rate": self.rejection_rate,
            "frames_rendered": self.frames_rendered,
            "seconds": self.seconds,
        }


# 1. one candidate


def candidate_seed(config: WorldConfig, split: str, clip_index: int, attempt: int) -> list[int]:
    return [config.seed, splits.SPLIT_CODES[split], clip_index, attempt]


def _jsonable(value):
    """numpy scalars/arrays and tuples -> plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def caption_for(scene: str, subject_names: list[str], path_names: list[str], trajectory: str) -> str:
    """Template caption from the names; the vocabulary is in hybridmem.world.taxonomy."""
    from hybridmem.world import taxonomy

    path_phrases = {
        "line": "walks in a straight line",
        "arc": "walks along an arc",
        "circle": "walks in a circle",
        "figure_eight": "walks a figure eight",
        "zigzag": "zigzags",
        "stop_and_go": "walks, stops and walks on",
        "u_turn": "walks away and turns back",
        "waypoints": "wanders between waypoints",
        "spiral": "walks in a spiral",
        "s_curve": "walks an S-shaped curve",
    }
    camera_phrases = {
        "pan": "pans {side} and back",
        "tilt": "tilts {side} and back",
        "pan_tilt": "pans diagonally {side} and back",
        "dolly_pan": "moves forward while panning {side} and back",
        "orbit": "orbits {side} around the scene",
    }
    parts = []
    for name, path in zip(subject_names, path_names, strict=True):
        spec = taxonomy.SUBJECTS[name]
        who = "a person" if spec.family == "human" else f"a {spec.kind.replace('_', ' ')}"
        parts.append(f"{who} ({name}) {path_phrases.get(path, 'moves')}")
    subjects_text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    camera = taxonomy.CAMERA_TRAJECTORIES[trajectory]
    sides = {
        "tilt": "up" if camera.direction > 0 else "down",
        "pan_tilt": "up-left" if camera.direction > 0 else "up-right",
    }
    side = sides.get(camera.kind, "left" if camera.direction > 0 else "right")
    camera_text = camera_phrases[camera.kind].format(side=side)
    scene_text = scene.replace("_", " ")
    return f"In a {scene_text}, {subjects_text}; the camera {camera_text}."


def _plan_fields(plan) -> dict:
    """The parts of a world.plan.ClipPlan this module reads, by name (one place to follow API changes)."""
    return {
        "cameras": np.asarray(plan.cameras, dtype=np.float64),  # "T 4 4"
        "intrinsics": np.asarray(plan.intrinsics, dtype=np.float64),  # "4"
        "positions": np.asarray(plan.positions, dtype=np.float64),  # "S T 3"
        "headings": np.asarray(plan.headings, dtype=np.float64),  # "S T"
        "scene": plan.scene,
        "subject_names": list(plan.subject_names),
        "paths": list(plan.path_families),
        "trajectory": plan.camera_trajectory,
    }


def render_candidate(
    renderer, config: WorldConfig, split_plan: splits.SplitPlan, split: str, clip_index: int, attempt: int
) -> tuple[str, Clip | None]:
    """Plan, render and judge one candidate; returns (ACCEPTED, clip) or (rejection reason, None)."""
    plan_clip = _planner()
    # 1. content and motion, all drawn from one generator seeded by (seed, split, index, attempt)
    seed = candidate_seed(config, split, clip_index, attempt)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    scene, subject_names = splits.sample_content(rng, config, split_plan, split)
    plan = plan_clip(
        rng,
        scene=scene,
        subject_names=subject_names,
        num_frames=config.segment_frames(),
        fps=config.fps,
        width=config.width,
        height=config.height,
        horizontal_fov_deg=config.horizontal_fov_deg,
        path_families=config.allowed_paths(),
    )
    # 2. render, then judge on the masks
    rendered = renderer.render(plan)
    fractions = events.visible_fractions(rendered.instance_ids, rendered.full_pixels)  # "S T"
    visible = events.visibility_states(fractions, config.visible_threshold, config.hidden_threshold)
    verdict = events.acceptance(
        visible,
        context_frames=config.context_frames,
        min_hidden_frames=config.min_hidden_frames,
        require_reentry=config.require_reentry,
    )
    if verdict != events.ACCEPTED:
        return verdict, None
    # 3. annotations
    fields = _plan_fields(plan)
    from hybridmem.world import taxonomy

    boxes = events.boxes_from_ids(rendered.instance_ids, len(subject_names))  # "S T 4"
    tracks = [
        SubjectTrack(
            subject_id=s + 1,
            name=name,
            positions=fields["positions"][s],
            headings=fields["headings"][s],
            boxes=boxes[s],
            visible_fraction=fractions[s],
        )
        for s, name in enumerate(subject_names)
    ]
    subject_info = [
        {
            "id": s + 1,
            "name": name,
            "family": taxonomy.SUBJECTS[name].family,
            "kind": taxonomy.SUBJECTS[name].kind,
            "path": fields["paths"][s],
            "unseen_in_train": name in split_plan.held_out_subjects,
        }
        for s, name in enumerate(subject_names)
    ]
    metadata = {
        "generator_version": GENERATOR_VERSION,
        "seed": config.seed,
        "candidate_seed": seed,
        "split": split,
        "clip_index": clip_index,
        "attempt": attempt,
        "scene": scene,
        "scene_unseen_in_train": scene in split_plan.held_out_scenes,
        "subjects": subject_info,
        "camera_trajectory": fields["trajectory"],
        "config": config.to_dict(),
        "plan": _jsonable(plan.to_dict()),
    }
    # 4. the counterfactuals of the re-entering subject, for the benchmark's splits
    counterfactuals, counterfactuals_note = None, f"{split} clips get no counterfactual renders"
    if split in COUNTERFACTUAL_SPLITS:
        found = events.reentering_subject(
            visible, context_frames=config.context_frames, min_hidden_frames=config.min_hidden_frames
        )
        if found is None:  # an accepted clip without a re-entry (require_reentry off)
            counterfactuals_note = "no subject re-enters during the target segment"
            metadata["counterfactuals"] = {"absent": counterfactuals_note}
        else:
            s, last_seen, entry = found
            counterfactuals = render_counterfactuals(
                renderer, plan, s, last_seen, entry, config.context_frames
            )
            counterfactuals_note = ""
            metadata["counterfactuals"] = {
                "file": COUNTERFACTUALS_FILE,
                "subject_id": counterfactuals.subject_id,
                "last_seen_frame": counterfactuals.last_seen_frame,
                "entry_frame": counterfactuals.entry_frame,
            }
    clip = Clip(
        frames=rendered.frames,
        cameras=fields["cameras"],
        intrinsics=fields["intrinsics"],
        context_frames=config.context_frames,
        fps=config.fps,
        subjects=tracks,
        events=events.find_events(visible),
        instance_ids=rendered.instance_ids,
        caption=caption_for(scene, subject_names, fields["paths"], fields["trajectory"]),
        metadata=metadata,
        counterfactuals=counterfactuals,
        counterfactuals_note=counterfactuals_note,
    )
    return events.ACCEPTED, clip


def generate_clip(
    renderer, config: WorldConfig, split_plan: splits.SplitPlan, split: str, clip_index: int, folder: Path
) -> dict:
    """Try candidates until one is accepted and write it to `folder`; report what happened."""
    rejections: Counter = Counter()
    for attempt in range(config.max_attempts):
        verdict, clip = render_candidate(renderer, config, split_plan, split, clip_index, attempt)
        if verdict == events.ACCEPTED:
            clip.metadata["rejected_candidates"] = dict(sorted(rejections.items()))
            layout.write_clip(clip, folder, crf=config.video_crf)
            return {
                "clip": clip_name(split, clip_index),
                "accepted": True,
                "rejections": dict(rejections),
                "frames": (attempt + 1) * config.segment_frames(),
            }
        rejections[verdict] += 1
    return {
        "clip": clip_name(split, clip_index),
        "accepted": False,
        "rejections": dict(rejections),
        "frames": config.max_attempts * config.segment_frames(),
    }


# 2. workers

_WORKER: dict = {}


def _planner():
    """world.plan.plan_clip, looked up at call time (tests replace this hook with a tiny fake)."""
    from hybridmem.world.plan import plan_clip

    return plan_clip


def _make_renderer(config: WorldConfig):
    from hybridmem.world.render import open_renderer

    return open_renderer(config.width, config.height, supersample=config.supersample)


def _end_with_parent(parent: int) -> None:
    """Make this worker process end when `parent` does, however it ends (SIGTERM, SIGKILL, a crash): Linux
    delivers SIGKILL on the parent's death (prctl PR_SET_PDEATHSIG); elsewhere a daemon thread polls for
    it. Without this, workers of a killed `world generate` rendered on, and kept the resource tracker alive.
    """
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        set_death_signal = libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl (not Linux)
        set_death_signal = False
    if not set_death_signal:
        import threading
        import time

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, daemon=True, name="end-with-parent").start()
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)


def _init_worker(config_dict: dict, parent: int | None = None) -> None:
    """Runs once in each spawned worker: one Renderer (one GL context) per process; the worker ends with
    its parent (`parent`, the pid of the run; None in the parent itself, with --workers 1).

    A failure is kept and raised by the first task instead: a Pool whose initializer raises respawns the
    worker forever, so the run would hang instead of reporting, say, a missing EGL driver.
    """
    if parent is not None:
        _end_with_parent(parent)
    try:
        config = WorldConfig.from_dict(config_dict)
        _WORKER.update(config=config, split_plan=splits.split_plan(config), renderer=_make_renderer(config))
    except Exception as error:  # re-raised by _work, where the parent sees it
        _WORKER["error"] = error


def _work(task: tuple[str, int, str, str]) -> dict:
    """Render clip `clip_index` into the run's staging folder, then publish it at `folder`."""
    if "error" in _WORKER:
        raise _WORKER["error"]
    split, clip_index, folder, staging = task
    staged = Path(staging) / split / Path(folder).name
    result = generate_clip(
        _WORKER["renderer"], _WORKER["config"], _WORKER["split_plan"], split, clip_index, staged
    )
    if result["accepted"]:
        publish_clip(staged, Path(folder))
    return result


def publish_clip(staged: Path, folder: Path) -> bool:
    """Rename a complete staged clip folder to `folder`; False (and the copy deleted) when another run
    published it first: a clip is a pure function of its seed, so both copies are the same clip."""
    try:
        os.rename(staged, folder)
        return True
    except OSError:
        if not folder.is_dir():
            raise
        shutil.rmtree(staged, ignore_errors=True)
        return False


# 3. the run


def clip_name(split: str, clip_index: int) -> str:
    return f"{split}/{clip_index:06d}"


def _write_atomic(path: Path, text: str) -> None:
    from hybridmem import publish

    publish.write_text(path, text)


def _check_dataset_file(out: Path, config: WorldConfig, split_plan: splits.SplitPlan) -> dict:
    record = {
        "generator_version": GENERATOR_VERSION,
        "config": config.to_dict(),
        "splits": split_plan.to_dict(),
    }
    path = out / DATASET_FILE
    if path.exists():
        fix = "restore it (the clips' metadata.json hold the settings) or use a new --out folder"
        existing = jsonio.read_json(path, fix=fix)
        if not isinstance(existing, dict) or not isinstance(existing.get("config", {}), dict):
            raise DataError(
                f"{path}: expected an object with 'generator_version' and 'config'; use a new --out"
            )
        if existing.get("generator_version") != GENERATOR_VERSION:
            raise ConfigError(
                f"{path}: made by generator {existing.get('generator_version')!r}, this is "
                f"{GENERATOR_VERSION!r}; use a new --out folder"
            )
        old, new = existing.get("config", {}), record["config"]
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            details = ", ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in changed)
            raise ConfigError(
                f"{path}: this folder was generated with other settings ({details}); use the same settings "
                "to resume, or a new --out folder"
            )
    return record


def read_manifest(out: str | os.PathLike) -> list[dict]:
    path = Path(out) / MANIFEST_FILE
    lines = jsonio.read_text(path).splitlines()
    return [jsonio.loads(line, f"{path} line {n + 1}") for n, line in enumerate(lines) if line.strip()]


def missing_clip_files(folder: Path) -> list[str]:
    """The CLIP_FILES a clip folder lacks (none for a clip this generator finished)."""
    return [name for name in CLIP_FILES if not (folder / name).is_file()]


def manifest_entry(folder: Path) -> dict:
    """One manifest line, from a finished clip folder's metadata.json and check.json."""
    fix = f"delete {folder} and rerun to render the clip again"
    metadata = jsonio.read_json(folder / "metadata.json", fix=fix)
    check = jsonio.read_json(folder / "check.json", fix=fix)
    try:
        return _manifest_entry(folder, metadata, check)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        if isinstance(error, HybridmemError):
            raise
        raise DataError(
            f"{folder}: metadata.json or check.json lacks a field of a finished clip, or holds one of the "
            f"wrong type ({type(error).__name__}: {error}); {fix}"
        ) from None


def _manifest_entry(folder: Path, metadata: dict, check: dict) -> dict:
    return {
        "clip": clip_name(metadata["split"], metadata["clip_index"]),
        "split": metadata["split"],
        "clip_index": metadata["clip_index"],
        "seed": metadata["seed"],
        "candidate_seed": metadata["candidate_seed"],
        "scene": metadata["scene"],
        "scene_unseen_in_train": metadata["scene_unseen_in_train"],
        "subjects": [s["name"] for s in metadata["subjects"]],
        "subjects_unseen_in_train": [s["name"] for s in metadata["subjects"] if s["unseen_in_train"]],
        "paths": [s["path"] for s in metadata["subjects"]],
        "camera_trajectory": metadata["camera_trajectory"],
        "events": check["events"],
        "caption": jsonio.read_text(folder / "caption.txt").strip(),
    }


def rebuild_manifest(out: str | os.PathLike) -> list[dict]:
    """Rewrite manifest.jsonl and captions.jsonl from every finished clip folder (atomic)."""
    out = Path(out)
    entries = []
    for split in splits.SPLITS:
        for folder in sorted((out / split).glob("[0-9]*")) if (out / split).is_dir() else []:
            if not missing_clip_files(folder):
                entries.append(manifest_entry(folder))
    _write_atomic(out / MANIFEST_FILE, "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))
    captions = "".join(json.dumps({"clip": e["clip"], "caption": e["caption"]}) + "\n" for e in entries)
    _write_atomic(out / CAPTIONS_FILE, captions)
    return entries


def generate(
    config: WorldConfig,
    out: str | os.PathLike,
    *,
    num_clips: int,
    split: str | None = None,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
) -> GenerationSummary:
    """Make clips 0..num_clips-1 (this shard's share) in `out`, skipping finished ones. See module docstring.

    split: force every clip into this split; None draws each clip's split from the config's fractions.
    Raises ConfigError before writing anything when the configuration is bad, GenerationError after the
    run when some clips found no accepted candidate.
    """
    # 1. validate everything before the first write
    config.validate()
    if split is not None:
        splits.check_split(split)
    if num_clips < 1:
        raise ConfigError(f"--num-clips {num_clips}: must be at least 1")
    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be at least 1")
    shard_index, shard_count = shard
    if not 0 <= shard_index < shard_count:
        raise ConfigError(f"--shard {shard_index}/{shard_count}: need 0 <= i < N")
    out = runlock.check_out_folder(out)
    _check_memory(config, workers)
    publish.ffmpeg_exe()  # every clip is written through ffmpeg: its absence ends the run before any work
    split_plan = splits.split_plan(config)
    _check_dataset_file(out, config, split_plan)
    # 2. lock this shard of the folder; then the dataset record, checked again under the lock
    with runlock.hold(out, "world generate", name=f"generate-{shard_index}of{shard_count}"):
        record = _check_dataset_file(out, config, split_plan)
        _write_atomic(out / DATASET_FILE, json.dumps(record, indent=1, sort_keys=True) + "\n")
        _remove_dead_staging(out)
        # this process's staging folder (its name says whose, for _remove_dead_staging), one per call
        staging = out / STAGING_DIR / _staging_name() / uuid.uuid4().hex
        summary, tasks = _list_shard(out, config, split, num_clips, shard, staging)
        # 3. render
        started = time.perf_counter()
        try:
            if tasks:
                _run_tasks(tasks, config, workers, summary, progress)
        finally:
            summary.seconds = time.perf_counter() - started
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):
                staging.parent.rmdir()  # unless another call of this process still stages there
            # 4. manifest from everything finished so far (all shards), also after a failure
            rebuild_manifest(out)
    if summary.failed:
        raise GenerationError(
            f"{len(summary.failed)} clip(s) found no accepted candidate in "
            f"max_attempts={config.max_attempts} (first: {summary.failed[0]}; rejections "
            f"{dict(summary.rejections)}); raise max_attempts or relax min_hidden_frames / the visibility "
            "thresholds, then rerun to resume"
        )
    return summary


def _staging_name() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}-{pid}-{publish.process_start_time(pid) or 0}"


def _remove_dead_staging(out: Path) -> None:
    """Delete staging folders of runs on this host that are no longer alive (killed mid-clip)."""
    root = out / STAGING_DIR
    host = socket.gethostname()
    for folder in root.iterdir() if root.is_dir() else []:
        parts = folder.name.rsplit("-", 2)  # host-pid-start (a host name may hold '-')
        if len(parts) != 3 or parts[0] != host or not (parts[1].isdigit() and parts[2].isdigit()):
            continue  # another host's run: not ours to judge
        pid, start = int(parts[1]), int(parts[2]) or None
        if not publish.process_alive(pid, start):
            shutil.rmtree(folder, ignore_errors=True)
    # temporary folders of the layout's own writer, left by versions that wrote in place
    for stale in out.glob(f"*/{layout.TEMP_PREFIX}[0-9]*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def _check_memory(config: WorldConfig, workers: int) -> None:
    """Refuse before rendering when the workers' frame buffers alone cannot fit in memory."""
    from hybridmem.device import check_memory

    frames = config.segment_frames()
    # per worker: the supersampled RGBA render target of one frame, and the clip's RGB frames and ids
    per_worker = (
        4 * config.width * config.height * config.supersample**2 + frames * config.width * config.height * 4
    )
    check_memory(
        workers * per_worker,
        f"world generate: {workers} worker(s) rendering {frames} frames of {config.width}x{config.height}",
        "lower --width/--height, --context-frames/--target-frames, --supersample or --workers",
    )


def _list_shard(
    out: Path, config: WorldConfig, split: str | None, num_clips: int, shard: tuple[int, int], staging: Path
) -> tuple[GenerationSummary, list]:
    """This shard's clips still to render, as tasks; finished ones counted as skipped, incomplete refused."""
    shard_index, shard_count = shard
    summary = GenerationSummary()
    tasks = []
    for clip_index in range(shard_index, num_clips, shard_count):
        clip_split = split or splits.split_of_clip(config, clip_index)
        folder = out / clip_split / f"{clip_index:06d}"
        summary.requested += 1
        if folder.exists():
            missing = missing_clip_files(folder)
            if missing:  # never made by publish_clip's rename: an older version's, or hand-made
                raise DataError(
                    f"{folder}: an incomplete clip (missing {', '.join(missing)}); delete the folder and "
                    "rerun to render it again"
                )
            summary.skipped += 1
            continue
        folder.parent.mkdir(parents=True, exist_ok=True)
        tasks.append((clip_split, clip_index, str(folder), str(staging)))
    return summary, tasks


def _run_tasks(
    tasks: list, config: WorldConfig, workers: int, summary: GenerationSummary, progress: bool
) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), unit="clip", disable=not progress, smoothing=0.1)

    def record(result: dict) -> None:
        summary.rejections.update(result["rejections"])
        summary.frames_rendered += result["frames"]
        if result["accepted"]:
            summary.accepted += 1
        else:
            summary.failed.append(result["clip"])
        bar.update(1)
        bar.set_postfix(rejected=sum(summary.rejections.values()), rate=f"{summary.rejection_rate:.0%}")

    try:
        if workers == 1:
            _init_worker(config.to_dict())
            try:
                for task in tasks:
                    record(_work(task))
            finally:
                _close_worker()
        else:
            _run_in_workers(tasks, config, workers, record, summary)
    finally:
        bar.close()


def _run_in_workers(tasks: list, config: WorldConfig, workers: int, record, summary) -> None:
    """The tasks in `workers` spawned processes. A ProcessPoolExecutor, not a Pool: when a worker dies
    (kill -9, the OOM killer) a Pool replaces it and waits forever for its lost task; the executor
    reports the broken pool, and the run ends with an error naming what to do."""
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: a forked GL context or torch thread pool is not safe to reuse
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        min(workers, len(tasks)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(config.to_dict(), os.getpid()),
    )
    try:
        pending = {pool.submit(_work, task) for task in tasks}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                record(future.result())  # re-raises a worker's exception here
    except BrokenProcessPool:
        raise GenerationError(
            f"world generate: a render worker died (killed, or out of memory) after {summary.accepted} of "
            f"{len(tasks)} clip(s) of this run were finished; those are kept. Rerun the same command to "
            "resume (with fewer --workers if memory ran out)"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _close_worker() -> None:
    renderer = _WORKER.pop("renderer", None)
    if renderer is not None and hasattr(renderer, "close"):
        renderer.close()
    _WORKER.clear()
