"""The run skeleton on its own (train/loop.py), with a toy model: the log, validation and checkpoint cadence,
and a non-finite loss refused with its step and the run folder's lock released."""

import dataclasses
import subprocess
import sys

import pytest
import torch

from hybridmem import runlock
from hybridmem.train import state as train_state
from hybridmem.train.logging import read_metrics
from hybridmem.train.loop import training_run


@dataclasses.dataclass
class ToyConfig:
    out: str
    steps: int = 5
    lr: float = 0.1
    weight_decay: float = 0.0
    warmup: int = 0
    grad_clip: float = 1.0
    precision: str = "fp32"
    device: str = "cpu"
    seed: int = 0
    log_every: int = 2
    val_every: int = 2
    save_every: int = 2
    keep: int = 2
    resume: bool = False
    tensorboard: bool = False
    progress: bool = False

    def validate(self) -> None:
        pass


def save_state_dict(model, folder):
    folder.mkdir()
    torch.save(model.state_dict(), folder / "weights.pt")


def toy_run(config, loss_of=lambda model, x: model(x).pow(2).mean()):
    validated = []
    with training_run(config, "train toy") as run:
        torch.manual_seed(config.seed)
        model = torch.nn.Linear(3, 1)
        forward = run.start(model, generator_device="cpu",
                            save_model_fn=save_state_dict, title="toy", clips=1)  # fmt: skip
        batches = (torch.full((2, 3), float(step)) for step in range(run.start_step, config.steps))

        def validate(done):
            validated.append(done)
            return {"val_loss": float(done)}

        run.train(batches, lambda x, step: (loss_of(forward, x), {"term": torch.tensor(1.0)}), validate)
        run.finish(model, "done")
    return run, validated


def test_log_validate_and_save_cadence(tmp_path):
    run, validated = toy_run(ToyConfig(out=str(tmp_path / "run")))
    assert run.step == 5 and len(run.losses) == 5
    assert validated == [2, 4, 5]  # every --val-every steps and at the last
    rows = read_metrics(tmp_path / "run")
    assert [step for step, name, _ in rows if name == "loss"] == [2, 4, 5]  # every --log-every and the last
    assert [name for step, name, _ in rows if step == 2] == ["loss", "term", "lr", "grad_norm", "val_loss"]
    assert [p.name for p in train_state.list_checkpoints(tmp_path / "run")] == [
        "step_00000004",
        "step_00000005",
    ]
    assert (tmp_path / "run" / "final" / "weights.pt").is_file()


def test_a_non_finite_loss_names_its_step_and_releases_the_lock(tmp_path):
    config = ToyConfig(out=str(tmp_path / "run"))
    with pytest.raises(FloatingPointError, match="step 0: loss is nan"):
        toy_run(config, loss_of=lambda model, x: model(x).sum() * float("nan"))
    assert lock_is_free(tmp_path / "run")


def lock_is_free(run_dir) -> bool:
    """Whether another process can lock `run_dir` now (this process could re-lock a folder it holds)."""
    probe = "import sys; from hybridmem import runlock; runlock.acquire(sys.argv[1], 'probe').release()"
    return subprocess.run([sys.executable, "-c", probe, str(run_dir)], capture_output=True).returncode == 0


def test_the_lock_probe_sees_a_held_lock(tmp_path):
    lock = runlock.acquire(tmp_path, "train toy")
    assert not lock_is_free(tmp_path)
    lock.release()
    assert lock_is_free(tmp_path)
