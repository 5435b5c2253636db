"""hybridmem.official.text: the official umT5 encoder's numbers (tests/fixtures/official_hydra, README D), the
official prompt cleaning, and a tokenizer built here (nothing downloads)."""

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hybridmem.errors import CheckpointError, ConfigError, DataError
from hybridmem.jsonio import read_json
from hybridmem.official.text import (
    OFFICIAL_NEGATIVE_PROMPT,
    WanT5Config,
    clean_prompt,
    convert_official_t5_state,
    load_text_encoder,
    load_tokenizer,
    text_parity,
)

from .tiny_release import FIXTURE


@pytest.fixture(scope="module")
def fixture_config() -> WanT5Config:
    record = read_json(FIXTURE / "t5_config.json")
    return WanT5Config.from_official_kwargs(
        record["kwargs"], max_distance=record["relative_attention_max_distance"]
    )


@pytest.fixture(scope="module")
def fixture_state() -> dict[str, torch.Tensor]:
    return torch.load(FIXTURE / "t5.pth", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def encoder(fixture_config):
    return load_text_encoder(FIXTURE / "t5.pth", fixture_config)


@pytest.fixture(scope="module")
def fixture_inputs() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE / "t5_inputs.safetensors"))


def saved(tmp_path: Path, state: dict) -> Path:
    path = tmp_path / "t5.pth"
    torch.save(state, path)
    return path


# ----------------------------------------------------------------------------------------------------------
# The encoder


def test_parity_with_the_official_text_encoder():
    differences = text_parity(FIXTURE)
    assert set(differences) == {"text encoder"}
    assert differences["text encoder"] <= 1e-5


def test_parity_of_a_folder_without_text_files_is_empty(tmp_path):
    assert text_parity(tmp_path) == {}


def test_padding_rows_are_exactly_zero(encoder, fixture_inputs):
    mask = fixture_inputs["attention_mask"]
    length = int(mask.sum())
    context = encoder.encode_prompt(fixture_inputs["input_ids"], mask)
    assert 0 < length < mask.shape[1]
    assert torch.all(context[:, length:] == 0)
    assert torch.all(context[:, :length].abs().sum(dim=-1) > 0)


def test_each_prompt_of_a_batch_is_zeroed_after_its_own_length(encoder, fixture_inputs):
    ids, mask = fixture_inputs["input_ids"], fixture_inputs["attention_mask"]
    short_mask = torch.zeros_like(mask)
    short_mask[:, :5] = 1
    batch = encoder.encode_prompt(torch.cat([ids, ids]), torch.cat([mask, short_mask]))
    alone = encoder.encode_prompt(ids, mask)
    length = int(mask.sum())
    assert torch.allclose(batch[:1], alone, atol=1e-6, rtol=0)  # the shorter neighbour changes nothing
    assert torch.all(batch[1, 5:] == 0) and torch.all(batch[1, :5].abs().sum(dim=-1) > 0)
    assert torch.all(batch[0, 5:length].abs().sum(dim=-1) > 0)


def test_a_mask_that_is_not_right_padding_is_refused(encoder, fixture_inputs):
    left_padded = fixture_inputs["attention_mask"].flip(-1)
    with pytest.raises(DataError, match="right padding"):
        encoder.encode_prompt(fixture_inputs["input_ids"], left_padded)


def test_ids_outside_the_vocabulary_are_refused(encoder, fixture_inputs, fixture_config):
    ids = fixture_inputs["input_ids"].clone()
    ids[0, 0] = fixture_config.vocab
    with pytest.raises(DataError, match="vocabulary"):
        encoder.encode_prompt(ids, fixture_inputs["attention_mask"])


def test_bfloat16_and_float32_files_both_load(tmp_path, fixture_config, fixture_state, fixture_inputs):
    bf16_path = saved(tmp_path, {key: value.to(torch.bfloat16) for key, value in fixture_state.items()})
    from_bf16 = load_text_encoder(bf16_path, fixture_config, dtype=torch.float32)
    weight = from_bf16.encoder.encoder.block[0].layer[0].SelfAttention.q.weight
    assert weight.dtype == torch.float32
    assert torch.equal(weight, fixture_state["blocks.0.attn.q.weight"].to(torch.bfloat16).float())

    as_bf16 = load_text_encoder(FIXTURE / "t5.pth", fixture_config, dtype=torch.bfloat16)
    assert {parameter.dtype for parameter in as_bf16.parameters()} == {torch.bfloat16}
    context = as_bf16.encode_prompt(fixture_inputs["input_ids"], fixture_inputs["attention_mask"])
    expected = load_file(str(FIXTURE / "t5_expected.safetensors"))["context"]
    assert context.dtype == torch.bfloat16
    assert torch.all(context[:, int(fixture_inputs["attention_mask"].sum()) :] == 0)
    assert (context.float() - expected).abs().max() < 0.2  # bfloat16 keeps 3 digits; |context| reaches 3


