"""GLSL sources of the renderer (GLSL 3.30 core; Mesa llvmpipe runs them headless on CPU).

Every object and body part is an instance of a unit primitive; per-instance attributes carry its
object-to-world matrix (four columns), two colours, a pattern (code, frequency, axis, unused, see
`world.scene`) and its instance id (0 = static scenery, s + 1 = subject s). Fragment outputs: colour,
instance id / 255 into an 8-bit normalised target (exact: k / 255 rounds back to byte k), and the depth
along the camera's z axis in metres.

Image rows: the projection maps pixel row v to NDC y = 2 v / H - 1, so GL's first framebuffer row is the
image's top row and read-back needs no flip (triangle winding flips, which is harmless without culling).
"""

INSTANCE_ATTRIBUTES = "in_m0 in_m1 in_m2 in_m3 in_color in_color2 in_pattern in_id".split()
INSTANCE_FORMAT = "4f 4f 4f 4f 3f 3f 4f 1f/i"
INSTANCE_FLOATS = 27

_INSTANCE_INPUTS = """
in vec3 in_position;
in vec3 in_normal;
in vec4 in_m0;
in vec4 in_m1;
in vec4 in_m2;
in vec4 in_m3;
"""

SCENE_VERTEX = (
    """
#version 330
uniform mat4 u_view_proj;
uniform vec4 u_view_z;  // third row of world-to-camera: camera-space depth of a world point
"""
    + _INSTANCE_INPUTS
    + """
in vec3 in_color;
in vec3 in_color2;
in vec4 in_pattern;
in float in_id;
out vec3 v_world;
out vec3 v_normal;
out vec3 v_object;
out vec3 v_object_normal;
out float v_depth;
flat out vec3 v_color;
flat out vec3 v_color2;
flat out vec4 v_pattern;
flat out float v_id;
void main() {
    mat4 model = mat4(in_m0, in_m1, in_m2, in_m3);
    vec4 world = model * vec4(in_position, 1.0);
    v_world = world.xyz;
    v_normal = transpose(inverse(mat3(model))) * in_normal;
    v_object = in_position;
    v_object_normal = in_normal;
    v_depth = dot(u_view_z, world);
    v_color = in_color;
    v_color2 = in_color2;
    v_pattern = in_pattern;
    v_id = in_id;
    gl_Position = u_view_proj * world;
}
"""
)

_LIGHTING = """
uniform vec3 u_eye;
uniform vec3 u_sun_direction;
uniform vec3 u_sun_color;
uniform vec3 u_sky_zenith;
uniform vec3 u_sky_horizon;
uniform vec3 u_ground;
uniform vec3 u_ground2;
uniform int u_ground_pattern;
uniform float u_ambient;
uniform float u_fog;
uniform mat4 u_light_static;
uniform mat4 u_light_dynamic;
uniform sampler2DShadow u_shadow_static;
uniform sampler2DShadow u_shadow_dynamic;

float hash12(vec2 p) {
    vec3 q = fract(vec3(p.xyx) * 0.1031);
    q += dot(q, q.yzx + 33.33);
    return fract((q.x + q.y) * q.z);
}

vec3 hash33(vec3 p) {
    p = fract(p * vec3(0.1031, 0.1030, 0.0973));
    p += dot(p, p.yxz + 33.33);
    return fract((p.xxy + p.yxx) * p.zyx);
}

float value_noise(vec2 p) {
    vec2 i = floor(p);
    vec2 f = fract(p);
    vec2 u = f * f * (3.0 - 2.0 * f);
    float bottom = mix(hash12(i), hash12(i + vec2(1, 0)), u.x);
    float top = mix(hash12(i + vec2(0, 1)), hash12(i + vec2(1, 1)), u.x);
    return mix(bottom, top, u.y);
}

vec3 ground_albedo(vec2 p) {
    float t = 0.0;
    if (u_ground_pattern == 0) {  // noise patches
        t = smoothstep(0.35, 0.65, 0.65 * value_noise(p * 0.35) + 0.35 * value_noise(p * 1.7));
    } else if (u_ground_pattern == 1) {  // checker, 2 m squares
        t = mod(floor(p.x * 0.5) + floor(p.y * 0.5), 2.0);
    } else if (u_ground_pattern == 2) {  // 1 m tiles with grout lines
        vec2 g = abs(fract(p) - 0.5);
        t = step(0.46, max(g.x, g.y)) + 0.25 * hash12(floor(p));
    } else if (u_ground_pattern == 3) {  // wide stripes (mowed lawn, raked sand, furrows)
        t = step(0.5, fract(p.x / 3.0));
    }
    return mix(u_ground, u_ground2, clamp(t, 0.0, 1.0));
}

vec3 albedo(vec3 color, vec3 color2, vec4 pattern, vec3 object, vec3 object_normal, vec3 world) {
    int code = int(pattern.x + 0.5);
    int axis = int(pattern.z + 0.5);
    float t = 0.0;
    if (code == 1) {  // stripes across the chosen object axis
        t = step(0.5, fract(object[axis] * pattern.y + 0.25));
    } else if (code == 2) {  // spots: one jittered disc per object-space cell
        vec3 p = object * pattern.y;
        vec3 cell = floor(p);
        vec3 centre = cell + 0.3 + 0.4 * hash33(cell + 17.0);
        t = step(length(p - centre), 0.3);
    } else if (code == 3) {  // building windows on the walls, pattern.y storeys
        if (abs(object_normal.z) < 0.5) {
            float along = abs(object_normal.x) > 0.5 ? object.y : object.x;
            vec2 g = vec2(fract((along + 0.5) * 4.0), fract((object.z + 0.5) * max(pattern.y, 1.0)));
            t = step(0.3, g.x) * step(g.x, 0.7) * step(0.35, g.y) * step(g.y, 0.8);
        }
    } else if (code == 4) {  // two-tone: lower half in the second colour
        t = step(object[axis], 0.0);
    } else if (code == 5) {  // the ground, patterned in world space
        return ground_albedo(world.xy);
    }
    return mix(color, color2, t);
}

float sun_visibility(vec3 world, vec3 normal) {
    float slope = 1.0 - abs(dot(normal, u_sun_direction));
    float visibility = 1.0;
    vec4 p = u_light_static * vec4(world, 1.0);
    vec3 q = p.xyz * 0.5 + 0.5;
    if (all(greaterThan(q, vec3(0.0))) && all(lessThan(q, vec3(1.0))))
        visibility = texture(u_shadow_static, vec3(q.xy, q.z - 0.0015 - 0.002 * slope));
    p = u_light_dynamic * vec4(world, 1.0);
    q = p.xyz * 0.5 + 0.5;
    if (all(greaterThan(q, vec3(0.0))) && all(lessThan(q, vec3(1.0))))
        visibility = min(visibility, texture(u_shadow_dynamic, vec3(q.xy, q.z - 0.002 - 0.003 * slope)));
    return visibility;
}

vec3 sky(vec3 direction) {
    float up = clamp(direction.z, 0.0, 1.0);
    vec3 color = mix(u_sky_horizon, u_sky_zenith, pow(up, 0.6));
    float sun = dot(direction, u_sun_direction);
    color += u_sun_color * (smoothstep(0.9990, 0.9996, sun) + 0.25 * pow(max(sun, 0.0), 64.0));
    return color;
}
"""

