"""The camera-conditioned flow-matching video DiT (the world model backbone).

Reads bottom-up: config, self-attention (the AttentionHandle a memory uses), cross-attention, the block,
the final layer, the model, then the size presets.

    model = build_world_model("tiny", memory=MemoryConfig(kind="full"))
    velocity = model(context_latents, noisy_target, t, cameras)       # B Ft C h w

Sequence layout: context latent frames first, then target latent frames, on one time axis. The context is
clean: its tokens are modulated with the timestep embedding of t = 0 (per-frame timestep modulation), the
target's with t (DiTConfig.context_timestep "shared" gives the context the target's t, as the official code
does). Only the target's velocity is returned (all_frames: every frame's).

Camera conditioning follows the official HyDRA / ReCamMaster code: each latent frame's camera-to-world
pose, relative to the first target frame, is flattened to the 12 numbers of row-major [R | t]; each block
adds zero-initialised Linear(12, D) embeddings of them (one Linear for context frames, one for target
frames) to its normalised self-attention input, and passes the self-attention output through an
identity-initialised Linear(D, D) projector. A new model's blocks therefore ignore cameras exactly (a memory
that ranks frames by camera frustum overlap, as fov does, still reads them).
With DiTConfig.camera_rays, every token also gets a zero-initialised embedding of the Plücker ray through its
cell's centre (camera_rays below), which says where in the scene each token looks, not only where the frame's
camera is.

Initialisation is adaLN-zero (DiT): the self-attention and feed-forward branches are gated by a
zero-initialised modulation, the ungated cross-attention's out projection starts at zero (PixArt), and the
final projection is zero, so a new model's blocks are the identity on their tokens and it predicts zero
velocity.

Shape glossary (the package's, docs/ARCHITECTURE.md): B batch, Fc/Ft context/target latent frames,
F = Fc + Ft, Fp latent frames after the temporal patch (F / pt), C latent channels, h/w latent
height/width, H/W token grid (h/ph, w/pw), P = H*W tokens of one latent frame, N = Fp*H*W tokens in
(f, h, w) order, D model width, a heads, d head width, L caption tokens, Dc caption width.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from hybridmem.errors import ConfigError
from hybridmem.models import OBJECTIVES
from hybridmem.models.configs import dataclass_from_dict
from hybridmem.models.layers import (
    RMSNorm,
    TimestepEmbedder,
    apply_rope,
    grid_positions,
    layer_norm,
    modulate,
    rope_angles,
    rope_axis_dims,
)
from hybridmem.models.memory import MemoryConfig
from hybridmem.models.memory.base import SequenceInfo, build_memory
from hybridmem.validation import check_choice, check_value

CAMERA_DIM = 12  # row-major [R | t] of a camera-to-world pose
CONTEXT_TIMESTEPS = ("clean", "shared")  # see DiTConfig.context_timestep
HEADS = ("adaln", "wan")  # see DiTConfig.head
TIMESTEP_PRECISIONS = ("float32", "float64")  # see DiTConfig.timestep_precision


@dataclass
class DiTConfig:
    """Every size and switch of the world model; saved in its checkpoints."""

    latent_channels: int = 4  # C, must match the VAE's latent channels
    dim: int = 64  # D
    num_layers: int = 2
    num_heads: int = 4
    ffn_dim: int = 256
    patch_size: tuple[int, int, int] = (1, 2, 2)  # (latent frames, rows, columns) per token
    caption_dim: int = 0  # Dc of the caption embedding "B L Dc"; 0 = no cross-attention
    frequency_dim: int = 256  # width of the sinusoidal timestep embedding
    rope_theta: float = 10000.0
    eps: float = 1e-6  # of every norm
    gradient_checkpointing: bool = False  # recompute each block in backward (torch.utils.checkpoint)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    # The timestep shift the model was trained with, the sampler's default (Wan2.1 keeps sample_shift in
    # its model config the same way): a shift tuned for one token count is wrong for another.
    sample_shift: float = 5.0
    # Per-token Plücker rays (direction, moment) of each latent frame's camera, embedded by a zero-initialised
    # Linear(6, D) and added to the tokens before the first block (as CameraCtrl): each token knows the ray
    # it sees along, on top of the official per-frame [R | t] encoders. Needs intrinsics.
    camera_rays: bool = False
    # "flow": trained on t in (0, 1), sampled in many steps; "mean": trained at t = 1 only (the network sees
    # pure noise there, so it regresses E[x_0 | context, cameras]) and sampled in exactly one Euler step,
    # x_0 = noise - v. Deterministic given the inputs, blurred where the target is uncertain.
    objective: str = "flow"
    # Geometry in the input: each target latent frame also gets the latents of the context warped into its
    # view by the camera rotations (hybridmem.warp; `encode --store-warp` caches them, the pipeline computes
    # them), patch-embedded by a zero-initialised Conv3d and added to its tokens, so the network corrects
    # what the camera already predicts (including the subject frozen where it was last seen) instead of
    # inventing the frame.
    warp_condition: bool = False
    # With the mean objective: predict the target as the warp plus a learned correction, x_0 = warp - out
    # (velocity = out + x_1 - warp at t = 1), so a new model starts at what the camera predicts and learns
    # only what the warp gets wrong: the subjects that moved while unseen and the parts no context frame saw.
    warp_residual: bool = False
    # Which context frames the warp condition reads (hybridmem.warp.WARP_SOURCES): "context" (all) or "last"
    # (the last context frame only: every memory attends to it, so the warp adds no memory of its own)
    warp_source: str = "context"
    # The timestep embedding of the clean context frames: "clean" gives them t = 0 (per-frame modulation,
    # they are noise-free); "shared" gives them the target's t, one embedding for the whole sequence, as the
    # official HyDRA code does in training and sampling.
    context_timestep: str = "clean"
    # The final layer: "adaln" is DiT's (SiLU + Linear(D, 2D) of the time embedding gives shift and scale);
    # "wan" is Wan2.1's head (a learned "2 D" table plus the raw time embedding, no SiLU, no Linear).
    head: str = "adaln"
    # Angles of the sinusoidal timestep embedding in "float32" (ours) or "float64" (Wan2.1's; the official
    # model's output differs from ours by 2.5e-5 with float32 angles and by 3e-6 with float64 ones).
    timestep_precision: str = "float32"

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def validate(self) -> DiTConfig:
        for name in ("latent_channels", "dim", "num_layers", "num_heads", "ffn_dim", "frequency_dim"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"DiTConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.dim % self.num_heads:
            raise ConfigError(f"DiTConfig.dim={self.dim} must be divisible by num_heads={self.num_heads}")
        if self.head_dim % 2 or self.head_dim < 6:
            raise ConfigError(
                f"DiTConfig: head width dim/num_heads = {self.head_dim} must be even and >= 6 for the 3D rope"
            )
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise ConfigError(f"DiTConfig.patch_size must be three positive ints, got {self.patch_size}")
        check_value("shift", self.sample_shift, flag="DiTConfig.sample_shift")  # the --shift rule
        check_choice(self.objective, OBJECTIVES, "DiTConfig.objective")
        if self.warp_residual and not (self.warp_condition and self.objective == "mean"):
            raise ConfigError(
                "DiTConfig.warp_residual needs warp_condition=True and objective='mean' (the residual is "
                "taken at t = 1, where the network's input is pure noise)"
            )
        from hybridmem.geometry import WARP_SOURCES

        check_choice(self.warp_source, WARP_SOURCES, "DiTConfig.warp_source")
        check_choice(self.context_timestep, CONTEXT_TIMESTEPS, "DiTConfig.context_timestep")
        check_choice(self.head, HEADS, "DiTConfig.head")
        check_choice(self.timestep_precision, TIMESTEP_PRECISIONS, "DiTConfig.timestep_precision")
        if self.caption_dim < 0:
            raise ConfigError(f"DiTConfig.caption_dim must be >= 0 (0 = no captions), got {self.caption_dim}")
        if not isinstance(self.memory, MemoryConfig):
            raise ConfigError(f"DiTConfig.memory must be a MemoryConfig, got {type(self.memory).__name__}")
        self.memory.validate()
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, validate: bool = True, saved: bool = True) -> DiTConfig:
        """A config from a dict; saved: a saved model's config.json (MemoryConfig.from_dict), not a preset."""
        data = dict(data)
        if isinstance(data.get("memory"), dict):
            data["memory"] = MemoryConfig.from_dict(data["memory"], "DiTConfig.memory", saved=saved)
        config = dataclass_from_dict(cls, data, "DiTConfig")
        return config.validate() if validate else config


