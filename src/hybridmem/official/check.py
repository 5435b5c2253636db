"""`hybridmem official check DIR`: our code against numbers the official HyDRA code computed.

DIR is a folder in the layout of tests/fixtures/official_hydra (its README documents every tensor): the
official code run on tiny random weights, its inputs and its outputs. Each part present in the folder is
recomputed here, through the same code `sample`, `train` and `eval` use, and compared as the largest
absolute difference against a tolerance; a part whose files are absent is reported as absent.

    report = check_folder("tests/fixtures/official_hydra")
    print(format_report(report)); assert report_passed(report)

Parts (tolerances in fp32, the fixture README's advice or the issue's bound, whichever is looser):
- cameras: our reader of the folder's camN.json (Unreal -> OpenCV metres -> relative -> [R | t]) against
  the official loader; ours is float64, the official float32, so they agree to about 2e-5 m.
- scheduler: sigmas, the timesteps the DiT sees and two Euler steps: exact (float32 bit for bit); CFG.
- DiT: the whole output (every latent frame), block 0's output, and in every block the top-k slices each
  query frame retrieves (the same sets) with their affinity values.
- VAE: latents, decode, decode before the clamp (hybridmem.official.vae).
- text encoder: the umT5 context with its zeroed padding rows (hybridmem.official.text).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hybridmem.errors import ConfigError, DataError

# part -> tolerance on the max |difference| (top-k picks: frames whose retrieved set differs)
TOLERANCES = {
    "cameras": 1e-4,
    "scheduler sigmas": 0.0,
    "scheduler timesteps": 0.0,
    "scheduler euler steps": 0.0,
    "cfg": 1e-6,
    "dit output": 1e-4,
    "dit block 0": 1e-4,
    "top-k picks": 0.0,
    "top-k values": 1e-4,
    "vae latents": 1e-4,
    "vae decode": 1e-4,
    "vae decode unclamped": 1e-4,
    "text encoder": 1e-4,
}


@dataclass
class PartResult:
    part: str
    difference: float | None  # None: the folder has no files for this part
    tolerance: float
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.difference is None or self.difference <= self.tolerance


def _load(folder: Path, name: str) -> dict | None:
    path = folder / name
    if not path.is_file():
        return None
    from safetensors.torch import load_file

    return load_file(str(path))


def _json(folder: Path, name: str) -> dict | None:
    path = folder / name
    if not path.is_file():
        return None
    from hybridmem.jsonio import read_json

    return read_json(path)


def _max_difference(ours, theirs) -> float:
    import torch

    ours, theirs = torch.as_tensor(ours), torch.as_tensor(theirs)
    if ours.shape != theirs.shape:
        raise DataError(f"shape {tuple(ours.shape)} against the fixture's {tuple(theirs.shape)}")
    return float((ours.double() - theirs.double()).abs().max())


# ---------------------------------------------------------------------------------------------------------
# Parts
# ---------------------------------------------------------------------------------------------------------


def check_cameras(folder: Path) -> dict[str, float]:
    """Camera vectors of the folder's camN.json (any official example) by our reader against
    cameras_expected.safetensors."""
    expected = _load(folder, "cameras_expected.safetensors")
    files = sorted(path for path in folder.glob("cam*.json") if path.stem[3:].isdigit())
    if expected is None or not files:
        return {}
    if len(files) > 1:
        raise DataError(
            f"{folder}: cameras_expected.safetensors comes from one camera file, found "
            f"{', '.join(path.name for path in files)}; keep the one it was made from"
        )
    from hybridmem.official.cameras import official_camera_vectors

    context, target = official_camera_vectors(files[0])
    return {
        "cameras": max(
            _max_difference(context, expected["context_camera"]),
            _max_difference(target, expected["target_camera"]),
        )
    }


def check_scheduler(folder: Path) -> dict[str, float]:
    """Our float32 schedule, Euler step and guidance against scheduler_expected.json."""
    record = _json(folder, "scheduler_expected.json")
    if record is None:
        return {}
    import torch

    from hybridmem.diffusion.flow import euler_step, guided_velocity, sampling_timesteps

    def tensor(entry: dict) -> torch.Tensor:
        return torch.tensor(entry["values"], dtype=torch.float32).reshape(entry["shape"])

    steps = record["set_timesteps"]["num_inference_steps"]
    sigmas = sampling_timesteps(steps, float(record["set_timesteps"]["shift"]), torch.float32)
    results = {
        "scheduler sigmas": _max_difference(sigmas[:steps], torch.tensor(record["sigmas"])),
        # the DiT sees 1000 * sigma: our model multiplies t by 1000 in float32, as the scheduler does
        "scheduler timesteps": _max_difference(sigmas[:steps] * 1000, torch.tensor(record["timesteps"])),
    }
    euler = 0.0
    for entry in record.get("euler_steps", {}).values():
        index = entry["step_index"]
        stepped = euler_step(
            tensor(entry["sample"]), tensor(entry["model_output"]), sigmas[index], sigmas[index + 1]
        )
        euler = max(euler, _max_difference(stepped, tensor(entry["prev_sample"])))
    results["scheduler euler steps"] = euler
    if "cfg" in record:
        cfg = record["cfg"]
        guided = guided_velocity(tensor(cfg["noise_pred_posi"]), tensor(cfg["noise_pred_nega"]), cfg["scale"])
        results["cfg"] = _max_difference(guided, tensor(cfg["noise_pred"]))
    return results


def fixture_dit_config(config_record: dict, overrides: dict | None = None):
    """Our DiTConfig for the official model a fixture's dit_config.json describes (+ test overrides)."""
    import dataclasses

    from hybridmem.official.dit import official_dit_config

    config = official_dit_config(**config_record["wan_model_kwargs"])
    hydra = config_record.get("hydra", {})
    attention = hydra.get("dynamic_retrieval_attention", {})
    tokenizer = hydra.get("memory_tokenizer", {})
    memory = dataclasses.replace(
        config.memory,
        top_k=int(attention.get("top_k", config.memory.top_k)),
        window=int(attention.get("window_size", config.memory.window)),
        tokenizer_kernel=tuple(tokenizer.get("kernel_size", config.memory.tokenizer_kernel)),
    )
    overrides = dict(overrides or {})
    memory_overrides = {key: overrides.pop(key) for key in list(overrides) if hasattr(memory, key)}
    memory = dataclasses.replace(memory, **memory_overrides)
    return dataclasses.replace(config, memory=memory, **overrides).validate()


