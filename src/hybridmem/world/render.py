"""Headless OpenGL renderer (moderngl on EGL; Mesa llvmpipe on CPU) that turns a `ClipPlan` into frames.

Per frame: (1) the subjects' shadow map (the scenery's shadow map is drawn once per clip), (2) the sky and
the lit scene at `supersample` x the output size into colour, instance-id and depth targets, (3) one id-only
pass per subject alone through a window of the infinite image plane that holds its whole projection, at the
same pixel density, which counts `full_pixels` (the pixels it would cover unoccluded and uncropped).

Anti-aliasing: colour is box-averaged over each pixel's ss x ss samples. Ids are never blended: a pixel takes
the id held by most of its samples; a tie goes to the sample at (ss // 2, ss // 2) when it is among the tied
ids, else to the smallest tied id. The solo passes use the same rule and, for a subject wholly in the image,
the main pass's exact transform, so an unoccluded subject's mask equals its full-pixel count exactly; a
subject cut by the border is counted through a shifted projection, where an edge sample may round the other
way (at most a pixel or so). The ground is drawn in the solo passes too, so a foot dipping below it while
striding never counts. Depth is the camera-z of sample (ss // 2, ss // 2) (+inf on the sky).

Shape letters: T frames, H/W output pixels, S subjects.
"""

# ruff: noqa: F821 -- one-letter shape strings ("T", "N") in annotations read as undefined names

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybridmem.errors import ConfigError, MachineError
from hybridmem.geometry import invert_pose, project_points
from hybridmem.world import shaders
from hybridmem.world.plan import ClipPlan
from hybridmem.world.scene import PRIMITIVES
from hybridmem.world.subjects import build_body

NEAR, FAR = 0.05, 600.0
GROUND_HALF_SIZE = 300.0  # metres; fog hides its edge
SHADOW_SIZE = {"static": 1024, "dynamic": 512}  # texels; the dynamic map covers only the walk area
MAX_WINDOW = 3  # a solo pass window spans at most this many image widths/heights (subjects at the lens)
_UNIT_CORNERS = np.array([[x, y, z, 1.0] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])


@dataclass
class RenderedClip:
    frames: np.ndarray  # "T H W 3" uint8 RGB
    instance_ids: np.ndarray  # "T H W" uint8, 0 = background, s + 1 = subject s
    depth: np.ndarray  # "T H W" float32 metres along the camera's z axis, +inf on the sky
    full_pixels: np.ndarray  # "S T" int64 pixels subject s would cover alone on an unbounded image


# ------------------------------------------------------------------------------------------------ meshes


def _faces_to_vertices(triangles: "N 3 3") -> "N*3 6":
    """Flat-shaded triangles -> interleaved (position, normal)."""
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    area = np.linalg.norm(normals, axis=-1)
    triangles, normals = (
        triangles[area > 1e-12],
        normals[area > 1e-12] / area[area > 1e-12, None],
    )  # drop slivers
    normals = np.repeat(normals[:, None], 3, axis=1)
    return np.concatenate([triangles, normals], axis=-1).reshape(-1, 6)


def _cube() -> np.ndarray:
    corners = _UNIT_CORNERS[:, :3]  # index = 4 x + 2 y + z with 0/1 for -/+
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    triangles = [corners[[a, b, c]] for a, b, c, d in quads] + [corners[[a, c, d]] for a, b, c, d in quads]
    return _faces_to_vertices(np.array(triangles))


def _sphere(segments: int = 16, rings: int = 10) -> np.ndarray:
    theta = np.linspace(0, np.pi, rings + 1)
    phi = np.linspace(0, 2 * np.pi, segments + 1)
    grid = np.stack(np.meshgrid(theta, phi, indexing="ij"), -1)  # "R+1 S+1 2"
    unit = np.stack(
        [
            np.sin(grid[..., 0]) * np.cos(grid[..., 1]),
            np.sin(grid[..., 0]) * np.sin(grid[..., 1]),
            np.cos(grid[..., 0]),
        ],
        -1,
    )
    a, b, c, d = unit[:-1, :-1], unit[1:, :-1], unit[1:, 1:], unit[:-1, 1:]
    triangles = np.concatenate([np.stack([a, b, c], -2), np.stack([a, c, d], -2)]).reshape(-1, 3, 3)
    # smooth normals: the unit direction itself
    return np.concatenate([0.5 * triangles, triangles], axis=-1).reshape(-1, 6)


