"""The Wan2.1 VAE (`Wan2.1_VAE.pth`) on diffusers' `AutoencoderKLWan`, with the official latent normalisation.

    vae = load_wan_vae("ckpts/Wan2.1-T2V-1.3B/Wan2.1_VAE.pth")      # tiled as the HyDRA pipeline calls it
    latents = vae.encode(video)                                     # "B 3 T H W" in [-1, 1] -> "B 16 F h w"
    video = vae.decode(latents)                                     # clamped to [-1, 1]

Shapes: B batch, T video frames (T = 1 + 4k: the causal encoder takes frame 0 alone, then chunks of 4),
H W pixels (multiples of 8); latents have F = 1 + (T - 1) / 4 latent frames and h, w = H / 8, W / 8.

What the official code (diffsynth/models/wan_video_vae.py, `WanVideoVAE` around `VideoVAE_`) does and where
it is here:
- `VideoVAE_` is diffusers' `AutoencoderKLWan` (same layers, same causal chunking: 1 + 4 + 4 ... frames in,
  one latent frame at a time out); diffusers' own key converter maps the released checkpoint's keys.
- encode returns the encoder's mean mu (no sampling), normalised `(mu - mean) * (1 / std)`; decode undoes it,
  `latents / (1 / std) + mean`, and clamps the video to [-1, 1]. `1 / std` is computed in float32 and both
  constants are cast to the latents' dtype at use, as the official `scale` list is.
- Tiling: see `VAETiling` (diffusers' tiler, with the official tile and stride; its blend is not the
  official one, so tiled outputs agree with the official ones only where a single tile covers the video).

Nothing here downloads; the checkpoint is a local file. diffusers is imported inside the functions that
need it, so importing this module costs only torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from hybridmem.errors import CheckpointError, ConfigError, DataError

# Wan2.1's latent statistics, per latent channel: the constants of the official WanVideoVAE.__init__ (also
# diffusers' AutoencoderKLWan defaults). As float32 they are exactly the `latents_mean` / `latents_std` that
# tests/fixtures/official_hydra/vae_config.json records.
WAN21_LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN21_LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip

SPATIAL_FACTOR = 8  # pixels per latent cell in H and W
TEMPORAL_FACTOR = 4  # video frames per latent frame after the first


def brief_list(names: list[str], limit: int = 5) -> str:
    """The first `limit` names, comma-separated, and how many more there are."""
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_state_matches(
    expected: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    source: str,
    fix: str,
    file_names: Mapping[str, str] | None = None,
) -> None:
    """Raise CheckpointError unless `state` has exactly the keys and shapes of `expected` (a module's state).

    Done before `load_state_dict` so that a mismatch is reported as the keys at fault, not as torch's
    RuntimeError. `source` names the file (or "the state dict"); `fix` says what to do about it;
    `file_names` (model key -> the key in the file, for converted states) lets the message name both.
    """
    file_names = file_names or {}

    def named(key: str) -> str:
        original = file_names.get(key, key)
        return key if original == key else f"{key} (in the file: {original})"

    missing = sorted(set(expected) - set(state))
    unexpected = [named(key) for key in sorted(set(state) - set(expected))]
    wrong_shape = [
        f"{named(key)} {tuple(state[key].shape)}, expected {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(state))
        if tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    problems = [
        f"{label}: {brief_list(keys)}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
        if keys
    ]
    if problems:
        raise CheckpointError(f"{source}: weights do not match the model ({'; '.join(problems)}); {fix}")


def load_torch_state(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a `torch.save`d state dict at `path`, memory-mapped; `what` says which file it is.

    weights_only: a checkpoint is data, never code to run. mmap: the file is paged in as it is read, so a
    large checkpoint (umT5-xxl: 11 GB) does not have to fit in memory twice.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such file; it should be {what}. Nothing here downloads: fetch the released "
            "Wan2.1-T2V-1.3B folder yourself and pass the path of this file in it"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch.load raises RuntimeError, UnpicklingError, EOFError, ... on a bad file
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint ({type(error).__name__}: {error}); it should be {what}"
        ) from error
    if not isinstance(state, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise CheckpointError(f"{path}: not a state dict (a dict of name -> tensor); it should be {what}")
    return state


# ----------------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class WanVAEConfig:
    """The architecture of the official `VideoVAE_` and its latent normalisation; defaults: Wan2.1's VAE."""

    base_dim: int = 96  # the official `dim`
    z_dim: int = 16  # latent channels
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    # spelled `temperal_downsample` in the official code and in diffusers
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    latents_mean: tuple[float, ...] = field(default=WAN21_LATENTS_MEAN)
    latents_std: tuple[float, ...] = field(default=WAN21_LATENTS_STD)

    def __post_init__(self):
        if self.base_dim < 1 or self.z_dim < 1 or self.num_res_blocks < 1:
            raise ConfigError(
                f"WanVAEConfig: base_dim {self.base_dim}, z_dim {self.z_dim} and num_res_blocks "
                f"{self.num_res_blocks} must be positive"
            )
        if len(self.temporal_downsample) != len(self.dim_mult) - 1:
            raise ConfigError(
                f"WanVAEConfig: temporal_downsample has {len(self.temporal_downsample)} entries; it needs "
                f"one per downsampling stage, len(dim_mult) - 1 = {len(self.dim_mult) - 1}"
            )
        for name in ("latents_mean", "latents_std"):
            if len(getattr(self, name)) != self.z_dim:
                raise ConfigError(
                    f"WanVAEConfig: {name} has {len(getattr(self, name))} values; it needs one per latent "
                    f"channel, z_dim = {self.z_dim}"
                )
        if min(self.latents_std) <= 0:
            raise ConfigError(f"WanVAEConfig: latents_std must be positive, got {self.latents_std}")

    @classmethod
    def from_official_kwargs(cls, kwargs: Mapping, latents_mean=None, latents_std=None) -> WanVAEConfig:
        """From the keyword arguments of the official `VideoVAE_` (as vae_config.json's `inner_kwargs`)."""
        known = {
            "dim",
            "z_dim",
            "dim_mult",
            "num_res_blocks",
            "attn_scales",
            "temperal_downsample",
            "dropout",
        }
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ConfigError(f"VideoVAE_ kwargs: unknown {unknown}; known: {sorted(known)}")
        defaults = cls()
        # `dropout` is a training setting; the VAE is only run in eval mode here, where it does nothing.
        return cls(
            base_dim=int(kwargs.get("dim", defaults.base_dim)),
            z_dim=int(kwargs.get("z_dim", defaults.z_dim)),
            dim_mult=tuple(kwargs.get("dim_mult", defaults.dim_mult)),
            num_res_blocks=int(kwargs.get("num_res_blocks", defaults.num_res_blocks)),
            attn_scales=tuple(kwargs.get("attn_scales", defaults.attn_scales)),
            temporal_downsample=tuple(kwargs.get("temperal_downsample", defaults.temporal_downsample)),
            latents_mean=tuple(latents_mean if latents_mean is not None else defaults.latents_mean),
            latents_std=tuple(latents_std if latents_std is not None else defaults.latents_std),
        )


WAN21_VAE_CONFIG = WanVAEConfig()


@dataclass(frozen=True)
class VAETiling:
    """Spatial tiles for encoding and decoding in latent cells (h, w): the official tile_size / tile_stride.

    The HyDRA pipeline calls the VAE with tile_size (30, 52) and tile_stride (15, 26): at 480 x 832 (60 x 104
    latents) that is 240 x 416-pixel tiles every 120 x 208 pixels. diffusers' `enable_tiling` takes the same
    numbers in pixels: tile_sample_min = 8 * size, tile_sample_stride = 8 * stride; its tiles overlap by the
    same 8 * (size - stride) pixels (size - stride latent cells when encoding), and like the official tiler it
    runs each tile through the whole causal time loop.

    What differs from the official tiler (diffsynth `WanVideoVAE.tiled_encode` / `tiled_decode`), so tiled
    results match the official ones only where one tile covers everything:
    - blend: the official tiler weights each tile by a ramp (i + 1) / overlap at its inner borders (the
      minimum of the h and w ramps in corners) and divides by the summed weights; diffusers blends each tile
      into its upper and left neighbours linearly, i / overlap, and keeps the first `stride` rows and
      columns of each tile;
    - tile grid: diffusers starts a tile every stride up to the edge (a last, short tile included), the
      official tiler skips a tile whose predecessor already reaches the edge.
    A video no larger than one tile (H <= 8 * size_h and W <= 8 * size_w) is not tiled by either: tiled and
    untiled results are then identical. At 480 x 832 with the parity fixture's random (base dim 8) weights,
    one frame, the two tilers' latents differed by up to 0.044 (values up to 1.1) and their decoded pixels
    by up to 0.26 (mean 0.008), in the overlaps; the trained VAE's tiles agree better there, by how much
    is not measured.
    """

    size: tuple[int, int] = (30, 52)
    stride: tuple[int, int] = (15, 26)

    def __post_init__(self):
        for axis in (0, 1):
            if not 0 < self.stride[axis] <= self.size[axis]:
                raise ConfigError(
                    f"VAETiling: stride {self.stride} must be positive and no larger than size {self.size} "
                    "(latent cells, h then w); tiles must overlap or touch"
                )


OFFICIAL_TILING = VAETiling(size=(30, 52), stride=(15, 26))  # HyDRAPipeline.__call__ defaults


# ----------------------------------------------------------------------------------------------------------
# Checkpoint conversion


def vae_key_map(keys: Iterable[str], *, source: str = "the state dict") -> dict[str, str]:
    """diffusers `AutoencoderKLWan` key -> the official key it comes from, for the official VAE's `keys`.

    Accepts the released `Wan2.1_VAE.pth` layout (`encoder.conv1.weight`, ...) and DiffSynth's `WanVideoVAE`
    layout, the same keys under `model.` (the parity fixture's). The map is diffusers' own converter
    (`convert_wan_vae_to_diffusers`, which moves values without touching them) applied to the names; keys
    it does not know pass through unchanged and are refused when the state is loaded.
    """
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    keys = list(keys)
    prefixed = [key for key in keys if key.startswith("model.")]
    if prefixed and len(prefixed) != len(keys):
        others = sorted(key for key in keys if not key.startswith("model."))
        raise CheckpointError(
            f"{source}: {len(prefixed)} keys start with 'model.' (DiffSynth's WanVideoVAE layout) and "
            f"{len(others)} do not ({brief_list(others)}); a VAE checkpoint is in one layout or the other"
        )
    prefix = "model." if prefixed else ""
    key_map = convert_wan_vae_to_diffusers({key.removeprefix(prefix): key for key in keys})
    if len(key_map) != len(keys):
        # two official keys landed on one diffusers key: one tensor would silently replace the other
        sources: dict[str, list[str]] = {}
        for key in keys:
            single = convert_wan_vae_to_diffusers({key.removeprefix(prefix): key})
            sources.setdefault(next(iter(single)), []).append(key)
        clashes = sorted(", ".join(names) for names in sources.values() if len(names) > 1)
        raise CheckpointError(f"{source}: keys that map to the same diffusers key: {brief_list(clashes)}")
    return key_map


def convert_official_vae_state(
    state: Mapping[str, torch.Tensor], *, source: str = "the state dict"
) -> dict[str, torch.Tensor]:
    """The official VAE state dict (either layout of `vae_key_map`) in diffusers' AutoencoderKLWan keys."""
    return {key: state[file_key] for key, file_key in vae_key_map(state, source=source).items()}


# ----------------------------------------------------------------------------------------------------------
# The model


def build_autoencoder(config: WanVAEConfig, device: str | torch.device = "cpu"):
    """diffusers' AutoencoderKLWan of `config`'s architecture, eval mode; device "meta" allocates nothing."""
    from diffusers import AutoencoderKLWan

    with torch.device(device):
        autoencoder = AutoencoderKLWan(
            base_dim=config.base_dim,
            z_dim=config.z_dim,
            dim_mult=list(config.dim_mult),
            num_res_blocks=config.num_res_blocks,
            attn_scales=list(config.attn_scales),
            temperal_downsample=list(config.temporal_downsample),
            latents_mean=list(config.latents_mean),
            latents_std=list(config.latents_std),
        )
    return autoencoder.eval().requires_grad_(False)


class WanVAE(nn.Module):
    """The Wan2.1 VAE: diffusers' AutoencoderKLWan plus the official latent normalisation; frozen."""

    def __init__(self, autoencoder, config: WanVAEConfig, tiling: VAETiling | None = OFFICIAL_TILING):
        super().__init__()
        self.autoencoder = autoencoder
        self.config = config
        # Kept as plain float32 tensors, not buffers, so that `.to(bfloat16)` leaves them alone: like the
        # official `scale`, they are cast to the latents' dtype only where they are used.
        self.latents_mean = torch.tensor(config.latents_mean, dtype=torch.float32)
        self.latents_inv_std = 1.0 / torch.tensor(config.latents_std, dtype=torch.float32)
        self.tiling: VAETiling | None = None
        self.set_tiling(tiling)

    def set_tiling(self, tiling: VAETiling | None) -> None:
        """Tile spatially (`tiling`) or not (None); see VAETiling for what diffusers' tiler does."""
        self.tiling = tiling
        if tiling is None:
            self.autoencoder.disable_tiling()
            return
        self.autoencoder.enable_tiling(
            tile_sample_min_height=SPATIAL_FACTOR * tiling.size[0],
            tile_sample_min_width=SPATIAL_FACTOR * tiling.size[1],
            tile_sample_stride_height=SPATIAL_FACTOR * tiling.stride[0],
            tile_sample_stride_width=SPATIAL_FACTOR * tiling.stride[1],
        )

    def _statistics(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, 1/std) as "1 C 1 1 1" in `like`'s dtype and device."""
        mean, inv_std = (
            stat.to(dtype=like.dtype, device=like.device).view(1, -1, 1, 1, 1)
            for stat in (self.latents_mean, self.latents_inv_std)
        )
        return mean, inv_std

    def _parameter(self) -> torch.Tensor:
        return next(self.autoencoder.parameters())

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """video "B 3 T H W" in [-1, 1] (cast to the VAE's dtype) -> normalised latents "B z F h w"."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise DataError(f"WanVAE.encode: video must be (B, 3, T, H, W), got {tuple(video.shape)}")
        _, _, frames, height, width = video.shape
        if (frames - 1) % TEMPORAL_FACTOR:
            # the causal encoder reads frame 0, then chunks of 4: the official code would drop the remainder
            raise DataError(
                f"WanVAE.encode: {frames} frames; the VAE needs 1 + 4k frames (1, 5, 9, ..., 77), trim or pad"
            )
        if height % SPATIAL_FACTOR or width % SPATIAL_FACTOR:
            raise DataError(
                f"WanVAE.encode: frame size {height} x {width} must be a multiple of 8; resize it"
            )
        low, high = video.min().item(), video.max().item()
        if low < -1.0 or high > 1.0:
            raise DataError(
                f"WanVAE.encode: video values span [{low:.3g}, {high:.3g}]; the VAE takes [-1, 1] "
                "(map 8-bit pixels p to p / 127.5 - 1)"
            )
        parameter = self._parameter()
        video = video.to(dtype=parameter.dtype, device=parameter.device)
        mu = self.autoencoder.encode(video).latent_dist.mode()  # "B z F h w", the mean (no sampling)
        mean, inv_std = self._statistics(mu)
        return (mu - mean) * inv_std

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, *, clamp: bool = True) -> torch.Tensor:
        """Normalised latents "B z F h w" -> video "B 3 T H W", T = 1 + 4 (F - 1); clamped to [-1, 1] unless
        `clamp` is False (untiled only: diffusers' tiled decoder clamps inside)."""
        if latents.ndim != 5 or latents.shape[1] != self.config.z_dim:
            raise DataError(
                f"WanVAE.decode: latents must be (B, {self.config.z_dim}, F, h, w), "
                f"got {tuple(latents.shape)}"
            )
        parameter = self._parameter()
        latents = latents.to(dtype=parameter.dtype, device=parameter.device)
        mean, inv_std = self._statistics(latents)
        z = latents / inv_std + mean  # dividing by 1/std, as the official decode does (not * std)
        if clamp:
            return self.autoencoder.decode(z).sample
        height, width = latents.shape[-2:]
        if self.tiling is not None and (height > self.tiling.size[0] or width > self.tiling.size[1]):
            raise ConfigError(
                f"WanVAE.decode(clamp=False): latents of {height} x {width} would be tiled, and diffusers' "
                "tiled decoder clamps inside; call set_tiling(None) first or decode with clamp=True"
            )
        return self._decode_unclamped(z)

    def _decode_unclamped(self, z: torch.Tensor) -> torch.Tensor:
        """diffusers' untiled `AutoencoderKLWan._decode` without its final clamp: one latent frame at a time
        through the causal decoder, which carries its convolution caches (`feat_cache`) across frames."""
        from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

        decoder = self.autoencoder.decoder
        feat_cache = [None] * sum(isinstance(module, WanCausalConv3d) for module in decoder.modules())
        x = self.autoencoder.post_quant_conv(z)  # "B z F h w"
        frames = []
        for index in range(x.shape[2]):
            frames.append(
                decoder(
                    x[:, :, index : index + 1],
                    feat_cache=feat_cache,
                    feat_idx=[0],
                    first_chunk=index == 0,
                )
            )  # "B 3 1 H W" for the first latent frame, "B 3 4 H W" for the others
        return torch.cat(frames, dim=2)  # "B 3 T H W"


def load_wan_vae(
    path: str | Path,
    config: WanVAEConfig = WAN21_VAE_CONFIG,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    tiling: VAETiling | None = OFFICIAL_TILING,
) -> WanVAE:
    """The VAE in `path` (the released `Wan2.1_VAE.pth`, or DiffSynth's `model.`-prefixed layout), in eval
    mode, frozen, in `dtype` on `device`. `config` is Wan2.1's unless given (the parity fixture's is smaller).

    dtype: in float32 this VAE and the official one agree to 1e-5 (the parity fixture). The official
    inference runs it in bfloat16, where they are not bit-identical: diffusers' RMS norm normalises
    bfloat16 inputs in float32, the official one in bfloat16. On the parity fixture in bfloat16, latents
    differed by up to 0.02 (one bfloat16 step at their size) and decoded pixels by up to 0.10 (mean 0.01),
    while each was about as far (0.02, 0.12-0.14) from the float32 result.
    """
    what = "the Wan2.1 VAE (Wan2.1_VAE.pth in the released Wan2.1-T2V-1.3B folder)"
    state = load_torch_state(path, what)
    converted = convert_official_vae_state(state, source=str(path))
    autoencoder = build_autoencoder(config, device="meta")
    check_state_matches(
        autoencoder.state_dict(),
        converted,
        str(path),
        fix=f"the file is not {what} with architecture {config}",
        file_names=vae_key_map(state, source=str(path)),
    )
    # assign=True adopts the (memory-mapped) tensors instead of copying them into freshly allocated ones
    autoencoder.load_state_dict({key: value.to(dtype) for key, value in converted.items()}, assign=True)
    autoencoder = autoencoder.to(device).eval().requires_grad_(False)
    return WanVAE(autoencoder, config, tiling)


# ----------------------------------------------------------------------------------------------------------
# Parity with the official code (tests/fixtures/official_hydra, section C of its README)

VAE_FIXTURE_FILES = ("vae_config.json", "vae.pth", "vae_inputs.safetensors", "vae_expected.safetensors")


def vae_parity(folder: str | Path) -> dict[str, float]:
    """Max |ours - official| for the fixture in `folder`: "vae latents", "vae decode", "vae decode unclamped".

    Empty when the folder has none of the VAE's files. Sizes come from vae_config.json and the tensors.
    Decoding starts from the official latents, so the decode is measured on its own.
    """
    from safetensors.torch import load_file

    from hybridmem.jsonio import read_json

    folder = Path(folder)
    present = [name for name in VAE_FIXTURE_FILES if (folder / name).is_file()]
    if not present:
        return {}
    if len(present) != len(VAE_FIXTURE_FILES):
        missing = [name for name in VAE_FIXTURE_FILES if name not in present]
        raise DataError(
            f"{folder}: has {', '.join(present)} but not {', '.join(missing)}; the VAE part needs all"
        )
    record = read_json(folder / "vae_config.json")
    for name in ("inner_kwargs", "latents_mean", "latents_std"):
        if name not in record:
            raise DataError(f"{folder / 'vae_config.json'}: no field {name!r}; regenerate the fixture")
    config = WanVAEConfig.from_official_kwargs(
        record["inner_kwargs"], latents_mean=record["latents_mean"], latents_std=record["latents_std"]
    )
    vae = load_wan_vae(folder / "vae.pth", config, tiling=None)  # the fixture was computed untiled
    video = load_file(str(folder / "vae_inputs.safetensors"))["video"]
    expected = load_file(str(folder / "vae_expected.safetensors"))

    def difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
        if ours.shape != theirs.shape:
            raise DataError(
                f"{folder}: VAE output {tuple(ours.shape)} but the fixture's is {tuple(theirs.shape)}"
            )
        return (ours.float() - theirs.float()).abs().max().item()

    return {
        "vae latents": difference(vae.encode(video), expected["latents"]),
        "vae decode": difference(vae.decode(expected["latents"]), expected["decoded"]),
        "vae decode unclamped": difference(
            vae.decode(expected["latents"], clamp=False), expected["decoded_unclamped"]
        ),
    }