def check_dit(folder: Path, overrides: dict | None = None) -> dict[str, float]:
    """The official DiT's forward on the fixture inputs: output, block 0, top-k picks and values."""
    config_record = _json(folder, "dit_config.json")
    inputs = _load(folder, "dit_inputs.safetensors")
    expected = _load(folder, "dit_expected.safetensors")
    if config_record is None or inputs is None or expected is None or not (folder / "dit.pth").is_file():
        return {}
    import torch
    from einops import rearrange

    from hybridmem.official.dit import load_official_dit, time_from_official

    config = fixture_dit_config(config_record, overrides)
    model = load_official_dit([folder / "dit.pth"], config)
    latents = rearrange(inputs["x"], "b c f h w -> b f c h w")  # B F C h w, official axes -> ours
    context_frames = inputs["cam_emb_con"].shape[1]
    cameras_12 = torch.cat([inputs["cam_emb_con"], inputs["cam_emb_tgt"]], dim=1)  # B F 12
    cameras = camera_matrices(cameras_12)  # B F 4 4
    t = time_from_official(inputs["timestep"])  # B, with 1000 t exactly the official timestep

    # block outputs and the slices each block retrieved, recorded by hooks (the model runs exactly as in
    # sampling)
    block_outputs, retrieved_by_block = {}, {}
    handles = [model.blocks[0].register_forward_hook(lambda m, i, out: block_outputs.setdefault(0, out))]
    for index, block in enumerate(model.blocks):
        if hasattr(block.memory, "retrieve"):
            handles.append(block.memory.register_forward_hook(_record_retrieval(retrieved_by_block, index)))
    with torch.no_grad():
        output = model(
            latents[:, :context_frames],
            latents[:, context_frames:],
            t,
            cameras,
            caption=inputs["context"],
            all_frames=True,
        )
    for handle in handles:
        handle.remove()
    results = {
        "dit output": _max_difference(rearrange(output, "b f c h w -> b c f h w"), expected["output"]),
        "dit block 0": _max_difference(block_outputs[0], expected["block0_output"]),
    }
    if "topk_indices" in expected and retrieved_by_block:
        results.update(_compare_top_k(retrieved_by_block, expected, config.num_heads))
    return results


