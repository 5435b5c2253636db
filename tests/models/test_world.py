import json

import pytest
import torch

from hybridmem.errors import ConfigError
from hybridmem.models.layers import grid_positions, rope_angles
from hybridmem.models.memory.base import MEMORIES, FullMemory, MemoryConfig
from hybridmem.models.memory.config import MEMORY_KINDS
from hybridmem.models.world import WORLD_PRESETS, DiTConfig, WorldModel, build_world_model, dit_config

CAMERA_PARAMETERS = ("context_camera_encoder", "target_camera_encoder", "camera_projector")


@pytest.fixture(autouse=True)
def one_thread():
    """Run on one intra-op thread: on a small shared CI machine two threads per test process oversubscribe
    the cores and a training loop gets many times slower (measured 14 s vs 240 s for the VAE fit test)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def randomize(model: torch.nn.Module, seed: int, skip: tuple[str, ...] = ()) -> None:
    """Replace the zero/identity init by small random weights (a new model predicts exactly zero), except
    parameters whose name contains one of `skip`."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not any(part in name for part in skip):
                parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))


def random_pose(generator: torch.Generator) -> torch.Tensor:
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, generator=generator))
    rotation = rotation * torch.sign(torch.det(rotation))
    pose = torch.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, torch.randn(3, generator=generator)
    return pose


def make_inputs(
    seed=0, batch=2, context_frames=2, target_frames=3, channels=4, height=6, width=10, caption_dim=0
):
    """Latents of a 3x5 token grid (patch 2x2), Fc=2, Ft=3."""
    generator = torch.Generator().manual_seed(seed)
    frames = context_frames + target_frames
    cameras = torch.stack(
        [torch.stack([random_pose(generator) for _ in range(frames)]) for _ in range(batch)]
    )  # B F 4 4
    return dict(
        context_latents=torch.randn(batch, context_frames, channels, height, width, generator=generator),
        noisy_target=torch.randn(batch, target_frames, channels, height, width, generator=generator),
        t=torch.rand(batch, generator=generator),
        cameras=cameras,
        intrinsics=torch.tensor([[0.8, 1.2, 0.5, 0.5]]).expand(batch, 4),
        caption=torch.randn(batch, 3, caption_dim, generator=generator) if caption_dim else None,
    )


def test_output_shape_on_odd_grid_and_aspect_ratios():
    model = build_world_model("tiny")
    for height, width, context_frames in [(6, 10, 2), (10, 6, 1), (2, 14, 0)]:
        inputs = make_inputs(height=height, width=width, context_frames=context_frames)
        velocity = model(**inputs)
        assert velocity.shape == inputs["noisy_target"].shape


def test_temporal_patch_shapes():
    model = build_world_model("tiny", patch_size=(2, 2, 2))
    inputs = make_inputs(context_frames=2, target_frames=4)
    randomize(model, seed=0)
    velocity = model(**inputs)
    assert velocity.shape == (2, 4, 4, 6, 10)
    assert velocity.abs().sum() > 0


def test_new_model_predicts_zero_and_blocks_are_identity():
    # adaLN-zero: gates, final modulation and final projection start at zero.
    model = build_world_model("tiny")
    assert torch.equal(model(**make_inputs()), torch.zeros(2, 3, 4, 6, 10))
    for block in model.blocks:
        assert torch.count_nonzero(block.modulation) == 0


def test_same_seed_same_outputs():
    outputs = []
    for _ in range(2):
        torch.manual_seed(7)
        model = build_world_model("tiny")
        randomize(model, seed=3)
        outputs.append(model(**make_inputs(seed=5)))
    assert torch.equal(outputs[0], outputs[1])
    assert outputs[0].abs().sum() > 0


def test_camera_encoders_start_at_zero_and_projector_at_identity():
    model = build_world_model("tiny")
    for block in model.blocks:
        for encoder in (block.context_camera_encoder, block.target_camera_encoder):
            assert torch.count_nonzero(encoder.weight) == 0 and torch.count_nonzero(encoder.bias) == 0
        assert torch.equal(block.camera_projector.weight, torch.eye(model.config.dim))
        assert torch.count_nonzero(block.camera_projector.bias) == 0