def test_a_safetensors_file_loads_the_same(tmp_path, fixture_config, fixture_state):
    from safetensors.torch import save_file

    save_file(fixture_state, str(tmp_path / "t5.safetensors"))
    encoder = load_text_encoder(tmp_path / "t5.safetensors", fixture_config)
    weight = encoder.encoder.encoder.block[0].layer[0].SelfAttention.q.weight
    assert torch.equal(weight, fixture_state["blocks.0.attn.q.weight"])


def test_the_token_embedding_stays_tied(encoder):
    assert encoder.encoder.shared.weight is encoder.encoder.encoder.embed_tokens.weight


def test_missing_key_is_named(tmp_path, fixture_config, fixture_state):
    state = {key: value for key, value in fixture_state.items() if key != "blocks.1.norm2.weight"}
    with pytest.raises(CheckpointError, match="missing: encoder.block.1.layer.1.layer_norm.weight") as error:
        load_text_encoder(saved(tmp_path, state), fixture_config)
    assert error.value.__context__ is None  # found before torch's load_state_dict could raise


def test_unexpected_key_is_named(tmp_path, fixture_config, fixture_state):
    state = dict(fixture_state, **{"blocks.0.attn.extra.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match="unexpected keys blocks.0.attn.extra.weight") as error:
        load_text_encoder(saved(tmp_path, state), fixture_config)
    assert error.value.__context__ is None


def test_a_block_beyond_num_layers_is_named(fixture_config, fixture_state):
    state = dict(fixture_state, **{"blocks.2.norm1.weight": fixture_state["blocks.1.norm1.weight"]})
    with pytest.raises(CheckpointError, match="beyond num_layers = 2: blocks.2.norm1.weight"):
        convert_official_t5_state(state, fixture_config.num_layers)


def test_wrong_shape_is_named(tmp_path, fixture_config, fixture_state):
    state = dict(fixture_state, **{"norm.weight": torch.ones(33)})
    with pytest.raises(CheckpointError, match="wrong shape: encoder.final_layer_norm.weight") as error:
        load_text_encoder(saved(tmp_path, state), fixture_config)
    assert "in the file: norm.weight" in str(error.value) and "(33,), expected (32,)" in str(error.value)
    assert error.value.__context__ is None


def test_missing_file_names_the_path_and_the_release(tmp_path):
    path = tmp_path / "models_t5_umt5-xxl-enc-bf16.pth"
    with pytest.raises(CheckpointError, match="released Wan2.1-T2V-1.3B folder") as error:
        load_text_encoder(path)
    assert str(path) in str(error.value)


def test_config_follows_the_official_kwargs_and_umt5_xxl():
    hf = WanT5Config().to_transformers()
    assert (hf.vocab_size, hf.d_model, hf.d_ff, hf.num_heads, hf.num_layers, hf.d_kv) == (
        256384, 4096, 10240, 64, 24, 64
    )  # fmt: skip
    assert (hf.relative_attention_num_buckets, hf.relative_attention_max_distance) == (32, 128)
    assert hf.is_gated_act and hf.dense_act_fn == "gelu_new"  # gelu_new: GELU's tanh approximation
    with pytest.raises(ConfigError, match="shared_pos"):
        WanT5Config.from_official_kwargs({"dim": 32, "shared_pos": True})
    with pytest.raises(ConfigError, match="multiple of num_heads"):
        WanT5Config(dim_attn=30, num_heads=4)


# ----------------------------------------------------------------------------------------------------------
# Prompt cleaning and the tokenizer

# (prompt, what the official cleaning, ftfy 6.3.1 + diffsynth's basic_clean and whitespace_clean, makes of it)
OFFICIAL_CLEANING = [
    ("色调艳丽，过曝，静态", "色调艳丽,过曝,静态"),  # full-width commas, as in the official negative prompt
    ("A man in green clothes walks.", "A man in green clothes walks."),
    ("  Two  spaces,\ta tab\r\nand CRLF\u2028line sep  ", "Two spaces, a tab and CRLF line sep"),
    ("She said “hello” — it’s ‘fine’ „too‟ ʼok", "She said \"hello\" — it's 'fine' \"too\" 'ok"),
    ("ＡＢＣ\u3000１２３！ ｶﾀｶﾅ ﾡ", "ABC 123! カタカナ ᄀ"),
    ("ﬁne ﬂower ﬀ ĳ ŉ ǆ", "fine flower ff ij 'n dž"),
    ("café vs cafe\u0301, A\u030a", "café vs café, Å"),
    (
        "fish &amp; chips &lt;b&gt; &quot;q&quot; &#39;s&#39; &nbsp;x &amp;amp; &eacute;",
        "fish & chips <b> \"q\" 's' x & é",
    ),
    (
        "bell\x07 null\x00 del\x7f bom\ufeff x\u206ay \ufffcz vt\x0bff\x0cfs\x1c",
        "bell null del bom xy z vtff fs",
    ),
    ("\x1b[31mred\x1b[0m text", "red text"),
    ("ellipsis\x85 quote\x93q\x94 euro\x80", 'ellipsis… quote"q" euro€'),
    ("\u200bzero width\xa0nbsp\u2003em space", "\u200bzero width nbsp em space"),
    ("\ud83d\ude00 lone \udc00 한국어 中文 😀", "😀 lone \ufffd 한국어 中文 😀"),
    ("", ""),
    # ftfy's mojibake repair, which a reimplementation of its character fixes alone misses: an accented
    # Latin letter before Windows-1252 punctuation reads as UTF-8 bytes decoded as cp1252
    ("é”„ x", "锄 x"),
    ("cafÃ© mÃ¼nchen", "café münchen"),
    # ftfy decodes entities html.unescape leaves: nested three deep, and all-caps names
    ("&amp;amp;amp; &EACUTE;", "& É"),
]


@pytest.mark.parametrize(("prompt", "official"), OFFICIAL_CLEANING)
def test_cleaning_matches_the_official_cleaning(prompt, official):
    assert clean_prompt(prompt) == official


def test_official_negative_prompt_is_verbatim_and_cleans_to_ascii_commas():
    # sha256 of the string in infer_hydra.py (HyDRA commit 3855dd4, line 284)
    digest = hashlib.sha256(OFFICIAL_NEGATIVE_PROMPT.encode()).hexdigest()
    assert digest == "ce96e0324e4b54ce4b6e867f669ca520952e1a34cc116543516b1897f0d3c47e"
    assert clean_prompt(OFFICIAL_NEGATIVE_PROMPT) == OFFICIAL_NEGATIVE_PROMPT.replace("，", ",")


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory) -> Path:
    """A word-level tokenizer in the umT5 conventions (pad 0, eos 1 appended, unk 2), saved as transformers
    saves one: tokenizer.json and tokenizer_config.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["a", "man", "walks", ",", '"', "fine", "&", "ABC"]
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {word: 3 + index for index, word in enumerate(words)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    folder = tmp_path_factory.mktemp("umt5-tiny")
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(folder)
    return folder


def test_tokenizer_cleans_appends_eos_and_pads(tokenizer_folder):
    tokenizer = load_tokenizer(tokenizer_folder, length=8)
    # full-width letters, an ideographic space, curly quotes and an entity: all cleaned before tokenizing
    ids, mask = tokenizer(["ＡＢＣ\u3000man  “ , ” &amp; walks", "a man"])
    assert ids.dtype == torch.int64 and mask.dtype == torch.int64
    assert ids.tolist() == [[10, 4, 7, 6, 7, 9, 5, 1], [3, 4, 1, 0, 0, 0, 0, 0]]
    assert mask.tolist() == [[1] * 8, [1, 1, 1, 0, 0, 0, 0, 0]]


def test_tokenizer_truncates_keeping_the_eos(tokenizer_folder):
    ids, mask = load_tokenizer(tokenizer_folder, length=4)("a man walks fine a man")
    assert ids.tolist() == [[3, 4, 5, 1]] and mask.tolist() == [[1, 1, 1, 1]]


def test_tokenizer_default_length_is_the_official_512(tokenizer_folder):
    ids, mask = load_tokenizer(tokenizer_folder)("a man")
    assert ids.shape == mask.shape == (1, 512)


def test_missing_tokenizer_folder_says_what_it_should_be(tmp_path):
    with pytest.raises(CheckpointError, match="google/umt5-xxl"):
        load_tokenizer(tmp_path / "google" / "umt5-xxl")


def test_tokenizer_folder_without_tokenizer_json_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)