def camera_matrices(cameras_12):
    """Row-major [R | t] "B F 12" -> camera-to-world "B F 4 4" (the official model's camera input)."""
    import torch
    from einops import rearrange

    batch, frames = cameras_12.shape[:2]
    matrices = torch.eye(4, dtype=cameras_12.dtype).repeat(batch, frames, 1, 1)  # B F 4 4
    matrices[..., :3, :] = rearrange(cameras_12, "b f (r c) -> b f r c", r=3)
    return matrices


def _record_retrieval(store: dict, index: int):
    def hook(memory, inputs, output):
        q, _, _, x, attn, sequence = inputs
        store[index] = memory.retrieve(q, x, attn, sequence)

    return hook


def _compare_top_k(retrieved_by_block: dict, expected: dict, num_heads: int) -> dict[str, float]:
    """Frames whose retrieved set differs from the official one, and the largest affinity difference.

    Our affinity averages the per-head dots (hybridmem.models.memory.retrieval.affinity_mean), the official
    one sums all channels: ours * heads is the official value; the ranking is the same.
    """
    import torch

    official_indices, official_values = expected["topk_indices"], expected["topk_values"]
    if official_indices.shape[0] != len(retrieved_by_block):
        raise DataError(
            f"dit_expected.safetensors has top-k picks of {official_indices.shape[0]} blocks, the model "
            f"retrieves in {len(retrieved_by_block)}"
        )
    differing, value_difference = 0, 0.0
    for block, retrieved in sorted(retrieved_by_block.items()):
        ours = torch.sort(retrieved.indices, dim=-1).values  # B F K, ascending
        theirs = torch.sort(official_indices[block], dim=-1).values
        if ours.shape != theirs.shape:
            raise DataError(
                f"block {block}: top-k picks of shape {tuple(ours.shape)}, official {tuple(theirs.shape)}"
            )
        differing += int((ours != theirs).any(dim=-1).sum())
        our_values = retrieved.scores.gather(-1, official_indices[block]) * num_heads  # B F K
        value_difference = max(value_difference, _max_difference(our_values, official_values[block]))
    return {"top-k picks": float(differing), "top-k values": value_difference}


def check_folder(folder: str | Path, overrides: dict | None = None) -> list[PartResult]:
    """Every part of TOLERANCES, computed where the folder has its files, absent otherwise.

    overrides: DiTConfig/MemoryConfig fields replaced in the official configuration (tests revert one
    official choice with it and see the check fail).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(
            f"{folder}: no such folder; pass a folder in the layout of tests/fixtures/official_hydra "
            "(the official code's outputs on tiny random weights)"
        )
    from hybridmem.official.text import text_parity
    from hybridmem.official.vae import vae_parity

    differences: dict[str, float] = {}
    for part in (check_cameras, check_scheduler, vae_parity, text_parity):
        differences.update(part(folder))
    differences.update(check_dit(folder, overrides))
    if not differences:
        raise DataError(
            f"{folder}: none of the official fixture's files are here (dit_config.json, dit.pth, "
            "dit_inputs.safetensors, scheduler_expected.json, vae.pth, t5.pth, camN.json, ...)"
        )
    return [PartResult(part, differences.get(part), tolerance) for part, tolerance in TOLERANCES.items()]


def report_passed(report: list[PartResult]) -> bool:
    return all(result.passed for result in report)


def format_report(report: list[PartResult]) -> str:
    lines = [f"{'part':<24}{'max |difference|':>18}{'tolerance':>12}  result"]
    for result in report:
        if result.difference is None:
            lines.append(f"{result.part:<24}{'-':>18}{'-':>12}  absent")
            continue
        if result.part == "top-k picks":
            shown = f"{int(result.difference)} frames"
            tolerance = "identical"
        else:
            shown, tolerance = (
                f"{result.difference:.3g}",
                f"{result.tolerance:.0e}" if result.tolerance else "exact",
            )
        lines.append(f"{result.part:<24}{shown:>18}{tolerance:>12}  {'ok' if result.passed else 'FAIL'}")
    failed = [result.part for result in report if not result.passed]
    lines.append("all parts within tolerance" if not failed else f"FAILED: {', '.join(failed)}")
    return "\n".join(lines)
