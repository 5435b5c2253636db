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
- Tiling: the official tiler (`WanVideoVAE.tiled_encode` / `tiled_decode`), written here as `run_tiled`
  on top of diffusers' untiled encode and decode of each tile; see `VAETiling`.

Nothing here downloads; the checkpoint is a local file. diffusers is imported inside the functions that
need it, so importing this module costs only torch and einops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from hybridmem.errors import CheckpointError, ConfigError, DataError
from hybridmem.models.checkpoint import brief_list, check_state_matches
from hybridmem.official.files import read_state_dict

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
    """Spatial tiles for encoding and decoding, in latent cells (h, w): the official tile_size / tile_stride.

    The HyDRA pipeline calls the VAE with tile_size (30, 52) and tile_stride (15, 26): at 480 x 832 (60 x 104
    latents) that is 3 x 3 tiles of 240 x 416 pixels every 120 x 208 pixels. What the tiler does with them
    is `run_tiled`.
    """

    size: tuple[int, int] = (30, 52)
    stride: tuple[int, int] = (15, 26)

    def __post_init__(self):
        for axis in (0, 1):
            if not 0 < self.stride[axis] < self.size[axis]:
                # the official tiler blends over the overlap size - stride; with none, its mask
                # (`build_1d_mask`, x[-0:] = an empty ramp) raises on every tile that has a right neighbour
                raise ConfigError(
                    f"VAETiling: stride {self.stride} must be positive and smaller than size {self.size} "
                    "(latent cells, h then w): neighbouring tiles must overlap"
                )

    @property
    def overlap(self) -> tuple[int, int]:
        """Latent cells shared by neighbouring tiles (h, w): the width of the blending ramps."""
        return self.size[0] - self.stride[0], self.size[1] - self.stride[1]


OFFICIAL_TILING = VAETiling(size=(30, 52), stride=(15, 26))  # HyDRAPipeline.__call__ defaults


def tile_starts(length: int, size: int, stride: int) -> list[int]:
    """First cell of each tile along an axis of `length` cells: one every `stride`, until a tile reaches the
    end. The official loop (`for h in range(0, H, stride)`, skipping a start whose predecessor already
    reaches H) keeps exactly these; a last tile may be cut short by the edge."""
    starts = [0]
    while starts[-1] + size < length:
        starts.append(starts[-1] + stride)
    return starts


def tile_ramp(length: int, border: int, *, first: bool, last: bool) -> torch.Tensor:
    """The weight of each of a tile's `length` cells along one axis "length" (float32): the official
    `build_1d_mask`.

    1 inside; at a side that has a neighbour (not `first` / not `last` on the axis) the `border` cells rise
    1/border, 2/border, ..., 1 towards the inside. Where the two ramps meet (a tile shorter than twice the
    border), the end ramp overwrites the start ramp, as the official code writes them in that order.
    """
    weights = torch.ones(length)
    ramp = torch.arange(1, border + 1) / border  # 1/border ... 1, float32 as the official
    if not first:
        weights[:border] = ramp
    if not last:
        weights[-border:] = ramp.flip(0)
    return weights


def tile_mask(
    height: int, width: int, border: tuple[int, int], bounds: tuple[bool, bool, bool, bool]
) -> torch.Tensor:
    """A tile's blending weights "height width" (float32): the official `build_mask`, the smaller of the h
    and w ramps (`tile_ramp`) at each cell. bounds: whether the tile is first in h, last in h, first in w,
    last in w; border: the ramps' widths (h, w) in the tile's cells."""
    first_h, last_h, first_w, last_w = bounds
    ramp_h = tile_ramp(height, border[0], first=first_h, last=last_h)  # "height"
    ramp_w = tile_ramp(width, border[1], first=first_w, last=last_w)  # "width"
    return torch.minimum(rearrange(ramp_h, "h -> h 1"), rearrange(ramp_w, "w -> 1 w"))  # "height width"


