"""Training configs and their command-line flags (no torch import: `hybridmem --help` stays fast).

The dataclass fields are the flags: `--batch-size` sets `batch_size`. Each config validates itself and names
the flag at fault; the bounds of the numeric fields are hybridmem.validation's range table (the flags read
the same rules while parsing), and validate() adds only what a bound cannot say (names of choices, flags
that need one another).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hybridmem.diffusion import TIMESTEP_DISTRIBUTIONS
from hybridmem.errors import ConfigError
from hybridmem.models import OBJECTIVES
from hybridmem.models.memory.config import (
    MEMORY_FLAGS,
    MEMORY_KINDS,
    MemoryFlags,
    add_memory_flags,
    memory_config,
)
from hybridmem.validation import check_choice, check_fields

PRECISIONS = ("fp32", "bf16", "fp16")

# Config fields that may differ on --resume: where the inputs and outputs are (the inputs' contents are
# compared instead), how the run is watched and saved, and the machine. None changes what the run learns;
# every other field defines the run and must stay unless named by --change, and --steps may only grow.
FREE_ON_RESUME = frozenset(
    {
        "out", "cache", "data", "resume", "steps", "device", "num_workers", "grad_checkpointing",
        "progress", "tensorboard", "log_every", "save_every", "keep", "val_every", "val_cache",
        "val_clips", "val_split", "change", "query_chunk",
    }
)  # fmt: skip
CHANGE_HELP = (
    "with --resume: let the named setting differ from the run's (a flag without its dashes, such as lr, or "
    "the input `%s` for other contents); the change is recorded in RUN/run.json's history. Repeat for more"
)


def check_changes(config, inputs: tuple[str, ...]) -> None:
    """ConfigError for a --change that names no setting of the run (nor one of its `inputs`)."""
    settings = sorted(f.name for f in dataclasses.fields(config) if f.name not in FREE_ON_RESUME)
    for name in config.change:
        if name.lstrip("-").replace("-", "_") not in (*settings, *inputs):
            raise ConfigError(
                f"--change {name}: not a setting of the run; valid: {', '.join([*inputs, *settings])}"
            )
    if config.change and not config.resume:
        raise ConfigError("--change goes with --resume (it lets a resumed run differ from its start)")


# flags the release decides with --official (its DiT's sizes and memory; the official objective): each must
# keep its default there
OFFICIAL_FIXED = (
    "memory", "preset", *MEMORY_FLAGS, "camera_rays", "timestep_distribution", "objective", "subject_weight",
    "warp_condition", "warp_residual", "warp_source", "sample_latents",
)  # fmt: skip


@dataclass
class WorldTrainConfig(MemoryFlags):
    """`train world`'s flags. The memory knobs' flags (--memory-top-k, ...) are fields inherited from
    MemoryFlags, one a knob of hybridmem.models.memory.config; `memory_config()` turns them into the model's
    MemoryConfig."""

    cache: str
    out: str
    # the paper's model: fine-tune HyDRA from the release in this folder (hybridmem.official; the cache made
    # by `encode --official` from the same release), its official trainable set only
    official: str | None = None
    memory: str = "hydra"  # the memory kind (MEMORY_KINDS)
    preset: str = "tiny"
    camera_rays: bool = False  # per-token Plücker ray embeddings (DiTConfig.camera_rays)
    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup: int = 100
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    ema_decay: float = 0.999
    shift: float = 5.0  # training timestep shift (the paper's scheduler uses 5)
    timestep_distribution: str = "uniform"  # or "logit_normal"
    # "flow": flow matching over t in (0, 1); "mean": t = 1 only, so the network regresses the mean target
    # from the context and cameras and is sampled in one step (models.world.DiTConfig.objective)
    objective: str = "flow"
    # loss weight of the target latent cells a subject covers (1 = the plain loss); the subject masks come
    # from each cached clip's source folder (its ids.npz), so the clips must still be there
    subject_weight: float = 1.0
    # condition each target frame on the context warped into its view (DiTConfig.warp_condition); needs a
    # cache made with `encode --store-warp`
    warp_condition: bool = False
    # with --objective mean: the model predicts the warp plus a correction (DiTConfig.warp_residual)
    warp_residual: bool = False
    # which context frames the warp reads (hybridmem.geometry.WARP_SOURCES); the cache must be encoded alike
    warp_source: str = "context"
    sample_latents: bool = False  # draw x_0 from the cached posterior (needs `encode --store-logvar`)
    precision: str = "fp32"
    grad_checkpointing: bool = False
    save_every: int = 500  # also saved at the last step
    keep: int = 3
    val_every: int = 0  # 0: no validation
    val_cache: str | None = None  # default: the first `val_clips` clips of the training cache
    val_clips: int = 4
    log_every: int = 1
    resume: bool = False
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    progress: bool = True
    tensorboard: bool = True
    change: tuple[str, ...] = ()  # settings (or "cache") a --resume may change, recorded in run.json

    def memory_config(self):
        """The MemoryConfig these flags describe (validated: a ConfigError names the bad flag)."""
        return memory_config(self.memory, self)

    def validate(self) -> WorldTrainConfig:
        check_fields(self, "train world")  # every numeric flag's bounds (hybridmem.validation.RULES)
        self.memory_config()  # raises ConfigError naming the bad memory flag
        check_choice(self.objective, OBJECTIVES, "--objective")
        if self.warp_residual and not (self.warp_condition and self.objective == "mean"):
            raise ConfigError("--warp-residual needs --warp-condition and --objective mean")
        from hybridmem.geometry import WARP_SOURCES

        check_choice(self.warp_source, WARP_SOURCES, "--warp-source")
        if self.warp_source != "context" and not self.warp_condition:
            raise ConfigError("--warp-source needs --warp-condition")
        check_choice(self.timestep_distribution, TIMESTEP_DISTRIBUTIONS, "--timestep-distribution")
        check_choice(self.precision, PRECISIONS, "--precision")
        if self.official is not None:
            defaults = WorldTrainConfig(cache="", out="")
            for name in OFFICIAL_FIXED:
                if getattr(self, name) != getattr(defaults, name):
                    raise ConfigError(
                        f"--{name.replace('_', '-')} goes without --official: the release decides the model "
                        "and the official objective is fixed; drop it"
                    )
        check_changes(self, ("cache",))
        return self


def config_from_args(cls, args):
    fields = {field.name for field in dataclasses.fields(cls)}
    return cls(**{key: value for key, value in vars(args).items() if key in fields})


def add_world_arguments(parser) -> None:
    defaults = WorldTrainConfig(cache="", out="")
    parser.add_argument("--cache", required=True, help="latent cache folder (hybridmem encode)")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, logs, final/)")
    parser.add_argument(
        "--official",
        default=None,
        metavar="DIR",
        help="fine-tune the paper's model from the released files in DIR (Wan2.1 + new HyDRA modules, or "
        "hydra.* to continue it): the official trainable set, timesteps and loss weights; --cache from "
        "`encode --official DIR`. Paper: --lr 1e-5 --precision bf16 --grad-checkpointing",
    )
    parser.add_argument("--memory", default=defaults.memory, help="memory kind: " + " | ".join(MEMORY_KINDS))
    parser.add_argument("--preset", default=defaults.preset, help="tiny | compact | small | base | wan1.3b")
    add_memory_flags(parser)  # one flag a memory knob (hybridmem.models.memory.config)
    parser.add_argument(
        "--camera-rays",
        action="store_true",
        help="also embed each token's Plücker camera ray (CameraCtrl-style), beside the per-frame [R|t]",
    )
    parser.add_argument("--steps", type=int, default=defaults.steps, help="total optimizer steps")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="clips per rank per step")
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--warmup", type=int, default=defaults.warmup, help="linear warm-up steps")
    parser.add_argument("--grad-clip", type=float, default=defaults.grad_clip, help="max grad norm; 0 = off")
    parser.add_argument("--ema-decay", type=float, default=defaults.ema_decay)
    parser.add_argument("--shift", type=float, default=defaults.shift, help="timestep shift (paper: 5)")
    parser.add_argument(
        "--timestep-distribution", default=defaults.timestep_distribution, help="uniform | logit_normal"
    )
    parser.add_argument(
        "--objective",
        default=defaults.objective,
        help="flow: flow matching (sampled in --steps steps); mean: train at t = 1 only, a deterministic "
        "regression of the target sampled in one step",
    )
    parser.add_argument(
        "--subject-weight",
        type=float,
        default=defaults.subject_weight,
        help="loss weight of target latent cells covered by a subject (default 1: unweighted); reads each "
        "cached clip's ids.npz from its source folder",
    )
    parser.add_argument(
        "--warp-condition",
        action="store_true",
        help="condition each target frame on the context warped into its view by the camera rotations "
        "(needs a cache made with `hybridmem encode --store-warp`)",
    )
    parser.add_argument(
        "--warp-residual",
        action="store_true",
        help="with --warp-condition and --objective mean: predict the target as the warp plus a learned "
        "correction, so training starts at what the camera predicts",
    )
    parser.add_argument(
        "--warp-source",
        default=defaults.warp_source,
        help="with --warp-condition: the context frames the warp reads, context (all) | last (the last "
        "context frame only, which every memory sees); the cache must be encoded with the same --warp-source",
    )
    parser.add_argument(
        "--sample-latents",
        action="store_true",
        help="train on posterior samples instead of the posterior mean (cache made with --store-logvar)",
    )
    parser.add_argument("--precision", default=defaults.precision, help="fp32 | bf16 | fp16 (CUDA only)")
    parser.add_argument("--grad-checkpointing", action="store_true", help="recompute blocks in backward")
    parser.add_argument("--save-every", type=int, default=defaults.save_every, help="0: only at the end")
    parser.add_argument("--keep", type=int, default=defaults.keep, help="checkpoints kept")
    parser.add_argument("--val-every", type=int, default=defaults.val_every, help="0: no validation")
    parser.add_argument(
        "--val-cache", default=None, help="validation cache (default: first --val-clips clips)"
    )
    parser.add_argument("--val-clips", type=int, default=defaults.val_clips)
    parser.add_argument("--log-every", type=int, default=defaults.log_every)
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument(
        "--change", action="append", default=[], metavar="SETTING", help=CHANGE_HELP % "cache"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default=defaults.device, help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--num-workers", type=int, default=defaults.num_workers, help="data loader workers")


@dataclass
class VaeTrainConfig:
    data: str
    out: str
    preset: str = "tiny"
    split: str = "train"
    val_split: str | None = None  # default: the first `val_clips` clips of the training split
    val_clips: int = 2
    frames: int = 9  # frames per training window (4k+1)
    steps: int = 1000
    batch_size: int = 2
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup: int = 100
    grad_clip: float = 1.0
    recon: str = "l1"  # reconstruction term: l1 | mse
    kl_weight: float = 1e-6
    edge_weight: float = 0.0  # L1 between spatial image gradients: sharper edges, needs no weights
    norm_windows: int = 32  # whole training segments encoded at the end to fit the latent shift/scale
    precision: str = "fp32"
    save_every: int = 500
    keep: int = 3
    val_every: int = 0
    log_every: int = 1
    resume: bool = False
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    tensorboard: bool = True
    change: tuple[str, ...] = ()  # settings (or "data") a --resume may change, recorded in run.json

    def validate(self) -> VaeTrainConfig:
        check_fields(self, "train vae")  # every numeric flag's bounds (hybridmem.validation.RULES)
        check_choice(self.recon, RECON_LOSSES, "--recon")
        check_choice(self.precision, PRECISIONS, "--precision")
        check_changes(self, ("data",))
        return self


RECON_LOSSES = ("l1", "mse")


def add_vae_arguments(parser) -> None:
    defaults = VaeTrainConfig(data="", out="")
    parser.add_argument("--data", required=True, help="dataset folder holding split folders of clips")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, logs, final/)")
    parser.add_argument(
        "--preset",
        default=defaults.preset,
        help="tiny | small | base (causal3d design) | grouped-tiny | grouped-compact | grouped-base",
    )
    parser.add_argument("--split", default=defaults.split, help="training split folder under --data")
    parser.add_argument(
        "--val-split",
        default=None,
        help="validation split (default: first --val-clips clips); validation reconstructs their whole "
        "context and target segments",
    )
    parser.add_argument("--val-clips", type=int, default=defaults.val_clips)
    parser.add_argument(
        "--frames", type=int, default=defaults.frames, help="frames per training window (4k+1)"
    )
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help="windows per rank per step"
    )
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--warmup", type=int, default=defaults.warmup)
    parser.add_argument("--grad-clip", type=float, default=defaults.grad_clip, help="max grad norm; 0 = off")
    parser.add_argument("--recon", default=defaults.recon, help="reconstruction loss: l1 | mse")
    parser.add_argument("--kl-weight", type=float, default=defaults.kl_weight)
    parser.add_argument(
        "--edge-weight",
        type=float,
        default=defaults.edge_weight,
        help="weight of the image-gradient (edge) L1 term",
    )
    parser.add_argument(
        "--norm-windows",
        type=int,
        default=defaults.norm_windows,
        help="whole training segments (context/target, as encode caches them) encoded at the end to fit "
        "the latent normalisation",
    )
    parser.add_argument("--precision", default=defaults.precision, help="fp32 | bf16 | fp16 (CUDA only)")
    parser.add_argument("--save-every", type=int, default=defaults.save_every, help="0: only at the end")
    parser.add_argument("--keep", type=int, default=defaults.keep)
    parser.add_argument("--val-every", type=int, default=defaults.val_every, help="0: no validation")
    parser.add_argument("--log-every", type=int, default=defaults.log_every)
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--change", action="append", default=[], metavar="SETTING", help=CHANGE_HELP % "data")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default=defaults.device, help="auto | cpu | cuda | cuda:N")


def check_vae_step(config: VaeTrainConfig, window_shape: tuple, device=None) -> None:
    """Refuse a `train vae` --batch-size whose first activations alone cannot fit; window "T H W 3"."""
    from hybridmem.device import check_memory
    from hybridmem.models.vae import vae_step_bytes

    frames, height, width = window_shape[:3]
    check_memory(
        vae_step_bytes(config.preset, config.batch_size, frames, height, width),
        f"train vae: a step of --batch-size {config.batch_size} windows of {frames} frames of "
        f"{width}x{height} with preset '{config.preset}'",
        "lower --batch-size (or --frames)",
        device,
    )
