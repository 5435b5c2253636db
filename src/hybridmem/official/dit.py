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

import re

from hybridmem.errors import ConfigError
from hybridmem.models.checkpoint import check_state_matches
from hybridmem.official.files import read_official_states
from hybridmem.official.files import read_state_dict as read_state_dict  # re-exported: release.py uses it

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


# (official name, our name, whether ours drops the official leading axis of size 1): each a prefix of the
# key ("blocks.N." any block), or with "$" the whole key. Keys no entry matches are the same in both.
_RENAMES = (
    ("text_embedding.", "caption_embedding.", False),
    ("time_embedding.", "time_embedder.mlp.", False),
    ("blocks.N.modulation$", "blocks.N.modulation$", True),
    ("blocks.N.self_attn.tokenizer.", "blocks.N.memory.tokenizer.", False),
    ("blocks.N.cam_encoder_con.", "blocks.N.context_camera_encoder.", False),
    ("blocks.N.cam_encoder_tgt.", "blocks.N.target_camera_encoder.", False),
    ("blocks.N.projector.", "blocks.N.camera_projector.", False),
    ("head.head.", "final_layer.linear.", False),
    ("head.modulation$", "final_layer.modulation$", True),
)


def _pattern(name: str) -> str:
    """The regex of a _RENAMES name: anchored at the start, "blocks.N." capturing the block."""
    body = re.escape(name.removesuffix("$")).replace(re.escape("blocks.N."), r"(blocks\.\d+)\.")
    return "^" + body + ("$" if name.endswith("$") else "")


def _replacement(name: str) -> str:
    return name.removesuffix("$").replace("blocks.N.", r"\1.")


# both directions from the one table: (pattern, replacement[, squeeze])
_TO_OURS = tuple((_pattern(official), _replacement(ours), squeeze) for official, ours, squeeze in _RENAMES)
_TO_OFFICIAL = tuple((_pattern(ours), _replacement(official)) for official, ours, _ in _RENAMES)


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
        ),
        saved=False,
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
    for pattern, replacement, squeeze in _TO_OURS:
        if re.search(pattern, official_key):
            return re.sub(pattern, replacement, official_key), squeeze
    return official_key, False


def official_key(our_name: str) -> str:
    """The official name of one of our keys (the inverse of `our_key`)."""
    for pattern, replacement in _TO_OFFICIAL:
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


DIT_FILES = (
    "Wan2.1-T2V-1.3B's diffusion_pytorch_model*.safetensors (or its .safetensors.index.json) and/or the "
    "released hydra.pth / hydra.ckpt"
)


def from_official_state(official: dict, expected: dict, source: str) -> dict:
    """An official state dict -> ours, checked key by key against `expected` (our model's state_dict).

    The check is made in the official layout (`to_official_state(expected)`), so that a missing,
    unexpected or misshapen key is named, with its shapes, as the file holds it; the CheckpointError also
    names `source`, the file(s) the state came from.
    """
    check_state_matches(
        to_official_state(expected),
        official,
        source,
        fix=(
            f"not the official HyDRA/Wan2.1 DiT this config describes. Pass {DIT_FILES} "
            "(or build the config with hydra=False for plain Wan2.1)"
        ),
    )
    converted = {}
    for key, tensor in official.items():
        name, squeeze = our_key(key)
        converted[name] = tensor[0] if squeeze else tensor  # the leading 1 the check has just seen
    return converted


def load_official_dit(paths, config, dtype=None, device="cpu"):
    """A WorldModel with `config` (official_dit_config) holding the official weights from `paths`.

    paths: the files in load order (Wan2.1's `diffusion_pytorch_model*.safetensors` or its index, then
    `hydra.pth`/`hydra.ckpt`; the released hydra.pth alone is complete). dtype: the model's dtype (default
    float32; the weights are cast). Strict: a missing, unexpected or misshapen key is a CheckpointError.
    """
    import torch

    from hybridmem.models.world import WorldModel

    state, source = read_official_states(paths, what=DIT_FILES)
    with torch.device("meta"):
        model = WorldModel(config)
    ours = from_official_state(state, model.state_dict(), source)
    model = model.to_empty(device=device)
    model.load_state_dict(ours, strict=True)
    model = model.to(dtype or torch.float32)
    return model.eval()