def _cone_like(segments: int, top_radius: float, smooth: bool) -> np.ndarray:
    """Cylinder (top_radius 0.5) or cone/pyramid (top_radius 0) along z in [-0.5, 0.5], radius 0.5, capped."""
    angles = np.linspace(0, 2 * np.pi, segments + 1) + (np.pi / 4 if segments == 4 else 0.0)
    ring = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], -1)  # "K+1 3"
    bottom = 0.5 * ring + [0, 0, -0.5]
    top = top_radius * ring + [0, 0, 0.5]
    vertices = []
    for k in range(segments):
        side = np.array([[bottom[k], bottom[k + 1], top[k + 1]], [bottom[k], top[k + 1], top[k]]])
        if smooth:
            # outward normal of a cone side tilts up by the radius change over the unit height
            normal = np.concatenate([ring[:, :2], np.full((len(ring), 1), 0.5 - top_radius)], -1)
            normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
            normals = normal[[[k, k + 1, k + 1], [k, k + 1, k]]]
            vertices.append(np.concatenate([side, normals], -1).reshape(-1, 6))
        else:
            vertices.append(_faces_to_vertices(side))
        caps = [np.array([[0, 0, -0.5], bottom[k + 1], bottom[k]])]
        if top_radius > 0:
            caps.append(np.array([[0, 0, 0.5], top[k], top[k + 1]]))
        vertices.append(_faces_to_vertices(np.array(caps)))
    return np.concatenate(vertices)


def primitive_meshes() -> dict[str, np.ndarray]:
    """Interleaved (position, normal) float32 vertices of every unit primitive, "V 6"."""
    meshes = {
        "cube": _cube(),
        "sphere": _sphere(),
        "cylinder": _cone_like(16, 0.5, smooth=True),
        "cone": _cone_like(16, 0.0, smooth=True),
        "pyramid": _cone_like(4, 0.0, smooth=False),
    }
    assert tuple(meshes) == PRIMITIVES
    return {name: mesh.astype(np.float32) for name, mesh in meshes.items()}


# ------------------------------------------------------------------------------------------ projection


def projection_matrix(
    intrinsics: "4", width: int, height: int, near: float = NEAR, far: float = FAR
) -> "4 4":
    """OpenCV camera coordinates -> GL clip space, image row v -> NDC y = 2 v / H - 1 (no flip on read)."""
    fx, fy, cx, cy = intrinsics
    return np.array(
        [
            [2 * fx / width, 0, 2 * cx / width - 1, 0],
            [0, 2 * fy / height, 2 * cy / height - 1, 0],
            [0, 0, (far + near) / (far - near), -2 * far * near / (far - near)],
            [0, 0, 1, 0],
        ]
    )


def light_matrix(sun_direction: "3", centre: "3", half_size: float) -> "4 4":
    """Orthographic world -> clip transform looking down the sun's rays over a square of `half_size`."""
    forward = -np.asarray(sun_direction, dtype=np.float64)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    view = np.eye(4)
    view[0, :3], view[1, :3], view[2, :3] = right, up, forward
    view[:3, 3] = -view[:3, :3] @ np.asarray(centre, dtype=np.float64)
    depth_range = 4 * half_size
    ortho = np.diag([1 / half_size, 1 / half_size, 1 / depth_range, 1.0])
    return ortho @ view


def _gl(matrix: "4 4") -> bytes:
    """Row-major numpy matrix -> column-major float32 bytes for a GLSL mat4/mat3 uniform."""
    return np.ascontiguousarray(np.asarray(matrix, dtype=np.float32).T).tobytes()


def instance_data(transforms: "N 4 4", colors: "N 3", colors2: "N 3", patterns: "N 4", ids: "N") -> "N 27":
    """Per-instance float32 rows in the layout of `shaders.INSTANCE_FORMAT` (matrix columns first)."""
    columns = np.swapaxes(np.asarray(transforms), -1, -2).reshape(*np.shape(transforms)[:-2], 16)
    ids = np.broadcast_to(np.asarray(ids, dtype=np.float64)[..., None], columns.shape[:-1] + (1,))
    colors = np.broadcast_to(colors, columns.shape[:-1] + (3,))
    colors2 = np.broadcast_to(colors2, columns.shape[:-1] + (3,))
    patterns = np.broadcast_to(patterns, columns.shape[:-1] + (4,))
    return np.concatenate([columns, colors, colors2, patterns, ids], axis=-1).astype(np.float32)