def run_tiled(
    run: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    tiling: VAETiling,
    *,
    cells_in: int,
    cells_out: int,
) -> torch.Tensor:
    """The official tiler: `run` on overlapping spatial tiles of `inputs` "B C T H W", blended.

    cells_in / cells_out: input / output elements per latent cell along H and W (encoding: 8 pixels in,
    1 latent out; decoding: 1 in, 8 out). The tile grid is `tile_starts` in latent cells on each axis; each
    tile runs through `run` whole (the causal time loop included, as the official tiler runs it), its output
    "B C' T' h' w'" is weighted by `tile_mask` (ramps as wide as the overlap, in output elements) and added
    in; the sum is divided by the summed weights. Every cell is covered, and every weight is at least
    1 / border, so the division is safe.

    What differs from diffusers' tiler (`AutoencoderKLWan.tiled_encode` / `tiled_decode`), which is why it
    is not used: diffusers blends each tile into its upper and left neighbours linearly (i / overlap), keeps
    the first `stride` rows and columns of each tile, and starts a tile every stride up to the edge. At
    480 x 832 with the parity fixture's random (base dim 8) weights, one frame, diffusers' latents differed
    from the official tiler's by up to 0.044 (values up to 1.1) and its decoded pixels by up to 0.26.

    The sums are kept in the tiles' dtype, as the official tiler keeps them in the latents' or video's.
    Against the official tiler itself (diffsynth's wan_video_vae.py run on the parity fixture's weights, in
    float32): latents and decoded pixels bit-identical at 480 x 832 with the official tiles, and at three
    small tilings of 1- and 5-frame videos.
    """
    height, width = inputs.shape[-2] // cells_in, inputs.shape[-1] // cells_in  # latent cells
    border = (tiling.overlap[0] * cells_out, tiling.overlap[1] * cells_out)
    values = weights = None
    for top in tile_starts(height, tiling.size[0], tiling.stride[0]):
        bottom = min(top + tiling.size[0], height)
        for left in tile_starts(width, tiling.size[1], tiling.stride[1]):
            right = min(left + tiling.size[1], width)
            tile = run(
                inputs[..., top * cells_in : bottom * cells_in, left * cells_in : right * cells_in]
            )  # "B C' T' h' w'"
            if values is None:
                batch, channels, frames = tile.shape[:3]
                values = tile.new_zeros(batch, channels, frames, height * cells_out, width * cells_out)
                weights = tile.new_zeros(height * cells_out, width * cells_out)  # "H' W'"
            bounds = (top == 0, bottom == height, left == 0, right == width)
            mask = tile_mask(tile.shape[-2], tile.shape[-1], border, bounds).to(tile)  # "h' w'"
            rows = slice(top * cells_out, top * cells_out + tile.shape[-2])
            columns = slice(left * cells_out, left * cells_out + tile.shape[-1])
            values[..., rows, columns] += tile * mask
            weights[rows, columns] += mask
    return values / weights  # "B C' T' H' W'"


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
        # spatial tiles as the official pipeline uses them (see `run_tiled`), or None: one piece
        self.tiling = tiling

    def _statistics(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, 1/std) as "1 C 1 1 1" in `like`'s dtype and device."""
        mean, inv_std = (
            rearrange(stat.to(dtype=like.dtype, device=like.device), "c -> 1 c 1 1 1")
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
        if self.tiling is None:
            return self._encode_untiled(video)
        return run_tiled(self._encode_untiled, video, self.tiling, cells_in=SPATIAL_FACTOR, cells_out=1)

    def _encode_untiled(self, video: torch.Tensor) -> torch.Tensor:
        """video "B 3 T H W" -> normalised latents "B z F h w" in one piece (diffusers' tiler is never on).

        Normalised here, per tile when tiled, because the official tiler blends normalised tiles."""
        mu = self.autoencoder.encode(video).latent_dist.mode()  # "B z F h w", the mean (no sampling)
        mean, inv_std = self._statistics(mu)
        return (mu - mean) * inv_std

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, *, clamp: bool = True) -> torch.Tensor:
        """Normalised latents "B z F h w" -> video "B 3 T H W", T = 1 + 4 (F - 1); clamped to [-1, 1] unless
        `clamp` is False. Tiled or not, the clamp comes last, as in the official tiled and untiled decode."""
        if latents.ndim != 5 or latents.shape[1] != self.config.z_dim:
            raise DataError(
                f"WanVAE.decode: latents must be (B, {self.config.z_dim}, F, h, w), "
                f"got {tuple(latents.shape)}"
            )
        parameter = self._parameter()
        latents = latents.to(dtype=parameter.dtype, device=parameter.device)
        if self.tiling is None:
            video = self._decode_unclamped(latents)
        else:
            video = run_tiled(
                self._decode_unclamped, latents, self.tiling, cells_in=1, cells_out=SPATIAL_FACTOR
            )
        return video.clamp(-1.0, 1.0) if clamp else video

    def _decode_unclamped(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents "B z F h w" -> video "B 3 T H W" in one piece, not clamped.

        diffusers' untiled `AutoencoderKLWan._decode` without its final clamp (the official tiler blends
        unclamped tiles, then clamps): one latent frame at a time through the causal decoder, which carries
        its convolution caches (`feat_cache`) across frames.
        """
        from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

        mean, inv_std = self._statistics(latents)
        z = latents / inv_std + mean  # dividing by 1/std, as the official decode does (not * std)
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
    """The VAE in `path` (the released `Wan2.1_VAE.pth`, or DiffSynth's `model.`-prefixed layout; a torch
    or safetensors file, see `files.read_state_dict`), in eval mode, frozen, in `dtype` on `device`. `config`
    is Wan2.1's unless given (the parity fixture's is smaller).

    dtype: in float32 this VAE and the official one agree to 1e-5 (the parity fixture). The official
    inference runs it in bfloat16, where they are not bit-identical: diffusers' RMS norm normalises
    bfloat16 inputs in float32, the official one in bfloat16. On the parity fixture in bfloat16, latents
    differed by up to 0.02 (one bfloat16 step at their size) and decoded pixels by up to 0.10 (mean 0.01),
    while each was about as far (0.02, 0.12-0.14) from the float32 result.
    """
    what = "the Wan2.1 VAE (Wan2.1_VAE.pth in the released Wan2.1-T2V-1.3B folder)"
    state = read_state_dict(path, what)
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
