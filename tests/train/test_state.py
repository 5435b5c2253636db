import json

import numpy as np
import pytest
import torch
from torch import nn

from hybridmem import runfolder
from hybridmem.errors import CheckpointError
from hybridmem.train import state as train_state
from hybridmem.train.ema import EMA


def save_linear(model, folder):
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / "weights.pt")


def load_linear(folder):
    model = nn.Linear(3, 2)
    model.load_state_dict(torch.load(folder / "weights.pt"))
    return model


def make(seed=0):
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    return model, optimizer


def save(run, step, model, optimizer, keep=3, **kwargs):
    return train_state.save_checkpoint(
        run, step, model, optimizer, {"lr": 0.1}, keep=keep, save_model_fn=save_linear, **kwargs
    )


def test_round_trip_restores_weights_optimizer_and_rng(tmp_path):
    model, optimizer = make()
    ema = EMA(model, 0.9)
    generator = torch.Generator().manual_seed(5)
    folder = save(tmp_path, 7, model, optimizer, ema_model=ema.model, rank_rng_states=[generator.get_state()])
    expected_next = (torch.rand(3), np.random.rand(), torch.rand(2, generator=generator))  # noqa: NPY002

    fresh, fresh_optimizer = make(seed=1)
    fresh_ema = EMA(fresh, 0.9)
    loaded = train_state.load_checkpoint(
        folder, fresh, fresh_optimizer, ema_model=fresh_ema.model, load_model_fn=load_linear
    )
    assert loaded["step"] == 7 and loaded["config"] == {"lr": 0.1}
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(
        fresh_optimizer.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )
    restored_generator = torch.Generator()
    restored_generator.set_state(loaded["ranks"][0])
    assert torch.equal(torch.rand(3), expected_next[0])
    assert np.random.rand()  # noqa: NPY002 == expected_next[1]
    assert torch.equal(torch.rand(2, generator=restored_generator), expected_next[2])


def test_keep_last_n_and_latest(tmp_path):
    model, optimizer = make()
    for step in (1, 2, 3, 4, 5):
        save(tmp_path, step, model, optimizer, keep=2)
    names = [folder.name for folder in runfolder.list_checkpoints(tmp_path)]
    assert names == ["step_00000004", "step_00000005"]
    assert runfolder.latest_checkpoint(tmp_path).name == "step_00000005"


def test_crash_mid_save_leaves_previous_checkpoint_usable(tmp_path, monkeypatch):
    model, optimizer = make()
    save(tmp_path, 10, model, optimizer)
    real_save = torch.save

    def crash_on_rng(obj, path, *args, **kwargs):
        if str(path).endswith("rng.pt"):
            raise KeyboardInterrupt("power cut")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", crash_on_rng)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path, 20, model, optimizer)
    monkeypatch.setattr(torch, "save", real_save)

    latest = runfolder.latest_checkpoint(tmp_path)
    assert latest.name == "step_00000010"
    fresh, fresh_optimizer = make(seed=3)
    assert (
        train_state.load_checkpoint(latest, fresh, fresh_optimizer, load_model_fn=load_linear)["step"] == 10
    )
    torch.testing.assert_close(fresh.weight, model.weight - 1.0)
    # the next save clears the half-written temp folder
    save(tmp_path, 30, model, optimizer)
    leftovers = [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []


def test_folder_without_state_json_is_ignored_and_rejected(tmp_path):
    model, optimizer = make()
    save(tmp_path, 1, model, optimizer)
    broken = tmp_path / "checkpoints" / "step_00000009"
    broken.mkdir()
    (broken / "state.json").write_text("{not json")
    assert runfolder.latest_checkpoint(tmp_path).name == "step_00000001"
    with pytest.raises(CheckpointError, match="corrupt"):
        train_state.load_checkpoint(broken, model, load_model_fn=load_linear)
    with pytest.raises(CheckpointError, match="state.json"):
        train_state.load_checkpoint(tmp_path / "nowhere", model, load_model_fn=load_linear)


def test_mismatched_weights_raise_checkpoint_error(tmp_path):
    model, optimizer = make()
    folder = save(tmp_path, 1, model, optimizer)
    state = json.loads((folder / "state.json").read_text())
    assert state["format_version"] == train_state.FORMAT_VERSION
    other = nn.Linear(5, 2)
    with pytest.raises(CheckpointError, match="do not match"):
        train_state.load_checkpoint(folder, other, load_model_fn=load_linear)


def test_ema_tracks_weights():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model, step=100)  # past the warm-up: the plain decay
    torch.testing.assert_close(ema.model.weight, torch.full((1, 2), 0.5))
    ema.update(model, step=101)
    torch.testing.assert_close(ema.model.weight, torch.full((1, 2), 0.75))
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_ema_warm_up_forgets_the_initialisation_of_a_short_run():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.999)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(890) == pytest.approx(0.99)
    assert ema.decay_at(100_000) == 0.999
    with torch.no_grad():
        model.weight.fill_(1.0)
    steps = 2000
    for step in range(steps):
        ema.update(model, step)
    # the weight left on the initial 0 is the product of the decays; slow reference: multiply them out
    kept = 1.0
    for step in range(steps):
        kept *= min(0.999, (1 + step) / (10 + step))
    torch.testing.assert_close(ema.model.weight, torch.full((1, 1), 1.0 - kept))
    assert kept < 1e-6 < 0.999**steps  # a plain 0.999 would still keep 13.5% of the initialisation


def test_resolve_model_folder(tmp_path):
    model, optimizer = make()
    run = tmp_path / "run"
    with pytest.raises(CheckpointError, match="no model here"):
        runfolder.resolve_model_folder(run)
    folder = save(run, 4, model, optimizer, ema_model=model)
    for name in ("model", "ema"):
        (folder / name / "config.json").write_text("{}")
    assert runfolder.resolve_model_folder(run) == folder / "ema"
    assert runfolder.resolve_model_folder(run, ema=False) == folder / "model"
    assert runfolder.resolve_model_folder(folder / "model") == folder / "model"
    train_state.save_final_model(model, run / "final", save_model_fn=save_linear)
    (run / "final" / "config.json").write_text("{}")
    assert runfolder.resolve_model_folder(run) == run / "final"
    assert runfolder.resolve_model_folder(run, ema=False) == folder / "model"