def test_cameras_have_no_effect_at_init_but_do_once_trained():
    # With memory "full" a new model is exactly the camera-free backbone, whatever the other weights.
    model = build_world_model("tiny", memory=MemoryConfig(kind="full"))
    randomize(model, seed=1, skip=CAMERA_PARAMETERS)
    inputs = make_inputs(seed=0)
    other_cameras = make_inputs(seed=1)["cameras"]
    reference = model(**inputs)
    assert torch.equal(model(**{**inputs, "cameras": other_cameras}), reference)
    # ... and the test could fail: once the camera encoders are non-zero, cameras matter.
    randomize(model, seed=2)
    with_cameras = model(**inputs)
    assert not torch.allclose(model(**{**inputs, "cameras": other_cameras}), with_cameras)


def test_context_and_target_cameras_use_separate_encoders():
    model = build_world_model("tiny")
    randomize(model, seed=1, skip=("target_camera_encoder",))
    inputs = make_inputs()
    reference = model(**inputs)
    changed_target = inputs["cameras"].clone()
    changed_target[:, 2:] = make_inputs(seed=9)["cameras"][:, 2:]
    assert torch.equal(model(**{**inputs, "cameras": changed_target}), reference)  # its encoder is zero
    changed_context = inputs["cameras"].clone()
    changed_context[:, :2] = make_inputs(seed=9)["cameras"][:, :2]
    assert not torch.allclose(model(**{**inputs, "cameras": changed_context}), reference)


def test_backward_reaches_every_parameter_and_all_move():
    torch.manual_seed(0)
    model = build_world_model("tiny", memory=MemoryConfig(kind="full"), caption_dim=8)
    inputs = make_inputs(caption_dim=8)
    initial = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    # adaLN-zero gates open one layer of zeros per step: the final projection first, then the gates,
    # then everything behind them, so a few steps move every weight.
    for step in range(4):
        optimizer.zero_grad()
        loss = (model(**inputs) - 1.0).pow(2).mean()
        loss.backward()
        if step == 0:
            missing = [name for name, parameter in model.named_parameters() if parameter.grad is None]
            assert not missing, f"no gradient reaches {missing}"
        optimizer.step()
    unmoved = [name for name, parameter in model.named_parameters() if torch.equal(parameter, initial[name])]
    assert not unmoved, f"parameters that never moved: {unmoved}"


def test_gradient_checkpointing_gives_same_gradients():
    gradients = []
    for flag in (False, True):
        torch.manual_seed(0)
        model = build_world_model("tiny", gradient_checkpointing=flag)
        randomize(model, seed=4)
        model.train()
        model(**make_inputs()).square().mean().backward()
        gradients.append({name: parameter.grad.clone() for name, parameter in model.named_parameters()})
    for name, gradient in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], gradient, msg=name)


def test_caption_cross_attention():
    model = build_world_model("tiny", caption_dim=8)
    randomize(model, seed=5)
    inputs = make_inputs(caption_dim=8)
    reference = model(**inputs)
    assert not torch.allclose(model(**{**inputs, "caption": inputs["caption"] + 1.0}), reference)
    with pytest.raises(ConfigError, match="caption"):
        model(**{**inputs, "caption": None})
    with pytest.raises(ConfigError, match="caption_dim=0"):
        build_world_model("tiny")(**inputs)


def test_context_influences_target_velocity():
    model = build_world_model("tiny")
    randomize(model, seed=6)
    inputs = make_inputs()
    reference = model(**inputs)
    changed = model(**{**inputs, "context_latents": inputs["context_latents"] + 1.0})
    assert not torch.allclose(changed, reference)


class SpyMemory(FullMemory):
    """Full attention that records what the block hands its memory."""

    seen: list = []

    def forward(self, q, k, v, x, attn, ctx):
        SpyMemory.seen.append((q.shape, x.shape, attn, ctx))
        return super().forward(q, k, v, x, attn, ctx)


