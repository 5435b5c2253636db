"""The official HyDRA DiT as a hybridmem WorldModel: its configuration, its key layout, its files.

The official model is DiffSynth's WanModel (Wan2.1-T2V-1.3B) with, in every block, a memory tokenizer
(`self_attn.tokenizer.conv`), two camera encoders (`cam_encoder_con`, `cam_encoder_tgt`) and a projector on
the self-attention output (`projector`). It is our WorldModel with four choices set the official way
(`official_dit_config`): the context shares the target's timestep embedding, Wan's head, the affinity
before RoPE, and the official memory-token positions.

    config = official_dit_config(**WAN_T2V_1_3B)              # = dit_config("hydra-official")
    model = load_official_dit(["hydra.pth"], config)          # strict: every key, every shape

Key layout (official -> ours), the whole difference between the two state dicts:
    text_embedding.{0,2}            -> caption_embedding.{0,2}
    time_embedding.{0,2}            -> time_embedder.mlp.{0,2}
    blocks.N.modulation [1, 6, D]   -> blocks.N.modulation [6, D]
    blocks.N.self_attn.tokenizer    -> blocks.N.memory.tokenizer
    blocks.N.cam_encoder_con / _tgt -> blocks.N.context_camera_encoder / target_camera_encoder
    blocks.N.projector              -> blocks.N.camera_projector
    head.head                       -> final_layer.linear
    head.modulation [1, 2, D]       -> final_layer.modulation [2, D]
everything else (patch_embedding, time_projection, blocks.N.self_attn.{q,k,v,o,norm_q,norm_k},
blocks.N.cross_attn.*, blocks.N.norm3, blocks.N.ffn) has the same name and shape.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from hybridmem.errors import CheckpointError, ConfigError

# Wan2.1-T2V-1.3B's WanModel arguments (its config.json; the released HyDRA model adds the memory).
WAN_T2V_1_3B = dict(
    dim=1536,
    in_dim=16,
    ffn_dim=8960,
    out_dim=16,
    text_dim=4096,
    freq_dim=256,
    eps=1e-6,
    patch_size=(1, 2, 2),
    num_heads=12,
    num_layers=30,
)


# (pattern on an official key, replacement giving ours, shape of ours or None for unchanged)
_RENAMES = (
    (r"^text_embedding\.", "caption_embedding.", None),
    (r"^time_embedding\.", "time_embedder.mlp.", None),
    (r"^(blocks\.\d+)\.modulation$", r"\1.modulation", "squeeze"),
    (r"^(blocks\.\d+)\.self_attn\.tokenizer\.", r"\1.memory.tokenizer.", None),
    (r"^(blocks\.\d+)\.cam_encoder_con\.", r"\1.context_camera_encoder.", None),
    (r"^(blocks\.\d+)\.cam_encoder_tgt\.", r"\1.target_camera_encoder.", None),
    (r"^(blocks\.\d+)\.projector\.", r"\1.camera_projector.", None),
    (r"^head\.head\.", "final_layer.linear.", None),
    (r"^head\.modulation$", "final_layer.modulation", "squeeze"),
)
_REVERSE = (
    (r"^caption_embedding\.", "text_embedding."),
    (r"^time_embedder\.mlp\.", "time_embedding."),
    (r"^(blocks\.\d+)\.memory\.tokenizer\.", r"\1.self_attn.tokenizer."),
    (r"^(blocks\.\d+)\.context_camera_encoder\.", r"\1.cam_encoder_con."),
    (r"^(blocks\.\d+)\.target_camera_encoder\.", r"\1.cam_encoder_tgt."),
    (r"^(blocks\.\d+)\.camera_projector\.", r"\1.projector."),
    (r"^final_layer\.linear\.", "head.head."),
    (r"^final_layer\.modulation$", "head.modulation"),
)


def official_dit_config(
    dim: int,
    in_dim: int,
    ffn_dim: int,
    out_dim: int,
    text_dim: int,
    freq_dim: int,
    eps: float,
    patch_size,
    num_heads: int,
    num_layers: int,
    has_image_input: bool = False,
    hydra: bool = True,
):
    """The DiTConfig that computes what the official WanModel (+ HyDRA) with these arguments computes.

    The arguments are WanModel's (its config.json); hydra=False is plain Wan2.1 (full attention, the
    camera encoders and projector still present, as the official code attaches them to every block).
    """
    from hybridmem.models.world import OFFICIAL_CHOICES, DiTConfig

    if has_image_input:
        raise ConfigError(
            "official_dit_config: has_image_input=True is Wan2.1's image-to-video model; HyDRA is built on "
            "the text-to-video model (has_image_input=False)"
        )
    if in_dim != out_dim:
        raise ConfigError(
            f"official_dit_config: in_dim={in_dim} and out_dim={out_dim} must be equal (the latent channels)"
        )
    choices = dict(OFFICIAL_CHOICES)
    if not hydra:
        choices["memory"] = dict(kind="full")
    return DiTConfig.from_dict(
        dict(
            latent_channels=in_dim,
            dim=dim,
            num_layers=num_layers,
            num_heads=num_heads,
            ffn_dim=ffn_dim,
            patch_size=tuple(int(size) for size in patch_size),
            caption_dim=text_dim,
            frequency_dim=freq_dim,
            eps=float(eps),
            **choices,
        )
    )


def time_from_official(timestep):
    """The official DiT's timestep "B" (1000 sigma, float32) -> our t "B" (the model embeds 1000 t).

    t is the float32 whose product with 1000 (in float32, as our embedding computes it) is exactly the
    official timestep, found among the few floats around timestep / 1000 (the nearest when none is exact),
    so both models embed the same number.
    """
    import torch

    timestep = torch.as_tensor(timestep, dtype=torch.float32)
    guess = timestep / 1000
    candidates = [guess]
    up, down = guess, guess
    for _ in range(4):
        up = torch.nextafter(up, torch.full_like(up, float("inf")))
        down = torch.nextafter(down, torch.full_like(down, float("-inf")))
        candidates += [up, down]
    stacked = torch.stack(candidates)  # candidates B
    errors = (stacked * 1000 - timestep).abs()
    return stacked.gather(0, errors.argmin(dim=0, keepdim=True))[0]


# ---------------------------------------------------------------------------------------------------------
# Key maps
# ---------------------------------------------------------------------------------------------------------


def our_key(official_key: str) -> tuple[str, bool]:
    """(our name of an official key, whether its leading axis of size 1 is dropped)."""
    for pattern, replacement, shape in _RENAMES:
        if re.search(pattern, official_key):
            return re.sub(pattern, replacement, official_key), shape == "squeeze"
    return official_key, False


def official_key(our_name: str) -> str:
    """The official name of one of our keys (the inverse of `our_key`)."""
    for pattern, replacement in _REVERSE:
        if re.search(pattern, our_name):
            return re.sub(pattern, replacement, our_name)
    return our_name


def to_official_state(state: dict) -> dict:
    """Our WorldModel state dict -> the official layout (modulation tables get their leading 1 back)."""
    official = {}
    for name, tensor in state.items():
        key = official_key(name)
        official[key] = tensor[None] if our_key(key)[1] else tensor
    return official


def from_official_state(official: dict, expected: dict, source: str) -> dict:
    """An official state dict -> ours, checked key by key against `expected` (our model's state_dict).

    Raises CheckpointError naming the missing keys, the unexpected ones and wrong shapes (official names,
    since that is what the file holds) and `source`, the file(s) they came from.
    """
    converted, unexpected, wrong_shape, seen = {}, [], [], set()
    for key, tensor in official.items():
        name, squeeze = our_key(key)
        if name not in expected:
            unexpected.append(key)
            continue
        seen.add(name)
        if squeeze and tensor.ndim >= 1 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tuple(tensor.shape) != tuple(expected[name].shape):
            want = tuple(expected[name].shape)
            if squeeze:
                want = (1, *want)
            wrong_shape.append(f"{key} {tuple(official[key].shape)} (expected {want})")
            continue
        converted[name] = tensor
    missing = [official_key(name) for name in expected if name not in seen]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listed(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listed(unexpected)}")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} key(s) of the wrong shape: {_listed(wrong_shape)}")
    if problems:
        raise CheckpointError(
            f"{source}: not the official HyDRA/Wan2.1 DiT this config describes: {'; '.join(problems)}. "
            "Check that the files are Wan2.1-T2V-1.3B's diffusion_pytorch_model*.safetensors plus the "
            "released hydra.pth/hydra.ckpt (or pass hydra=False for plain Wan2.1)"
        )
    return converted


def _listed(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


# ---------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------


def read_state_dict(path: str | os.PathLike) -> dict:
    """Tensors of one checkpoint file, on the CPU, in their stored dtype (bf16, fp32 or mixed).

    `.safetensors` (one file), `.safetensors.index.json` (shards named by its weight_map, beside it), or a
    torch file (`.pth`, `.ckpt`, `.pt`: a bare state dict or one wrapped in "state_dict"), read with
    weights_only (no code runs) and mmap (tensors stay on disk until used).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such file; pass the path of a local checkpoint (nothing is downloaded)"
        )
    name = path.name
    if name.endswith(".safetensors.index.json"):
        return _read_sharded(path)
    if name.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
    try:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            # files written by torch < 1.6 (not a zip archive) cannot be memory-mapped; same tensors
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - pickle, zip and torch errors all mean "not a checkpoint"
        raise CheckpointError(
            f"{path}: cannot be read as a torch checkpoint ({type(error).__name__}: {str(error)[:200]})"
        ) from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        raise CheckpointError(
            f"{path}: expected a state dict (names -> tensors), bare or under 'state_dict'; got "
            f"{type(loaded).__name__}"
        )
    return loaded


