"""Named budgets of the reference run: data sizes, model presets, steps. One registry, no torch import.

    budget = get_budget("cpu")          # unknown names raise ConfigError listing the valid ones

Every memory kind (MEMORY_KINDS) trains with the same budget, seed and data; only the memory differs.
The `cpu` numbers come from rates measured at its own geometry (docs/REFERENCE_RUN.md has the arithmetic).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hybridmem.errors import ConfigError
from hybridmem.models.memory.config import FrozenMemoryFlags, renamed
from hybridmem.validation import check_choice


@dataclass(frozen=True)
class Budget(FrozenMemoryFlags):
    """A budget's fields below, and the memory flags (memory_window, memory_top_k, ...) it inherits from
    FrozenMemoryFlags, one a knob of hybridmem.models.memory.config, passed identically to every `train
    world` stage; a budget sizes the window and top-k so that fov and hydra select a subset at its clip
    length. The recipe trains one world model per memory kind (MEMORY_KINDS)."""

    name: str
    description: str
    # 1. data (hybridmem world generate); test clips draw held-out scenes and subjects (world/splits.py)
    width: int
    height: int
    context_frames: int
    target_frames: int
    min_hidden_frames: int
    train_clips: int
    val_clips: int
    test_clips: int
    workers: int
    # 2. VAE (hybridmem train vae)
    vae_preset: str
    vae_steps: int
    vae_batch_size: int
    vae_frames: int  # training window = the segment length `hybridmem encode` uses (checked below)
    vae_norm_windows: int  # whole segments encoded to fit the latent normalisation
    vae_lr: float
    vae_warmup: int
    # 3. world models (hybridmem train world), one per memory variant
    world_preset: str
    world_steps: int
    world_batch_size: int
    world_lr: float
    world_warmup: int
    val_every: int  # validation of the VAE and the world models; 0: none
    # 4. benchmark (hybridmem eval)
    eval_clips: int
    eval_steps: int
    side_by_side_clips: int
    # 5. shared
    precision: str = "fp32"
    save_every: int = 0  # 0: only at the end; the trainers also save at the last step
    seed: int = 0

    vae_recon: str = "mse"  # the VAE's reconstruction loss (PSNR measures squared error)
    horizontal_fov_deg: float = 36.3  # the generator's camera (world.config.CAMERA_PRESETS)
    # the subjects' path families (world generate --paths); empty: all of them
    paths: tuple[str, ...] = ()
    # training (and so sampling) timestep shift of the world models; the paper's 5 is for 30x52 tokens a
    # latent frame, the cpu budget has 8x8 (measured with benchmarks/world_curve.py, docs/REFERENCE_RUN.md)
    world_shift: float = 5.0
    # the levers of issue 17 (train/config.py): "flow" or "mean" (train at t = 1, sampled in one step), and
    # the context warped into each target view as a condition (the caches then store it: encode
    # --store-warp) and as the prior the model corrects (needs the mean objective)
    world_objective: str = "flow"
    warp_condition: bool = False
    warp_residual: bool = False

    def __post_init__(self) -> None:
        # The first VAE trained on 9-frame windows and encoded 33-frame segments, where it fell to 11 dB:
        # train at the length that is encoded.
        if not self.vae_frames == self.context_frames == self.target_frames:
            raise ConfigError(
                f"budget '{self.name}': vae_frames {self.vae_frames} must equal the segment lengths the "
                f"caches encode (context_frames {self.context_frames}, target_frames {self.target_frames})"
            )
        if self.warp_residual and not (self.warp_condition and self.world_objective == "mean"):
            raise ConfigError(
                f"budget '{self.name}': warp_residual needs warp_condition and world_objective 'mean'"
            )

    @classmethod
    def from_dict(cls, data: dict) -> Budget:
        """A budget from its JSON record (a recipe.json or an export manifest; old knob names renamed)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in renamed(data).items()})

    @classmethod
    def defaults(cls) -> dict:
        """The JSON form of every field that has a default."""
        fields = dataclasses.fields(cls)
        return {
            f.name: list(f.default) if isinstance(f.default, tuple) else f.default
            for f in fields
            if f.default is not dataclasses.MISSING
        }

    def to_dict(self) -> dict:
        """JSON form (tuples as lists), so a record read back compares equal to the budget it came from."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def generate_args(self) -> list[str]:
        """The `hybridmem world generate` flags of this budget's clips, other than --seed, --num-clips,
        --split, --out and --workers: with them anyone renders more clips of the same distribution."""
        return [
            "--width", str(self.width),
            "--height", str(self.height),
            "--horizontal-fov-deg", str(self.horizontal_fov_deg),
            "--context-frames", str(self.context_frames),
            "--target-frames", str(self.target_frames),
            "--min-hidden-frames", str(self.min_hidden_frames),
            *(["--paths", *self.paths] if self.paths else []),
        ]  # fmt: skip


BUDGETS: dict[str, Budget] = {
    # Tests and a first look: a couple of minutes on one core. Numbers mean nothing at this size.
    "smoke": Budget(
        name="smoke",
        description="minutes on one CPU core; checks the pipeline end to end, results are meaningless",
        width=64,
        height=64,
        context_frames=9,
        target_frames=9,
        min_hidden_frames=3,
        paths=("line",),  # as the cpu budget: the flag travels to the export manifest and the demo
        train_clips=4,
        val_clips=1,
        test_clips=2,
        workers=1,
        vae_preset="grouped-tiny",
        vae_steps=4,
        vae_batch_size=1,
        vae_frames=9,
        vae_norm_windows=2,
        vae_lr=1e-3,
        vae_warmup=0,
        world_preset="tiny",
        world_steps=4,
        world_batch_size=1,
        world_lr=1e-3,
        world_warmup=0,
        val_every=0,
        memory_window=3,
        memory_top_k=1,  # 3+3 latent frames: fov keeps 1 of 3 context frames, hydra 1 of its 2-3 slices
        eval_clips=2,
        eval_steps=2,
        side_by_side_clips=1,
    ),
    # The shipped checkpoints. HM-World's camera (36.3 degree horizontal FOV at the released aspect, 160x96),
    # subjects that walk straight lines at a constant speed (the cpu tier's world: measured with
    # benchmarks/reentry_bounds.py, the straight line their context motion shows predicts where they come
    # back exactly, while over all ten path families even that oracle draws them in the right place in few
    # clips), and the lever of issue 17 that paid without touching what the memories see: the mean
    # objective, sampled in one step. The warp condition is left off: it copies every context frame into each
    # target view, so the window memory sees the whole past through it (measured: window = full, README)
    # and the benchmark's "only the memory differs" would not hold. 33+33 frames = 9+9
    # latent frames of 10x6 tokens; window 3 and top-k 4 make the memories differ: fov keeps 4 of the 8-9
    # context frames outside a query's window, hydra 4 of the 8-9 memory slices outside it (the paper's
    # ratio, 10 of 20). `compact` world models and the grouped-compact VAE stay under the 60 MB cap.
    "cpu": Budget(
        name="cpu",
        description="2.4 h on a 2-core CPU (measured 2026-12-02); the checkpoints shipped with the package",
        paths=("line",),
        width=160,
        height=96,
        context_frames=33,
        target_frames=33,
        min_hidden_frames=6,
        train_clips=400,
        val_clips=16,
        test_clips=16,
        workers=2,
        vae_preset="grouped-compact",
        vae_steps=600,
        vae_batch_size=2,
        vae_frames=33,
        vae_norm_windows=64,
        vae_lr=3e-4,
        vae_warmup=50,
        world_preset="compact",
        world_steps=1500,
        world_batch_size=4,
        world_lr=5e-4,
        world_warmup=100,
        world_shift=10.0,  # unused by the mean objective (it trains and samples at t = 1)
        world_objective="mean",
        horizontal_fov_deg=36.3,
        val_every=500,
        memory_window=3,
        memory_top_k=4,
        eval_clips=16,
        eval_steps=20,
        side_by_side_clips=2,
        save_every=250,
    ),
    # One GPU: `small` presets, 25x the cpu data, bf16, 128 px. Not run; its training steps, timed on one
    # H100, add up to about 4.2 h (docs/REFERENCE_RUN.md).
    "gpu": Budget(
        name="gpu",
        description="one GPU, bf16, small presets, 4000 training clips at 128 px, 65+65 frames",
        width=128,
        height=128,
        context_frames=65,
        target_frames=65,
        min_hidden_frames=6,
        train_clips=4000,
        val_clips=64,
        test_clips=128,
        workers=16,
        vae_preset="grouped-base",
        vae_steps=20000,
        vae_batch_size=4,
        vae_frames=65,
        vae_norm_windows=256,
        vae_lr=2e-4,
        vae_warmup=500,
        world_preset="small",
        world_steps=30000,
        world_batch_size=16,
        world_lr=2e-4,
        world_warmup=1000,
        val_every=2000,
        memory_window=5,
        memory_top_k=10,  # the paper's defaults; 17+17 latent frames: 10 of 17 context frames / 17 slices
        eval_clips=128,
        eval_steps=50,
        side_by_side_clips=4,
        precision="bf16",
        save_every=2000,
    ),
}


def get_budget(name: str) -> Budget:
    check_choice(name, BUDGETS, "--budget", "budgets")
    return BUDGETS[name]


# The checkpoints shipped from 2026-11-29 until the cpu run replaced them on 2026-12-02 (2.4 h measured):
# the cpu budget but for the wide camera (70 degrees, 128x128), every path family, 200/8 clips, flow
# matching at shift 10 and 4000 world steps (2000, then resumed: docs/REFERENCE_RUN.md). Their manifest
# names the budget "cpu", as it was called then.
BUDGETS["cpu-wide"] = dataclasses.replace(
    BUDGETS["cpu"],
    name="cpu-wide",
    description="2.4 h on a 2-core CPU (measured); the checkpoints shipped until 2026-12-02",
    width=128,
    height=128,
    horizontal_fov_deg=70.0,
    paths=(),
    train_clips=200,
    val_clips=8,
    world_steps=4000,
    world_objective="flow",
    warp_condition=False,
    warp_residual=False,
)
