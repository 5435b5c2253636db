"""The taxonomy's registries: the paper's counts, unique stable names, errors that list valid names."""

import pytest

from hybridmem.errors import ConfigError
from hybridmem.world import motion, taxonomy


def test_counts_match_the_paper():
    assert len(taxonomy.SCENES) == 17
    assert len(taxonomy.SUBJECTS) == 49
    assert len(taxonomy.PATH_FAMILIES) == 10
    assert len(taxonomy.CAMERA_TRAJECTORIES) == 28


def test_names_are_unique_and_keys_match_records():
    # dicts would silently drop a duplicate, so count the source lists
    assert len({scene.name for scene in taxonomy._SCENE_LIST}) == len(taxonomy._SCENE_LIST)
    subjects = taxonomy._humans() + taxonomy._ANIMALS
    assert len({spec.name for spec in subjects}) == len(subjects)
    trajectories = taxonomy._camera_trajectories()
    assert len({c.name for c in trajectories}) == len(trajectories)
    assert len(set(taxonomy.PATH_FAMILIES)) == len(taxonomy.PATH_FAMILIES)
    for registry in (taxonomy.SCENES, taxonomy.SUBJECTS, taxonomy.CAMERA_TRAJECTORIES):
        assert all(record.name == name for name, record in registry.items())


def test_subject_families_are_recorded_and_both_present():
    families = {spec.family for spec in taxonomy.SUBJECTS.values()}
    assert families == set(taxonomy.SUBJECT_FAMILIES)
    humans = taxonomy.subjects_in_family("human")
    animals = taxonomy.subjects_in_family("animal")
    assert len(humans) + len(animals) == 49 and len(humans) >= 10 and len(animals) >= 10
    assert all(spec.pattern in taxonomy.SUBJECT_PATTERNS for spec in taxonomy.SUBJECTS.values())


def test_subjects_differ_visibly():
    looks = {
        (spec.color, spec.color2, spec.pattern, round(spec.height, 2)) for spec in taxonomy.SUBJECTS.values()
    }
    assert len(looks) == 49


def test_scene_and_camera_fields_are_from_their_vocabularies():
    for scene in taxonomy.SCENES.values():
        assert scene.ground_pattern in taxonomy.GROUND_PATTERNS
        assert scene.tree_style in taxonomy.TREE_STYLES
        assert set(scene.props) <= set(taxonomy.PROP_KINDS)
    for camera in taxonomy.CAMERA_TRAJECTORIES.values():
        assert camera.kind in taxonomy.CAMERA_KINDS
        assert camera.direction in (1, -1) and camera.cycles > 0 and camera.amplitude_deg > 35
    assert tuple(motion.PATH_GENERATORS) == taxonomy.PATH_FAMILIES


@pytest.mark.parametrize(
    "lookup, known",
    [
        (taxonomy.get_scene, "meadow"),
        (taxonomy.get_subject, "zebra"),
        (taxonomy.get_camera_trajectory, "pan_left_55_slow"),
        (taxonomy.check_path_family, "spiral"),
        (taxonomy.subjects_in_family, "human"),
    ],
)
def test_unknown_names_raise_listing_valid_ones(lookup, known):
    with pytest.raises(ConfigError, match=known):
        lookup("no_such_name")
