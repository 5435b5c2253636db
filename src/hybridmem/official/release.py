"""The released files, found in a local folder: what `--official DIR` points at.

The official README's layout (ckpts/ holding the Wan2.1-T2V-1.3B folder and hydra.pth or hydra.ckpt):

    DIR/                                     # or DIR = the Wan2.1-T2V-1.3B folder itself, with hydra.* inside
      hydra.pth | hydra.ckpt                 # HyDRA's fine-tuned DiT: a full state dict (1065 keys)
      Wan2.1-T2V-1.3B/
        config.json                          # WanModel's arguments (dim, num_heads, ...)
        diffusion_pytorch_model.safetensors  # or its .safetensors.index.json and shards: Wan2.1's DiT
        Wan2.1_VAE.pth
        models_t5_umt5-xxl-enc-bf16.pth
        google/umt5-xxl/                     # the tokenizer (tokenizer.json)

Without hydra.* the folder is plain Wan2.1 (the starting point of fine-tuning): its DiT gets the HyDRA
modules initialised as the official build_pipeline does (camera encoders zero, projector identity). Models of
other sizes (tests) may add `vae_config.json` and `t5_config.json` in the layout of
tests/fixtures/official_hydra; the release has neither, and Wan2.1's sizes apply.

    release = find_release("ckpts")
    print(release.describe())
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hybridmem.errors import CheckpointError

WAN_FOLDER = "Wan2.1-T2V-1.3B"
HYDRA_NAMES = ("hydra.pth", "hydra.ckpt")
DIT_NAMES = ("diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.safetensors")
VAE_NAME = "Wan2.1_VAE.pth"
TEXT_ENCODER_NAME = "models_t5_umt5-xxl-enc-bf16.pth"
TOKENIZER_FOLDER = "google/umt5-xxl"
# WanModel config.json keys that are WanModel arguments (the others, such as model_type, text_len, are not)
WAN_ARGUMENTS = (
    "dim",
    "in_dim",
    "ffn_dim",
    "out_dim",
    "text_dim",
    "freq_dim",
    "eps",
    "patch_size",
    "num_heads",
    "num_layers",
)


@dataclass
class OfficialRelease:
    """Where each released file is, and the sizes of the models they hold."""

    folder: Path
    hydra_file: Path | None  # None: plain Wan2.1
    wan_dit_file: Path | None  # None when hydra.* alone is given (it is complete)
    vae_file: Path
    text_encoder_file: Path
    tokenizer_folder: Path
    dit_arguments: dict  # WanModel's arguments
    vae_config: object = None  # hybridmem.official.vae.WanVAEConfig
    text_config: object = None  # hybridmem.official.text.WanT5Config
    sources: dict = field(default_factory=dict)  # what each size came from, for describe()

    @property
    def hydra(self) -> bool:
        return self.hydra_file is not None

    def dit_files(self) -> list[Path]:
        """The DiT's files in load order (later files replace earlier keys): Wan2.1's, then HyDRA's."""
        return [path for path in (self.wan_dit_file, self.hydra_file) if path is not None]

    def dit_config(self):
        from hybridmem.official.dit import official_dit_config

        return official_dit_config(**self.dit_arguments, hydra=self.hydra)

    def describe(self) -> list[str]:
        lines = [f"official release in {self.folder}:"]
        lines.append(f"  DiT: {' + '.join(str(path) for path in self.dit_files())} ({self.sources['dit']})")
        lines.append(f"  VAE: {self.vae_file} ({self.sources['vae']})")
        lines.append(f"  text encoder: {self.text_encoder_file} ({self.sources['text']})")
        lines.append(f"  tokenizer: {self.tokenizer_folder}")
        return lines


def _first(folder: Path, names) -> Path | None:
    for name in names:
        if (folder / name).exists():
            return folder / name
    return None


def _required(path: Path, what: str, release: Path) -> Path:
    if not path.exists():
        raise CheckpointError(
            f"--official {release}: {path} is missing ({what}); the folder should hold the released "
            f"Wan2.1-T2V-1.3B files (see `hybridmem sample --help`, 'The paper's model' in the README)"
        )
    return path


