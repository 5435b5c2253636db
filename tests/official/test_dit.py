"""The official HyDRA DiT through WorldModel: configuration, key maps and the importer of released files."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hybridmem.errors import CheckpointError, ConfigError
from hybridmem.models.memory import MemoryConfig
from hybridmem.models.world import DiTConfig, WorldModel, dit_config
from hybridmem.official.dit import (
    WAN_T2V_1_3B,
    from_official_state,
    load_official_dit,
    official_dit_config,
    official_key,
    our_key,
    time_from_official,
    to_official_state,
)

ASSETS = Path(__file__).parents[2] / "src" / "hybridmem" / "assets" / "checkpoints"

# A small official-format model: other sizes than the public fixture (3 layers, 3 heads of width 24).
SMALL = dict(WAN_T2V_1_3B, dim=72, ffn_dim=96, text_dim=20, num_heads=3, num_layers=3, in_dim=4, out_dim=4)


def official_state(config: DiTConfig, seed: int = 0) -> dict:
    """Random weights in the official key layout (the released files' names and shapes)."""
    model = WorldModel(config)
    generator = torch.Generator().manual_seed(seed)
    state = {name: torch.randn(t.shape, generator=generator) * 0.1 for name, t in model.state_dict().items()}
    return to_official_state(state)


def test_official_config_is_the_hydra_official_preset_and_records_each_choice():
    config = official_dit_config(**WAN_T2V_1_3B)
    assert config == dit_config("hydra-official")
    assert (config.context_timestep, config.head, config.timestep_precision) == ("shared", "wan", "float64")
    assert (config.memory.affinity_rope, config.memory.token_positions) == ("before", "official")
    assert (config.memory.window, config.memory.top_k, config.memory.tokenizer_kernel) == (5, 10, (2, 2, 2))
    assert DiTConfig.from_dict(config.to_dict()) == config
    assert official_dit_config(**WAN_T2V_1_3B, hydra=False).memory.kind == "full"
    with pytest.raises(ConfigError, match="image-to-video"):
        official_dit_config(**dict(WAN_T2V_1_3B, has_image_input=True))


def test_official_key_layout_counts_match_the_released_model():
    # The issue's count of the released hydra.pth: 1065 keys, 825 of them Wan2.1's own layout
    with torch.device("meta"):
        model = WorldModel(official_dit_config(**WAN_T2V_1_3B))
    official = to_official_state(model.state_dict())
    assert len(official) == 1065
    hydra_modules = ("self_attn.tokenizer.", "cam_encoder_con.", "cam_encoder_tgt.", "projector.")
    assert sum(not any(part in key for part in hydra_modules) for key in official) == 825
    assert official["blocks.0.modulation"].shape == (1, 6, 1536)
    assert official["head.modulation"].shape == (1, 2, 1536)
    assert official["head.head.weight"].shape == (64, 1536)
    parameters = sum(tensor.numel() for tensor in model.state_dict().values())
    assert round(parameters / 1e6) == 2057


def test_new_hydra_memory_uses_the_paper_rules_and_saved_ones_keep_theirs():
    assert (MemoryConfig().affinity_rope, MemoryConfig().token_positions) == ("before", "official")
    # a config saved before the fields existed (the shipped models) keeps the rule it was trained with
    shipped = json.loads((ASSETS / "hydra" / "config.json").read_text())["config"]
    assert "affinity_rope" not in shipped["memory"]
    memory = DiTConfig.from_dict(shipped).memory
    assert (memory.affinity_rope, memory.token_positions) == ("after", "centre")
    with pytest.raises(ConfigError, match="--affinity-rope .sideways. is unknown"):
        MemoryConfig(kind="hydra", affinity_rope="sideways").validate()


def test_key_maps_round_trip_and_the_importer_loads_every_weight(tmp_path):
    config = official_dit_config(**SMALL)
    official = official_state(config)
    torch.save(official, tmp_path / "hydra.pth")
    model = load_official_dit([tmp_path / "hydra.pth"], config)
    ours = model.state_dict()
    back = to_official_state(ours)
    assert set(back) == set(official)
    for key, tensor in official.items():
        assert torch.equal(back[key], tensor), key


def test_every_key_of_the_official_model_maps_there_and_back():
    # both directions are read off one table (_RENAMES); every key of the full model takes both
    with torch.device("meta"):
        names = list(WorldModel(official_dit_config(**WAN_T2V_1_3B)).state_dict())
    official = [official_key(name) for name in names]
    assert len(set(official)) == len(names)
    assert [our_key(key)[0] for key in official] == names
    assert official_key("blocks.7.camera_projector.weight") == "blocks.7.projector.weight"
    assert our_key("head.modulation") == ("final_layer.modulation", True)


@pytest.mark.parametrize("wrapped", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, "mixed"])
def test_importer_reads_bare_and_wrapped_bf16_fp32_and_mixed_files(tmp_path, wrapped, dtype):
    config = official_dit_config(**SMALL)
    official = official_state(config, seed=1)
    if dtype == "mixed":
        stored = {k: (t.bfloat16() if i % 2 else t) for i, (k, t) in enumerate(official.items())}
    else:
        stored = {k: t.to(dtype) for k, t in official.items()}
    path = tmp_path / "hydra.ckpt"
    torch.save({"state_dict": stored} if wrapped else stored, path)
    model = load_official_dit([path], config)
    loaded = to_official_state(model.state_dict())
    for key, tensor in stored.items():
        assert loaded[key].dtype == torch.float32
        assert torch.equal(loaded[key], tensor.float()), key


