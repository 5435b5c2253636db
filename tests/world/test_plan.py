"""plan_clip: determinism, validity over the whole taxonomy, bounds, gait, headings, errors."""

import json

import numpy as np
import pytest

from hybridmem.errors import ConfigError
from hybridmem.geometry import check_poses, look_at
from hybridmem.world import motion, taxonomy
from hybridmem.world.plan import ClipPlan, plan_clip, subject_points
from hybridmem.world.subjects import body_points, body_radius, build_body

SCENES, SUBJECTS = list(taxonomy.SCENES), list(taxonomy.SUBJECTS)


def make_plan(seed, scene="meadow", subjects=("human_03", "zebra"), num_frames=24, fps=8.0, size=(40, 24)):
    rng = np.random.default_rng(seed)
    return plan_clip(
        rng,
        scene=scene,
        subject_names=list(subjects),
        num_frames=num_frames,
        fps=fps,
        width=size[0],
        height=size[1],
    )


def test_same_seed_same_plan_and_different_seed_differs():
    first, second, other = make_plan(7).to_dict(), make_plan(7).to_dict(), make_plan(8).to_dict()
    assert json.dumps(first) == json.dumps(second)
    assert json.dumps(first) != json.dumps(other)


def test_plan_uses_only_the_generator_it_is_given():
    np.random.seed(123)  # noqa: NPY002 -- checking that the legacy global state is left alone
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    make_plan(0)
    assert np.array_equal(np.random.get_state()[1], before)  # noqa: NPY002


def test_json_round_trip():
    plan = make_plan(3)
    restored = ClipPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    for field in ("cameras", "intrinsics", "positions", "headings", "gait_phase", "speeds"):
        np.testing.assert_array_equal(getattr(restored, field), getattr(plan, field))
    np.testing.assert_array_equal(restored.layout.transforms, plan.layout.transforms)
    assert (
        restored.subject_names == plan.subject_names and restored.camera_trajectory == plan.camera_trajectory
    )


def check_plan(plan):
    T, S = plan.num_frames, plan.num_subjects
    check_poses(plan.cameras, "cameras", T)
    assert (
        plan.positions.shape == (S, T, 3)
        and plan.headings.shape == (S, T)
        and plan.gait_phase.shape == (S, T)
    )
    half = plan.layout.walk_half_size
    assert np.all(np.abs(plan.positions[..., :2]) <= half + 1e-9), "subjects leave the scene bounds"
    assert np.all(plan.positions[..., 2] == 0.0), "subjects leave the ground"
    assert np.all(np.abs(plan.cameras[:, :2, 3]) <= half + 0.5 + 1e-9), "camera leaves the walk area"
    assert np.all((plan.headings >= -np.pi) & (plan.headings < np.pi))
    assert set(plan.path_families) <= set(taxonomy.PATH_FAMILIES)
    assert plan.camera_trajectory in taxonomy.CAMERA_TRAJECTORIES
    assert plan.subject_families == [taxonomy.SUBJECTS[name].family for name in plan.subject_names]
    json.dumps(plan.to_dict())


def test_every_scene_and_subject_plans_without_error():
    for i, scene in enumerate(SCENES):
        subjects = [SUBJECTS[(3 * i + k) % len(SUBJECTS)] for k in range(3)]
        check_plan(make_plan(i, scene=scene, subjects=subjects, num_frames=12))
    covered = {SUBJECTS[(3 * i + k) % len(SUBJECTS)] for i in range(len(SCENES)) for k in range(3)}
    for name in sorted(set(SUBJECTS) - covered):  # the rest of the roster, one at a time
        check_plan(make_plan(1, subjects=[name], num_frames=6))


def test_random_plans_cover_paths_and_cameras_and_stay_valid():
    paths, cameras = set(), set()
    for seed in range(40):
        plan = make_plan(
            seed, scene=SCENES[seed % 17], subjects=[SUBJECTS[(seed * 5 + k) % 49] for k in range(3)]
        )
        check_plan(plan)
        paths.update(plan.path_families)
        cameras.add(plan.camera_trajectory)
    assert paths == set(taxonomy.PATH_FAMILIES)
    assert len(cameras) >= 15


@pytest.mark.parametrize("family", taxonomy.PATH_FAMILIES)
def test_every_path_family_is_arc_length_parametrised(family):
    rng = np.random.default_rng(0)
    points, theta = motion.path_polyline(rng, family, 12.0)
    steps = np.linalg.norm(np.diff(points, axis=0), axis=-1)
    np.testing.assert_allclose(steps, motion.PATH_STEP, rtol=1e-6)  # unit speed along the curve
    assert len(points) * motion.PATH_STEP >= 12.0
    direction = np.diff(points, axis=0)
    mid_heading = np.arctan2(direction[:, 1], direction[:, 0])
    assert np.max(np.abs(motion.wrap_angle(mid_heading - 0.5 * (theta[1:] + theta[:-1])))) < 1e-6


