"""What a sampling run will need, known before any weight is loaded: sizes, lengths and memory.

    info = read_model_info("src/hybridmem/assets/checkpoints/hydra", "src/hybridmem/assets/checkpoints/vae")
    info.training_size          # (128, 128) and info.training_size_source: where that came from
    need = estimate_peak_bytes(info, input_shape=(77, 480, 832), context=77, target=77, width=128, height=128)

Only the two config.json files are read (models.checkpoint.read_config), plus, for the training size, the
exported folder's manifest.json or the training run's latent cache header. The memory estimate is a
deliberately simple upper-bound model (constants measured on the shipped CPU models; see
MEASURED_* below); it exists to refuse a run that cannot fit before minutes of set-up, not to be exact.
The command compares it with the device through hybridmem.device.check_memory, the one memory check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hybridmem import jsonio
from hybridmem.errors import CheckpointError, ConfigError, DataError

GIB = 1024**3
# Measured (2-core CPU, float32, shipped compact/tiny models, `hybridmem sample` peak RSS): the VAE keeps
# about this many float32 values per pixel-frame per base channel alive at its full-resolution levels, and
# the DiT this many per token per model width; the process itself (torch, weights, codecs) this many bytes.
MEASURED_VAE_VALUES_PER_VOXEL_CHANNEL = 10.0
MEASURED_DIT_VALUES_PER_TOKEN_WIDTH = 12.0
MEASURED_BASE_BYTES = 0.6 * GIB


@dataclass
class ModelInfo:
    world_folder: Path
    vae_folder: Path
    world: dict  # WorldConfig as saved
    vae: dict  # VAEConfig as saved
    training_size: tuple[int, int] | None  # (width, height) the world model was trained at, when recorded
    training_size_source: str

    @property
    def temporal_stride(self) -> int:
        return int(self.vae["temporal_factor"])

    @property
    def pixel_multiple(self) -> tuple[int, int]:
        """(x, y): frame sizes must be multiples of these (VAE factor times DiT patch)."""
        factor = int(self.vae["spatial_factor"])
        _, rows, cols = self.world["patch_size"]
        return factor * int(cols), factor * int(rows)


def read_model_info(checkpoint: str | Path, vae: str | Path, ema: bool = True) -> ModelInfo:
    from hybridmem.models.checkpoint import read_config
    from hybridmem.runfolder import resolve_model_folder

    world_folder, vae_folder = resolve_model_folder(checkpoint, ema=ema), resolve_model_folder(vae)
    world_class, world = read_config(world_folder)
    vae_class, vae_config = read_config(vae_folder)
    if world_class != "WorldModel":
        raise CheckpointError(f"{world_folder}: holds a {world_class}, not a WorldModel (--checkpoint)")
    if vae_class != "VideoVAE":
        raise CheckpointError(f"{vae_folder}: holds a {vae_class}, not a VideoVAE (--vae)")
    size, source = training_size(world_folder, int(vae_config["spatial_factor"]))
    return ModelInfo(world_folder, vae_folder, world, vae_config, size, source)


def _size_from(record: dict) -> tuple[int, int] | None:
    width, height = record.get("width"), record.get("height")
    if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        return width, height
    return None


def training_size(world_folder: Path, spatial_factor: int) -> tuple[tuple[int, int] | None, str]:
    """(width, height) the world model was trained at, and where it was read; (None, why) if unrecorded."""
    # 1. an exported checkpoint folder (hybridmem recipe export): manifest.json beside the model folders
    for manifest in (world_folder / "manifest.json", world_folder.parent / "manifest.json"):
        if manifest.exists():
            data = jsonio.read_json(manifest, fix="export the run again").get("data", {})
            if not isinstance(data, dict):
                raise DataError(f"{manifest}: field 'data' must be an object; export the run again")
            size = _size_from(data)
            if size is not None:
                return size, f"{manifest} (data.width/height)"
    # 2. a training run: train_config.json names the latent cache, whose clips hold the latent grid
    for run in [world_folder, *list(world_folder.parents)[:3]]:
        config_path = run / "train_config.json"
        if not config_path.is_file():
            continue
        record = jsonio.read_json(config_path)
        try:
            cache = Path(record["cache"])
            clip_file = next(iter(sorted((cache / "clips").glob("*.safetensors"))), None)
            if clip_file is not None:
                from safetensors import safe_open

                with safe_open(str(clip_file), framework="pt") as tensors:
                    *_, height, width = tensors.get_slice("context_latents").get_shape()
                return (width * spatial_factor, height * spatial_factor), f"{clip_file} (its training cache)"
        except (OSError, KeyError, TypeError, ValueError):
            pass
        return None, f"not recorded ({config_path} names no readable latent cache)"
    return None, "not recorded (a bare model folder)"


def latent_frames(frames: int, stride: int) -> int:
    return (frames - 1) // stride + 1


def estimate_peak_bytes(
    info: ModelInfo,
    input_shape: tuple[int, int, int],
    context: int,
    target: int,
    width: int,
    height: int,
    segment_frames: int | None = None,
    truth: bool = False,
) -> int:
    """Upper-bound estimate of a sampling run's peak memory in bytes (see the module docstring).

    input_shape: (frames, height, width) of the video as decoded, before resizing.
    """
    stride = info.temporal_stride
    pixels = width * height
    # 1. videos held as uint8: the decoded input (twice while stacking), fitted copies, output, side-by-side;
    # and the float copy the resize works on (hybridmem.data.inputs.resize_working_bytes)
    from hybridmem.data.inputs import resize_working_bytes

    input_frames, input_height, input_width = input_shape
    video = (
        2 * input_frames * input_height * input_width * 3
        + (context + target * (2 + 3 * truth)) * pixels * 3
        + resize_working_bytes(input_height, input_width, width, height, input_frames)
    )
    # 2. VAE activations at full resolution, for the longest segment encoded or decoded at once
    segment = min(target, segment_frames) if segment_frames else target
    vae_values = (
        MEASURED_VAE_VALUES_PER_VOXEL_CHANNEL * int(info.vae["base_channels"]) * max(context, segment)
    )
    vae = 4 * vae_values * pixels
    # 3. DiT: activations of every token, plus one attention chunk's scores
    _, patch_rows, patch_cols = info.world["patch_size"]
    factor = int(info.vae["spatial_factor"])
    tokens_per_frame = (height // factor // patch_rows) * (width // factor // patch_cols)
    memory_frames = latent_frames(context, stride) + (latent_frames(target, stride) if segment_frames else 0)
    frames = memory_frames + latent_frames(segment, stride)
    tokens = frames * tokens_per_frame
    width_values = max(int(info.world["dim"]), int(info.world["ffn_dim"]))
    activations = 4 * MEASURED_DIT_VALUES_PER_TOKEN_WIDTH * tokens * width_values
    chunk = int(info.world.get("memory", {}).get("query_chunk", 0) or 0) or frames
    scores = 2 * 4 * int(info.world["num_heads"]) * min(chunk, frames) * tokens_per_frame * tokens
    return int(video + vae + activations + scores + MEASURED_BASE_BYTES)


def check_size(info: ModelInfo, width: int, height: int, flag: str) -> None:
    multiple_x, multiple_y = info.pixel_multiple
    if width % multiple_x or height % multiple_y:
        fit_w = max(multiple_x, width // multiple_x * multiple_x)
        fit_h = max(multiple_y, height // multiple_y * multiple_y)
        raise ConfigError(
            f"{flag} {width}x{height}: width must be a multiple of {multiple_x} and height of {multiple_y} "
            f"(VAE factor times DiT patch); for example --size {fit_w}x{fit_h}"
        )
