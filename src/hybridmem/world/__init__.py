"""HM-World generation: taxonomy, scene layouts, subject bodies and motion, clip plans and the renderer.

    from hybridmem.world import plan_clip, Renderer
    plan = plan_clip(np.random.default_rng(0), scene="meadow", subject_names=["human_03", "zebra"],
                     num_frames=66, fps=16, width=128, height=128)
    with Renderer(128, 128) as renderer:
        clip = renderer.render(plan)  # frames "T H W 3", instance_ids "T H W", depth, full_pixels "S T"

The renderer (moderngl) is imported lazily so that planning works without a GL driver.
"""

from hybridmem.world.plan import ClipPlan, plan_clip, subject_points
from hybridmem.world.taxonomy import (
    CAMERA_TRAJECTORIES,
    PATH_FAMILIES,
    SCENES,
    SUBJECTS,
    get_camera_trajectory,
    get_scene,
    get_subject,
    subjects_in_family,
)

__all__ = [
    "CAMERA_TRAJECTORIES", "PATH_FAMILIES", "SCENES", "SUBJECTS", "ClipPlan", "Renderer", "RenderedClip",
    "get_camera_trajectory", "get_scene", "get_subject", "plan_clip", "subject_points", "subjects_in_family",
]  # fmt: skip


def __getattr__(name):
    if name in ("Renderer", "RenderedClip"):
        from hybridmem.world import render

        return getattr(render, name)
    raise AttributeError(f"module 'hybridmem.world' has no attribute '{name}'")