def _read_sharded(index_path: Path) -> dict:
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"{index_path}: not a safetensors index (expected a JSON object with 'weight_map'): {error}"
        ) from None
    state = {}
    for shard in sorted(set(weight_map.values())):
        shard_state = read_state_dict(index_path.parent / shard)
        for key, tensor in shard_state.items():
            if weight_map.get(key) == shard:
                state[key] = tensor
    absent = sorted(set(weight_map) - set(state))
    if absent:
        raise CheckpointError(f"{index_path}: key(s) listed but absent from their shard: {_listed(absent)}")
    return state


def read_official_states(paths) -> tuple[dict, str]:
    """Merge the files in order (a later file replaces an earlier one's keys, as hydra.pth replaces the
    Wan2.1 weights it fine-tuned); returns the merged state and the files' names for errors."""
    paths = [Path(path) for path in paths]
    if not paths:
        raise CheckpointError("no DiT weight files given; pass hydra.pth (and Wan2.1's DiT safetensors)")
    state = {}
    for path in paths:
        state.update(read_state_dict(path))
    return state, " + ".join(str(path) for path in paths)


def load_official_dit(paths, config, dtype=None, device="cpu"):
    """A WorldModel with `config` (official_dit_config) holding the official weights from `paths`.

    paths: the files in load order (Wan2.1's `diffusion_pytorch_model*.safetensors` or its index, then
    `hydra.pth`/`hydra.ckpt`; the released hydra.pth alone is complete). dtype: the model's dtype (default
    float32; the weights are cast). Strict: a missing, unexpected or misshapen key is a CheckpointError.
    """
    import torch

    from hybridmem.models.world import WorldModel

    state, source = read_official_states(paths)
    with torch.device("meta"):
        model = WorldModel(config)
    ours = from_official_state(state, model.state_dict(), source)
    model = model.to_empty(device=device)
    model.load_state_dict(ours, strict=True)
    model = model.to(dtype or torch.float32)
    return model.eval()
