"""The umT5-xxl text encoder (`models_t5_umt5-xxl-enc-bf16.pth`) on transformers' `UMT5EncoderModel`, its
tokenizer, and the official prompt cleaning.

    tokenizer = load_tokenizer("ckpts/Wan2.1-T2V-1.3B/google/umt5-xxl")
    encoder = load_text_encoder("ckpts/Wan2.1-T2V-1.3B/models_t5_umt5-xxl-enc-bf16.pth", dtype=torch.bfloat16)
    ids, mask = tokenizer([prompt, OFFICIAL_NEGATIVE_PROMPT])      # "B L", L = 512
    context = encoder.encode_prompt(ids, mask)                      # "B L D", rows past each prompt exactly 0

Shapes: B prompts, L tokens (512 in the release), D model width (4096 for umT5-xxl).

What the official code does and where it is here:
- `WanTextEncoder` (diffsynth/models/wan_video_text_encoder.py) is umT5's encoder: pre-RMSNorm blocks,
  unscaled attention with a per-layer bucketed relative position bias (32 bidirectional buckets, max
  distance 128), gated-GELU (tanh) feed-forward `fc2(fc1(x) * gelu(gate(x)))`, a final RMSNorm. That is
  transformers' `UMT5EncoderModel` with feed_forward_proj "gated-gelu"; `convert_official_t5_state` maps the
  keys.
- `WanPrompter.encode_prompt` (diffsynth/prompters/wan_prompter.py) runs the encoder with the padding mask,
  then sets every row at and after the prompt's length to 0: `WanTextEncoder.encode_prompt`.
- its `HuggingfaceTokenizer(clean="whitespace")` cleans the text (`clean_prompt`), then pads or truncates to
  512 tokens with the eos token appended: `PromptTokenizer`.

Nothing here downloads; every file is local. transformers and ftfy are imported inside the functions that
need them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hybridmem.errors import CheckpointError, ConfigError, DataError
from hybridmem.models.checkpoint import brief_list, check_state_matches
from hybridmem.official.files import read_state_dict

# The negative prompt of the official inference script (infer_hydra.py, `_infer_one`), verbatim: Wan2.1's
# standard Chinese negative prompt, with full-width commas (the cleaning turns them into ASCII commas).
OFFICIAL_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)

TEXT_LENGTH = 512  # WanPrompter(text_len=512): every prompt is padded or truncated to this many tokens

# ----------------------------------------------------------------------------------------------------------
# Prompt cleaning


def clean_prompt(text: str) -> str:
    """The official prompt cleaning, `whitespace_clean(basic_clean(text))` of diffsynth's wan_prompter.py
    (`HuggingfaceTokenizer(clean="whitespace")`), with the same libraries, so it is the same to the letter:

        basic_clean: ftfy.fix_text(text), then html.unescape twice, then strip;
        whitespace_clean: every run of whitespace (the `regex` module's \\s) becomes one space, then strip.

    ftfy is not a no-op on ordinary prompts: it turns full-width forms into ASCII (every "，" of the
    official negative prompt becomes ","), curly quotes into straight ones, Latin ligatures into letters,
    NFC-normalises, and repairs what it judges to be mojibake (which also fires on some well-formed text:
    "é”„" becomes "锄"). `regex`'s \\s, unlike Python's `re`, does not match U+001C..U+001F (ftfy has
    already removed those anyway).
    """
    import ftfy
    import regex

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip()


# ----------------------------------------------------------------------------------------------------------
# Tokenizer


class PromptTokenizer:
    """Prompts -> (ids "B L", mask "B L"), int64: cleaned, eos appended, right-padded or truncated to L.

    Truncation keeps the first L - 1 tokens and the eos, silently, as the official wrapper does.
    """

    def __init__(self, tokenizer, length: int = TEXT_LENGTH):
        self.tokenizer = tokenizer
        self.length = length

    def __call__(self, prompts: str | Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(prompts, str):
            prompts = [prompts]
        encoded = self.tokenizer(
            [clean_prompt(prompt) for prompt in prompts],
            padding="max_length",
            truncation=True,
            max_length=self.length,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        return encoded["input_ids"].long(), encoded["attention_mask"].long()


def load_tokenizer(folder: str | Path, length: int = TEXT_LENGTH) -> PromptTokenizer:
    """The umT5 tokenizer in `folder` (the release's `google/umt5-xxl/`, beside the text encoder's file).

    transformers reads its tokenizer.json (no sentencepiece needed); local files only.
    """
    from transformers import AutoTokenizer

    folder = Path(folder)
    what = (
        "the umT5 tokenizer: the google/umt5-xxl/ folder of the released Wan2.1-T2V-1.3B folder, "
        "with tokenizer.json and tokenizer_config.json"
    )
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such folder; it should be {what}. Nothing here downloads")
    if not (folder / "tokenizer.json").is_file():
        raise CheckpointError(f"{folder}: has no tokenizer.json; it should be {what}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"{folder}: transformers cannot read this tokenizer ({error}); it should be {what}"
        ) from error
    if tokenizer.pad_token_id is None:
        raise CheckpointError(f"{folder}: the tokenizer defines no pad token; it should be {what}")
    if tokenizer.padding_side != "right":
        # encode_prompt zeroes the rows after each prompt's length: the padding must come last
        raise CheckpointError(
            f"{folder}: the tokenizer pads on the {tokenizer.padding_side}; umT5 pads on the right"
        )
    return PromptTokenizer(tokenizer, length)


# ----------------------------------------------------------------------------------------------------------
# Configuration and checkpoint conversion


@dataclass(frozen=True)
class WanT5Config:
    """The official `WanTextEncoder` architecture; defaults: umT5-xxl as Wan2.1 ships it."""

    vocab: int = 256384
    dim: int = 4096
    dim_attn: int = 4096  # heads x head width
    dim_ffn: int = 10240
    num_heads: int = 64
    num_layers: int = 24
    num_buckets: int = 32  # relative-position buckets, half for each direction
    max_distance: int = 128  # T5RelativeEmbedding's max_dist: distances beyond share the last bucket
    eps: float = 1e-6  # T5LayerNorm

    def __post_init__(self):
        for name in (
            "vocab",
            "dim",
            "dim_attn",
            "dim_ffn",
            "num_heads",
            "num_layers",
            "num_buckets",
            "max_distance",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"WanT5Config: {name} must be positive, got {getattr(self, name)}")
        if self.dim_attn % self.num_heads:
            raise ConfigError(
                f"WanT5Config: dim_attn {self.dim_attn} is not a multiple of num_heads {self.num_heads}"
            )

    @classmethod
    def from_official_kwargs(cls, kwargs: Mapping, max_distance: int = 128) -> WanT5Config:
        """From the keyword arguments of the official `WanTextEncoder` (as t5_config.json's `kwargs`)."""
        fields = ("vocab", "dim", "dim_attn", "dim_ffn", "num_heads", "num_layers", "num_buckets")
        unknown = sorted(set(kwargs) - {*fields, "shared_pos", "dropout"})
        if unknown:
            raise ConfigError(
                f"WanTextEncoder kwargs: unknown {unknown}; known: {sorted({*fields, 'shared_pos'})}"
            )
        if kwargs.get("shared_pos", False):
            raise ConfigError(
                "WanTextEncoder kwargs: shared_pos=True (one position bias for all layers) is T5's layout; "
                "umT5, and Wan2.1's encoder, has one per layer (shared_pos=False)"
            )
        # `dropout` is a training setting; the encoder is only run in eval mode here, where it does nothing.
        defaults = cls()
        return cls(
            **{name: int(kwargs.get(name, getattr(defaults, name))) for name in fields},
            max_distance=int(max_distance),
        )

    def to_transformers(self):
        """The equivalent transformers `UMT5Config`."""
        from transformers import UMT5Config

        return UMT5Config(
            vocab_size=self.vocab,
            d_model=self.dim,
            d_kv=self.dim_attn // self.num_heads,
            d_ff=self.dim_ffn,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            relative_attention_num_buckets=self.num_buckets,
            relative_attention_max_distance=self.max_distance,
            layer_norm_epsilon=self.eps,
            feed_forward_proj="gated-gelu",  # gelu_new: the tanh approximation, as the official GELU
            dropout_rate=0.0,
            is_encoder_decoder=False,
            use_cache=False,
            pad_token_id=0,
            eos_token_id=1,
            # the official attention is an explicit softmax(q k^T + bias) (no scaling); the eager path is the
            # same computation, where SDPA would fold the bias into a fused kernel
            attn_implementation="eager",
        )


UMT5_XXL_CONFIG = WanT5Config()

# official block key (after `blocks.N.`) -> transformers key (after `encoder.block.N.`)
_BLOCK_KEYS = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",  # the GELU branch
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",  # the linear branch
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}
_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")


def t5_key_map(keys: Iterable[str], num_layers: int, *, source: str = "the state dict") -> dict[str, str]:
    """transformers `UMT5EncoderModel` key -> the official `WanTextEncoder` key it comes from.

    The token embedding feeds both `shared.weight` and `encoder.embed_tokens.weight` (the model ties them).
    A key this map does not know, or a block index >= `num_layers`, raises CheckpointError naming it;
    missing keys and wrong shapes are found when the state is loaded.
    """
    key_map: dict[str, str] = {}
    unknown, beyond = [], []
    for key in keys:
        if key == "token_embedding.weight":
            key_map["shared.weight"] = key
            key_map["encoder.embed_tokens.weight"] = key
        elif key == "norm.weight":
            key_map["encoder.final_layer_norm.weight"] = key
        elif (match := _BLOCK_KEY.fullmatch(key)) and match.group(2) in _BLOCK_KEYS:
            layer = int(match.group(1))
            if layer >= num_layers:
                beyond.append(key)
            key_map[f"encoder.block.{layer}.{_BLOCK_KEYS[match.group(2)]}"] = key
        else:
            unknown.append(key)
    problems = []
    if unknown:
        shared = "pos_embedding.embedding.weight" in unknown
        hint = " (a top-level pos_embedding is the shared_pos=True layout)" if shared else ""
        problems.append(f"unexpected keys {brief_list(sorted(unknown))}{hint}")
    if beyond:
        problems.append(f"keys of blocks beyond num_layers = {num_layers}: {brief_list(sorted(beyond))}")
    if problems:
        raise CheckpointError(
            f"{source}: not a Wan2.1 umT5 encoder state dict of {num_layers} layers ({'; '.join(problems)})"
        )
    return key_map


def convert_official_t5_state(
    state: Mapping[str, torch.Tensor], num_layers: int, *, source: str = "the state dict"
) -> dict[str, torch.Tensor]:
    """The official `WanTextEncoder` state dict (`models_t5_umt5-xxl-enc-bf16.pth`) in transformers'
    `UMT5EncoderModel` keys (see `t5_key_map`)."""
    return {key: state[file_key] for key, file_key in t5_key_map(state, num_layers, source=source).items()}


# ----------------------------------------------------------------------------------------------------------
# The model


class WanTextEncoder(nn.Module):
    """umT5's encoder (transformers' UMT5EncoderModel) with the official prompt embedding; frozen."""

    def __init__(self, encoder, config: WanT5Config):
        super().__init__()
        self.encoder = encoder
        self.config = config

    @torch.no_grad()
    def encode_prompt(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids "B L", mask "B L" (1 for the prompt's tokens, eos included, then 0) -> context "B L D".

        Every row at and after a prompt's length (the mask's sum) is exactly 0. The official loop,
        `for i, v in enumerate(seq_lens): prompt_emb[:, v:] = 0`, zeroes from v in every prompt of the batch,
        so in a batch all rows past the shortest prompt; it is only ever called with one prompt, for which
        this per-prompt zeroing is the same.
        """
        if ids.ndim != 2 or mask.shape != ids.shape:
            raise DataError(
                f"encode_prompt: ids and mask must both be (B, L), got {tuple(ids.shape)} and "
                f"{tuple(mask.shape)}"
            )
        if ids.min().item() < 0 or ids.max().item() >= self.config.vocab:
            raise DataError(
                f"encode_prompt: token ids span [{ids.min().item()}, {ids.max().item()}], outside the "
                f"vocabulary of {self.config.vocab}; the tokenizer does not belong to this encoder"
            )
        lengths = mask.gt(0).sum(dim=1)  # "B"
        positions = torch.arange(ids.shape[1], device=ids.device)
        valid = positions[None, :] < lengths[:, None]  # "B L"
        if not torch.equal(valid, mask.gt(0)):
            raise DataError(
                "encode_prompt: the mask must be 1 for a prompt's tokens and 0 after them (right padding), "
                "as the umT5 tokenizer makes it"
            )
        device = next(self.encoder.parameters()).device
        context = self.encoder(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        return context.masked_fill(~valid.to(device)[..., None], 0.0)  # "B L D"


def load_text_encoder(
    path: str | Path,
    config: WanT5Config = UMT5_XXL_CONFIG,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> WanTextEncoder:
    """The encoder in `path` (the release's `models_t5_umt5-xxl-enc-bf16.pth`; bf16 and fp32 files both
    load, torch or safetensors, see `files.read_state_dict`), cast to `dtype`, on `device`, eval mode, frozen.

    The official inference runs it in bfloat16. On the parity fixture (CPU) this encoder in bfloat16 gave
    contexts bit-identical to the official encoder in bfloat16 (both 0.07 from float32, values up to 3);
    in float32 the two agree to 1e-6.
    """
    from transformers import UMT5EncoderModel

    what = (
        "the umT5-xxl text encoder (models_t5_umt5-xxl-enc-bf16.pth in the released Wan2.1-T2V-1.3B folder)"
    )
    state = read_state_dict(path, what)
    converted = convert_official_t5_state(state, config.num_layers, source=str(path))
    with torch.device("meta"):  # umT5-xxl has 5.7 billion parameters: allocate none before loading
        encoder = UMT5EncoderModel(config.to_transformers())
    check_state_matches(
        encoder.state_dict(),
        converted,
        str(path),
        fix=f"the file is not {what} of {config}",
        file_names=t5_key_map(state, config.num_layers),
    )
    # assign=True adopts the (memory-mapped) tensors; casting the shared embedding once keeps the tie
    cast = {id(value): value.to(dtype) for value in converted.values()}
    encoder.load_state_dict({key: cast[id(value)] for key, value in converted.items()}, assign=True)
    encoder.set_input_embeddings(encoder.shared)  # tie again: one embedding, moved once
    encoder = encoder.to(device).eval().requires_grad_(False)
    return WanTextEncoder(encoder, config)


# ----------------------------------------------------------------------------------------------------------
# Parity with the official code (tests/fixtures/official_hydra, section D of its README)

TEXT_FIXTURE_FILES = ("t5_config.json", "t5.pth", "t5_inputs.safetensors", "t5_expected.safetensors")


def text_parity(folder: str | Path) -> dict[str, float]:
    """Max |ours - official| of the prompt context for the fixture in `folder`: {"text encoder": ...}.

    Empty when the folder has none of the text encoder's files. Sizes come from t5_config.json and the
    tensors.
    """
    from safetensors.torch import load_file

    from hybridmem.jsonio import read_json

    folder = Path(folder)
    present = [name for name in TEXT_FIXTURE_FILES if (folder / name).is_file()]
    if not present:
        return {}
    if len(present) != len(TEXT_FIXTURE_FILES):
        missing = [name for name in TEXT_FIXTURE_FILES if name not in present]
        raise DataError(
            f"{folder}: has {', '.join(present)} but not {', '.join(missing)}; "
            "the text-encoder part needs all"
        )
    record = read_json(folder / "t5_config.json")
    for name in ("kwargs", "relative_attention_max_distance"):
        if name not in record:
            raise DataError(f"{folder / 't5_config.json'}: no field {name!r}; regenerate the fixture")
    config = WanT5Config.from_official_kwargs(
        record["kwargs"], max_distance=record["relative_attention_max_distance"]
    )
    encoder = load_text_encoder(folder / "t5.pth", config)
    inputs = load_file(str(folder / "t5_inputs.safetensors"))
    expected = load_file(str(folder / "t5_expected.safetensors"))["context"]
    context = encoder.encode_prompt(inputs["input_ids"], inputs["attention_mask"])
    if context.shape != expected.shape:
        raise DataError(
            f"{folder}: context {tuple(context.shape)} but the fixture's is {tuple(expected.shape)}"
        )
    return {"text encoder": (context.float() - expected.float()).abs().max().item()}