SCENE_FRAGMENT = (
    """
#version 330
"""
    + _LIGHTING
    + """
in vec3 v_world;
in vec3 v_normal;
in vec3 v_object;
in vec3 v_object_normal;
in float v_depth;
flat in vec3 v_color;
flat in vec3 v_color2;
flat in vec4 v_pattern;
flat in float v_id;
layout(location = 0) out vec4 f_color;
layout(location = 1) out float f_id;
layout(location = 2) out float f_depth;
void main() {
    vec3 normal = normalize(v_normal);
    vec3 to_eye = u_eye - v_world;
    if (dot(normal, to_eye) < 0.0) normal = -normal;  // two-sided: no culling, thin parts lit from both sides
    vec3 base = albedo(v_color, v_color2, v_pattern, v_object, v_object_normal, v_world);
    float diffuse = max(dot(normal, u_sun_direction), 0.0) * sun_visibility(v_world, normal);
    vec3 hemisphere = mix(0.6 * u_ground, u_sky_zenith * 0.5 + u_sky_horizon * 0.5, 0.5 + 0.5 * normal.z);
    vec3 color = base * (u_sun_color * diffuse * (1.0 - u_ambient) + u_ambient * (0.55 + 0.9 * hemisphere));
    float fog = 1.0 - exp(-u_fog * max(length(to_eye) - 10.0, 0.0));
    color = mix(color, u_sky_horizon, fog);
    f_color = vec4(clamp(color, 0.0, 1.0), 1.0);
    f_id = v_id / 255.0;
    f_depth = v_depth;
}
"""
)

SKY_VERTEX = """
#version 330
in vec2 in_position;
void main() { gl_Position = vec4(in_position, 1.0, 1.0); }
"""

SKY_FRAGMENT = (
    """
#version 330
"""
    + _LIGHTING
    + """
uniform mat3 u_camera_rotation;  // camera-to-world rotation, OpenCV axes
uniform vec4 u_intrinsics;  // fx, fy, cx, cy at the render resolution
layout(location = 0) out vec4 f_color;
layout(location = 1) out float f_id;
layout(location = 2) out float f_depth;
void main() {
    // gl_FragCoord is in image pixels here: x right, y = image row (see the module docstring)
    vec2 uv = gl_FragCoord.xy;
    vec3 ray = vec3((uv.x - u_intrinsics.z) / u_intrinsics.x, (uv.y - u_intrinsics.w) / u_intrinsics.y, 1.0);
    f_color = vec4(clamp(sky(normalize(u_camera_rotation * ray)), 0.0, 1.0), 1.0);
    f_id = 0.0;
    f_depth = uintBitsToFloat(0x7F800000u);  // +inf: nothing there
}
"""
)

DEPTH_VERTEX = (
    """
#version 330
uniform mat4 u_view_proj;
"""
    + _INSTANCE_INPUTS
    + """
void main() {
    gl_Position = u_view_proj * (mat4(in_m0, in_m1, in_m2, in_m3) * vec4(in_position, 1.0));
}
"""
)

DEPTH_FRAGMENT = """
#version 330
uniform float u_id;  // solo passes: 1 for the subject, 0 for the ground that hides its feet
layout(location = 0) out float f_id;
void main() { f_id = u_id / 255.0; }
"""
