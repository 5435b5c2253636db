"""The evaluation protocol: generate each test clip's target segment with each method, cache it, score it.

    from hybridmem.eval.protocol import EvalConfig, run_evaluation
    run_evaluation(EvalConfig(data="runs/world", out="runs/eval", checkpoints=["runs/world_model/final"],
                              vae="runs/vae/final", baselines=["copy-last"], num_clips=8))

Each method gets the context frames, all cameras and the intrinsics of a clip and generates the target frames.
Clip i (in sorted folder order) is generated with seed `seed + i`, so a rerun reproduces every generation.

Reference rows (`--baseline`, BASELINES): copy-last (a frozen world), erased and frozen (the clip's
counterfactual renders: the re-entering subject vanished, or held where it was last seen; a clip without them
stops the run with a DataError naming the clip and why, rather than leaving a hole in a reference row) and
vae (the VAE's reconstruction of the true target: the ceiling any world model decoded through it can reach).
Presence gain and motion score (hybridmem.eval.reentry) are scored for every method on every clip with
counterfactual renders, and recorded as "n/a: <reason>" on the others.

Output folder (EVALDIR):
    generations/<method>/<clip>.npz   the generated target frames ("Tt H W 3" uint8, lossless) + seed/steps;
                                      an existing file is reused, so an interrupted run resumes where it
                                      stopped and metrics can be recomputed without generating again
    clips/<method>/<clip>.json        every metric of one clip (+ per-frame PSNR/SSIM curves, re-entries)
    aggregate.json                    config, box source, DSC definition, per-method means and counts,
                                      every clip's numbers (per_clip: the report's paired comparisons)
    report.md                         Table 2 column order, then re-entry/background pixel metrics, then
                                      paired differences with 95% bootstrap intervals over clips
    reentry_psnr.png                  per-frame PSNR aligned on the re-entry frame, one line per method
    side_by_side/<clip>.mp4, .gif     ground truth and each method, re-entry frame marked
    run.json                          the inputs (data, checkpoint and VAE content hashes, metric settings):
                                      a rerun with other inputs is refused, or recomputed with --overwrite

Metrics whose weights are missing are recorded as "not computed: weights not found at PATH"; metrics a clip
cannot have (no counterfactual renders) as "n/a: <reason>".
Shape letters: T frames (Tc context, Tt target), H/W pixels, S subjects.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hybridmem import runlock
from hybridmem.errors import CheckpointError, ConfigError, DataError
from hybridmem.eval import metrics as pixel
from hybridmem.eval import reentry, report
from hybridmem.validation import check_choice

BOX_SOURCES = {
    "gt": "ground-truth boxes from the target masks (default: scores the subject where it should be)",
    "tracker": "colour-histogram tracker on the generated frames, seeded from the last context box",
}


# --- methods --------------------------------------------------------------------------------------


class CopyLastGenerator:
    """Trivial baseline: every target frame is the last context frame (a frozen world)."""

    name = "copy-last"

    def generate(self, clip, seed: int) -> "Tt H W 3":
        last = clip.frames[clip.context_frames - 1]
        return np.repeat(last[None], clip.target_frames, axis=0)


class WarpGenerator:
    """Non-learned baseline: the context warped into each target view by the cameras' rotations
    (hybridmem.warp): what the camera poses alone predict."""

    name = "warp"

    def generate(self, clip, seed: int) -> "Tt H W 3":
        from hybridmem.warp import rotation_warp

        frames, _ = rotation_warp(
            clip.frames[clip.context], clip.cameras[clip.context], clip.cameras[clip.target], clip.intrinsics
        )
        return frames


class PipelineGenerator:
    """A trained world model through hybridmem.sample.pipeline.WorldPipeline.

    progress: show the denoising progress bar of every clip (the demo's few clips); the benchmark keeps it
    off, its own bar counts clips."""

    progress = False

    def __init__(
        self,
        checkpoint: str,
        vae: str,
        device: str = "cpu",
        steps: int | None = None,
        name: str = "",
        allow_other_vae: bool = False,
        progress: bool = False,
    ):
        from hybridmem.sample.pipeline import WorldPipeline

        self.pipeline = WorldPipeline.from_checkpoint(
            checkpoint, vae, device=device, allow_other_vae=allow_other_vae
        )
        self.steps = steps
        self.name = name or Path(checkpoint).name
        self.progress = progress

    def conditioning(self, clip) -> dict:
        """What else the pipeline reads of a clip besides frames and cameras (ours: nothing)."""
        return {}

    def generate(self, clip, seed: int) -> "Tt H W 3":
        context, target = clip.context, clip.target
        options = {} if self.steps is None else {"steps": self.steps}
        return self.pipeline.generate(
            clip.frames[context],
            clip.cameras[context],
            clip.cameras[target],
            clip.intrinsics,
            seed=seed,
            progress=self.progress,
            **options,
            **self.conditioning(clip),
        )


class OfficialGenerator(PipelineGenerator):
    """The paper's model (Wan2.1-T2V-1.3B + HyDRA) from the released files, on the clip's caption."""

    def __init__(
        self,
        folder: str,
        device: str = "cpu",
        steps: int | None = None,
        precision: str = "bf16",
        checkpoint: str | None = None,
        name: str | None = None,
    ):
        """checkpoint: a run fine-tuned from the release (`train world --official`): its DiT with the
        release's VAE and text encoder."""
        import torch

        from hybridmem.official.pipeline import OfficialPipeline

        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.pipeline = OfficialPipeline.from_release(
            folder, device=device, dtype=dtype, checkpoint=checkpoint
        )
        self.steps = steps
        self.name = name or OFFICIAL_METHOD

    def conditioning(self, clip) -> dict:
        return {"caption": clip.caption}


class CounterfactualGenerator:
    """Reference row: the clip's counterfactual render of its target segment (hybridmem.data.counterfactual),
    `erased` (the re-entering subject vanished) or `frozen` (held where it was last seen)."""

    def __init__(self, kind: str):
        self.name = kind

    def generate(self, clip, seed: int) -> "Tt H W 3":
        counterfactuals = getattr(clip, "counterfactuals", None)
        if counterfactuals is None:
            note = getattr(clip, "counterfactuals_note", "") or "none recorded"
            raise DataError(
                f"{clip.source or 'clip'}: --baseline {self.name} needs the clip's counterfactual renders "
                f"and it has none ({note}); evaluate val/test clips rendered by the current `hybridmem world "
                f"generate`, or drop --baseline {self.name}"
            )
        return np.array(getattr(counterfactuals, f"{self.name}_frames"), dtype=np.uint8)


class VAEReconstructionGenerator:
    """Reference row: the true target segment encoded (posterior mean) and decoded by the VAE the world
    models are trained on: the ceiling for any world model whose frames come out of that decoder."""

    name = "vae"

    def __init__(self, vae: str, device: str = "cpu"):
        from hybridmem.data.encode import resolve_finished_vae
        from hybridmem.device import resolve_device
        from hybridmem.models.checkpoint import load_model
        from hybridmem.models.vae import VideoVAE

        self.device = resolve_device(device)
        folder = resolve_finished_vae(vae)
        self.vae = load_model(folder, map_location=self.device).eval()
        if not isinstance(self.vae, VideoVAE):
            raise ConfigError(f"--vae {vae}: {folder} holds a {type(self.vae).__name__}, not a VideoVAE")

    def generate(self, clip, seed: int) -> "Tt H W 3":
        import torch
        from einops import rearrange

        from hybridmem.data.encode import frames_to_tensor

        frames = clip.frames[clip.target]
        stride = self.vae.config.temporal_factor
        if (len(frames) - 1) % stride:
            raise DataError(
                f"{clip.source or 'clip'}: {len(frames)} target frames; the VAE needs {stride}k+1 frames a "
                "segment"
            )
        with torch.no_grad():
            # the world model's latents are normalize(mode) and are denormalised before decoding; the two
            # affine maps cancel, so the mode is decoded directly
            latents = self.vae.encode(frames_to_tensor(frames).to(self.device)).mode()  # 1 F C h w
            video = self.vae.decode(latents)  # 1 T 3 H W
        video = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # as WorldPipeline.decode
        return rearrange(video[0], "t c h w -> t h w c").cpu().numpy()


# name -> what the reference row is (the --baseline help and error messages read this)
BASELINES = {
    "copy-last": "every target frame is the last context frame",
    "erased": "the clip's counterfactual render with the re-entering subject erased",
    "frozen": "the clip's counterfactual render with that subject frozen at its last seen pose",
    "vae": "the VAE's reconstruction of the true target (the ceiling; needs --vae)",
    "warp": "the context warped into each target view by the camera rotations (what the poses alone say)",
}
NEEDS_VAE = {"vae"}
OFFICIAL_METHOD = "hydra-official"  # the row of --official DIR


def check_baseline(name: str) -> None:
    check_choice(name, sorted(BASELINES), "--baseline")


def make_baseline(name: str, vae: str | None = None, device: str = "cpu"):
    """The generator of a named reference row; `vae` (a VAE run or model folder) for "vae"."""
    check_baseline(name)
    if name == "copy-last":
        return CopyLastGenerator()
    if name == "warp":
        return WarpGenerator()
    if name in ("erased", "frozen"):
        return CounterfactualGenerator(name)
    if not vae:
        raise ConfigError("--baseline vae needs --vae (the VAE run whose reconstruction is the ceiling)")
    return VAEReconstructionGenerator(vae, device)


# --- generation cache -----------------------------------------------------------------------------


def cache_path(out: Path, method: str, clip_id: str) -> Path:
    return out / "generations" / method / f"{clip_id}.npz"


def save_generation(
    path: Path, frames: "Tt H W 3", seed: int, steps: int | None, source: str, inputs: str = ""
) -> None:
    """Frames plus what made them (seed, steps, checkpoint or baseline, and `inputs`: the content hashes
    of the checkpoint, VAE and clip), so a rerun can check it."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        frames=frames,
        seed=np.int64(seed),
        steps=np.int64(-1 if steps is None else steps),
        source=np.array(source),
        inputs=np.array(inputs),
    )
    report.write_bytes_atomic(path, buffer.getvalue())


def load_generation(
    path: Path, seed: int, steps: int | None, source: str, inputs: str = "", overwrite: bool = False
) -> np.ndarray | None:
    """Cached frames; None if there is no readable cache file (then the clip is generated again).

    Raises ConfigError when the cache was made with another seed, step count, checkpoint or `inputs`
    (checkpoint, VAE or clip content): reusing it would silently report the old setting. With `overwrite`
    such a file is generated again instead; a file that predates `inputs` cannot be checked and is too.
    """
    if not path.is_file():
        return None
    from hybridmem import npyio

    try:
        archive = npyio.read_npz(path)  # headers checked before anything is allocated (DataError)
        frames = archive["frames"]
        made_with = (int(archive["seed"]), int(archive["steps"]), str(archive["source"]))
        made_from = str(archive["inputs"]) if "inputs" in archive else None
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile):
        return None
    wanted = (seed, -1 if steps is None else steps, source)
    if made_with != wanted or (inputs and made_from is not None and made_from != inputs):
        if overwrite:
            return None
        what = "(seed, steps, source)" if made_with != wanted else "other checkpoint, VAE or clip contents"
        raise ConfigError(
            f"{path}: cached generation was made with {what} = "
            f"{made_with if made_with != wanted else made_from}, "
            f"this run asks for {wanted if made_with != wanted else inputs}; pass --overwrite to regenerate, "
            "or use another --out"
        )
    if inputs and made_from is None:
        return None
    return frames


# --- metric models --------------------------------------------------------------------------------


@dataclass
class MetricModels:
    """Loaded weight-needing models, or for each the reason it is absent ("not computed: ...")."""

    lpips: object = None
    clip: object = None
    dino: object = None
    reasons: dict = field(default_factory=dict)

    @classmethod
    def load(cls, weights_dir, device: str = "cpu", lpips_backbone: str = "alex") -> MetricModels:
        from hybridmem.eval.features import ClipEncoder, DinoEncoder, WeightsNotFound, resolve_weights_dir
        from hybridmem.eval.lpips import load_lpips

        folder = resolve_weights_dir(weights_dir)
        models = cls()
        loaders = {
            "lpips": lambda: load_lpips(folder, lpips_backbone).to(device),
            "clip": lambda: ClipEncoder.from_weights_dir(folder, device),
            "dino": lambda: DinoEncoder.from_weights_dir(folder, device),
        }
        for name, loader in loaders.items():
            try:
                setattr(models, name, loader())
            except WeightsNotFound as missing:
                models.reasons[name] = f"not computed: weights not found at {missing.path}"
        return models


# --- one clip -------------------------------------------------------------------------------------


def subject_boxes(clip, frames: slice) -> dict:
    """subject id -> "T 4" pixel boxes over `frames`: from instance masks, else from the subject tracks."""
    boxes = {}
    for track in clip.subjects:
        if clip.instance_ids is not None:
            boxes[track.subject_id] = pixel.boxes_from_masks(clip.instance_ids[frames] == track.subject_id)
        elif track.boxes is not None:
            boxes[track.subject_id] = np.asarray(track.boxes[frames], dtype=np.float64)
    return boxes


def predicted_subject_boxes(
    clip, predicted: "Tt H W 3", target_boxes: dict, context_boxes: dict, source: str
):
    """Boxes of each subject in the generated frames, in the frames where the ground truth shows it."""
    if source == "gt":
        return dict(target_boxes)
    from hybridmem.eval.tracker import track_boxes

    boxes = {}
    for subject_id, gt_boxes in target_boxes.items():
        seen = np.flatnonzero(~np.isnan(context_boxes.get(subject_id, np.full((1, 4), np.nan))).any(axis=1))
        if seen.size == 0:  # never seen in the context: no template to seed the tracker
            continue
        last = int(seen[-1])
        visible = ~np.isnan(gt_boxes).any(axis=1)
        boxes[subject_id] = track_boxes(
            predicted, clip.frames[last], context_boxes[subject_id][last], visible
        )
    return boxes


def evaluate_clip(
    clip,
    predicted: "Tt H W 3",
    models: MetricModels,
    box_source: str = "gt",
    dsc_definition: str = "official",
) -> dict:
    """Every metric of one clip's generated target segment (see report.METRIC_KEYS); DSC by the named
    definition (hybridmem.eval.dsc.DSC_DEFINITIONS); presence gain and motion score from the clip's
    counterfactual renders (hybridmem.eval.reentry), with their parts under "reentry_detail"."""
    check_choice(box_source, BOX_SOURCES, "--boxes")
    ground_truth = clip.frames[clip.target]
    context_frames = clip.frames[clip.context]
    reentries = pixel.reentry_events(clip.events, clip.context_frames)
    target_ids = None if clip.instance_ids is None else clip.instance_ids[clip.target]
    # 1. pixel metrics
    record = pixel.pixel_metrics(predicted, ground_truth, target_ids, reentries)
    record["reentries"] = [{"subject_id": s, "target_frame": f} for s, f in reentries]
    # 2. LPIPS
    if models.lpips is not None:
        from hybridmem.eval.lpips import lpips_per_frame

        record["lpips"] = float(lpips_per_frame(models.lpips, predicted, ground_truth).mean())
    else:
        record["lpips"] = models.reasons.get("lpips", "not computed")
    # 3. VBench consistency of the generated video
    from hybridmem.eval import consistency

    record["subject_consistency"] = (
        consistency.subject_consistency(models.dino, predicted)
        if models.dino is not None
        else models.reasons.get("dino", "not computed")
    )
    record["background_consistency"] = (
        consistency.background_consistency(models.clip, predicted)
        if models.clip is not None
        else models.reasons.get("clip", "not computed")
    )
    # 4. DSC
    target_boxes = subject_boxes(clip, clip.target)
    context_boxes = subject_boxes(clip, clip.context)
    predicted_boxes = predicted_subject_boxes(clip, predicted, target_boxes, context_boxes, box_source)
    # the tracker's boxes are kept so a reader can see where it found each subject
    record["predicted_boxes"] = (
        "gt" if box_source == "gt" else {str(s): boxes.tolist() for s, boxes in predicted_boxes.items()}
    )
    if models.clip is not None:
        from hybridmem.eval.dsc import dsc_scores

        record.update(
            dsc_scores(
                models.clip,
                predicted,
                ground_truth,
                context_frames,
                predicted_boxes,
                target_boxes,
                context_boxes,
                dsc_definition,
            )
        )
    else:
        record["dsc_ctx"] = record["dsc_gt"] = models.reasons.get("clip", "not computed")
    # 5. presence gain and motion score against the counterfactual renders ("n/a: ..." without them)
    record.update(reentry.reentry_metrics(clip, predicted))
    return record


# --- the whole run --------------------------------------------------------------------------------


@dataclass
class EvalConfig:
    """Everything `hybridmem eval` needs; saved in aggregate.json."""

    data: str
    out: str
    split: str = "test"
    num_clips: int | None = None  # None: every clip of the split
    checkpoints: list = field(default_factory=list)
    vae: str | None = None
    baselines: list = field(default_factory=list)
    weights_dir: str | None = None
    steps: int | None = None
    seed: int = 0
    boxes: str = "gt"
    dsc_definition: str = "official"  # hybridmem.eval.dsc.DSC_DEFINITIONS
    device: str = "cpu"
    lpips_backbone: str = "alex"
    side_by_side_clips: int = 1  # how many clips (those with a re-entry first) get a side-by-side video
    overwrite: bool = False  # recompute results in `out` made from other inputs (default: refuse them)
    allow_other_vae: bool = False  # a --vae other than the one a checkpoint records (default: refuse it)
    official: str | None = None  # the paper's model: a folder of the released files (hybridmem.official)
    precision: str = "bf16"  # the official model's dtype

    def validate(self) -> None:
        if not self.checkpoints and not self.baselines and not self.official:
            raise ConfigError(
                "nothing to evaluate: give --checkpoint RUN (one or more), --official DIR and/or --baseline "
                "copy-last"
            )
        check_choice(self.precision, ("bf16", "fp32"), "--precision")
        if set(self.checkpoints) - set(finetuned_checkpoints(self)) and not self.vae:
            raise ConfigError(
                "--vae is required with --checkpoint (the VAE run the world model was trained on; a run "
                "fine-tuned from --official DIR uses the release's)"
            )
        if NEEDS_VAE & set(self.baselines) and not self.vae:
            raise ConfigError("--vae is required with --baseline vae (the VAE whose reconstruction it is)")
        check_choice(self.boxes, BOX_SOURCES, "--boxes")
        from hybridmem.eval.dsc import DSC_DEFINITIONS

        check_choice(self.dsc_definition, DSC_DEFINITIONS, "--dsc-definition")
        from hybridmem.validation import check_fields

        check_fields(self, "eval")  # numeric fields (clips, steps, side-by-side clips, ...): the range table
        for name in self.baselines:
            check_baseline(name)
        from hybridmem.eval.lpips import BACKBONES

        check_choice(self.lpips_backbone, sorted(BACKBONES), "--lpips-backbone")


def finetuned_checkpoints(config: EvalConfig) -> list[str]:
    """The --checkpoint runs fine-tuned from the --official release (`train world --official`): they
    generate through the release's VAE and text encoder, without --vae. None without --official."""
    if not config.official:
        return []
    from hybridmem.official.finetune import finetuned_from
    from hybridmem.runfolder import resolve_model_folder

    found = []
    for checkpoint in config.checkpoints:
        try:
            folder = resolve_model_folder(checkpoint)
        except CheckpointError:
            continue  # named when it is loaded
        if finetuned_from(folder) is not None:
            found.append(checkpoint)
    return found


def method_names(config: EvalConfig) -> list[str]:
    """Checkpoint folder names (made unique with -2, -3 ...) then baseline names."""
    names = []
    for checkpoint in config.checkpoints:
        base = Path(checkpoint).resolve().name or "checkpoint"
        name, index = base, 2
        while name in names:
            name, index = f"{base}-{index}", index + 1
        names.append(name)
    if config.official:
        names.append(OFFICIAL_METHOD)
    return names + list(config.baselines)


def list_clips(config: EvalConfig) -> list[Path]:
    from hybridmem.data.encode import list_clip_folders

    folders = list_clip_folders(config.data, config.split or None)
    if not folders:
        raise DataError(
            f"{Path(config.data) / config.split}: no clip folders; generate data with `hybridmem world`"
        )
    return folders[: config.num_clips] if config.num_clips else folders


def eval_inputs(config: EvalConfig, names: list[str]) -> dict:
    """What the results in EVALDIR depend on, recorded in EVALDIR/run.json (hybridmem.runlock): the data,
    each method's checkpoint content hash, the VAE's, and the metric settings. Seed and steps are checked
    per generation file; --num-clips may grow; --weights-dir may fill in metrics later."""
    checkpoints = dict(zip(names, config.checkpoints, strict=False))
    methods = {name: runlock.model_identity(checkpoints.get(name)) or name for name in names}
    if config.official:
        from hybridmem.official.release import release_identity

        methods[OFFICIAL_METHOD] = {**release_identity(config.official), "precision": config.precision}
        for name, checkpoint in checkpoints.items():  # fine-tuned DiTs run with the release's VAE and text
            if checkpoint in finetuned_checkpoints(config):
                methods[name] = {
                    **methods[name],
                    "release": release_identity(config.official),
                    "precision": config.precision,
                }
    return {
        "data": str(Path(config.data).resolve()),
        "split": config.split,
        "methods": methods,
        "vae": runlock.model_identity(config.vae) if uses_vae(config) else None,
        "boxes": config.boxes,
        "dsc_definition": config.dsc_definition,
        "lpips_backbone": config.lpips_backbone,
    }


def uses_vae(config: EvalConfig) -> bool:
    return bool(
        set(config.checkpoints) - set(finetuned_checkpoints(config)) or NEEDS_VAE & set(config.baselines)
    )


def output_bytes(config: EvalConfig) -> int:
    """About the space EVALDIR needs, a rough guess on the generous side: each method's generations
    (compressed raw frames) at 8 times the bytes of the clip folders' H.264 files, plus 16 MiB."""
    clips = sum(
        path.stat().st_size
        for folder in list_clips(config)
        for path in Path(folder).iterdir()
        if path.is_file()
    )
    methods = len(config.checkpoints) + len(config.baselines) + bool(config.official)
    return 8 * clips * methods + (16 << 20)


def run_evaluation(
    config: EvalConfig, *, generators: dict | None = None, clip_loader=None, progress=True
) -> dict:
    """`_run_evaluation` with EVALDIR locked (a second writer is refused) and its inputs checked against
    EVALDIR/run.json: results of other inputs are refused, or recomputed with `config.overwrite`."""
    config.validate()
    out = runlock.check_out_folder(config.out)
    # before run.json records these inputs and any work: a VAE other than the checkpoints' own, and an
    # output folder that takes no file or lacks the space (hybridmem.publish)
    from hybridmem import publish
    from hybridmem.sample.pipeline import check_vae_pairing, refuse_runs_in_training

    # inputs still being written: data `world generate` is adding to, a run that is still training
    runlock.refuse_being_written(config.data, "--data", "wait for `world generate` to finish, then evaluate")
    for checkpoint in config.checkpoints:
        refuse_runs_in_training({"--checkpoint": checkpoint})
    refuse_runs_in_training({"--vae": config.vae})
    finetuned = finetuned_checkpoints(config)
    for checkpoint in config.checkpoints:
        if checkpoint not in finetuned:  # those are checked against the release's VAE when loaded
            check_vae_pairing(checkpoint, config.vae, config.allow_other_vae)
    publish.check_output_folder(out, output_bytes(config))
    with runlock.hold(out, "eval"):
        runlock.check_inputs(
            out, "eval", eval_inputs(config, method_names(config)), overwrite=config.overwrite,
            outputs=("aggregate.json", "report.md"),
        )  # fmt: skip
        return _run_evaluation(config, generators=generators, clip_loader=clip_loader, progress=progress)


def _run_evaluation(
    config: EvalConfig, *, generators: dict | None = None, clip_loader=None, progress=True
) -> dict:
    """Generate (or reuse), score, aggregate and report; returns the aggregate summary.

    generators: method name -> object with generate(clip, seed); built from the config when None (tests pass
    stand-ins). clip_loader: folder -> Clip, hybridmem.data.hmworld.load_clip when None.
    """
    config.validate()
    out = Path(config.out)
    if clip_loader is None:
        from hybridmem.data.hmworld import load_clip as clip_loader
    folders = list_clips(config)
    names = method_names(config)
    finetuned = finetuned_checkpoints(config)
    lazy = generators or {}
    from hybridmem.device import resolve_device

    device = str(resolve_device(config.device))  # "auto" -> cpu | cuda, once for every model below
    models = MetricModels.load(config.weights_dir, device, config.lpips_backbone)

    def generator(method: str):
        if method not in lazy:  # built on first use: a fully cached method never loads its checkpoint
            if method in config.baselines:
                lazy[method] = make_baseline(method, config.vae, device)
            elif config.official and method == OFFICIAL_METHOD:
                lazy[method] = OfficialGenerator(config.official, device, config.steps, config.precision)
            elif config.checkpoints[names.index(method)] in finetuned:
                lazy[method] = OfficialGenerator(
                    config.official,
                    device,
                    config.steps,
                    config.precision,
                    checkpoint=config.checkpoints[names.index(method)],
                    name=method,
                )
            else:
                checkpoint = config.checkpoints[names.index(method)]
                lazy[method] = PipelineGenerator(
                    checkpoint, config.vae, device, config.steps, method, config.allow_other_vae
                )
        return lazy[method]

    identities = eval_inputs(config, names)  # content hashes of each method's checkpoint and the VAE

    # 1. per clip: generate or reuse, then score every method
    records = {method: [] for method in names}
    curves = {method: [] for method in names}
    showcase = []
    iterator = enumerate(folders)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(folders), desc="eval clips")
    for index, folder in iterator:
        clip = clip_loader(folder)
        clip_id = Path(folder).name
        reentries = pixel.reentry_events(clip.events, clip.context_frames)
        seed = config.seed + index
        predictions = {}
        for method in names:
            path = cache_path(out, method, clip_id)
            # what made the frames: a baseline's name or the checkpoint's absolute path
            if method in config.baselines:
                source = method
            elif config.official and method == OFFICIAL_METHOD:
                source = str(Path(config.official).resolve())
            else:
                source = str(Path(config.checkpoints[names.index(method)]).resolve())
            # made through --vae (the official model decodes with its own, recorded in its identity)
            official = method == OFFICIAL_METHOD or (
                method in names[: len(config.checkpoints)]
                and config.checkpoints[names.index(method)] in finetuned
            )
            decoded = (method not in config.baselines and not official) or method in NEEDS_VAE
            inputs = json.dumps(
                {"method": identities["methods"][method], "vae": identities["vae"] if decoded else None,
                 "clip_sha256": runlock.clip_sha256(folder)}, sort_keys=True,
            )  # fmt: skip
            predicted = load_generation(path, seed, config.steps, source, inputs, config.overwrite)
            if predicted is None or predicted.shape != clip.frames[clip.target].shape:
                predicted = np.asarray(generator(method).generate(clip, seed), dtype=np.uint8)
                pixel.check_videos(predicted, clip.frames[clip.target])
                save_generation(path, predicted, seed, config.steps, source, inputs)
            predictions[method] = predicted
            record = evaluate_clip(clip, predicted, models, config.boxes, config.dsc_definition)
            record.update(clip=clip_id, method=method, seed=seed, source=str(folder))
            report.write_json_atomic(out / "clips" / method / f"{clip_id}.json", record)
            records[method].append(record)
            curves[method] += [(record["psnr_per_frame"], frame) for _, frame in reentries]
        # keep only the clips the side-by-side videos will show (re-entry first), so memory stays bounded
        showcase.append((0 if reentries else 1, index, clip_id, clip, predictions, reentries))
        showcase = sorted(showcase, key=lambda item: item[:2])[: config.side_by_side_clips]
    # 2. aggregate and report
    summary = {
        **asdict(config),
        "box_source_text": BOX_SOURCES[config.boxes],
        "num_clips": len(folders),
        "clips": [Path(folder).name for folder in folders],
        "methods": {method: report.aggregate_clips(records[method]) for method in names},
        # every clip's numbers, for the report's paired differences and bootstrap intervals
        "per_clip": {method: report.per_clip_values(records[method]) for method in names},
        "reentry_curves": {method: curves[method] for method in names},
    }
    write_outputs(out, summary)
    # 3. side-by-side videos: clips with a re-entry first
    for _, _, clip_id, clip, predictions, reentries in showcase:
        first_reentry = reentries[0][1] if reentries else None
        stem = out / "side_by_side" / clip_id
        report.write_side_by_side(clip.frames[clip.target], predictions, first_reentry, stem, clip.fps)
    return summary


def write_outputs(out: Path, summary: dict, reference: str | None = None) -> None:
    """aggregate.json, report.md and reentry_psnr.png from a summary (also `hybridmem eval report`);
    `reference`: the method paired differences are taken against (report.default_reference if None)."""
    report.write_json_atomic(out / "aggregate.json", summary)
    report.write_bytes_atomic(out / "report.md", report.markdown_report(summary, reference).encode())
    curves = {
        method: [tuple(curve) for curve in items]
        for method, items in summary.get("reentry_curves", {}).items()
    }
    report.plot_reentry_psnr(curves, out / "reentry_psnr.png")
