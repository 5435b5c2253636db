"""The causal 3D video VAE: frames <-> latents.

The first frame is encoded on its own, every later group of `temporal_factor` (4) frames into one latent
frame: 4k+1 frames -> k+1 latent frames, so latent frame j covers frames max(0, 4j-3) .. 4j (see
hybridmem.geometry.latent_frame_indices). Causality comes from temporal convolutions padded only on the
past side and norms that never mix time steps: latent j depends only on frames <= 4j, and decoded frame i
only on latents <= ceil(i/4). Space is compressed by `spatial_factor` (4, 8 or 16).

    vae = build_vae("tiny")
    posterior = vae.encode(frames)                     # frames "B T 3 H W" in [-1, 1]
    latents = posterior.sample(generator)              # "B F C h w"
    frames = vae.decode(latents)                       # "B T 3 H W"

Reads bottom-up: config, causal conv and norm, residual block, down/upsampling, encoder, decoder, the
posterior, the VAE, presets.

Shape glossary: B batch, T video frames, F latent frames (T = 4(F-1) + 1), H/W pixels, h/w latent size
(H/s, W/s), C latent channels, c feature channels.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from hybridmem.errors import ConfigError
from hybridmem.models.configs import dataclass_from_dict
from hybridmem.validation import check_choice

VAE_DESIGNS = ("causal3d", "grouped")


@dataclass
class VAEConfig:
    """Every size of the VAE plus the latent normalisation the world model sees; saved in checkpoints."""

    # "causal3d": causal 3D convolutions whose temporal receptive field grows with depth (Wan-style).
    # "grouped": each latent frame is computed from its own group of frames only (temporal receptive field
    # one group, so clip length cannot matter) and its first 3 * temporal_factor channels start as the
    # group's frames downsampled by area averaging, decoded by bicubic upsampling; the networks learn
    # residuals on top of that non-parametric shortcut (as DC-AE's space-to-channel shortcuts), so
    # training starts at the bicubic-thumbnail baseline instead of from noise.
    design: str = "causal3d"
    latent_channels: int = 16  # C
    base_channels: int = 96
    # Feature width of resolution level i is base_channels * channel_multipliers[min(i, len - 1)].
    channel_multipliers: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2  # per resolution level
    spatial_factor: int = 8  # 4, 8 or 16
    temporal_factor: int = 4  # 1, 2 or 4: frames per latent frame after the first
    image_channels: int = 3
    # Per-channel latent normalisation, set after fitting (fit_latent_normalization): the world model
    # reads (latents - latent_shift) * latent_scale. Empty = identity.
    latent_shift: tuple[float, ...] = ()
    latent_scale: tuple[float, ...] = ()
    eps: float = 1e-6

    @property
    def spatial_levels(self) -> int:
        return int(math.log2(self.spatial_factor))

    @property
    def temporal_levels(self) -> int:
        return int(math.log2(self.temporal_factor))

    @property
    def num_levels(self) -> int:
        return max(self.spatial_levels, self.temporal_levels)

    @property
    def thumbnail_channels(self) -> int:
        """Latent channels that hold the group's area-downsampled frames in the grouped design."""
        return self.image_channels * self.temporal_factor

    def channels(self, level: int) -> int:
        return self.base_channels * self.channel_multipliers[min(level, len(self.channel_multipliers) - 1)]

    def validate(self) -> VAEConfig:
        for name in ("latent_channels", "base_channels", "num_res_blocks", "image_channels"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"VAEConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        check_choice(self.design, VAE_DESIGNS, "VAEConfig.design")
        if self.design == "grouped" and self.latent_channels < self.thumbnail_channels:
            raise ConfigError(
                f"VAEConfig.latent_channels must be >= 3 * temporal_factor = {self.thumbnail_channels} for "
                f"the grouped design (one RGB thumbnail per frame of a group), got {self.latent_channels}"
            )
        if self.spatial_factor not in (4, 8, 16):
            raise ConfigError(f"VAEConfig.spatial_factor must be 4, 8 or 16, got {self.spatial_factor}")
        if self.temporal_factor not in (1, 2, 4):
            raise ConfigError(f"VAEConfig.temporal_factor must be 1, 2 or 4, got {self.temporal_factor}")
        if not self.channel_multipliers or min(self.channel_multipliers) < 1:
            raise ConfigError(
                f"VAEConfig.channel_multipliers must be positive ints, got {self.channel_multipliers}"
            )
        for name in ("latent_shift", "latent_scale"):
            values = getattr(self, name)
            if values and len(values) != self.latent_channels:
                raise ConfigError(
                    f"VAEConfig.{name} must be empty or hold latent_channels={self.latent_channels} numbers, "
                    f"got {len(values)}"
                )
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> VAEConfig:
        return dataclass_from_dict(cls, data, "VAEConfig").validate()


# ---------------------------------------------------------------------------------------------------------
# Causal building blocks
# ---------------------------------------------------------------------------------------------------------


class CausalConv3d(nn.Conv3d):
    """Conv3d on "B c T H W" that pads time only on the past side (zeros) and space symmetrically.

    Streaming: given a `cache` dict, a clip may be fed in consecutive chunks. Each call keeps the last
    kernel_t - stride_t frames of its time-padded input, which the next chunk's first window reaches back
    into, so chunked outputs equal whole-clip outputs (chunk lengths must keep windows aligned: the VAE
    feeds the first frame alone, then groups of temporal_factor frames).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=(3, 3, 3), stride=(1, 1, 1)):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)
        kernel_t, kernel_h, kernel_w = self.kernel_size
        # F.pad order: (w left, w right, h top, h bottom, t past, t future)
        self.causal_padding = (kernel_w // 2, kernel_w // 2, kernel_h // 2, kernel_h // 2, kernel_t - 1, 0)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        if cache is None:
            return super().forward(F.pad(x, self.causal_padding))
        kernel_t, stride_t = self.kernel_size[0], self.stride[0]
        previous = cache.get(self)
        if previous is None:  # first chunk: zero past, as in the whole-clip path
            padded = F.pad(x, (0, 0, 0, 0, kernel_t - 1, 0))  # B c T+k-1 H W
        else:
            padded = torch.cat([previous, x], dim=2)  # B c keep+T H W
        if (padded.shape[2] - kernel_t) % stride_t:
            raise ValueError(f"streaming chunk of {x.shape[2]} frames does not align with stride {stride_t}")
        keep = kernel_t - stride_t
        cache[self] = padded[:, :, padded.shape[2] - keep :]  # B c keep H W
        return super().forward(F.pad(padded, self.causal_padding[:4]))


class ChannelNorm(nn.Module):
    """RMS norm over channels at each (t, y, x), as Wan's VAE: unlike GroupNorm it never mixes time steps,
    so it keeps the encoder causal, and it does not depend on the batch."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x "B c T H W" (or "N c H W" in the grouped design) -> same."""
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(1, keepdim=True) + self.eps)
        weight = self.weight.float().view(-1, *([1] * (x.ndim - 2)))  # c 1 ... 1
        return (normed * weight).to(x.dtype)


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, eps: float):
        super().__init__()
        self.norm1 = ChannelNorm(in_channels, eps)
        self.conv1 = CausalConv3d(in_channels, out_channels)
        self.norm2 = ChannelNorm(out_channels, eps)
        self.conv2 = CausalConv3d(out_channels, out_channels)
        self.skip = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        """x "B c T H W" -> "B c' T H W"."""
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(F.silu(self.norm2(h)), cache)
        return self.skip(x) + h


