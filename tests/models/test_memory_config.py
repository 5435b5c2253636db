"""The memory knobs are declared once (models/memory/config.py); everything that names a knob is derived."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from hybridmem import validation
from hybridmem.errors import ConfigError
from hybridmem.models.memory.config import KNOBS, MEMORY_KINDS, MemoryConfig, memory_flag_args
from hybridmem.recipe.budgets import BUDGETS, Budget
from hybridmem.recipe.commands import build_parser
from hybridmem.recipe.recipe import _open_record
from hybridmem.train.config import OFFICIAL_FIXED, WorldTrainConfig, config_from_args


def other_value(knob):
    """A value of the knob's flag other than its default."""
    if knob.choices:
        return next(choice for choice in knob.choices if choice != knob.default)
    if knob.is_tuple:
        return "1,2,2"
    if knob.flag == "fov_near":
        return 0.25
    return knob.default + 1


def test_every_field_but_the_kind_is_a_knob():
    names = [field.name for field in dataclasses.fields(MemoryConfig)]
    assert [knob.name for knob in KNOBS] == [name for name in names if name != "kind"]


def test_every_knob_is_a_flag_a_config_field_a_budget_field_and_fixed_by_official():
    parser = build_parser().commands["train"].commands["world"]
    options = {option for action in parser._actions for option in action.option_strings}
    train_fields = {field.name for field in dataclasses.fields(WorldTrainConfig)}
    budget_fields = {field.name for field in dataclasses.fields(Budget)}
    for knob in KNOBS:
        assert knob.option in options
        assert knob.flag in train_fields and knob.flag in budget_fields
        assert knob.flag in OFFICIAL_FIXED
        if isinstance(knob.default, (int, float)):
            assert validation.rule_for(knob.flag, "train world") is knob.rule  # one bound, declared once


def test_every_knob_set_by_its_flag_reaches_the_model_config():
    argv = ["train", "world", "--cache", "c", "--out", "o", "--memory", "fov"]
    for knob in KNOBS:
        argv += [knob.option, str(other_value(knob))]
    config = config_from_args(WorldTrainConfig, build_parser().parse_args(argv)).validate().memory_config()
    assert config.kind == "fov"
    for knob in KNOBS:
        assert getattr(config, knob.name) == knob.to_config(other_value(knob)), knob.name
    # and the model's record of it reads back equal
    assert MemoryConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(config)))) == config


@pytest.mark.parametrize("knob", [knob for knob in KNOBS if knob.choices], ids=lambda knob: knob.flag)
def test_an_unknown_choice_names_the_flag_and_the_valid_values(knob):
    with pytest.raises(ConfigError, match=f"{knob.option} 'nonsense' is unknown; valid: "):
        MemoryConfig(**{knob.name: "nonsense"}).validate()


def test_an_unknown_kind_lists_the_kinds_in_order():
    with pytest.raises(ConfigError, match=f"valid kinds: {', '.join(MEMORY_KINDS)}"):
        MemoryConfig(kind="lstm").validate()


def test_fov_depths_must_be_ordered():
    with pytest.raises(ConfigError, match="--fov-near 40.0 must be below --fov-far 30.0"):
        MemoryConfig(fov_near=40.0).validate()


def test_the_old_name_of_slice_ranking_still_reads():
    assert MemoryConfig.from_dict({"kind": "hydra", "retrieval": "fov"}).slice_ranking == "fov"
    args = build_parser().parse_args(["train", "world", "--cache", "c", "--out", "o", "--retrieval", "fov"])
    assert config_from_args(WorldTrainConfig, args).memory_config().slice_ranking == "fov"


def test_a_recipe_record_older_than_a_knob_resumes(tmp_path):
    budget = BUDGETS["smoke"]
    old = budget.to_dict()
    old["retrieval"] = old.pop("slice_ranking")  # as written before the rename
    for knob in ("fov_points", "fov_near", "fov_far", "query_chunk"):  # before these knobs had flags
        del old[knob]
    (tmp_path / "recipe.json").write_text(
        json.dumps({"format": 1, "budget": old, "stages": {}, "invocations": []})
    )
    assert _open_record(tmp_path, budget)["budget"]["retrieval"] == "affinity"  # no change: not refused
    changed = dataclasses.replace(budget, fov_points=64)
    with pytest.raises(ConfigError, match="fov_points"):
        _open_record(tmp_path, changed)


def test_the_budget_flags_set_every_knob():
    flags = memory_flag_args(BUDGETS["cpu"])
    assert flags[::2] == [knob.option for knob in KNOBS]
    assert flags[flags.index("--memory-top-k") + 1] == "4"


def test_the_knobs_load_without_torch():
    code = "import sys, hybridmem.train.config, hybridmem.recipe.budgets; print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )


def test_old_defaults_fill_saved_configs_only():
    # a saved model's config.json from before a knob existed was trained with the old behaviour ...
    saved = MemoryConfig.from_dict({"kind": "hydra"})
    assert (saved.affinity_rope, saved.token_positions) == ("after", "centre")
    # ... a preset or an API dict gets today's defaults
    from hybridmem.models.world import dit_config

    memory = dit_config("tiny", memory={"kind": "hydra"}).memory
    assert (memory.affinity_rope, memory.token_positions) == ("before", "official")
