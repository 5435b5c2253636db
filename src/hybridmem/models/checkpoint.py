"""Model-only checkpoints: weights in `model.safetensors`, the config in `config.json`, nothing else.

A folder written by `save_model` rebuilds the model from its two files alone:

    save_model(model, "runs/vae/final")
    model = load_model("runs/vae/final")            # a VideoVAE or a WorldModel, in eval mode

config.json holds {"format", "class", "config", "hybridmem_version"}; the class name picks the model class
from MODEL_CLASSES and the config dict rebuilds its config dataclass (`Config.from_dict`). A world model also
records the VAE whose latents it learnt, {"trained_with": {"vae": {"sha256", "path"}}} (the content hash
the latent cache recorded, runlock.model_sha256), so sampling can refuse another VAE; models saved before
this have no record. Training state (optimizer, EMA, step) is the trainer's business and lives in its own
files. Both files are written through hybridmem.publish (temp name, checked, renamed).

Loading checks what would otherwise come out as a black video or all-zero latents without a word (issue 26):
every weight is finite (the error names the tensors that are not), the values a model divides by, raises
to a power or normalises with are in range (CONFIG_RANGES: rope_theta, eps, latent_scale ...), and the
weights were saved with the config.json beside them (save_model writes that config into the weights'
metadata too, so another model's weights copied into a folder are refused naming the field that differs).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from hybridmem.errors import CheckpointError, ConfigError, HybridmemError
from hybridmem.models.vae import VideoVAE
from hybridmem.models.world import WorldModel

FORMAT = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAINED_WITH_KEY = "trained_with"
CONFIG_METADATA_KEY = "hybridmem_config"  # model.safetensors metadata: {"class", "config"} it was saved with

# Config fields (at any depth, by name) whose values the model divides by, raises to a power or scales
# latents with: (low, high, why). Outside it the model computes NaN or a constant (rope_theta -1: NaN
# rotations, a black video; a latent_scale of 0: all-zero latents). A sequence is checked item by item.
CONFIG_RANGES = {
    "rope_theta": (1.0, 1e12, "the base of the rotary frequencies, raised to fractional powers"),
    "eps": (1e-12, 0.1, "the epsilon of every norm: 0 divides by zero, a large one erases the signal"),
    "latent_scale": (1e-6, 1e6, "the per-channel latent scale: 0 maps every latent to 0"),
    "latent_shift": (-1e6, 1e6, "the per-channel latent shift"),
}


def _model_classes() -> dict[str, type[nn.Module]]:
    return {"VideoVAE": VideoVAE, "WorldModel": WorldModel}


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP/FSDP (`.module`) or torch.compile (`._orig_mod`) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def save_model(model: nn.Module, folder: str | os.PathLike, trained_with: dict | None = None) -> Path:
    """Write model.safetensors and config.json into `folder` (created if needed); returns the folder.

    trained_with: what the model learnt from, recorded in config.json (a world model: {"vae": {"sha256",
    "path"}} of the VAE its cache was encoded with; see read_trained_with).
    Each file is published on its own (hybridmem.publish), weights first, config last, so a crash leaves
    either the previous checkpoint or a weights/config pair that load_model checks against each other.
    """
    from safetensors.torch import save_file

    from hybridmem import publish

    model = _unwrap(model)
    classes = _model_classes()
    class_name = type(model).__name__
    if classes.get(class_name) is not type(model):
        raise CheckpointError(
            f"save_model: cannot save a {class_name}; savable classes: {', '.join(sorted(classes))}"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # safetensors wants contiguous, unshared CPU tensors.
    state = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in model.state_dict().items()}
    # the config the weights belong to, in their own file too: load_model refuses a config.json beside them
    # that says otherwise (another model's weights copied in, or a hand-edited config)
    saved_with = json.dumps({"class": class_name, "config": model.config.to_dict()}, sort_keys=True)
    with publish.staged(folder / WEIGHTS_FILE, check=publish.check_safetensors) as temp:
        save_file(state, temp, metadata={"format": "pt", CONFIG_METADATA_KEY: saved_with})

    from hybridmem import __version__

    document = {
        "format": FORMAT,
        "class": class_name,
        "config": model.config.to_dict(),
        "hybridmem_version": __version__,
    }
    if trained_with:
        document[TRAINED_WITH_KEY] = trained_with
    publish.write_json(folder / CONFIG_FILE, document)
    return folder


def read_trained_with(folder: str | os.PathLike) -> dict | None:
    """The `trained_with` record of a model folder's config.json ({"vae": {"sha256", "path"}}), None when it
    has none (saved before records existed, or not a world model) or the file cannot be read (load_model
    names that)."""
    from hybridmem import jsonio

    try:
        document = jsonio.read_json(Path(folder) / CONFIG_FILE, expect=None)
    except HybridmemError:
        return None
    record = document.get(TRAINED_WITH_KEY) if isinstance(document, dict) else None
    vae = record.get("vae") if isinstance(record, dict) else None
    if not isinstance(vae, dict) or not isinstance(vae.get("sha256"), str):
        return None
    return record


def read_config(folder: str | os.PathLike) -> tuple[str, dict]:
    """(class name, config dict) of the checkpoint in `folder`, validated but without loading weights."""
    from hybridmem import jsonio

    path = Path(folder) / CONFIG_FILE
    if not path.exists():
        raise CheckpointError(
            f"{path}: missing; a model checkpoint folder holds {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    fix = "re-save the model with save_model"
    document = jsonio.read_json(path, expect=None, error=CheckpointError, fix=fix)
    if not isinstance(document, dict) or not {"format", "class", "config"} <= set(document):
        raise CheckpointError(f"{path}: expected keys 'format', 'class', 'config'; re-save with save_model")
    if not isinstance(document["config"], dict):
        raise CheckpointError(
            f"{path}: 'config' must be a mapping of field names to values; re-save the model"
        )
    if document["format"] != FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint format {document['format']} is not supported (expected {FORMAT})"
        )
    classes = _model_classes()
    if document["class"] not in classes:
        raise CheckpointError(
            f"{path}: class '{document['class']}' is unknown; valid classes: {', '.join(sorted(classes))}"
        )
    try:  # every field of the right type and in range, as load_model will need it
        classes[document["class"]].config_class.from_dict(document["config"])
    except (ConfigError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: invalid {document['class']} config: {error}; {fix}") from None
    check_config_values(path, document["config"])
    return document["class"], document["config"]


def brief_list(names: list[str], limit: int = 5) -> str:
    """The first `limit` names, comma-separated, and how many more there are."""
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_state_matches(
    expected: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    source: str,
    fix: str,
    file_names: Mapping[str, str] | None = None,
) -> None:
    """Raise CheckpointError unless `state` has exactly the keys and shapes of `expected` (a module's state).

    Done before `load_state_dict` so that a mismatch is reported as the keys at fault, not as torch's
    RuntimeError. `source` names the file(s) (or "the state dict"); `fix` says what to do about it;
    `file_names` (model key -> the key in the file, for converted states) lets the message name both.
    """
    file_names = file_names or {}

    def named(key: str) -> str:
        original = file_names.get(key, key)
        return key if original == key else f"{key} (in the file: {original})"

    missing = [named(key) for key in sorted(set(expected) - set(state))]
    unexpected = [named(key) for key in sorted(set(state) - set(expected))]
    wrong_shape = [
        f"{named(key)} {tuple(state[key].shape)}, expected {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(state))
        if tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    problems = [
        f"{len(keys)} {label}: {brief_list(keys)}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
        if keys
    ]
    if problems:
        raise CheckpointError(f"{source}: weights do not match the model ({'; '.join(problems)}); {fix}")


def load_model(folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved in `folder` from its config.json and model.safetensors; eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    class_name, config_dict = read_config(folder)
    model_class = _model_classes()[class_name]
    try:
        config = model_class.config_class.from_dict(config_dict)
        model = model_class(config)
    except (ConfigError, TypeError, ValueError) as error:  # TypeError: a field of the wrong JSON type
        raise CheckpointError(f"{folder / CONFIG_FILE}: invalid {class_name} config: {error}") from error

    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: missing; save the model again with save_model")
    try:
        state = load_file(str(weights_path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{weights_path}: unreadable or corrupt ({error}); save the model again"
        ) from error

    check_state_matches(
        model.state_dict(),
        state,
        str(weights_path),
        fix=f"the model is the one {CONFIG_FILE} describes: the two files come from different models, "
        "save the model again",
    )
    check_weights_are_finite(weights_path, state)
    check_saved_with(folder, weights_path, class_name, config_dict)
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval()


def check_config_values(path: Path, config: dict, prefix: str = "") -> None:
    """CheckpointError naming the first number of `config` (nested) that is not finite or, for a field of
    CONFIG_RANGES, outside its range (a sequence is checked item by item)."""
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            check_config_values(path, value, f"{name}.")
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        numbers = [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]
        low, high, why = CONFIG_RANGES.get(key, (-math.inf, math.inf, ""))
        if any(not (math.isfinite(v) and low <= v <= high) for v in numbers):
            allowed = f" ({why}; allowed: {low:g} to {high:g})" if why else " (not a finite number)"
            raise CheckpointError(
                f"{path}: config field '{name}' = {value!r} is out of range{allowed}; the file is corrupt or "
                "was edited: restore the config.json saved with the weights"
            )


def check_weights_are_finite(weights_path: Path, state: dict[str, torch.Tensor]) -> None:
    """CheckpointError naming the tensors holding NaN or infinity (a diverged run or a corrupt file)."""
    bad = []
    for name, tensor in state.items():
        if tensor.is_floating_point():
            count = int((~torch.isfinite(tensor)).sum())
            if count:
                bad.append(f"{name} ({count} of {tensor.numel()})")
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more tensors" if len(bad) > 3 else "")
        raise CheckpointError(
            f"{weights_path}: non-finite weights (NaN or infinity) in {shown}; the run diverged or the file "
            "is corrupt: use an earlier checkpoint, or train again with a lower --lr"
        )


def check_saved_with(folder: Path, weights_path: Path, class_name: str, config: dict) -> None:
    """CheckpointError when the weights were saved with another config than config.json's (files of two
    models in one folder); weights saved before this record, or by other writers, are not checked."""
    from safetensors import safe_open

    with safe_open(str(weights_path), framework="pt") as handle:
        text = (handle.metadata() or {}).get(CONFIG_METADATA_KEY)
    if text is None:
        return
    try:
        saved = json.loads(text)
        saved_class, saved_config = saved["class"], saved["config"]
    except (ValueError, TypeError, KeyError):
        raise CheckpointError(
            f"{weights_path}: unreadable '{CONFIG_METADATA_KEY}' metadata; save the model again"
        ) from None
    if saved_class != class_name:
        raise CheckpointError(
            f"{folder}: {WEIGHTS_FILE} holds a {saved_class}'s weights, {CONFIG_FILE} describes a "
            f"{class_name}; the two files come from different models: restore the pair saved together"
        )
    differing = _differences(saved_config, json.loads(json.dumps(config)))
    if differing:
        raise CheckpointError(
            f"{folder}: {CONFIG_FILE} does not describe the weights in {WEIGHTS_FILE} "
            f"({'; '.join(differing[:3])}); the two files come from different models (or config.json was "
            "edited): restore the pair saved together"
        )


def _differences(saved: dict, now: dict, prefix: str = "") -> list[str]:
    """'field: X in config.json, the weights were saved with Y' for each field that differs (nested)."""
    found = []
    for key in sorted(set(saved) | set(now)):
        old, new = saved.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found += _differences(old, new, f"{prefix}{key}.")
        elif old != new and key in saved and key in now:  # a field one side lacks predates it: not compared
            found.append(f"{prefix}{key}: {new!r} in {CONFIG_FILE}, the weights were saved with {old!r}")
    return found


def check_model_output(values: torch.Tensor, what: str, model: str) -> None:
    """CheckpointError when `values` (a model's output on its way to a video or a cache) hold NaN or
    infinity, or are one constant: what broken weights or config produce, shown as a black video or cached
    as all-zero latents. what: names the output ("generation: the decoded frames"); model: its maker."""
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        raise CheckpointError(
            f"{what} hold {int((~finite).sum())} of {values.numel()} non-finite values (NaN or infinity); "
            f"{model}'s weights or config are broken: check them, or use an earlier checkpoint"
        )
    if values.numel() > 1 and bool((values == values.flatten()[0]).all()):
        raise CheckpointError(
            f"{what} are all {float(values.flatten()[0]):g}, one constant; {model}'s weights or config are "
            "broken (all-zero weights, a zero scale): check them, or use an earlier checkpoint"
        )
