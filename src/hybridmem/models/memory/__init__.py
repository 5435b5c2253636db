"""Memories: which keys and values each query latent frame attends to. See base.py for the interface.

`config.py` (no torch) declares the kinds and knobs; each kind's module registers its class in
base.MEMORIES when it is imported, which base.build_memory does the first time the kind is built. The
torch names below are imported on first use, so the flags can read the knobs without torch.
"""

import importlib

from hybridmem.models.memory.config import MEMORY_KINDS, MemoryConfig

_TORCH_NAMES = {
    "MEMORIES": "base",
    "AttentionHandle": "base",
    "Memory": "base",
    "SequenceInfo": "base",
    "build_memory": "base",
    "memory_class": "base",
    "register_memory": "base",
    "HydraMemory": "hydra",
    "MemoryTokenizer": "hydra",
}


def __getattr__(name: str):
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_TORCH_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MEMORY_KINDS", "MemoryConfig", *_TORCH_NAMES]
