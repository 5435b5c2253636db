"""The reference-run recipe: budgets, stage plan, resume logic, and the smoke budget end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hybridmem
from hybridmem.cli import main
from hybridmem.errors import CheckpointError, ConfigError, DataError
from hybridmem.models.memory.base import MEMORIES, Memory
from hybridmem.models.memory.config import KNOBS, MEMORY_KINDS
from hybridmem.models.memory.retrieval import inside_window, slice_spans, window_indices
from hybridmem.recipe.budgets import BUDGETS, get_budget
from hybridmem.recipe.commands import build_parser
from hybridmem.recipe.export import export_run, verify_export
from hybridmem.recipe.recipe import EVAL_BASELINES, RECIPE_FILE, plan_stages, read_record, run_recipe
from hybridmem.recipe.summary import RESULTS_FILE, results_markdown
from hybridmem.train.config import WorldTrainConfig, config_from_args

# --- budgets and the plan (no training) ----------------------------------------------------------------


def test_unknown_budget_lists_valid_names(tmp_path, capsys):
    with pytest.raises(ConfigError, match="smoke, cpu, gpu, cpu-wide"):
        get_budget("huge")
    assert main(["recipe", "--budget", "huge", "--out", str(tmp_path / "run")]) == 2
    assert "valid budgets: smoke, cpu, gpu, cpu-wide" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", list(BUDGETS))
def test_every_variant_gets_the_same_budget_seed_and_data(tmp_path, name):
    stages = plan_stages(get_budget(name), tmp_path, "cpu")
    names = [stage.name for stage in stages]
    assert names == [
        "data-train", "data-val", "data-test", "vae", "encode-train", "encode-val",
        *(f"world-{kind}" for kind in MEMORY_KINDS), "eval",
    ]  # fmt: skip
    world = [stage.argv for stage in stages if stage.name.startswith("world-")]
    # identical commands once the memory kind and the output folder are taken out
    stripped = []
    for argv in world:
        flags = dict(zip(argv[2::2], argv[3::2], strict=False))
        assert "--resume" in argv
        stripped.append({k: v for k, v in flags.items() if k not in ("--memory", "--out")})
    assert all(item == stripped[0] for item in stripped)
    assert sorted(argv[argv.index("--memory") + 1] for argv in world) == sorted(MEMORY_KINDS)
    # the test set is its own forced split (held-out scenes and subjects); eval reads it
    test_stage = stages[names.index("data-test")]
    assert test_stage.argv[test_stage.argv.index("--split") + 1] == "test"
    eval_argv = stages[-1].argv
    assert eval_argv[eval_argv.index("--split") + 1] == "test"
    assert eval_argv.count("--checkpoint") == len(MEMORY_KINDS) and "copy-last" in eval_argv


@pytest.mark.parametrize("name", list(BUDGETS))
def test_memory_flags_reach_every_world_stage_and_validate(tmp_path, name):
    budget = get_budget(name)
    flags = {knob.option: str(getattr(budget, knob.flag)) for knob in KNOBS}  # every memory knob
    for stage in plan_stages(budget, tmp_path, "cpu"):
        if stage.name.startswith("world-"):
            argv = stage.argv
            assert {flag: argv[argv.index(flag) + 1] for flag in flags} == flags
            # the flags parse and validate exactly as the recipe will run them
            args = build_parser().parse_args(argv)
            config = config_from_args(WorldTrainConfig, args).validate().memory_config()
            for knob in KNOBS:
                assert getattr(config, knob.name) == knob.to_config(getattr(budget, knob.flag)), knob.name
            # spelled out, so a renamed or dropped flag fails here too
            assert argv[argv.index("--memory-top-k") + 1] == str(budget.memory_top_k) == str(config.top_k)
            assert argv[argv.index("--memory-window") + 1] == str(budget.memory_window) == str(config.window)
            assert argv[argv.index("--slice-ranking") + 1] == "affinity" == config.slice_ranking
            assert argv[argv.index("--tokenizer-kernel") + 1] == "2,2,2" and config.tokenizer_kernel == (
                2,
                2,
                2,
            )


@pytest.mark.parametrize("name", list(BUDGETS))
def test_retrieval_selects_a_strict_subset_at_the_budget_geometry(name):
    """fov and hydra must drop candidates at every query frame, or they would train like `full`."""
    budget = get_budget(name)
    # causal VAE: 4k+1 frames -> k+1 latent frames; context and target are encoded apart
    context = (budget.context_frames - 1) // 4 + 1
    frames = context + (budget.target_frames - 1) // 4 + 1
    kernel_f = int(budget.tokenizer_kernel.split(",")[0])
    windows = window_indices(frames, budget.memory_window)  # F Wn
    assert windows.shape[1] < frames  # the window memory sees part of the sequence
    # hydra: memory slices outside each query frame's window, every query frame
    slices = inside_window(windows, slice_spans(frames, kernel_f))  # F S
    assert int((~slices).sum(-1).min()) > budget.memory_top_k
    # fov: context latent frames outside each target frame's window
    context_spans = torch.arange(context)[:, None].repeat(1, 2)  # C 2
    hidden = ~inside_window(windows[context:], context_spans)  # T C
    assert int(hidden.sum(-1).min()) > budget.memory_top_k


def _passing_gate(budget, run_dir, device):
    """Stands in for recipe.vae_gate when the fake runner made no real VAE."""
    return {"passed": True}


def _fake_runner(log: list, fail_at: str | None = None):
    """Creates each stage's outputs instead of running it; raises at `fail_at` like a killed process."""

    def runner(stage):
        if stage.name == fail_at:
            Path(stage.folder).mkdir(parents=True, exist_ok=True)  # a killed stage leaves its checkpoints
            raise KeyboardInterrupt
        log.append(stage.name)
        for path in stage.outputs:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            if stage.name == "eval" and path.endswith("aggregate.json"):
                methods = {kind: {} for kind in (*MEMORY_KINDS, *EVAL_BASELINES)}
                Path(path).write_text(json.dumps({"num_clips": stage.amount, "methods": methods}))
            else:
                Path(path).write_text("{}")

    return runner


