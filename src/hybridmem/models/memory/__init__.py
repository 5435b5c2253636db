"""Memories: which keys and values each query latent frame attends to. See base.py for the interface.

Importing this package registers every memory kind (full, window, fov, hydra) in base.MEMORIES.
"""

from hybridmem.models.memory import fov, hydra, window  # noqa: F401  (register their kinds)
from hybridmem.models.memory.base import (
    MEMORIES,
    AttentionHandle,
    Memory,
    MemoryConfig,
    SequenceInfo,
    build_memory,
    register_memory,
)
from hybridmem.models.memory.hydra import HydraMemory, MemoryTokenizer

__all__ = [
    "MEMORIES",
    "AttentionHandle",
    "HydraMemory",
    "Memory",
    "MemoryConfig",
    "SequenceInfo",
    "MemoryTokenizer",
    "build_memory",
    "register_memory",
]