class Downsample(nn.Module):
    """Halve H, W (if spatial) and map T = 2m+1 -> m+1 (if temporal), changing the channel count."""

    def __init__(self, in_channels: int, out_channels: int, spatial: bool, temporal: bool):
        super().__init__()
        self.spatial, self.temporal = spatial, temporal
        if spatial:
            self.spatial_conv = nn.Conv3d(in_channels, out_channels, (1, 3, 3), stride=(1, 2, 2))
        if temporal:
            channels = out_channels if spatial else in_channels
            # Kernel 3, stride 2, two past pads: output j sees frames 2j-2 .. 2j, so output 0 is frame 0
            # alone and T = 2m+1 frames give m+1 outputs.
            self.temporal_conv = CausalConv3d(channels, out_channels, (3, 1, 1), stride=(2, 1, 1))

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        if self.spatial:
            x = self.spatial_conv(F.pad(x, (0, 1, 0, 1)))  # B c' T H/2 W/2 (asymmetric pad: even H, W)
        if self.temporal:
            x = self.temporal_conv(x, cache)  # B c' (T-1)/2+1 H W
        return x


class Upsample(nn.Module):
    """Inverse of Downsample: T = m+1 -> 2m+1 (if temporal), double H, W (if spatial)."""

    def __init__(self, in_channels: int, out_channels: int, spatial: bool, temporal: bool):
        super().__init__()
        self.spatial, self.temporal = spatial, temporal
        if temporal:
            self.temporal_conv = CausalConv3d(in_channels, 2 * in_channels, (3, 1, 1))
        if spatial:
            self.out_conv = nn.Conv3d(in_channels, out_channels, (1, 3, 3), padding=(0, 1, 1))
        elif in_channels != out_channels:
            self.out_conv = nn.Conv3d(in_channels, out_channels, 1)
        else:
            self.out_conv = nn.Identity()

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        if self.temporal:
            first_chunk = cache is None or self.temporal_conv not in cache
            doubled = self.temporal_conv(x, cache)  # B 2c T H W
            x = rearrange(doubled, "b (two c) t hh ww -> b c (t two) hh ww", two=2)  # B c 2T H W
            # Latent j becomes frames 2j-1, 2j; latent 0 only frame 0, so the first of its pair is dropped.
            if first_chunk:
                x = x[:, :, 1:]  # B c 2T-1 H W
        if self.spatial:
            x = F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")  # B c T 2H 2W
        return self.out_conv(x)  # B c' T' H' W'


