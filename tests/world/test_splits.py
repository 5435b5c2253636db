import numpy as np
import pytest

from hybridmem.errors import ConfigError
from hybridmem.world import splits, taxonomy
from hybridmem.world.config import WorldConfig


def test_split_plan_is_deterministic_and_partitions_names():
    config = WorldConfig()
    plan = splits.split_plan(config)
    assert plan == splits.split_plan(WorldConfig(seed=99))  # the clip seed does not move the held-out names
    assert plan != splits.split_plan(WorldConfig(split_seed=1))
    assert len(plan.held_out_scenes) == config.held_out_scenes
    assert len(plan.held_out_subjects) == config.held_out_subjects
    assert set(plan.held_out_scenes).isdisjoint(plan.seen_scenes)
    assert set(plan.held_out_scenes) | set(plan.seen_scenes) == set(taxonomy.SCENES)
    assert set(plan.held_out_subjects) | set(plan.seen_subjects) == set(taxonomy.SUBJECTS)
    families = {taxonomy.SUBJECTS[name].family for name in plan.held_out_subjects}
    assert families == {"human", "animal"}


def test_train_never_sees_held_out_and_test_always_has_unseen():
    config = WorldConfig()
    plan = splits.split_plan(config)
    rng = np.random.default_rng(0)
    for _ in range(300):
        scene, subjects = splits.sample_content(rng, config, plan, "train")
        assert scene in plan.seen_scenes and set(subjects) <= set(plan.seen_subjects)
        assert len(set(subjects)) == len(subjects) and 1 <= len(subjects) <= 3
        scene, subjects = splits.sample_content(rng, config, plan, "test")
        assert scene in plan.held_out_scenes or set(subjects) & set(plan.held_out_subjects)
        assert len(set(subjects)) == len(subjects)


def test_split_of_clip_follows_fractions_deterministically():
    config = WorldConfig(val_fraction=0.2, test_fraction=0.1)
    drawn = [splits.split_of_clip(config, k) for k in range(2000)]
    assert drawn == [splits.split_of_clip(config, k) for k in range(2000)]
    assert abs(drawn.count("test") / 2000 - 0.1) < 0.03 and abs(drawn.count("val") / 2000 - 0.2) < 0.04


def test_unknown_split_lists_valid_names():
    with pytest.raises(ConfigError, match="train, val, test"):
        splits.check_split("dev")