def test_memory_receives_context_and_attention_handle(monkeypatch):
    monkeypatch.setitem(MEMORIES, "spy", SpyMemory)
    monkeypatch.setitem(MEMORY_KINDS, "spy", __name__)
    SpyMemory.seen = []
    model = build_world_model("tiny", memory=MemoryConfig(kind="spy"))
    inputs = make_inputs()
    model(**inputs)
    assert len(SpyMemory.seen) == model.config.num_layers
    q_shape, x_shape, attn, ctx = SpyMemory.seen[0]
    assert q_shape == (2, 4, 5 * 3 * 5, 16)  # B h N d
    assert x_shape == (2, 5, 3, 5, 64)  # B F H W D
    assert ctx.grid == (5, 3, 5) and ctx.context_frames == 2
    assert torch.equal(ctx.cameras, inputs["cameras"]) and torch.equal(ctx.intrinsics, inputs["intrinsics"])
    assert (attn.num_heads, attn.head_dim) == (4, 16)
    # project_kv at the integer grid positions is what the block itself used for k, v
    tokens = torch.randn(2, 75, 64)
    positions = grid_positions(5, 3, 5)
    k, v = attn.project_kv(tokens, positions)
    k_ref, v_ref = attn.project_kv_at_angles(tokens, rope_angles(positions, 16))
    assert k.shape == v.shape == (2, 4, 75, 16)
    torch.testing.assert_close(k, k_ref)
    torch.testing.assert_close(v, v_ref)
    # fractional positions rotate keys differently, values not at all
    k_half, v_half = attn.project_kv(tokens, positions + 0.5)
    assert not torch.allclose(k_half, k) and torch.equal(v_half, v)


def test_input_errors_name_the_argument():
    model = build_world_model("tiny")
    inputs = make_inputs()
    bad = {
        "context_latents": dict(context_latents=torch.zeros(2, 2, 5, 6, 10)),
        "latent size": dict(
            context_latents=torch.zeros(2, 2, 4, 7, 10), noisy_target=torch.zeros(2, 3, 4, 7, 10)
        ),
        "t:": dict(t=torch.zeros(3)),
        "cameras": dict(cameras=torch.zeros(2, 4, 4, 4)),
        "intrinsics": dict(intrinsics=torch.zeros(2, 3)),
    }
    for message, change in bad.items():
        with pytest.raises(ConfigError, match=message):
            model(**{**inputs, **change})


def test_input_errors_name_the_problem_and_the_fix():
    inputs = make_inputs()
    model = build_world_model("tiny")
    bad = {
        "must share batch size": dict(context_latents=torch.zeros(1, 2, 4, 6, 10)),
        "needs at least one latent frame": dict(noisy_target=torch.zeros(2, 0, 4, 6, 10)),
        "warp_condition=False; pass None": dict(target_condition=torch.zeros(2, 3, 4, 6, 10)),
    }
    for message, change in bad.items():
        with pytest.raises(ConfigError, match=message):
            model(**{**inputs, **change})
    with pytest.raises(ConfigError, match="not a multiple of the temporal patch 2"):
        build_world_model("tiny", patch_size=(2, 2, 2))(**make_inputs(context_frames=1, target_frames=4))
    with pytest.raises(ConfigError, match=r"camera_rays=True\) and needs intrinsics"):
        build_world_model("tiny", camera_rays=True)(**{**inputs, "intrinsics": None})
    warp_residual = build_world_model("tiny", warp_condition=True, objective="mean", warp_residual=True)
    with pytest.raises(ConfigError, match=r"needs the warped context's latents of shape \(2, 3, 4, 6, 10\)"):
        warp_residual(**inputs)
    with pytest.raises(ConfigError, match="all_frames=False"):
        warp_residual(**inputs, target_condition=torch.zeros(2, 3, 4, 6, 10), all_frames=True)


def test_presets_and_config_round_trip():
    assert set(WORLD_PRESETS) >= {"tiny", "small", "base", "wan1.3b"}
    with pytest.raises(ConfigError, match="valid presets: tiny, compact, small, base, wan1.3b"):
        build_world_model("huge")
    with pytest.raises(ConfigError, match="valid fields"):
        dit_config("tiny", depth=3)
    with pytest.raises(ConfigError, match="divisible"):
        dit_config("tiny", num_heads=5)
    config = dit_config("small", memory=MemoryConfig(kind="full", tokenizer_kernel=(1, 2, 2)))
    restored = DiTConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert isinstance(restored.patch_size, tuple) and isinstance(restored.memory.tokenizer_kernel, tuple)
    # a preset keeps the MemoryConfig it is given (no round trip through a dict) and converts a dict once
    memory = MemoryConfig(kind="window", window=3)
    assert dit_config("tiny", memory=memory).memory is memory
    converted = dit_config("tiny", memory=dict(kind="window", window=3)).memory
    assert isinstance(converted, MemoryConfig) and (converted.kind, converted.window) == ("window", 3)