def test_killed_run_resumes_at_the_interrupted_stage(tmp_path):
    budget = get_budget("smoke")
    log = []
    with pytest.raises(KeyboardInterrupt):
        run_recipe(budget, tmp_path, "cpu", gate=_passing_gate, runner=_fake_runner(log, fail_at="world-fov"))
    record = read_record(tmp_path)
    assert record["stages"]["world-fov"]["status"] == "failed"
    assert record["stages"]["world-window"]["status"] == "done"
    done_before = record["stages"]["vae"]["finished"]
    log.clear()
    record = run_recipe(budget, tmp_path, "cpu", gate=_passing_gate, runner=_fake_runner(log))
    assert log == ["world-fov", "world-hydra", "eval"]
    assert record["invocations"][-1]["ran"] == log
    assert record["stages"]["vae"]["finished"] == done_before
    fov = record["stages"]["world-fov"]
    assert [attempt["status"] for attempt in fov["attempts"]] == ["failed", "done"]
    assert fov["command"].startswith("hybridmem train world ") and "--memory fov" in fov["command"]


def test_a_stage_redone_from_scratch_sets_its_earlier_attempts_aside(tmp_path):
    budget = get_budget("smoke")
    with pytest.raises(KeyboardInterrupt):
        run_recipe(budget, tmp_path, "cpu", gate=_passing_gate, runner=_fake_runner([], fail_at="world-fov"))
    shutil.rmtree(tmp_path / "world" / "fov")  # the user deletes the folder to redo the stage
    record = run_recipe(budget, tmp_path, "cpu", gate=_passing_gate, runner=_fake_runner([]))
    fov = record["stages"]["world-fov"]
    # the killed attempt did no part of the finished work: it must not lower the stage's rate
    assert [attempt["status"] for attempt in fov["attempts"]] == ["done"]
    assert [attempt["status"] for attempt in fov["discarded_attempts"]] == ["failed"]
    assert fov["wall_s"] == fov["attempts"][0]["wall_s"]


