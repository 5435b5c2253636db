"""Train / val / test splits of HM-World: which split a clip lands in, and what content each split may use.

Deterministic: the held-out scenes and subjects depend only on `split_seed` and the allowed names; a clip's
split (when the run does not force one) depends only on `seed` and the clip index.

- train and val draw only "seen" scenes and subjects (val is in-distribution validation);
- test draws from everything but every test clip contains something unseen: a held-out scene, or, when
  its scene was seen in training, at least one held-out subject.

Subjects are held out evenly across the families (human / animal) so both kinds are tested unseen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybridmem.validation import check_choice
from hybridmem.world.config import WorldConfig

SPLITS = ("train", "val", "test")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}  # part of every candidate seed: splits never share content
_HELD_OUT_STREAM = 0x5EED  # keeps the held-out draw apart from any clip's seed stream
_SPLIT_STREAM = 0x5917


def check_split(split: str) -> str:
    check_choice(split, SPLITS, "split", "splits")
    return split


@dataclass(frozen=True)
class SplitPlan:
    """The scenes and subjects only the test split may use."""

    held_out_scenes: tuple[str, ...]
    held_out_subjects: tuple[str, ...]
    seen_scenes: tuple[str, ...]
    seen_subjects: tuple[str, ...]

    def to_dict(self) -> dict:
        return {key: list(value) for key, value in self.__dict__.items()}


def _families(subject_names: list[str]) -> dict[str, list[str]]:
    from hybridmem.world import taxonomy

    families: dict[str, list[str]] = {}
    for name in subject_names:
        families.setdefault(taxonomy.SUBJECTS[name].family, []).append(name)
    return families


def split_plan(config: WorldConfig) -> SplitPlan:
    """Held-out scenes and subjects, drawn from `config.split_seed` (not `seed`, so datasets agree)."""
    rng = np.random.default_rng([config.split_seed, _HELD_OUT_STREAM])
    scenes = config.allowed_scenes()
    held_scenes = [scenes[i] for i in sorted(rng.permutation(len(scenes))[: config.held_out_scenes])]
    # 1. spread the held-out subjects over the families in proportion to their size, rounding down, then
    #    hand out the remainder to the largest families first
    subjects = config.allowed_subjects()
    families = _families(subjects)
    order = sorted(families, key=lambda family: (-len(families[family]), family))
    quota = {family: config.held_out_subjects * len(families[family]) // len(subjects) for family in order}
    for family in order[: config.held_out_subjects - sum(quota.values())]:
        quota[family] += 1
    held_subjects = []
    for family in order:
        members = families[family]
        picks = rng.permutation(len(members))[: quota[family]]
        held_subjects += [members[i] for i in sorted(picks)]
    held_subjects = [name for name in subjects if name in held_subjects]  # registry order
    return SplitPlan(
        held_out_scenes=tuple(held_scenes),
        held_out_subjects=tuple(held_subjects),
        seen_scenes=tuple(name for name in scenes if name not in held_scenes),
        seen_subjects=tuple(name for name in subjects if name not in held_subjects),
    )


def split_of_clip(config: WorldConfig, clip_index: int) -> str:
    """The split of clip `clip_index` when the run does not force one: drawn from the split fractions."""
    draw = np.random.default_rng([config.seed, _SPLIT_STREAM, clip_index]).random()
    if draw < config.test_fraction:
        return "test"
    if draw < config.test_fraction + config.val_fraction:
        return "val"
    return "train"


def sample_content(
    rng: np.random.Generator, config: WorldConfig, plan: SplitPlan, split: str
) -> tuple[str, list[str]]:
    """Scene name and distinct subject names of one candidate clip of `split`."""
    check_split(split)
    num_subjects = int(rng.integers(config.min_subjects, config.max_subjects + 1))
    if split != "test":
        scene = plan.seen_scenes[rng.integers(len(plan.seen_scenes))]
        picks = rng.permutation(len(plan.seen_subjects))[:num_subjects]
        return scene, [plan.seen_subjects[i] for i in picks]
    scenes = plan.seen_scenes + plan.held_out_scenes
    scene = scenes[rng.integers(len(scenes))]
    everyone = plan.seen_subjects + plan.held_out_subjects
    subjects = [everyone[i] for i in rng.permutation(len(everyone))[:num_subjects]]
    needs_unseen_subject = scene not in plan.held_out_scenes and plan.held_out_subjects
    if needs_unseen_subject and not any(name in plan.held_out_subjects for name in subjects):
        subjects[0] = plan.held_out_subjects[rng.integers(len(plan.held_out_subjects))]
    return scene, subjects