def resolve_ids_reference(samples: "H ss W ss", num_ids: int) -> "H W":
    """Slow, obvious form of `resolve_ids`: count every id in every pixel."""
    height, ss, width, _ = samples.shape
    blocks = samples.transpose(0, 2, 1, 3).reshape(height, width, ss * ss)  # "H W ss*ss"
    counts = np.stack([(blocks == value).sum(-1) for value in range(num_ids)])  # "V H W"
    winners = counts == counts.max(0, keepdims=True)  # "V H W"
    centre = samples[:, ss // 2, :, ss // 2]  # "H W"
    centre_wins = np.take_along_axis(winners, centre[None].astype(np.int64), axis=0)[0]
    return np.where(centre_wins, centre, np.argmax(winners, axis=0)).astype(np.uint8)


def resolve_ids(samples: "H ss W ss", num_ids: int) -> "H W":
    """Majority id of each pixel's samples; a tie goes to sample (ss//2, ss//2) if tied, else the smallest.

    Fast path: almost every pixel's samples agree (min == max); only edge pixels are voted on.
    """
    ss = samples.shape[1]
    centre = samples[:, ss // 2, :, ss // 2]
    if ss == 1:
        return centre.copy()
    lowest, highest = centre.copy(), centre.copy()
    for i in range(ss):
        for j in range(ss):
            np.minimum(lowest, samples[:, i, :, j], out=lowest)
            np.maximum(highest, samples[:, i, :, j], out=highest)
    resolved = lowest
    rows, cols = np.nonzero(lowest != highest)
    if len(rows):
        mixed = samples[rows, :, cols, :][:, :, None, :]  # "M ss 1 ss": one row of one-pixel images
        resolved[rows, cols] = resolve_ids_reference(mixed, num_ids)[:, 0]
    return resolved


def downsample_colour(samples: "H ss W ss 3") -> "H W 3":
    """Box filter with integer rounding (exact, so the bytes do not depend on float summation order)."""
    ss = samples.shape[1]
    total = np.zeros(samples[:, 0, :, 0].shape, np.uint32)
    for i in range(ss):
        for j in range(ss):
            total += samples[:, i, :, j]
    return ((total + (ss * ss) // 2) // (ss * ss)).astype(np.uint8)


def projected_window(points: "N 3", pose: "4 4", intrinsics: "4", width: int, height: int):
    """Integer pixel window (x0, y0, x1, y1) holding the projection of `points`, or None when all are behind.

    Points at or behind the near plane make the projection unbounded; the window is then capped at
    MAX_WINDOW image sizes centred on the image.
    """
    pixels, depth = project_points(points, pose, intrinsics)
    if np.all(depth <= NEAR):
        return None
    cap = (
        -(MAX_WINDOW - 1) // 2 * width,
        -(MAX_WINDOW - 1) // 2 * height,
        width + (MAX_WINDOW - 1) // 2 * width,
        height + (MAX_WINDOW - 1) // 2 * height,
    )
    if np.any(depth <= NEAR):
        return cap
    x0, y0 = np.floor(pixels.min(0)).astype(int)
    x1, y1 = np.ceil(pixels.max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, cap[0]), max(y0, cap[1]), min(x1, cap[2]), min(y1, cap[3])
    if x1 <= x0 or y1 <= y0:
        return None
    return int(x0), int(y0), int(x1), int(y1)


# -------------------------------------------------------------------------------------------- renderer


def open_renderer(width: int, height: int, supersample: int = 2) -> Renderer:
    """A Renderer, or MachineError in one line when its GL context or buffers cannot be made (no EGL driver,
    or no memory under `ulimit -v`: the framebuffer is 'not complete' then), naming the limit."""
    import moderngl

    from hybridmem.device import address_space_limit, format_bytes

    try:
        return Renderer(width, height, supersample=supersample)
    except (moderngl.Error, MemoryError, OSError) as error:
        first = str(error).splitlines()[0] if str(error).strip() else type(error).__name__
        limit = address_space_limit()
        if limit is not None:
            cause = (
                f"under the address-space limit of {format_bytes(limit)} (ulimit -v); raise it, then rerun"
            )
        else:
            cause = "it needs an EGL driver (libEGL, e.g. Mesa's) and the memory for its frame buffers"
        raise MachineError(f"the renderer could not start ({first}); {cause}") from error


class Renderer:
    """One GL context and its render targets, reused for every clip of one size.

    with Renderer(128, 128) as renderer:
        clip = renderer.render(plan)
    """

    def __init__(self, width: int, height: int, supersample: int = 2):
        import moderngl

        if width < 1 or height < 1:
            raise ConfigError(f"Renderer: width and height must be >= 1, got {width}x{height}")
        if supersample < 1:
            raise ConfigError(f"Renderer: supersample must be >= 1, got {supersample}")
        self.width, self.height, self.supersample = int(width), int(height), int(supersample)
        self._moderngl = moderngl
        self.gl = moderngl.create_standalone_context(backend="egl")
        gl, ss = self.gl, self.supersample

        # 1. programs and unit meshes
        self.scene_program = gl.program(
            vertex_shader=shaders.SCENE_VERTEX, fragment_shader=shaders.SCENE_FRAGMENT
        )
        self.sky_program = gl.program(vertex_shader=shaders.SKY_VERTEX, fragment_shader=shaders.SKY_FRAGMENT)
        self.depth_program = gl.program(
            vertex_shader=shaders.DEPTH_VERTEX, fragment_shader=shaders.DEPTH_FRAGMENT
        )
        self.meshes = {name: gl.buffer(mesh.tobytes()) for name, mesh in primitive_meshes().items()}
        triangle = np.array([[-1, -1], [3, -1], [-1, 3]], dtype=np.float32)
        self.sky_vao = gl.vertex_array(
            self.sky_program, [(gl.buffer(triangle.tobytes()), "2f", "in_position")]
        )

        # 2. main targets at the supersampled size: colour, id, camera-z depth, depth buffer
        size = (self.width * ss, self.height * ss)
        self.color_texture = gl.texture(size, 4, dtype="f1")
        self.id_texture = gl.texture(size, 1, dtype="f1")
        self.depth_texture = gl.texture(size, 1, dtype="f4")
        self.main_fbo = gl.framebuffer(
            color_attachments=[self.color_texture, self.id_texture, self.depth_texture],
            depth_attachment=gl.depth_renderbuffer(size),
        )

        # 3. shadow maps: scenery (drawn once per clip) and subjects (every frame)
        self.shadow_maps, self.shadow_fbos = {}, {}
        for kind in ("static", "dynamic"):
            texture = gl.depth_texture((SHADOW_SIZE[kind], SHADOW_SIZE[kind]))
            texture.compare_func = "<="
            texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
            texture.repeat_x = texture.repeat_y = False
            self.shadow_maps[kind] = texture
            self.shadow_fbos[kind] = gl.framebuffer(depth_attachment=texture)

        # 4. solo target: id only, big enough for the largest window
        solo_size = (MAX_WINDOW * self.width * ss, MAX_WINDOW * self.height * ss)
        self.solo_fbo = gl.framebuffer(
            color_attachments=[gl.texture(solo_size, 1, dtype="f1")],
            depth_attachment=gl.depth_renderbuffer(solo_size),
        )
        self._closed = False

    # ---------------------------------------------------------------------------------------- helpers

    def _vertex_array(self, program, primitive: str, instances):
        """VAO of one unit primitive with one instance buffer; the depth program skips colour attributes."""
        if program is self.scene_program:
            mesh = (self.meshes[primitive], "3f 3f", "in_position", "in_normal")
            instance_format, names = shaders.INSTANCE_FORMAT, shaders.INSTANCE_ATTRIBUTES
        else:
            mesh = (self.meshes[primitive], "3f 12x", "in_position")
            instance_format, names = "4f 4f 4f 4f 44x/i", shaders.INSTANCE_ATTRIBUTES[:4]
        return self.gl.vertex_array(program, [mesh, (instances, instance_format, *names)])

    def _set_scene_uniforms(self, plan: ClipPlan, light_static, light_dynamic):
        layout = plan.layout
        values = {
            "u_sun_direction": layout.sun_direction,
            "u_sun_color": layout.sun_color,
            "u_sky_zenith": layout.sky_zenith,
            "u_sky_horizon": layout.sky_horizon,
            "u_ground": layout.ground,
            "u_ground2": layout.ground2,
        }
        for program in (self.scene_program, self.sky_program):
            for name, value in values.items():
                if name in program:
                    program[name].value = tuple(float(v) for v in value)
            for name, value in (("u_ambient", layout.ambient), ("u_fog", layout.fog)):
                if name in program:
                    program[name].value = float(value)
            if "u_ground_pattern" in program:
                program["u_ground_pattern"].value = int(layout.ground_pattern)
        self.scene_program["u_light_static"].write(_gl(light_static))
        self.scene_program["u_light_dynamic"].write(_gl(light_dynamic))
        self.scene_program["u_shadow_static"].value = 0
        self.scene_program["u_shadow_dynamic"].value = 1

    def _static_instances(self, plan: ClipPlan) -> list[tuple[str, np.ndarray]]:
        """(primitive, instance rows) of the scenery, grouped by primitive, then the ground slab alone."""
        layout = plan.layout
        ground = np.diag([2 * GROUND_HALF_SIZE, 2 * GROUND_HALF_SIZE, 0.1, 1.0])
        ground[2, 3] = -0.05  # top face at z = 0
        transforms = np.concatenate([layout.transforms, ground[None]])
        colors = np.concatenate([layout.colors, layout.ground[None]])
        colors2 = np.concatenate([layout.colors2, layout.ground2[None]])
        patterns = np.concatenate([layout.patterns, [[5.0, 0.0, 0.0, 0.0]]])
        primitives = np.array([*layout.primitives, "cube"])
        rows = instance_data(transforms, colors, colors2, patterns, np.zeros(len(primitives)))
        groups = [(name, rows[:-1][primitives[:-1] == name]) for name in PRIMITIVES]
        return [(name, group) for name, group in groups if len(group)] + [("cube", rows[-1:])]

    def _subject_instances(self, plan: ClipPlan):
        """Per subject and primitive: instance rows "T n 27", and every part's world corners "T P*8 3"."""
        instances, corners = [], []
        for s, name in enumerate(plan.subject_names):
            body = build_body(name)
            transforms = body.transforms(plan.positions[s], plan.headings[s], plan.gait_phase[s])  # "T P 4 4"
            rows = instance_data(
                transforms, body.colors, body.colors2, body.patterns, np.full(len(body.parts), s + 1)
            )
            primitives = np.array(body.primitives)
            instances.append(
                {p: np.ascontiguousarray(rows[:, primitives == p]) for p in set(body.primitives)}
            )
            points = np.einsum("tpij,cj->tpci", transforms, _UNIT_CORNERS)[..., :3]  # "T P 8 3"
            corners.append(points.reshape(plan.num_frames, -1, 3))
        return instances, corners

    # ----------------------------------------------------------------------------------------- render

    def render(self, plan: ClipPlan) -> RenderedClip:
        """Render every frame of `plan` (its width/height must match this renderer's)."""
        if self._closed:
            raise ConfigError("Renderer.render: this renderer was closed; create a new one")
        if (plan.width, plan.height) != (self.width, self.height):
            raise ConfigError(
                f"Renderer.render: plan is {plan.width}x{plan.height} but the renderer is "
                f"{self.width}x{self.height};"
                " plan and render at the same size"
            )
        moderngl, gl, ss = self._moderngl, self.gl, self.supersample
        T, S, H, W = plan.num_frames, plan.num_subjects, self.height, self.width
        gl.enable(moderngl.DEPTH_TEST)
        gl.disable(moderngl.CULL_FACE)
        gl.depth_func = "<="  # the sky sits exactly on the far plane (depth 1) and fills what is left
        resources = []

        try:
            # 1. upload the scenery once; one dynamic instance buffer per (subject, primitive)
            static_vaos, static_depth_vaos = [], []
            for primitive, rows in self._static_instances(plan):
                buffer = gl.buffer(rows.tobytes())
                static_vaos.append((self._vertex_array(self.scene_program, primitive, buffer), len(rows)))
                static_depth_vaos.append(
                    (self._vertex_array(self.depth_program, primitive, buffer), len(rows))
                )
                resources += [buffer, static_vaos[-1][0], static_depth_vaos[-1][0]]
            subject_rows, subject_corners = self._subject_instances(plan)
            subject_draws = []  # per subject: list of (buffer, rows "T n 27", scene vao, depth vao)
            for per_primitive in subject_rows:
                draws = []
                for primitive, rows in sorted(per_primitive.items()):
                    buffer = gl.buffer(reserve=rows[0].nbytes)
                    draws.append(
                        (
                            buffer,
                            rows,
                            self._vertex_array(self.scene_program, primitive, buffer),
                            self._vertex_array(self.depth_program, primitive, buffer),
                        )
                    )
                    resources += [buffer, draws[-1][2], draws[-1][3]]
                subject_draws.append(draws)

            # 2. shadow maps: scenery once, over the scenery's extent; subjects each frame over the walk area
            half = plan.layout.walk_half_size
            light_static = light_matrix(plan.layout.sun_direction, [0, 0, 0], half + 30.0)
            light_dynamic = light_matrix(plan.layout.sun_direction, [0, 0, 0], half + 6.0)
            self._set_scene_uniforms(plan, light_static, light_dynamic)
            self.shadow_fbos["static"].use()
            self.shadow_fbos["static"].clear(depth=1.0)
            self.depth_program["u_view_proj"].write(_gl(light_static))
            for vao, count in static_depth_vaos:
                vao.render(instances=count)

            intrinsics_ss = np.asarray(plan.intrinsics) * ss
            projection = projection_matrix(intrinsics_ss, W * ss, H * ss)
            frames = np.empty((T, H, W, 3), np.uint8)
            instance_ids = np.empty((T, H, W), np.uint8)
            depth = np.empty((T, H, W), np.float32)
            full_pixels = np.zeros((S, T), np.int64)
            for t in range(T):
                for draws in subject_draws:
                    for buffer, rows, _, _ in draws:
                        buffer.write(rows[t].tobytes())

                # 3. subjects' shadows
                self.shadow_fbos["dynamic"].use()
                self.shadow_fbos["dynamic"].clear(depth=1.0)
                self.depth_program["u_view_proj"].write(_gl(light_dynamic))
                for draws in subject_draws:
                    for _, rows, _, depth_vao in draws:
                        depth_vao.render(instances=rows.shape[1])

                # 4. the lit scene, nearest things first so early depth tests skip hidden fragments: subjects,
                #    scenery, ground, and last the sky wherever the depth buffer is still clear
                pose = plan.cameras[t]
                world_to_camera = invert_pose(pose)
                self.main_fbo.use()
                self.main_fbo.viewport = (0, 0, W * ss, H * ss)
                self.main_fbo.clear(depth=1.0)
                view_proj = projection @ world_to_camera
                self.scene_program["u_view_proj"].write(_gl(view_proj))
                self.scene_program["u_view_z"].value = tuple(float(v) for v in world_to_camera[2])
                self.scene_program["u_eye"].value = tuple(float(v) for v in pose[:3, 3])
                self.shadow_maps["static"].use(location=0)
                self.shadow_maps["dynamic"].use(location=1)
                for draws in subject_draws:
                    for _, rows, scene_vao, _ in draws:
                        scene_vao.render(instances=rows.shape[1])
                for vao, count in static_vaos:
                    vao.render(instances=count)
                self.sky_program["u_camera_rotation"].write(_gl(pose[:3, :3]))
                self.sky_program["u_intrinsics"].value = tuple(float(v) for v in intrinsics_ss)
                self.sky_vao.render(moderngl.TRIANGLES)

                # 5. read back and resolve the supersamples
                viewport = (0, 0, W * ss, H * ss)
                color = np.frombuffer(self.main_fbo.read(viewport, components=3, attachment=0), np.uint8)
                ids = np.frombuffer(self.main_fbo.read(viewport, components=1, attachment=1), np.uint8)
                z = np.frombuffer(
                    self.main_fbo.read(viewport, components=1, attachment=2, dtype="f4"), np.float32
                )
                frames[t] = downsample_colour(color.reshape(H, ss, W, ss, 3))
                instance_ids[t] = resolve_ids(ids.reshape(H, ss, W, ss), S + 1)
                depth[t] = z.reshape(H, ss, W, ss)[:, ss // 2, :, ss // 2]

                # 6. each subject alone, through a window that holds its whole projection
                windows = [
                    projected_window(corners[t], pose, plan.intrinsics, W, H) for corners in subject_corners
                ]
                full_pixels[:, t] = self._solo_pixels(
                    subject_draws, static_depth_vaos[-1], windows, world_to_camera, view_proj, plan.intrinsics
                )
        finally:  # per-clip GL objects go even when a frame fails
            for resource in resources:
                resource.release()
        return RenderedClip(frames=frames, instance_ids=instance_ids, depth=depth, full_pixels=full_pixels)

    def _solo_pixels(self, subject_draws, ground, windows, world_to_camera, main_view_proj, intrinsics):
        """Pixels each subject covers alone inside its window (x0, y0, x1, y1); same samples and id rule.

        The ground is drawn too (as id 0, after the subject like in the main pass): feet that dip below it
        while striding are never visible, so they do not count. Windows are packed in shelves into one id
        target and read back together (one GPU sync per batch).
        """
        ss = self.supersample
        atlas_width, atlas_height = self.solo_fbo.size
        counts = np.zeros(len(windows), np.int64)
        placed = []  # (subject, window, x, y) in the current batch
        cursor_x = cursor_y = shelf = 0

        def flush():
            if not placed:
                return
            used = max(y + (w[3] - w[1]) * ss for _, w, _, y in placed)
            pixels = self.solo_fbo.read((0, 0, atlas_width, used), components=1)
            samples = np.frombuffer(pixels, np.uint8).reshape(used, atlas_width)
            for s, (x0, y0, x1, y1), x, y in placed:
                block = samples[y : y + (y1 - y0) * ss, x : x + (x1 - x0) * ss]
                counts[s] = np.count_nonzero(resolve_ids(block.reshape(y1 - y0, ss, x1 - x0, ss), 2))
            placed.clear()

        fx, fy, cx, cy = intrinsics
        self.solo_fbo.use()
        for s, window in enumerate(windows):
            if window is None:
                continue
            x0, y0, x1, y1 = window
            width, height = (x1 - x0) * ss, (y1 - y0) * ss
            if cursor_x + width > atlas_width:  # next shelf
                cursor_x, cursor_y, shelf = 0, cursor_y + shelf, 0
            if cursor_y + height > atlas_height:  # atlas full: read this batch, start over
                flush()
                cursor_x = cursor_y = shelf = 0
            rect = (cursor_x, cursor_y, width, height)
            self.solo_fbo.clear(depth=1.0, viewport=rect)
            self.solo_fbo.scissor = rect
            if x0 >= 0 and y0 >= 0 and x1 <= self.width and y1 <= self.height:
                # wholly in the image: the main pass's exact transform, moved onto this slot by the viewport,
                # so edge samples rasterize exactly as they did in the main pass
                image_size = (self.width * ss, self.height * ss)
                self.solo_fbo.viewport = (cursor_x - x0 * ss, cursor_y - y0 * ss, *image_size)
                self.depth_program["u_view_proj"].write(_gl(main_view_proj))
            else:
                self.solo_fbo.viewport = rect
                shifted = np.array([fx, fy, cx - x0, cy - y0]) * ss
                view_proj = projection_matrix(shifted, width, height) @ world_to_camera
                self.depth_program["u_view_proj"].write(_gl(view_proj))
            self.depth_program["u_id"].value = 1.0
            for _, rows, _, depth_vao in subject_draws[s]:
                depth_vao.render(instances=rows.shape[1])
            self.depth_program["u_id"].value = 0.0
            ground[0].render(instances=ground[1])
            placed.append((s, window, cursor_x, cursor_y))
            cursor_x, shelf = cursor_x + width, max(shelf, height)
        flush()
        self.solo_fbo.scissor = None
        return counts

    # -------------------------------------------------------------------------------------- lifecycle

    def close(self) -> None:
        if not self._closed:
            self.gl.release()
            self._closed = True

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