def test_importer_merges_wan_safetensors_shards_then_hydra(tmp_path):
    config = official_dit_config(**SMALL)
    official = official_state(config, seed=2)
    hydra_keys = [k for k in official if any(p in k for p in ("tokenizer", "cam_encoder", "projector"))]
    wan = {k: t for k, t in official.items() if k not in hydra_keys}
    # Wan2.1's own weights in two shards with an index (q weights stale: hydra.pth fine-tuned them)
    names = sorted(wan)
    shards = {
        "model-00001.safetensors": names[: len(names) // 2],
        "model-00002.safetensors": names[len(names) // 2 :],
    }
    for shard, keys in shards.items():
        save_file(
            {k: (wan[k] + 1 if k.endswith("self_attn.q.weight") else wan[k]).contiguous() for k in keys},
            str(tmp_path / shard),
        )
    index = {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (tmp_path / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    fine_tuned = {
        k: official[k] for k in hydra_keys + [k for k in official if k.endswith("self_attn.q.weight")]
    }
    torch.save(fine_tuned, tmp_path / "hydra.pth")
    model = load_official_dit(
        [tmp_path / "diffusion_pytorch_model.safetensors.index.json", tmp_path / "hydra.pth"], config
    )
    loaded = to_official_state(model.state_dict())
    for key, tensor in official.items():
        assert torch.equal(loaded[key], tensor), key


def _broken(official: dict, case: str) -> dict:
    broken = dict(official)
    if case == "missing":
        del broken["blocks.1.cam_encoder_tgt.bias"]
    elif case == "extra":
        broken["blocks.0.self_attn.extra.weight"] = torch.zeros(3)
    elif case == "shape":
        broken["blocks.2.ffn.0.weight"] = torch.zeros(5, 72)
    else:
        broken["blocks.0.modulation"] = torch.zeros(1, 5, 72)
    return broken


@pytest.mark.parametrize(
    "case, named",
    [
        ("missing", "1 missing: blocks.1.cam_encoder_tgt.bias"),
        ("extra", "1 unexpected: blocks.0.self_attn.extra.weight"),
        ("shape", "1 wrong shape: blocks.2.ffn.0.weight (5, 72), expected (96, 72)"),
        # named as the file holds it: the official modulation table keeps its leading 1
        ("modulation", "1 wrong shape: blocks.0.modulation (1, 5, 72), expected (1, 6, 72)"),
    ],
)
def test_importer_names_a_missing_extra_or_misshapen_key_and_the_file(tmp_path, case, named):
    config = official_dit_config(**SMALL)
    path = tmp_path / "hydra.pth"
    torch.save(_broken(official_state(config), case), path)
    with pytest.raises(CheckpointError) as error:
        load_official_dit([path], config)
    assert named in str(error.value) and str(path) in str(error.value)


def test_from_official_state_refuses_a_plain_wan_file_for_a_hydra_config():
    config = official_dit_config(**SMALL)
    official = official_state(config)
    plain = {k: t for k, t in official.items() if "cam_encoder" not in k}
    with torch.device("meta"):
        expected = WorldModel(config).state_dict()
    with pytest.raises(CheckpointError, match="missing: blocks.0.cam_encoder_con") as error:
        from_official_state(plain, expected, "wan.safetensors")
    assert str(error.value).startswith("wan.safetensors: ") and "hydra=False" in str(error.value)


def test_time_from_official_embeds_exactly_the_official_timestep():
    timesteps = torch.tensor([1000.0, 952.3810424804688, 952.0, 92.59258270263672, 0.5, 17.37])
    t = time_from_official(timesteps)
    assert torch.equal(t * 1000, timesteps)


def test_official_forward_at_other_sizes_and_grids_runs_and_is_deterministic():
    # nothing may depend on the public fixture's 40 x 30 x 52 grid, its width or its head count
    config = dataclasses.replace(
        official_dit_config(**SMALL),
        memory=dataclasses.replace(official_dit_config(**SMALL).memory, top_k=2, window=3),
    )
    model = WorldModel(config).eval()
    generator = torch.Generator().manual_seed(0)
    context, target = (
        torch.randn(1, 5, 4, 6, 10, generator=generator),
        torch.randn(1, 3, 4, 6, 10, generator=generator),
    )
    cameras = torch.eye(4).repeat(1, 8, 1, 1)
    caption = torch.randn(1, 7, 20, generator=generator)
    t = torch.tensor([0.7])
    with torch.no_grad():
        first = model(context, target, t, cameras, caption=caption, all_frames=True)
        again = model(context, target, t, cameras, caption=caption, all_frames=True)
        target_only = model(context, target, t, cameras, caption=caption)
    assert first.shape == (1, 8, 4, 6, 10) and torch.equal(first, again)
    assert torch.equal(first[:, 5:], target_only)