# ---------------------------------------------------------------------------------------------------------
# Encoder and decoder
# ---------------------------------------------------------------------------------------------------------


def _level_kinds(config: VAEConfig, level: int) -> tuple[bool, bool]:
    """(spatial, temporal) resampling between level and level + 1; time at the deepest levels (as Wan)."""
    spatial = level < config.spatial_levels
    temporal = level >= config.num_levels - config.temporal_levels
    return spatial, temporal


class Encoder(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.conv_in = CausalConv3d(config.image_channels, config.channels(0))
        self.levels = nn.ModuleList()
        for level in range(config.num_levels):
            channels = config.channels(level)
            blocks = [ResBlock(channels, channels, config.eps) for _ in range(config.num_res_blocks)]
            blocks.append(Downsample(channels, config.channels(level + 1), *_level_kinds(config, level)))
            self.levels.append(nn.ModuleList(blocks))
        deepest = config.channels(config.num_levels)
        self.middle = nn.ModuleList([ResBlock(deepest, deepest, config.eps) for _ in range(2)])
        self.norm_out = ChannelNorm(deepest, config.eps)
        self.conv_out = CausalConv3d(deepest, 2 * config.latent_channels)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        """frames "B 3 T H W" -> moments "B 2C F h w" (cache: streaming state, see CausalConv3d)."""
        x = self.conv_in(x, cache)  # B c T H W
        for level in self.levels:
            for layer in level:
                x = layer(x, cache)  # B c' T' H' W'
        for block in self.middle:
            x = block(x, cache)  # B c F h w
        return self.conv_out(F.silu(self.norm_out(x)), cache)  # B 2C F h w


class Decoder(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        deepest = config.channels(config.num_levels)
        self.conv_in = CausalConv3d(config.latent_channels, deepest)
        self.middle = nn.ModuleList([ResBlock(deepest, deepest, config.eps) for _ in range(2)])
        self.levels = nn.ModuleList()
        for level in reversed(range(config.num_levels)):
            channels = config.channels(level)
            blocks = [Upsample(config.channels(level + 1), channels, *_level_kinds(config, level))]
            blocks += [ResBlock(channels, channels, config.eps) for _ in range(config.num_res_blocks)]
            self.levels.append(nn.ModuleList(blocks))
        self.norm_out = ChannelNorm(config.channels(0), config.eps)
        self.conv_out = CausalConv3d(config.channels(0), config.image_channels)

    def forward(self, z: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        """latents "B C F h w" -> frames "B 3 T H W" (cache: streaming state, see CausalConv3d)."""
        x = self.conv_in(z, cache)  # B c F h w
        for block in self.middle:
            x = block(x, cache)  # B c F h w
        for level in self.levels:
            for layer in level:
                x = layer(x, cache)  # B c' T' H' W'
        return self.conv_out(F.silu(self.norm_out(x)), cache)  # B 3 T H W


# ---------------------------------------------------------------------------------------------------------
# The grouped design: one latent frame from one group of frames, a thumbnail shortcut, learned residuals
# ---------------------------------------------------------------------------------------------------------


class ResBlock2d(nn.Module):
    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.norm1 = ChannelNorm(channels, eps)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = ChannelNorm(channels, eps)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x "N c H W" -> same."""
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


def thumbnails(groups: torch.Tensor, factor: int) -> torch.Tensor:
    """groups "N c H W" -> area averages over factor x factor pixels "N c H/f W/f" (the shortcut latent)."""
    return F.avg_pool2d(groups, factor)


def upsample_thumbnails(thumbs: torch.Tensor, factor: int) -> torch.Tensor:
    """thumbs "N c h w" -> bicubic upsampling "N c H W" (the shortcut decoder)."""
    return F.interpolate(thumbs, scale_factor=factor, mode="bicubic", align_corners=False)


class GroupEncoder(nn.Module):
    """A group of frames stacked on channels "N (g 3) H W" -> moments "N 2C h w".

    The mean is the group's thumbnails (first 3g channels; the other C - 3g start at zero) plus a learned
    residual whose output layer starts at zero, so a new encoder is exactly the thumbnail encoder. Every
    layer but the pixel-unshuffle stem works at H/2 or below: no convolution at full resolution.
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        in_channels = config.thumbnail_channels * 4  # after pixel-unshuffle by 2
        self.conv_in = nn.Conv2d(in_channels, config.channels(0), 3, padding=1)
        self.levels = nn.ModuleList()
        for level in range(config.spatial_levels - 1):  # H/2 -> H/s
            blocks = [ResBlock2d(config.channels(level), config.eps) for _ in range(config.num_res_blocks)]
            blocks.append(nn.Conv2d(config.channels(level), config.channels(level + 1), 3, 2, padding=1))
            self.levels.append(nn.Sequential(*blocks))
        deepest = config.channels(config.spatial_levels - 1)
        self.middle = nn.Sequential(*[ResBlock2d(deepest, config.eps) for _ in range(2)])
        self.norm_out = ChannelNorm(deepest, config.eps)
        self.conv_out = nn.Conv2d(deepest, 2 * config.latent_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        # posterior std starts at exp(-4) = 0.018, small against thumbnails in [-1, 1]
        nn.init.constant_(self.conv_out.bias[config.latent_channels :], -8.0)

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        """groups "N (g 3) H W" -> moments "N 2C h w"."""
        config = self.config
        x = self.conv_in(F.pixel_unshuffle(groups, 2))  # N c H/2 W/2
        for level in self.levels:
            x = level(x)  # N c' H' W'
        x = self.middle(x)  # N c h w
        residual_mean, logvar = self.conv_out(F.silu(self.norm_out(x))).chunk(2, dim=1)  # N C h w each
        shortcut = thumbnails(groups, config.spatial_factor)  # N 3g h w
        shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, config.latent_channels - shortcut.shape[1]))  # N C h w
        return torch.cat([shortcut + residual_mean, logvar], dim=1)  # N 2C h w


class GroupDecoder(nn.Module):
    """latents "N C h w" -> a group of frames "N (g 3) H W": bicubic upsampling of the thumbnail channels
    plus a learned residual (zero at initialisation). The last stage sees the upsampled thumbnails at H/2
    (pixel-unshuffled, so no pixel is lost) and predicts the residual as 4 sub-pixel planes."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        deepest = config.channels(config.spatial_levels - 1)
        self.conv_in = nn.Conv2d(config.latent_channels, deepest, 3, padding=1)
        self.middle = nn.Sequential(*[ResBlock2d(deepest, config.eps) for _ in range(2)])
        self.levels = nn.ModuleList()
        for level in reversed(range(config.spatial_levels - 1)):  # H/s -> H/2
            blocks = [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(config.channels(level + 1), config.channels(level), 3, padding=1),
            ]
            blocks += [ResBlock2d(config.channels(level), config.eps) for _ in range(config.num_res_blocks)]
            self.levels.append(nn.Sequential(*blocks))
        shortcut_channels = config.thumbnail_channels * 4
        self.merge = nn.Conv2d(config.channels(0) + shortcut_channels, config.channels(0), 3, padding=1)
        self.refine = ResBlock2d(config.channels(0), config.eps)
        self.norm_out = ChannelNorm(config.channels(0), config.eps)
        self.conv_out = nn.Conv2d(config.channels(0), shortcut_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """latents "N C h w" -> groups "N (g 3) H W"."""
        config = self.config
        base = upsample_thumbnails(latents[:, : config.thumbnail_channels], config.spatial_factor)  # N 3g H W
        x = self.middle(self.conv_in(latents))  # N c h w
        for level in self.levels:
            x = level(x)  # N c' H' W'
        x = self.merge(torch.cat([x, F.pixel_unshuffle(base, 2)], dim=1))  # N c H/2 W/2
        x = self.refine(x)
        residual = F.pixel_shuffle(self.conv_out(F.silu(self.norm_out(x))), 2)  # N 3g H W
        return base + residual


def _split_chunks(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Split "N ..." into pieces of `size` (0 = one piece): bounds activation memory of the grouped design."""
    if not isinstance(size, int) or size < 0:
        raise ConfigError(f"chunk must be a non-negative int (0 = whole clip at once), got {size!r}")
    return [x] if size == 0 else list(torch.split(x, size))


# ---------------------------------------------------------------------------------------------------------
# Posterior and the VAE
# ---------------------------------------------------------------------------------------------------------


class DiagonalGaussian:
    """The encoder's posterior: mean and logvar "B F C h w"."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean = mean
        self.logvar = logvar.clamp(-30.0, 20.0)  # keeps exp() finite (as in LDM)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std * noise, the noise drawn from `generator` (pass one for reproducible samples)."""
        noise = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL to N(0, I), averaged over every latent element: "B"."""
        kl = 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar)  # B F C h w
        return kl.flatten(1).mean(1)


def _stream_chunks(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Split "B c T H W" on time into the first step alone and then `size` steps at a time (0 = no split)."""
    if not isinstance(size, int) or size < 0:
        raise ConfigError(f"chunk must be a non-negative int (0 = whole clip at once), got {size!r}")
    if size == 0 or x.shape[2] <= 1:
        return [x]
    return [x[:, :, :1], *torch.split(x[:, :, 1:], size, dim=2)]


class VideoVAE(nn.Module):
    config_class = VAEConfig

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config.validate()
        grouped = config.design == "grouped"
        self.encoder = GroupEncoder(config) if grouped else Encoder(config)
        self.decoder = GroupDecoder(config) if grouped else Decoder(config)

    def check_frames(self, frames: torch.Tensor) -> None:
        config = self.config
        if frames.ndim != 5 or frames.shape[2] != config.image_channels:
            raise ConfigError(
                f"frames: expected shape (B, T, {config.image_channels}, H, W), got {tuple(frames.shape)}"
            )
        num_frames, height, width = frames.shape[1], frames.shape[3], frames.shape[4]
        stride = config.temporal_factor
        if (num_frames - 1) % stride:
            raise ConfigError(
                f"frames: {num_frames} frames is not of the form {stride}k+1; the causal VAE encodes the "
                f"first frame alone and then groups of {stride} (use e.g. {stride * 4 + 1} frames)"
            )
        if height % config.spatial_factor or width % config.spatial_factor:
            raise ConfigError(
                f"frames: size {height}x{width} is not divisible by the spatial factor "
                f"{config.spatial_factor}; crop or resize the video"
            )

    def encode(self, frames: torch.Tensor, chunk: int = 0) -> DiagonalGaussian:
        """frames "B T 3 H W" in [-1, 1], T = 4k+1 -> posterior over latents "B F C h w", F = k+1.

        chunk > 0 streams the clip through the encoder `chunk` latent frames at a time (the first frame
        alone, then groups of 4*chunk frames) with cached causal state: same result, activation memory
        bounded by the chunk instead of the clip. 0 = the whole clip at once.
        """
        self.check_frames(frames)
        if self.config.design == "grouped":
            return self._encode_groups(frames, chunk)
        video = rearrange(frames, "b t c hh ww -> b c t hh ww")  # B 3 T H W
        pieces = _stream_chunks(video, chunk * self.config.temporal_factor)
        cache = {} if len(pieces) > 1 else None
        moments = torch.cat([self.encoder(piece, cache) for piece in pieces], dim=2)  # B 2C F h w
        mean, logvar = rearrange(moments, "b (two c) f hh ww -> two b f c hh ww", two=2)  # B F C h w each
        return DiagonalGaussian(mean, logvar)

    def decode(self, latents: torch.Tensor, chunk: int = 0) -> torch.Tensor:
        """latents "B F C h w" -> frames "B T 3 H W", T = 4(F-1)+1 (unclamped; roughly [-1, 1]).

        chunk > 0 streams `chunk` latent frames at a time (after the first alone), as in encode.
        """
        if latents.ndim != 5 or latents.shape[2] != self.config.latent_channels:
            raise ConfigError(
                f"latents: expected shape (B, F, {self.config.latent_channels}, h, w), "
                f"got {tuple(latents.shape)}"
            )
        if self.config.design == "grouped":
            return self._decode_groups(latents, chunk)
        pieces = _stream_chunks(rearrange(latents, "b f c hh ww -> b c f hh ww"), chunk)
        cache = {} if len(pieces) > 1 else None
        frames = torch.cat([self.decoder(piece, cache) for piece in pieces], dim=2)  # B 3 T H W
        return rearrange(frames, "b c t hh ww -> b t c hh ww")  # B T 3 H W

    # The grouped design: latent frame 0 is frame 0 repeated temporal_factor times (so one network serves
    # every group), latent frame j >= 1 is frames 4j-3 .. 4j. Groups are independent, so they are batched.

    def _encode_groups(self, frames: torch.Tensor, chunk: int) -> DiagonalGaussian:
        group = self.config.temporal_factor
        first = repeat(frames[:, :1], "b one c hh ww -> b one (g c) hh ww", g=group)  # B 1 3g H W
        rest = rearrange(frames[:, 1:], "b (f g) c hh ww -> b f (g c) hh ww", g=group)  # B F-1 3g H W
        groups = rearrange(torch.cat([first, rest], dim=1), "b f gc hh ww -> (b f) gc hh ww")  # BF 3g H W
        moments = torch.cat([self.encoder(piece) for piece in _split_chunks(groups, chunk)])  # BF 2C h w
        mean, logvar = rearrange(
            moments, "(b f) (two c) hh ww -> two b f c hh ww", b=frames.shape[0], two=2
        )  # B F C h w each
        return DiagonalGaussian(mean, logvar)

    def _decode_groups(self, latents: torch.Tensor, chunk: int) -> torch.Tensor:
        flat = rearrange(latents, "b f c hh ww -> (b f) c hh ww")  # BF C h w
        groups = torch.cat([self.decoder(piece) for piece in _split_chunks(flat, chunk)])  # BF 3g H W
        groups = rearrange(
            groups, "(b f) (g c) hh ww -> b f g c hh ww", b=latents.shape[0], g=self.config.temporal_factor
        )  # B F g 3 H W
        first = groups[:, 0, -1:]  # B 1 3 H W: the last copy of frame 0
        rest = rearrange(groups[:, 1:], "b f g c hh ww -> b (f g) c hh ww")  # B 4(F-1) 3 H W
        return torch.cat([first, rest], dim=1)  # B T 3 H W

    def forward(self, frames: torch.Tensor, generator: torch.Generator | None = None):
        """Reconstruction "B T 3 H W" of a posterior sample, and the posterior (for the KL term)."""
        posterior = self.encode(frames)
        return self.decode(posterior.sample(generator)), posterior

    # The world model works on normalised latents.

    def _normalization(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        channels = self.config.latent_channels
        shift = self.config.latent_shift or (0.0,) * channels
        scale = self.config.latent_scale or (1.0,) * channels
        as_tensor = lambda values: torch.tensor(values, dtype=latents.dtype, device=latents.device)  # noqa: E731
        return as_tensor(shift)[:, None, None], as_tensor(scale)[:, None, None]  # C 1 1 each

    def normalize(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE latents "B F C h w" -> the world model's latents: (latents - shift) * scale per channel."""
        shift, scale = self._normalization(latents)
        return (latents - shift) * scale

    def denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        """Inverse of normalize."""
        shift, scale = self._normalization(latents)
        return latents / scale + shift

    def set_latent_normalization(self, shift, scale) -> None:
        """Store per-channel shift and scale (C floats each) in the config, so checkpoints keep them."""
        self.config = dataclasses.replace(
            self.config,
            latent_shift=tuple(float(value) for value in shift),
            latent_scale=tuple(float(value) for value in scale),
        ).validate()


def fit_latent_normalization(latents: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (shift, scale) = (mean, 1/std) of latents "B F C h w", so normalised latents have zero
    mean and unit variance per channel (Wan2.1 normalises its VAE latents the same way)."""
    per_channel = rearrange(latents.detach().double(), "b f c hh ww -> c (b f hh ww)")  # C M
    mean = per_channel.mean(1)
    std = per_channel.std(1).clamp_min(1e-6)
    return tuple(mean.tolist()), tuple((1.0 / std).tolist())


# ---------------------------------------------------------------------------------------------------------
# Size presets
# ---------------------------------------------------------------------------------------------------------

VAE_PRESETS: dict[str, dict] = {
    # Tests: seconds on a CPU.
    "tiny": dict(latent_channels=4, base_channels=16, channel_multipliers=(1, 2, 2, 2), num_res_blocks=1),
    # CPU training.
    "small": dict(latent_channels=8, base_channels=48, channel_multipliers=(1, 2, 2, 4), num_res_blocks=1),
    # One GPU; Wan2.1's VAE widths (96 x (1, 2, 4, 4)) and 16 latent channels.
    "base": dict(latent_channels=16, base_channels=96, channel_multipliers=(1, 2, 4, 4), num_res_blocks=2),
    # Grouped design (bounded temporal receptive field, thumbnail shortcut), f8 and 16 latent channels:
    # 12 thumbnail channels (4 frames x RGB) + 4 learned, 48x fewer numbers than the video, as Wan2.1's VAE.
    # Tests and the smoke budget.
    "grouped-tiny": dict(
        design="grouped", latent_channels=16, base_channels=8, channel_multipliers=(1, 2, 2), num_res_blocks=1
    ),
    # The cpu reference run.
    "grouped-compact": dict(
        design="grouped",
        latent_channels=16,
        base_channels=32,
        channel_multipliers=(1, 2, 4),
        num_res_blocks=1,
    ),
    # One GPU.
    "grouped-base": dict(
        design="grouped",
        latent_channels=16,
        base_channels=64,
        channel_multipliers=(1, 2, 4),
        num_res_blocks=2,
    ),
}


def vae_config(preset: str, **overrides) -> VAEConfig:
    """The config of a named preset with fields replaced by `overrides`."""
    check_choice(preset, VAE_PRESETS, "VAE preset", "presets")
    return VAEConfig.from_dict({**VAE_PRESETS[preset], **overrides})


def build_vae(preset: str, **overrides) -> VideoVAE:
    """A new VideoVAE of a named preset: build_vae("tiny", spatial_factor=4)."""
    return VideoVAE(vae_config(preset, **overrides))


def vae_step_bytes(preset: str, batch_size: int, frames: int, height: int, width: int) -> float:
    """Lower bound of the memory a VAE training step needs: the input batch plus the first convolution's
    activations at full resolution, kept for backward, in fp32 (hybridmem.device.check_memory compares it
    with the device before anything is allocated)."""
    config = vae_config(preset)  # an unknown preset: ConfigError listing the valid ones
    return 4.0 * batch_size * frames * height * width * (config.image_channels + config.base_channels)