def test_wan_preset_geometry_on_meta_device():
    config = dit_config("wan1.3b")
    assert (config.dim, config.num_layers, config.num_heads, config.ffn_dim) == (1536, 30, 12, 8960)
    assert config.patch_size == (1, 2, 2) and config.latent_channels == 16
    with torch.device("meta"):
        model = WorldModel(config)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    # Wan2.1-1.3B (~1.42e9) plus per-block camera encoders and projectors (~7e7)
    assert 1.4e9 < parameters < 1.6e9


def test_bfloat16_autocast_with_float64_cameras():
    model = build_world_model("tiny")
    randomize(model, seed=8)
    inputs = make_inputs()
    inputs["cameras"] = inputs["cameras"].double()  # as loaded from numpy
    reference = model(**inputs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        velocity = model(**inputs)
    assert velocity.dtype == torch.bfloat16
    relative_error = (velocity.float() - reference).abs().mean() / reference.abs().mean()
    assert relative_error < 0.05


# --- per-token camera rays -------------------------------------------------------------------------------


def test_camera_rays_match_a_per_cell_reference_and_project_back_to_their_cells():
    """Vectorised Plücker rays against a per-cell loop over K^-1 [u, v, 1]; every point on a ray projects
    to its cell's centre (geometry.project_points, independent code)."""
    import numpy as np

    from hybridmem.geometry import intrinsics_matrix, project_points
    from hybridmem.models.world import camera_rays

    inputs = make_inputs(seed=3)
    cameras = inputs["cameras"].double()
    intrinsics = torch.tensor([[0.8, 1.1, 0.45, 0.55], [1.3, 0.9, 0.5, 0.5]], dtype=torch.float64)
    height, width = 3, 5
    rays = camera_rays(cameras, intrinsics, height, width).double()  # B F H W 6
    assert rays.shape == (2, cameras.shape[1], height, width, 6)
    for b in range(2):
        k_inverse = np.linalg.inv(intrinsics_matrix(intrinsics[b].numpy()))
        for f in range(cameras.shape[1]):
            pose = cameras[b, f].numpy()
            for i in range(height):
                for j in range(width):
                    pixel = np.array([(j + 0.5) / width, (i + 0.5) / height, 1.0])
                    direction = pose[:3, :3] @ (k_inverse @ pixel)
                    direction /= np.linalg.norm(direction)
                    moment = np.cross(pose[:3, 3], direction)
                    expected = np.concatenate([direction, moment])
                    np.testing.assert_allclose(rays[b, f, i, j].numpy(), expected, atol=1e-5)
            points = pose[:3, 3] + 2.5 * rays[b, f, ..., :3].reshape(-1, 3).numpy()
            pixels, depth = project_points(points, pose, intrinsics[b].numpy())
            centres = np.stack(
                np.meshgrid((np.arange(width) + 0.5) / width, (np.arange(height) + 0.5) / height), -1
            ).reshape(-1, 2)
            np.testing.assert_allclose(pixels, centres, atol=1e-5)
            assert (depth > 0).all()


def test_camera_rays_start_ignored_then_make_intrinsics_matter():
    model = build_world_model("tiny", memory=MemoryConfig(kind="full"), camera_rays=True)
    assert torch.count_nonzero(model.ray_embedding.weight) == 0
    inputs = make_inputs(seed=0)
    other = {**inputs, "intrinsics": torch.tensor([[1.5, 0.7, 0.3, 0.6]]).expand(2, 4)}
    randomize(model, seed=1, skip=("ray_embedding",))
    assert torch.equal(model(**other), model(**inputs))  # the full memory reads no intrinsics
    randomize(model, seed=2)
    assert not torch.allclose(model(**other), model(**inputs))
    with pytest.raises(ConfigError, match="camera rays"):
        model(**{**inputs, "intrinsics": None})
    # a config saved before the field existed loads with the rays off
    data = model.config.to_dict()
    data.pop("camera_rays")
    assert DiTConfig.from_dict(data).camera_rays is False


def test_warp_condition_starts_ignored_then_steers_only_the_target_and_is_required():
    model = build_world_model("tiny", memory=MemoryConfig(kind="full"), warp_condition=True)
    assert torch.count_nonzero(model.warp_embedding.weight) == 0
    inputs = make_inputs(seed=0)
    condition = torch.randn(inputs["noisy_target"].shape, generator=torch.Generator().manual_seed(5))
    randomize(model, seed=1, skip=("warp_embedding",))
    assert torch.equal(
        model(**inputs, target_condition=condition),
        model(**inputs, target_condition=torch.zeros_like(condition)),
    )
    randomize(model, seed=2)
    out = model(**inputs, target_condition=condition)
    assert not torch.allclose(out, model(**inputs, target_condition=2 * condition))
    # the equivalent reference: the condition embedding added to the target tokens only (context gets zero)
    reference_model = build_world_model("tiny", memory=MemoryConfig(kind="full"))
    reference_model.load_state_dict(
        {k: v for k, v in model.state_dict().items() if "warp_embedding" not in k}
    )
    bias = model.warp_embedding.bias.detach()
    with torch.no_grad():
        # a condition that embeds to exactly its bias everywhere: zeros on the target -> bias on target tokens
        out_zero = model(**inputs, target_condition=torch.zeros_like(condition))
        reference_model.patch_embedding.bias.add_(bias)  # bias on every token, context included
        assert not torch.allclose(out_zero, reference_model(**inputs))  # context tokens must not get it
    with pytest.raises(ConfigError, match="warp_condition"):
        model(**inputs)
    with pytest.raises(ConfigError, match="warp_condition=False"):
        reference_model(**inputs, target_condition=condition)
    model.zero_grad()
    model(**inputs, target_condition=condition).square().mean().backward()
    assert model.warp_embedding.weight.grad.abs().sum() > 0
    data = model.config.to_dict()
    data.pop("warp_condition")
    assert DiTConfig.from_dict(data).warp_condition is False


def test_warp_residual_starts_at_the_warp_and_needs_the_mean_objective():
    model = build_world_model(
        "tiny", memory=MemoryConfig(kind="full"), warp_condition=True, objective="mean", warp_residual=True
    )
    inputs = make_inputs(seed=3)
    condition = torch.randn(inputs["noisy_target"].shape, generator=torch.Generator().manual_seed(4))
    inputs["t"] = torch.ones_like(inputs["t"])
    velocity = model(**inputs, target_condition=condition)
    # a new model's one-step estimate x_0 = x_1 - velocity is the warp itself
    torch.testing.assert_close(inputs["noisy_target"] - velocity, condition)
    randomize(model, seed=5)
    assert not torch.allclose(inputs["noisy_target"] - model(**inputs, target_condition=condition), condition)
    for bad in (dict(objective="flow"), dict(warp_condition=False)):
        with pytest.raises(ConfigError, match="warp_residual"):
            dit_config("tiny", **{"warp_condition": True, "objective": "mean", "warp_residual": True, **bad})


def test_memory_config_is_validated_once_per_model_build(monkeypatch):
    """Issue 25: MemoryConfig.validate ran once per block (34 times for the 30-layer preset)."""
    from hybridmem.models.memory import MemoryConfig
    from hybridmem.models.world import build_world_model

    calls = []
    original = MemoryConfig.validate

    def counting(self):
        calls.append(self.kind)
        return original(self)

    monkeypatch.setattr(MemoryConfig, "validate", counting)
    build_world_model("tiny", num_layers=5, memory=MemoryConfig(kind="hydra"))
    assert calls == ["hydra"]
    with pytest.raises(ConfigError, match="memory-top-k"):  # still validated: a bad knob is refused
        build_world_model("tiny", memory=MemoryConfig(kind="hydra", top_k=0))


DIT_CHOICES = ["objective", "warp_source", "context_timestep", "head", "timestep_precision"]


@pytest.mark.parametrize("field", DIT_CHOICES)
def test_an_unknown_choice_of_the_dit_names_its_field_and_the_valid_ones(field):
    with pytest.raises(ConfigError, match=f"DiTConfig.{field} 'nonsense' is unknown; valid: "):
        dit_config("tiny", **{field: "nonsense"})