# ---------------------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    """q/k/v/out projections, q/k RMSNorm and 3D rope; the block's memory decides who attends to whom.

    The block projects its own tokens with project_q and project_kv_at_angles (rope angles computed once per
    forward); a memory projects tokens of its own through the hybridmem.models.memory.base.AttentionHandle
    methods (project_kv, unrotated_q, unrotated_kv, rotate).
    """

    def __init__(self, dim: int, num_heads: int, rope_theta: float, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.rope_theta = rope_theta
        rope_axis_dims(self.head_dim)  # fail early on an unusable head width
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        # Norm over the full width before the head split, as Wan2.1 does.
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b m (a d) -> b a m d", a=self.num_heads)  # B a M d

    def unrotated_q(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens "B M D" -> q "B a M d", normed, no rope."""
        return self.split_heads(self.norm_q(self.q(tokens)))

    def unrotated_kv(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens "B M D" -> k, v "B a M d" (k normed, no rope)."""
        return self.split_heads(self.norm_k(self.k(tokens))), self.split_heads(self.v(tokens))

    def rotate(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x "B a M d" rope'd at positions "M 3" float (f, h, w)."""
        return apply_rope(x, rope_angles(positions, self.head_dim, self.rope_theta))

    def project_q(self, tokens: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """tokens "B M D", angles "M d/2" -> q "B a M d", normed and rope'd."""
        return apply_rope(self.unrotated_q(tokens), angles)

    def project_kv_at_angles(
        self, tokens: torch.Tensor, angles: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens "B M D", angles "M d/2" -> k, v "B a M d" (k normed and rope'd)."""
        k, v = self.unrotated_kv(tokens)  # B a M d each
        return apply_rope(k, angles), v

    def project_kv(self, tokens: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens "B M D", positions "M 3" float (f, h, w) -> k, v "B a M d" (k normed, rope'd there)."""
        return self.project_kv_at_angles(tokens, rope_angles(positions, self.head_dim, self.rope_theta))

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """Attention output "B a M d" -> out-projected "B M D"."""
        return self.o(rearrange(x, "b a m d -> b m (a d)"))


class CrossAttention(nn.Module):
    """Tokens attend to caption tokens (already projected to D); no rope."""

    def __init__(self, dim: int, num_heads: int, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def forward(self, x: torch.Tensor, caption_tokens: torch.Tensor) -> torch.Tensor:
        """x "B N D", caption_tokens "B L D" -> "B N D"."""
        q = rearrange(self.norm_q(self.q(x)), "b n (a d) -> b a n d", a=self.num_heads)
        k = rearrange(self.norm_k(self.k(caption_tokens)), "b l (a d) -> b a l d", a=self.num_heads)
        v = rearrange(self.v(caption_tokens), "b l (a d) -> b a l d", a=self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v)  # B a N d
        return self.o(rearrange(out, "b a n d -> b n (a d)"))  # B N D


# ---------------------------------------------------------------------------------------------------------
# Block and final layer
# ---------------------------------------------------------------------------------------------------------


class WorldBlock(nn.Module):
    """adaLN-modulated self-attention (through the memory) + optional cross-attention + GELU FFN."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        dim = config.dim
        self.norm1 = layer_norm(dim, config.eps)
        self.self_attn = SelfAttention(dim, config.num_heads, config.rope_theta, config.eps)
        self.memory = build_memory(config.memory, dim, validated=True)  # by WorldModel
        # Camera conditioning (official HyDRA code): zero-init encoders, identity-init projector.
        self.context_camera_encoder = nn.Linear(CAMERA_DIM, dim)
        self.target_camera_encoder = nn.Linear(CAMERA_DIM, dim)
        self.camera_projector = nn.Linear(dim, dim)
        if config.caption_dim:
            self.norm3 = nn.LayerNorm(dim, eps=config.eps)  # affine, unmodulated: as Wan2.1's cross-attn
            self.cross_attn = CrossAttention(dim, config.num_heads, config.eps)
        else:
            self.norm3 = self.cross_attn = None
        self.norm2 = layer_norm(dim, config.eps)
        self.ffn = nn.Sequential(
            nn.Linear(dim, config.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(config.ffn_dim, dim)
        )
        # Per-block offset on the shared time projection (Wan2.1's layout: one Linear(D, 6D) for all
        # blocks plus a learned "6 D" table per block, far fewer weights than DiT's Linear per block).
        self.modulation = nn.Parameter(torch.zeros(6, dim))

    def forward(
        self,
        x: torch.Tensor,
        time_modulation: torch.Tensor,
        camera_12: torch.Tensor,
        angles: torch.Tensor,
        sequence: SequenceInfo,
        caption_tokens: torch.Tensor | None,
    ) -> torch.Tensor:
        """x "B N D", time_modulation "B F 6 D", camera_12 "B F 12", angles "N d/2", caption_tokens "B L D" or
        None -> "B N D". F, H, W: the token grid (sequence.grid; F is the Fp of WorldModel.forward)."""
        frames, height, width = sequence.grid
        x = rearrange(x, "b (f p) d -> b f p d", f=frames)  # B F P D

        # 1. per-frame adaLN parameters (each frame's own time: see WorldModel._frame_times)
        modulation = rearrange(self.modulation + time_modulation, "b f six d -> b f six 1 d")  # B F 6 1 D
        shift_msa, scale_msa, gate_msa, shift_ffn, scale_ffn, gate_ffn = (
            chunk.squeeze(2) for chunk in modulation.chunk(6, dim=2)
        )  # each B F 1 D

        # 2. self-attention through the memory, with the camera embedding added to its input
        context_frames = sequence.context_frames
        camera_embedding = torch.cat(
            [
                self.context_camera_encoder(camera_12[:, :context_frames]),
                self.target_camera_encoder(camera_12[:, context_frames:]),
            ],
            dim=1,
        )  # B F D
        attn_input = modulate(self.norm1(x), shift_msa, scale_msa) + camera_embedding[:, :, None]  # B F P D
        tokens = rearrange(attn_input, "b f p d -> b (f p) d")  # B N D
        q = self.self_attn.project_q(tokens, angles)  # B a N d
        k, v = self.self_attn.project_kv_at_angles(tokens, angles)  # B a N d each
        grid_input = rearrange(attn_input, "b f (hh ww) d -> b f hh ww d", hh=height, ww=width)  # B F H W D
        attended = self.memory(q, k, v, grid_input, self.self_attn, sequence)  # B a N d
        attn_out = self.camera_projector(self.self_attn.merge_heads(attended))  # B N D
        x = x + gate_msa * rearrange(attn_out, "b (f p) d -> b f p d", f=frames)  # B F P D

        # 3. cross-attention to the caption (ungated, as in Wan2.1; its out projection starts at zero)
        if self.cross_attn is not None:
            flat = rearrange(x, "b f p d -> b (f p) d")  # B N D
            x = x + rearrange(
                self.cross_attn(self.norm3(flat), caption_tokens), "b (f p) d -> b f p d", f=frames
            )

        # 4. feed-forward
        x = x + gate_ffn * self.ffn(modulate(self.norm2(x), shift_ffn, scale_ffn))  # B F P D
        return rearrange(x, "b f p d -> b (f p) d")  # B N D


class FinalLayer(nn.Module):
    """adaLN (shift, scale from the per-frame time embedding) -> Linear to one patch of latents.

    kind "adaln" (DiT): shift, scale = Linear(SiLU(time embedding)); kind "wan" (Wan2.1's head): shift,
    scale = a learned "2 D" table + the time embedding itself.
    """

    def __init__(self, dim: int, patch_volume: int, latent_channels: int, eps: float, kind: str = "adaln"):
        super().__init__()
        self.norm = layer_norm(dim, eps)
        if kind == "wan":
            self.modulation = nn.Parameter(torch.zeros(2, dim))
            self.adaLN_modulation = None
        else:
            self.modulation = None
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, patch_volume * latent_channels)

    def forward(self, x: torch.Tensor, time_embedding: torch.Tensor) -> torch.Tensor:
        """x "B F P D", time_embedding "B F D" -> "B F P (pt ph pw C)"."""
        if self.modulation is not None:
            shift, scale = (self.modulation + time_embedding[:, :, None]).unbind(2)  # B F D each
            shift, scale = shift[:, :, None], scale[:, :, None]  # B F 1 D each
        else:
            shift, scale = self.adaLN_modulation(time_embedding)[:, :, None].chunk(2, dim=-1)  # B F 1 D
        return self.linear(modulate(self.norm(x), shift, scale))


# ---------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------


def camera_rays(cameras: torch.Tensor, intrinsics: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Plücker rays through the centres of an height x width grid of cells covering each frame.

    cameras: "B F 4 4" camera-to-world (OpenCV axes); intrinsics: "B 4" normalised (fx/W, fy/H, cx/W, cy/H).
    Returns "B F height width 6": the unit world direction d of each cell's ray, then its moment o x d
    (o: the camera centre), float32.
    """
    cameras, intrinsics = cameras.float(), intrinsics.float()
    rows = (torch.arange(height, device=cameras.device, dtype=torch.float32) + 0.5) / height  # H
    cols = (torch.arange(width, device=cameras.device, dtype=torch.float32) + 0.5) / width  # W
    fx, fy, cx, cy = (intrinsics[:, i, None, None, None] for i in range(4))  # B 1 1 1 each
    x = (cols[None, None, None, :] - cx) / fx  # B 1 1 W
    y = (rows[None, None, :, None] - cy) / fy  # B 1 H 1
    x, y = torch.broadcast_tensors(x, y)  # B 1 H W
    directions = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # B 1 H W 3 (camera axes)
    rotation, origin = cameras[:, :, None, None, :3, :3], cameras[:, :, None, None, :3, 3]  # B F 1 1 ...
    world = (rotation @ directions[..., None])[..., 0]  # B F H W 3
    world = world / world.norm(dim=-1, keepdim=True)
    moment = torch.cross(origin.expand_as(world), world, dim=-1)  # B F H W 3
    return torch.cat([world, moment], dim=-1)


def _shape(tensor: torch.Tensor | None) -> tuple[int, ...] | None:
    """A tensor's shape as a tuple for an error message; None for a missing tensor."""
    return None if tensor is None else tuple(tensor.shape)


def _has_shape(tensor: torch.Tensor | None, shape: tuple[int | None, ...]) -> bool:
    """Whether tensor is given and has `shape`, where None in `shape` allows any size on that axis."""
    return (
        tensor is not None
        and tensor.ndim == len(shape)
        and all(want is None or size == want for size, want in zip(tensor.shape, shape, strict=True))
    )


class WorldModel(nn.Module):
    """Clean context latents ++ noisy target latents, one camera per latent frame -> target velocity."""

    config_class = DiTConfig

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config.validate()
        dim, patch = config.dim, config.patch_size
        self.patch_embedding = nn.Conv3d(config.latent_channels, dim, kernel_size=patch, stride=patch)
        self.time_embedder = TimestepEmbedder(dim, config.frequency_dim, config.timestep_precision)
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        if config.caption_dim:
            self.caption_embedding = nn.Sequential(
                nn.Linear(config.caption_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
            )
        else:
            self.caption_embedding = None
        self.ray_embedding = nn.Linear(6, dim) if config.camera_rays else None
        self.warp_embedding = (
            nn.Conv3d(config.latent_channels, dim, kernel_size=patch, stride=patch)
            if config.warp_condition
            else None
        )
        self.blocks = nn.ModuleList(WorldBlock(config) for _ in range(config.num_layers))
        patch_volume = patch[0] * patch[1] * patch[2]
        self.final_layer = FinalLayer(dim, patch_volume, config.latent_channels, config.eps, config.head)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's init (xavier Linear, zero bias, N(0, 0.02) time MLP) plus adaLN-zero and camera rules."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        weight = self.patch_embedding.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))  # as a Linear over one patch
        nn.init.zeros_(self.patch_embedding.bias)
        for layer in (self.time_embedder.mlp[0], self.time_embedder.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        zero = [self.time_projection[1], self.final_layer.linear]
        if self.final_layer.adaLN_modulation is not None:
            zero.append(self.final_layer.adaLN_modulation[1])
        if self.ray_embedding is not None:
            zero.append(self.ray_embedding)  # a new model ignores the rays, as it ignores the cameras
        if self.warp_embedding is not None:
            zero.append(self.warp_embedding)  # and the warp, until training finds it useful
        for block in self.blocks:
            nn.init.zeros_(block.modulation)
            zero += [block.context_camera_encoder, block.target_camera_encoder]
            if block.cross_attn is not None:
                zero.append(block.cross_attn.o)  # PixArt-style: captions start with no effect
            with torch.no_grad():
                block.camera_projector.weight.copy_(torch.eye(self.config.dim))
        for layer in zero:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _check_inputs(
        self, context_latents, noisy_target, t, cameras, intrinsics, caption, target_condition, all_frames
    ) -> None:
        """Raise a ConfigError naming the first argument forward cannot take, what it needs and the fix."""
        config = self.config
        frames_per_patch, rows_per_patch, cols_per_patch = config.patch_size
        # 1. latents: "B F C h w" of the model's channels, whole patches, context and target alike
        for name, latents in (("context_latents", context_latents), ("noisy_target", noisy_target)):
            if not _has_shape(latents, (None, None, config.latent_channels, None, None)):
                raise ConfigError(
                    f"{name}: expected shape (B, F, {config.latent_channels}, h, w) for a model with "
                    f"latent_channels={config.latent_channels}, got {_shape(latents)}"
                )
            if latents.shape[1] % frames_per_patch:
                raise ConfigError(
                    f"{name}: {latents.shape[1]} latent frames is not a multiple of the temporal patch "
                    f"{frames_per_patch}"
                )
        batch, target_frames, _, height, width = noisy_target.shape
        if context_latents.shape[0] != batch or context_latents.shape[3:] != noisy_target.shape[3:]:
            raise ConfigError(
                f"context_latents {_shape(context_latents)} and noisy_target {_shape(noisy_target)} must "
                "share batch size and latent height/width"
            )
        if target_frames < 1:
            raise ConfigError("noisy_target: needs at least one latent frame")
        if height % rows_per_patch or width % cols_per_patch:
            raise ConfigError(
                f"latent size {height}x{width} is not divisible by the patch size {config.patch_size[1:]}; "
                "crop or resize the video so that it is"
            )

        # 2. one time per sample, one camera per latent frame, intrinsics where the rays need them
        if not _has_shape(t, (batch,)):
            raise ConfigError(f"t: expected shape ({batch},), one time in [0, 1] per sample, got {_shape(t)}")
        frames = context_latents.shape[1] + target_frames
        if not _has_shape(cameras, (batch, frames, 4, 4)):
            raise ConfigError(
                f"cameras: expected shape ({batch}, {frames}, 4, 4), one camera-to-world pose per latent "
                f"frame (context then target), got {_shape(cameras)}"
            )
        if config.camera_rays and intrinsics is None:
            raise ConfigError(
                "intrinsics: this model embeds camera rays (camera_rays=True) and needs intrinsics of shape "
                f"({batch}, 4) (fx/W, fy/H, cx/W, cy/H)"
            )
        if intrinsics is not None and not _has_shape(intrinsics, (batch, 4)):
            raise ConfigError(
                f"intrinsics: expected shape ({batch}, 4) (fx/W, fy/H, cx/W, cy/H), got {_shape(intrinsics)}"
            )

        # 3. the optional inputs: given exactly when the config has them, in the shape it needs
        if config.caption_dim and not _has_shape(caption, (batch, None, config.caption_dim)):
            raise ConfigError(
                f"caption: this model has caption_dim={config.caption_dim} and needs a caption embedding of "
                f"shape ({batch}, L, {config.caption_dim}) (zeros for 'no caption'), got {_shape(caption)}"
            )
        if not config.caption_dim and caption is not None:
            raise ConfigError("caption: this model has caption_dim=0 (no cross-attention); pass caption=None")
        if config.warp_condition and not _has_shape(target_condition, tuple(noisy_target.shape)):
            raise ConfigError(
                "target_condition: this model was trained with warp_condition=True and needs the warped "
                f"context's latents of shape {_shape(noisy_target)} (hybridmem.warp), got "
                f"{_shape(target_condition)}"
            )
        if not config.warp_condition and target_condition is not None:
            raise ConfigError("target_condition: this model has warp_condition=False; pass None")
        if all_frames and config.warp_residual:
            raise ConfigError(
                "all_frames: a warp_residual model predicts the target only; pass all_frames=False"
            )

    def _embed_patches(
        self, context_latents: torch.Tensor, noisy_target: torch.Tensor, target_condition: torch.Tensor | None
    ) -> torch.Tensor:
        """Context ++ target latents on one time axis -> patch embeddings "B D Fp H W", plus the embedded warp
        condition (target_condition "B Ft C h w") when the model has one."""
        latents = torch.cat([context_latents, noisy_target], dim=1)  # B F C h w
        x = self.patch_embedding(rearrange(latents, "b f c h w -> b c f h w"))  # B D Fp H W
        if self.warp_embedding is not None:
            # the context frames' condition is zero: they are what the warp is made from
            condition = torch.cat([torch.zeros_like(context_latents), target_condition], dim=1)  # B F C h w
            x = x + self.warp_embedding(rearrange(condition, "b f c h w -> b c f h w"))  # B D Fp H W
        return x

    def _token_cameras(self, cameras: torch.Tensor) -> torch.Tensor:
        """cameras "B F 4 4" -> "B Fp 4 4": with temporal patches, a token frame takes the camera of its last
        latent frame. Float32 even in a bf16 model: positions in metres need the mantissa."""
        frames_per_patch = self.config.patch_size[0]
        return cameras[:, frames_per_patch - 1 :: frames_per_patch].float()  # B Fp 4 4

    def _pose_vectors(self, token_cameras: torch.Tensor) -> torch.Tensor:
        """token_cameras "B Fp 4 4" -> row-major [R | t] "B Fp 12", in the camera encoders' dtype."""
        poses = rearrange(token_cameras[..., :3, :4], "b f r c -> b f (r c)")  # B Fp 12
        return poses.to(self.blocks[0].context_camera_encoder.weight.dtype)

    def _embed_rays(self, sequence: SequenceInfo, dtype: torch.dtype) -> torch.Tensor:
        """Each token's embedded Plücker ray "B N D" (DiTConfig.camera_rays), from the sequence's cameras."""
        _, height, width = sequence.grid
        rays = camera_rays(sequence.cameras, sequence.intrinsics, height, width)  # B Fp H W 6
        rays = rearrange(rays, "b f hh ww six -> b (f hh ww) six")  # B N 6
        return self.ray_embedding(rays.to(dtype))  # B N D

    def _frame_times(self, t: torch.Tensor, sequence: SequenceInfo) -> torch.Tensor:
        """t "B" -> each token frame's time "B Fp": the clean context at t = 0, or at the target's t with
        context_timestep 'shared' (the official code's single timestep)."""
        context_frames, target_frames = sequence.context_frames, sequence.grid[0] - sequence.context_frames
        if self.config.context_timestep == "shared":
            context_times = t[:, None]  # B 1
        else:
            context_times = t.new_zeros(t.shape[0], 1)  # B 1
        return torch.cat(
            [context_times.expand(-1, context_frames), t[:, None].expand(-1, target_frames)], dim=1
        )  # B Fp

    def _run_block(self, block: WorldBlock, x: torch.Tensor, *conditions) -> torch.Tensor:
        """block(x, *conditions), recomputed in backward under DiTConfig.gradient_checkpointing."""
        if self.config.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, *conditions, use_reentrant=False)
        return block(x, *conditions)

    def _unpatchify(self, patches: torch.Tensor, height: int) -> torch.Tensor:
        """patches "B Fp P (pt ph pw C)" of a token grid `height` tokens high -> latents "B (Fp pt) C h w"."""
        frames_per_patch, rows_per_patch, cols_per_patch = self.config.patch_size
        return rearrange(
            patches,
            "b f (hh ww) (pt ph pw c) -> b (f pt) c (hh ph) (ww pw)",
            hh=height,
            pt=frames_per_patch,
            ph=rows_per_patch,
            pw=cols_per_patch,
        )

    def forward(
        self,
        context_latents: torch.Tensor,
        noisy_target: torch.Tensor,
        t: torch.Tensor,
        cameras: torch.Tensor,
        intrinsics: torch.Tensor | None = None,
        caption: torch.Tensor | None = None,
        target_condition: torch.Tensor | None = None,
        all_frames: bool = False,
    ) -> torch.Tensor:
        """Velocity of the target latents (with all_frames, of the context frames too).

        context_latents: "B Fc C h w" clean (Fc may be 0); noisy_target: "B Ft C h w" at time t "B" in [0, 1];
        cameras: "B F 4 4" each latent frame's camera-to-world relative to the first target frame, OpenCV
        axes; intrinsics: "B 4" (fx/W, fy/H, cx/W, cy/H), handed to the memory (and the rays); caption:
        "B L Dc" or None; target_condition: "B Ft C h w" the warped context's latents (needed iff
        config.warp_condition). Returns "B Ft C h w", or with all_frames "B F C h w": the official model
        computes the context frames' outputs too (its pipeline discards them); parity checks compare them.
        """
        self._check_inputs(
            context_latents, noisy_target, t, cameras, intrinsics, caption, target_condition, all_frames
        )

        # 1. tokens of context ++ target on one time axis, and what a memory knows of their sequence
        x = self._embed_patches(context_latents, noisy_target, target_condition)  # B D Fp H W
        frames, height, width = x.shape[2:]
        x = rearrange(x, "b d f hh ww -> b (f hh ww) d")  # B N D
        sequence = SequenceInfo(
            grid=(frames, height, width),
            context_frames=context_latents.shape[1] // self.config.patch_size[0],
            cameras=self._token_cameras(cameras),  # B Fp 4 4
            intrinsics=None if intrinsics is None else intrinsics.float(),  # B 4
        )
        if self.ray_embedding is not None:
            x = x + self._embed_rays(sequence, x.dtype)  # B N D

        # 2. what every block reads besides the tokens: per-frame time, poses, caption, rope angles
        time_embedding = self.time_embedder(self._frame_times(t, sequence))  # B Fp D
        time_modulation = rearrange(
            self.time_projection(time_embedding), "b f (six d) -> b f six d", six=6
        )  # B Fp 6 D
        camera_12 = self._pose_vectors(sequence.cameras)  # B Fp 12
        caption_tokens = None if self.caption_embedding is None else self.caption_embedding(caption)  # B L D
        positions = grid_positions(frames, height, width, device=x.device)  # N 3
        angles = rope_angles(positions, self.config.head_dim, self.config.rope_theta)  # N d/2

        # 3. blocks
        for block in self.blocks:  # x stays B N D
            x = self._run_block(block, x, time_modulation, camera_12, angles, sequence, caption_tokens)

        # 4. the final layer on the target's tokens (with all_frames, every frame's), back to latents
        first = 0 if all_frames else sequence.context_frames
        x = rearrange(x, "b (f p) d -> b f p d", f=frames)[:, first:]  # B Ft/pt P D
        patches = self.final_layer(x, time_embedding[:, first:])  # B Ft/pt P (pt ph pw C)
        velocity = self._unpatchify(patches, height)  # B Ft C h w
        if self.config.warp_residual:
            # x_0 = x_1 - velocity = warp - out: the warp is the prediction the network corrects
            velocity = velocity + noisy_target - target_condition  # B Ft C h w
        return velocity


# ---------------------------------------------------------------------------------------------------------
# Size presets
# ---------------------------------------------------------------------------------------------------------

WORLD_PRESETS: dict[str, dict] = {
    # Tests: seconds on a CPU.
    "tiny": dict(latent_channels=4, dim=64, num_layers=2, num_heads=4, ffn_dim=128),
    # CPU reference run: about 1.6M parameters (~6.5 MB fp32), so four shipped variants stay small.
    "compact": dict(latent_channels=4, dim=160, num_layers=4, num_heads=4, ffn_dim=640),
    # CPU training.
    "small": dict(latent_channels=8, dim=256, num_layers=6, num_heads=4, ffn_dim=1024),
    # One GPU.
    "base": dict(latent_channels=16, dim=768, num_layers=12, num_heads=12, ffn_dim=3072),
    # The paper's backbone geometry (Wan2.1-T2V-1.3B: umT5 caption embeddings of width 4096).
    "wan1.3b": dict(
        latent_channels=16, dim=1536, num_layers=30, num_heads=12, ffn_dim=8960, caption_dim=4096
    ),
}

# What makes a DiT compute what the official HyDRA model (H-EmbodVis/HyDRA on Wan2.1) computes, at any
# size: hybridmem.official.dit builds its configurations from this, and `hydra-official` is the released
# model (Wan2.1-T2V-1.3B + HyDRA; load its weights with hybridmem.official.dit.load_official_dit).
OFFICIAL_CHOICES: dict = dict(
    context_timestep="shared",
    head="wan",
    timestep_precision="float64",
    sample_shift=5.0,
    memory=dict(
        kind="hydra",
        window=5,
        top_k=10,
        tokenizer_kernel=(2, 2, 2),
        affinity="mean",
        slice_ranking="affinity",
        memory_scope="all",
        affinity_rope="before",
        token_positions="official",
    ),
)
WORLD_PRESETS["hydra-official"] = {**WORLD_PRESETS["wan1.3b"], **OFFICIAL_CHOICES}


def dit_config(preset: str, validate: bool = True, **overrides) -> DiTConfig:
    """The config of a named preset with fields replaced by `overrides` (memory: MemoryConfig or dict);
    validate=False leaves validation to its user (WorldModel validates the config it is built from)."""
    check_choice(preset, WORLD_PRESETS, "world model preset", "presets")
    values = {**WORLD_PRESETS[preset], **overrides}
    # a MemoryConfig kept as is; a dict converted, its missing fields at today's defaults
    return DiTConfig.from_dict(values, validate=validate, saved=False)


def build_world_model(preset: str, **overrides) -> WorldModel:
    """A new WorldModel of a named preset: build_world_model("tiny", memory=MemoryConfig(kind="full"))."""
    return WorldModel(dit_config(preset, validate=False, **overrides))  # validated once, by WorldModel


def activation_bytes(
    config: DiTConfig, batch_size: int, tokens: int, grad_checkpointing: bool = False
) -> float:
    """Lower bound of what a training step keeps for backward in fp32, `tokens` (N) a batch element: per
    token and block its input, q, k, v and attention output (5 D) and the feed-forward activation before
    and after the nonlinearity (2 ffn_dim); with gradient checkpointing only its input (D)."""
    per_token_layer = config.dim if grad_checkpointing else 5 * config.dim + 2 * config.ffn_dim
    return 4.0 * batch_size * tokens * per_token_layer * config.num_layers


def world_step_bytes(
    preset: str,
    batch_size: int,
    latent_frames: int,
    latent_height: int,
    latent_width: int,
    grad_checkpointing: bool = False,
) -> float:
    """Lower bound of the memory a training step of a preset needs in fp32: `activation_bytes` over the N
    tokens of the context and target latent frames. hybridmem.device.check_memory compares it with the
    device."""
    config = dit_config(preset)  # an unknown preset: ConfigError listing the valid ones
    frames_per_patch, rows_per_patch, columns_per_patch = config.patch_size
    tokens = (
        math.ceil(latent_frames / frames_per_patch)
        * math.ceil(latent_height / rows_per_patch)
        * math.ceil(latent_width / columns_per_patch)
    )
    return activation_bytes(config, batch_size, tokens, grad_checkpointing)