def test_run_dir_refuses_another_budget(tmp_path):
    run_recipe(get_budget("smoke"), tmp_path, "cpu", gate=_passing_gate, runner=_fake_runner([]))
    with pytest.raises(ConfigError, match="budget 'smoke'"):
        run_recipe(get_budget("cpu"), tmp_path, "cpu", gate=_passing_gate, runner=_fake_runner([]))
    with pytest.raises(ConfigError, match=r"\(world_steps\)"):  # fewer steps than were trained
        run_recipe(
            replace(get_budget("smoke"), world_steps=3),
            tmp_path,
            "cpu",
            gate=_passing_gate,
            runner=_fake_runner([]),
        )
    # a reworded description (it carries the measured time) is prose, not a setting: the run resumes
    log = []
    run_recipe(
        replace(get_budget("smoke"), description="reworded"),
        tmp_path,
        "cpu",
        gate=_passing_gate,
        runner=_fake_runner(log),
    )
    assert log == []


def test_more_world_steps_resume_the_world_models_and_evaluate_again(tmp_path):
    budget = get_budget("smoke")
    run_recipe(budget, tmp_path, "cpu", gate=_passing_gate, runner=_fake_runner([]))
    longer = replace(budget, world_steps=budget.world_steps + 4)
    log = []
    record = run_recipe(longer, tmp_path, "cpu", gate=_passing_gate, runner=_fake_runner(log))
    # the data, VAE and caches stand; each world model resumes to the new step count; eval runs again
    assert log == [*(f"world-{kind}" for kind in MEMORY_KINDS), "eval"]
    assert record["budget"]["world_steps"] == budget.world_steps + 4
    assert record["extensions"][-1]["from"] == budget.world_steps
    for kind in MEMORY_KINDS:
        command = record["stages"][f"world-{kind}"]["command"]
        assert f"--steps {budget.world_steps + 4}" in command and "--resume" in command
        assert [a["status"] for a in record["stages"][f"world-{kind}"]["attempts"]] == ["done", "done"]
    # eval's folder holds the old models' results, which it refuses to mix with new ones: redone
    assert record["stages"]["eval"]["command"].endswith(" --overwrite")
    evaluation = record["stages"]["eval"]
    assert [a["status"] for a in evaluation["attempts"]] == ["done"]  # the old models' benchmark: aside
    assert (
        len(evaluation["discarded_attempts"]) == 1
        and evaluation["wall_s"] == evaluation["attempts"][0]["wall_s"]
    )
    # once there, nothing reruns; the old budget is now the smaller one and is refused
    log.clear()
    run_recipe(longer, tmp_path, "cpu", gate=_passing_gate, runner=_fake_runner(log))
    assert log == []
    with pytest.raises(ConfigError, match=r"\(world_steps\)"):
        run_recipe(budget, tmp_path, "cpu", gate=_passing_gate, runner=_fake_runner([]))