def find_release(folder: str | Path) -> OfficialRelease:
    """The released files in `folder` (module docstring); CheckpointError naming what is missing."""
    from hybridmem.jsonio import read_json
    from hybridmem.official.dit import WAN_T2V_1_3B
    from hybridmem.official.text import UMT5_XXL_CONFIG, WanT5Config
    from hybridmem.official.vae import WAN21_VAE_CONFIG, WanVAEConfig

    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"--official {folder}: no such folder; pass the folder of the released files")
    wan = folder / WAN_FOLDER if (folder / WAN_FOLDER).is_dir() else folder
    hydra = _first(folder, HYDRA_NAMES) or _first(wan, HYDRA_NAMES)
    wan_dit = _first(wan, DIT_NAMES)
    if hydra is None and wan_dit is None:
        raise CheckpointError(
            f"--official {folder}: neither {' / '.join(HYDRA_NAMES)} nor Wan2.1's "
            f"{DIT_NAMES[1]} is here or in {wan}; pass the folder that holds them"
        )
    sources = {}
    config_path = wan / "config.json"
    if config_path.is_file():
        record = read_json(config_path, fix="restore the Wan2.1-T2V-1.3B folder's config.json")
        arguments = {name: record[name] for name in WAN_ARGUMENTS if name in record}
        arguments = {**WAN_T2V_1_3B, **arguments}
        sources["dit"] = f"sizes from {config_path}"
    else:
        arguments = dict(WAN_T2V_1_3B)
        sources["dit"] = "Wan2.1-T2V-1.3B's sizes (no config.json)"
    vae_config, text_config = WAN21_VAE_CONFIG, UMT5_XXL_CONFIG
    sources["vae"] = sources["text"] = "Wan2.1's sizes"
    if (wan / "vae_config.json").is_file():
        record = read_json(wan / "vae_config.json")
        vae_config = WanVAEConfig.from_official_kwargs(
            record["inner_kwargs"], record.get("latents_mean"), record.get("latents_std")
        )
        sources["vae"] = f"sizes from {wan / 'vae_config.json'}"
    if (wan / "t5_config.json").is_file():
        record = read_json(wan / "t5_config.json")
        text_config = WanT5Config.from_official_kwargs(
            record["kwargs"], record.get("relative_attention_max_distance", 128)
        )
        sources["text"] = f"sizes from {wan / 't5_config.json'}"
    return OfficialRelease(
        folder=folder,
        hydra_file=hydra,
        wan_dit_file=None if hydra is not None and _complete(hydra, arguments) else wan_dit,
        vae_file=_required(wan / VAE_NAME, "the Wan2.1 VAE", folder),
        text_encoder_file=_required(wan / TEXT_ENCODER_NAME, "the umT5-xxl text encoder", folder),
        tokenizer_folder=_required(wan / TOKENIZER_FOLDER, "the umT5 tokenizer folder", folder),
        dit_arguments=arguments,
        vae_config=vae_config,
        text_config=text_config,
        sources=sources,
    )


def _complete(hydra_file: Path, arguments: dict) -> bool:
    """Whether the HyDRA file holds every key of the official DiT (the released hydra.pth does), so
    Wan2.1's DiT file need not be read at all."""
    import torch

    from hybridmem.models.world import WorldModel
    from hybridmem.official.dit import official_dit_config, to_official_state
    from hybridmem.official.files import read_state_dict

    with torch.device("meta"):
        expected = to_official_state(WorldModel(official_dit_config(**arguments)).state_dict())
    return set(expected) <= set(read_state_dict(hydra_file))


HYDRA_MODULE_KEYS = ("self_attn.tokenizer.", "cam_encoder_con.", "cam_encoder_tgt.", "projector.")


def load_release_dit(release: OfficialRelease, hydra: bool | None = None, dtype=None, device="cpu"):
    """The DiT of a release as a WorldModel in `dtype` on `device`.

    With hydra.*: the paper's model (strict). Plain Wan2.1 (no hydra.*): Wan2.1's weights with the HyDRA
    modules new, as the official build_pipeline attaches them (camera encoders zero, projector identity, so
    the model is exactly Wan2.1 until trained), the memory tokenizer starting as average pooling (ours;
    the official code leaves PyTorch's random Conv3d init); hydra=False then gives full attention (Wan2.1
    itself), hydra=True HyDRA's attention (the start of fine-tuning).
    """
    import dataclasses

    import torch

    from hybridmem.models.world import WorldModel
    from hybridmem.official.dit import from_official_state, load_official_dit, official_key
    from hybridmem.official.files import read_official_states

    config = release.dit_config()
    if hydra is None:
        hydra = release.hydra
    if release.hydra:
        if not hydra:
            raise CheckpointError(
                f"{release.hydra_file}: is HyDRA's DiT; it cannot be loaded without its memory"
            )
        return load_official_dit(release.dit_files(), config, dtype=dtype, device=device)
    if hydra:
        from hybridmem.models.world import OFFICIAL_CHOICES

        config = dataclasses.replace(config, memory=type(config.memory)(**OFFICIAL_CHOICES["memory"]))
    state, source = read_official_states(release.dit_files())
    model = WorldModel(config)  # initialised: the HyDRA modules' starting values
    fresh = model.state_dict()
    expected = {
        name: tensor
        for name, tensor in fresh.items()
        if not any(part in official_key(name) for part in HYDRA_MODULE_KEYS)
    }
    model.load_state_dict({**fresh, **from_official_state(state, expected, source)}, strict=True)
    return model.to(device=device, dtype=dtype or torch.float32).eval()


def release_identity(folder: str | Path) -> dict:
    """What results made from a release depend on, cheaply: its files' paths, sizes and modification times
    (hashing 15 GB of weights for every evaluation would cost minutes). A replaced file changes it."""
    release = find_release(folder)
    files = [*release.dit_files(), release.vae_file, release.text_encoder_file]
    files += sorted(path for path in release.tokenizer_folder.rglob("*") if path.is_file())
    return {
        "path": str(Path(folder).resolve()),
        "files": {str(path.resolve()): [path.stat().st_size, path.stat().st_mtime_ns] for path in files},
    }
