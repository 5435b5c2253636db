import pytest

from hybridmem.errors import ConfigError
from hybridmem.world.config import WorldConfig


def test_defaults_are_valid_and_round_trip():
    config = WorldConfig().validate()
    assert (config.width, config.height, config.context_frames, config.target_frames, config.fps) == (
        160, 96, 33, 33, 8.0,
    )  # fmt: skip
    # HM-World's camera: the official examples' 36.3 degree FOV; 160:96 is the 832:480 aspect (1.73) to within
    # a 16-pixel step (sizes are multiples of 16: f8 latents, patch 2)
    assert abs(config.width / config.height - 832 / 480) < 0.07 and config.horizontal_fov_deg == 36.3
    again = WorldConfig.from_dict(config.to_dict())
    assert again == config


def test_paper_geometry_is_allowed():
    WorldConfig(width=832, height=480, context_frames=77, target_frames=77, fps=15.0).validate()


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"width": 0}, "width"),
        ({"height": -4}, "height"),
        ({"width": 832, "height": 832}, "width x height"),
        ({"context_frames": 32}, "context_frames"),
        ({"target_frames": 81}, "target_frames"),
        ({"fps": 0.0}, "fps"),
        ({"max_subjects": 4}, "max_subjects"),
        ({"min_subjects": 2, "max_subjects": 1}, "min_subjects"),
        ({"scenes": ("meadow", "moon_base")}, "scenes"),
        ({"subjects": ("nobody",)}, "subjects"),
        ({"subjects": ("human_00",), "max_subjects": 2, "held_out_subjects": 0}, "max_subjects"),
        ({"visible_threshold": 0.01, "hidden_threshold": 0.1}, "hidden_threshold"),
        ({"min_hidden_frames": 0}, "min_hidden_frames"),
        ({"width": 12.5}, "width"),
        ({"held_out_scenes": 17}, "held_out_scenes"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "val_fraction"),
    ],
)
def test_bad_values_name_the_field(overrides, field):
    """A bound of one field names its flag (--min-hidden-frames, the range table's message); what a bound
    cannot say names the field."""
    with pytest.raises(ConfigError) as error:
        WorldConfig(**overrides).validate()
    message = str(error.value)
    assert message.startswith(field) or message.startswith("--" + field.replace("_", "-") + ":"), message


def test_unknown_scene_error_lists_valid_names():
    with pytest.raises(ConfigError, match="valid names: .*meadow"):
        WorldConfig(scenes=("moon_base",)).validate()


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ConfigError, match="colour"):
        WorldConfig.from_dict({"colour": 3})