def test_export_refuses_an_unfinished_run(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_recipe(
            get_budget("smoke"),
            tmp_path,
            "cpu",
            gate=_passing_gate,
            runner=_fake_runner([], fail_at="world-full"),
        )
    with pytest.raises(CheckpointError, match="unfinished models"):
        export_run(tmp_path, tmp_path / "exported")
    assert not (tmp_path / "exported").exists()


# --- the smoke budget for real ---------------------------------------------------------------------------


class ToyMemory(Memory):
    """A fifth memory kind, written here as a user would add one: every token attends to the clean context
    frames' tokens only. Registered and added to MEMORY_KINDS for the smoke run below and nowhere else; the
    flags, budget, recipe stages, export, benchmark and summary must take it without another edit."""

    def forward(self, q, k, v, x, attn, sequence):
        frames, height, width = sequence.grid
        context_tokens = sequence.context_frames * height * width
        return F.scaled_dot_product_attention(
            q, k[:, :, :context_tokens], v[:, :, :context_tokens]
        )  # B a N d


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The smoke budget end to end, with the four memories and the toy fifth one (kept for the module)."""
    run_dir = tmp_path_factory.mktemp("recipe") / "smoke"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(MEMORIES, "toy", ToyMemory)
        patch.setitem(MEMORY_KINDS, "toy", __name__)
        assert main(["recipe", "--budget", "smoke", "--out", str(run_dir), "--device", "cpu"]) == 0
        yield run_dir


def test_a_fifth_memory_runs_through_the_whole_recipe(smoke_run):
    record = json.loads((smoke_run / RECIPE_FILE).read_text())
    assert record["stages"]["world-toy"]["status"] == "done"
    assert (
        json.loads((smoke_run / "world" / "toy" / "final" / "config.json").read_text())["config"]["memory"][
            "kind"
        ]
        == "toy"
    )
    aggregate = json.loads((smoke_run / "eval" / "aggregate.json").read_text())
    assert "toy" in aggregate["methods"]


def test_smoke_recipe_records_every_stage(smoke_run):
    record = json.loads((smoke_run / RECIPE_FILE).read_text())
    stages = record["stages"]
    assert list(stages) == [stage.name for stage in plan_stages(get_budget("smoke"), smoke_run, "cpu")]
    for name, entry in stages.items():
        assert entry["status"] == "done", name
        assert entry["wall_s"] > 0 and entry[f"{entry['unit']}_per_s"] > 0
        machine = entry["attempts"][-1]["machine"]
        assert machine["device"] == "cpu" and machine["torch"] and machine["cpu_count"] >= 1
        code = entry["attempts"][-1]["code"]
        assert code["version"] == hybridmem.__version__
        checkout = Path(hybridmem.__file__).resolve().parents[2]
        if (checkout / ".git").exists():  # run from a git checkout (CI's clone): the commit is recorded
            head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True)
            assert code["commit"] == head.stdout.strip() and isinstance(code["dirty"], bool)
    for name in ("report.md", "aggregate.json", "reentry_psnr.png"):
        assert (smoke_run / "eval" / name).is_file()
    assert list((smoke_run / "eval" / "side_by_side").glob("*.mp4"))
    aggregate = json.loads((smoke_run / "eval" / "aggregate.json").read_text())
    assert set(aggregate["methods"]) == {*MEMORY_KINDS, *EVAL_BASELINES}


def test_rerun_skips_finished_stages(smoke_run):
    before = json.loads((smoke_run / RECIPE_FILE).read_text())
    assert main(["recipe", "--budget", "smoke", "--out", str(smoke_run), "--device", "cpu"]) == 0
    after = json.loads((smoke_run / RECIPE_FILE).read_text())
    assert after["invocations"][-1]["ran"] == []
    assert after["invocations"][-1]["skipped"] == list(before["stages"])
    assert {name: entry["finished"] for name, entry in after["stages"].items()} == {
        name: entry["finished"] for name, entry in before["stages"].items()
    }


def test_export_then_demo_on_the_exported_folder(smoke_run, tmp_path, capsys):
    exported = tmp_path / "checkpoints"
    assert main(["recipe", "export", str(smoke_run), "--to", str(exported)]) == 0
    files = sorted(str(path.relative_to(exported)) for path in exported.rglob("*") if path.is_file())
    expected = [f"{name}/{file}" for name in ("vae", *MEMORY_KINDS)
                for file in ("config.json", "model.safetensors")]  # fmt: skip
    assert files == sorted(["manifest.json", *expected])
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["budget"]["name"] == "smoke"
    assert manifest["models"]["hydra"]["steps"] == get_budget("smoke").world_steps
    assert "--memory hydra" in manifest["models"]["hydra"]["command"]
    # the generator flags that render more clips of the training distribution (less seed/count/split/out)
    smoke = get_budget("smoke")
    args = manifest["data"]["generate_args"]
    assert args[args.index("--horizontal-fov-deg") + 1] == str(smoke.horizontal_fov_deg)
    assert (
        args[args.index("--width") + 1] == str(smoke.width) and "--seed" not in args and "--out" not in args
    )
    assert manifest["data"]["horizontal_fov_deg"] == smoke.horizontal_fov_deg
    assert args[args.index("--paths") + 1 :][: len(smoke.paths)] == list(smoke.paths) and smoke.paths
    assert manifest["data"]["paths"] == list(smoke.paths)
    shapes = verify_export(exported)
    assert shapes["vae"][1:] == (get_budget("smoke").context_frames, 3, 64, 64)
    assert all(shapes[kind][:2] == (1, 3) for kind in MEMORY_KINDS)  # 9 target frames -> 3 latent frames

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--assets", str(exported), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    video = out / "grid.mp4"
    assert video.is_file() and video.stat().st_size > 0 and (out / "grid.gif").is_file()
    table = (out / "report.md").read_text()
    assert "| hydra |" in table and "| full |" in table and "| window |" in table
    assert str(video) in printed
    # the grid: a row per clip (2 px apart), ground truth | hydra | full | window in each
    from PIL import Image

    from hybridmem.demo import DEMO_BASELINES, DEMO_CLIPS, DEMO_MODELS

    still = np.asarray(Image.open(out / "grid.png"))
    assert still.shape == (DEMO_CLIPS * 64 + 2 * (DEMO_CLIPS - 1), (1 + len(DEMO_MODELS)) * 64, 3)
    # the demo clips are held-out test clips with a re-entry and counterfactual renders
    metadata = json.loads((out / "world" / "test" / "000000" / "metadata.json").read_text())
    assert metadata["split"] == "test" and "subject_id" in metadata["counterfactuals"]
    # rendered with the training clips' generator settings, path families included
    assert metadata["config"]["paths"] == list(smoke.paths) and metadata["config"]["width"] == smoke.width
    aggregate = json.loads((out / "aggregate.json").read_text())
    assert list(aggregate["methods"]) == [*DEMO_MODELS, *DEMO_BASELINES]


def test_a_stage_older_than_a_rerun_input_is_reported_not_reused(tmp_path):
    budget = get_budget("smoke")
    run_recipe(budget, tmp_path, "cpu", gate=_passing_gate, runner=_fake_runner([]))
    (tmp_path / "vae" / "final" / "config.json").unlink()  # the VAE is trained again...
    log = []
    with pytest.raises(ConfigError, match="encode-train: its outputs are older than those of vae") as error:
        run_recipe(budget, tmp_path, "cpu", gate=_passing_gate, runner=_fake_runner(log))
    assert f"delete {tmp_path / 'cache' / 'train'}" in str(error.value)
    assert log == ["vae"]  # ...and the caches it would invalidate are not silently kept


# --- the results section ----------------------------------------------------------------------------------


def test_summary_of_the_smoke_run(smoke_run, capsys):
    assert main(["recipe", "summary", str(smoke_run)]) == 0
    text = (smoke_run / RESULTS_FILE).read_text()
    assert text in capsys.readouterr().out
    record = json.loads((smoke_run / RECIPE_FILE).read_text())
    aggregate = json.loads((smoke_run / "eval" / "aggregate.json").read_text())
    # our rows carry the aggregate's numbers and each world model's training rate
    for kind in MEMORY_KINDS:
        row = next(line for line in text.splitlines() if line.startswith(f"| {kind} | "))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1] == f"{aggregate['methods'][kind]['metrics']['psnr']:.3f}"
        assert cells[-2] == f"{record['stages'][f'world-{kind}']['steps_per_s']:.2f}"
    assert any(line.startswith("| copy-last | ") for line in text.splitlines())
    # the paper's rows, labelled, and hydra paired against every other method (bootstrap CIs over clips;
    # the comparison itself is tested in tests/eval/test_report.py)
    assert "| HyDRA | 20.357 |" in text and "for reference only: Wan2.1-1.3B-scale" in text
    for other in (*(kind for kind in MEMORY_KINDS if kind != "hydra"), "copy-last"):
        assert any(line.startswith(f"| {other} | PSNR | ") for line in text.splitlines())
    assert "95% bootstrap confidence interval" in text
    # every stage's exact command
    for entry in record["stages"].values():
        assert f"`{entry['command']}`" in text
    code = record["stages"]["eval"]["attempts"][-1]["code"]
    assert f"hybridmem {code['version']}" in text
    if "commit" in code:
        assert f"commit `{code['commit'][:12]}`" in text


def test_summary_states_the_frame_size_and_stages_run_outside_the_recipe(smoke_run, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    record = json.loads((run_dir / RECIPE_FILE).read_text())
    budget = record["budget"]
    assert budget["width"] == budget["height"]  # the smoke budget's frames are square
    assert f"at {budget['width']} px, preset" in results_markdown(run_dir)
    assert "ran outside the recipe" not in results_markdown(run_dir)
    budget["height"] = budget["width"] * 3 // 5
    record["stages"]["world-fov"]["outside_recipe"] = True
    (run_dir / RECIPE_FILE).write_text(json.dumps(record))
    text = results_markdown(run_dir)
    assert f"at {budget['width']}x{budget['height']}, preset" in text
    assert "world-fov ran outside the recipe" in text


def test_summary_refuses_an_unfinished_run(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_recipe(
            get_budget("smoke"),
            tmp_path,
            "cpu",
            gate=_passing_gate,
            runner=_fake_runner([], fail_at="world-hydra"),
        )
    with pytest.raises(DataError, match="not finished .*world-hydra.*--budget smoke"):
        results_markdown(tmp_path)
    assert main(["recipe", "summary", str(tmp_path)]) == 2
    assert not (tmp_path / RESULTS_FILE).exists()


def test_summary_names_the_code_of_each_stage_when_they_differ():
    from hybridmem.recipe.summary import _code_by_stage

    old = {"attempts": [{"started": "t"}]}  # a stage run before recipe.json recorded the code
    new = {"attempts": [{"code": {"version": "0.1.0", "commit": "89be09ee423b0560", "dirty": False}}]}
    text = _code_by_stage({"vae": old, "world-full": new, "eval": new})
    assert text == "vae: not recorded (a run started before recipe.json recorded it); world-full, eval: " + (
        "hybridmem 0.1.0, commit `89be09ee423b`"
    )
    assert _code_by_stage({"world-full": new, "eval": new}) == "hybridmem 0.1.0, commit `89be09ee423b`"


# --- the VAE: trained at the encoded length, gated against copy-last ---------------------------------


@pytest.mark.parametrize("name", list(BUDGETS))
def test_vae_trains_at_the_segment_length_the_caches_encode(tmp_path, name):
    budget = get_budget(name)
    vae_stage = next(stage for stage in plan_stages(budget, tmp_path, "cpu") if stage.name == "vae")
    frames = int(vae_stage.argv[vae_stage.argv.index("--frames") + 1])
    assert frames == budget.context_frames == budget.target_frames
    # the first VAE trained on 9-frame windows and encoded 33-frame segments: refused now
    with pytest.raises(ConfigError, match="vae_frames 9 must equal the segment lengths"):
        replace(get_budget("cpu"), vae_frames=9)


def test_recipe_until_stops_after_the_named_stage(tmp_path):
    log = []
    run_recipe(
        get_budget("smoke"), tmp_path, "cpu", gate=_passing_gate, runner=_fake_runner(log), until="vae"
    )
    assert log == ["data-train", "data-val", "data-test", "vae"]
    with pytest.raises(ConfigError, match="valid stages: data-train"):
        run_recipe(
            get_budget("smoke"), tmp_path, "cpu", gate=_passing_gate, runner=_fake_runner([]), until="x"
        )


def test_gate_runs_before_the_caches_and_stops_the_recipe(tmp_path):
    def failing_gate(budget, run_dir, device):
        raise ConfigError("VAE gate: 11.00 dB against copy-last 17.00 dB")

    log = []
    with pytest.raises(ConfigError, match="copy-last 17.00 dB"):
        run_recipe(get_budget("smoke"), tmp_path, "cpu", gate=failing_gate, runner=_fake_runner(log))
    assert log == ["data-train", "data-val", "data-test", "vae"]  # no cache, no world model


def test_smoke_vae_passed_the_gate_and_a_bad_vae_is_stopped(smoke_run, tmp_path):
    from hybridmem.models.checkpoint import load_model, save_model
    from hybridmem.recipe.recipe import GATE_FILE, vae_gate

    gate = json.loads((smoke_run / "vae" / GATE_FILE).read_text())
    assert gate["passed"] and gate["psnr"] > gate["copy_last_psnr"]
    assert list(gate["psnr_by_frame"]) == [str(get_budget("smoke").context_frames)]  # whole segments
    # the same run with a VAE whose decoder paints noise: stopped, with both numbers in the message
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run / "data" / "val", run_dir / "data" / "val")
    vae = load_model(smoke_run / "vae" / "final")
    torch.manual_seed(0)
    with torch.no_grad():
        vae.decoder.conv_out.weight.normal_(0.0, 2.0)
    save_model(vae, run_dir / "vae" / "final")
    with pytest.raises(ConfigError, match=r"does not beat copy-last") as error:
        vae_gate(get_budget("smoke"), run_dir, "cpu")
    message = str(error.value)
    assert f"reconstruction {json.loads((run_dir / 'vae' / GATE_FILE).read_text())['psnr']:.2f} dB" in message
    assert "against copy-last" in message
    assert not json.loads((run_dir / "vae" / GATE_FILE).read_text())["passed"]