@pytest.mark.parametrize("name", list(taxonomy.CAMERA_TRAJECTORIES))
def test_every_camera_trajectory_swings_away_and_back(name):
    trajectory = taxonomy.CAMERA_TRAJECTORIES[name]
    poses, eyes = motion.camera_path(trajectory, [0.0, -6.0, 1.7], [0.0, 0.0, 0.8], 41, 0.0)
    check_poses(poses, name, 41)
    forward = poses[:, :3, 2]
    angle = np.degrees(np.arccos(np.clip(forward @ forward[0], -1, 1)))
    assert angle.max() > 35, "never turns far enough for a subject to leave a 70 degree view"
    np.testing.assert_allclose(poses[-1], poses[0], atol=1e-6)  # whole cycles end where they started
    np.testing.assert_allclose(poses[0], look_at([0.0, -6.0, 1.7], [0.0, 0.0, 0.8]), atol=1e-9)


def test_gait_phase_follows_distance_and_freezes_when_standing():
    rng = np.random.default_rng(4)
    fps, stride = 10.0, 1.3
    speeds = motion.speed_profile(rng, "stop_and_go", 1.2, 80, fps)
    assert np.any(speeds == 0) and np.any(speeds > 0)
    distance = motion.distance_walked(speeds, fps)
    phase = motion.gait_phase(distance, stride)
    np.testing.assert_allclose(np.diff(phase), 2 * np.pi * np.diff(distance) / stride)
    standing = (speeds[1:] == 0) & (speeds[:-1] == 0)
    assert np.all(np.diff(phase)[standing] == 0)
    assert np.all(np.diff(phase)[~standing] > 0)


def test_plan_gait_and_headings_follow_the_motion():
    for seed in range(12):
        plan = make_plan(seed, num_frames=40, fps=10.0)
        for s in range(plan.num_subjects):
            phase, speeds = plan.gait_phase[s], plan.speeds[s]
            stride = taxonomy.SUBJECTS[plan.subject_names[s]].stride
            step = np.linalg.norm(np.diff(plan.positions[s, :, :2], axis=0), axis=-1)
            assert np.all(np.diff(phase) >= 0)
            # phase advances by 2 pi per stride of ground actually covered (chord <= arc)
            assert np.all(step <= np.diff(phase) * stride / (2 * np.pi) + 1e-9)
            standing = (speeds[1:] == 0) & (speeds[:-1] == 0)
            assert np.all(np.diff(phase)[standing] == 0) and np.all(step[standing] == 0)
            moving = step > 0.02
            central = plan.positions[s, 2:, :2] - plan.positions[s, :-2, :2]
            tangent = np.arctan2(central[:, 1], central[:, 0])
            error = motion.wrap_angle(plan.headings[s, 1:-1] - tangent)[moving[1:] & moving[:-1]]
            assert np.all(np.abs(error) < 0.35), f"seed {seed} subject {s}: heading off the tangent"


def test_subject_points_lie_on_the_body():
    plan = make_plan(2)
    for s, name in enumerate(plan.subject_names):
        points = subject_points(plan, s, 5)
        assert points.shape == (len(build_body(name).parts), 3)
        horizontal = np.linalg.norm(points[:, :2] - plan.positions[s, 5, :2], axis=-1)
        assert np.all(horizontal <= body_radius(name) + 1e-9) and np.all(points[:, 2] > 0)
        np.testing.assert_array_equal(
            points,
            body_points(name, plan.positions[s, 5:6], plan.headings[s, 5:6], plan.gait_phase[s, 5:6])[0],
        )
    with pytest.raises(ConfigError, match="subject_points"):
        subject_points(plan, 5, 0)


def test_bodies_face_their_heading():
    # the part furthest along the heading is the snout (animals) or a shoe toe (humans); turning the body
    # by 90 degrees turns that direction with it
    for name in ("human_00", "horse", "cat_grey", "giraffe"):
        body = build_body(name)
        leading = set()
        for heading in (0.0, np.pi / 2, -2.0):
            points = body.transforms(np.zeros((1, 3)), np.array([heading]), np.zeros(1))[0, :, :3, 3]
            forward = np.array([np.cos(heading), np.sin(heading)])
            side = np.array([-np.sin(heading), np.cos(heading)])
            along, across = points[:, :2] @ forward, points[:, :2] @ side
            assert along.max() > 2 * np.abs(across).max() * (name != "human_00") + 0.01
            leading.add(int(np.argmax(along)))
        assert len(leading) == 1


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"scene": "mars"}, "scene"),
        ({"subject_names": ["nobody"]}, "subject"),
        ({"subject_names": []}, "subject_names"),
        ({"num_frames": 0}, "num_frames"),
        ({"fps": 0.0}, "fps"),
        ({"width": 0}, "width"),
        ({"horizontal_fov_deg": 179.0}, "horizontal_fov_deg"),
    ],
)
def test_bad_arguments_raise_config_errors(changes, field):
    arguments = dict(scene="meadow", subject_names=["human_00"], num_frames=5, fps=8.0, width=16, height=16)
    arguments.update(changes)
    with pytest.raises(ConfigError, match=field):
        plan_clip(np.random.default_rng(0), **arguments)
