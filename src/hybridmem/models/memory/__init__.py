"""Memories: which keys and values each query latent frame attends to.

`config.py` (no torch) declares the kinds and knobs, so the flags read them without importing torch;
`base.py` holds the interface (`Memory`, `SequenceInfo`, `AttentionHandle`) and the registry, which
`build_memory` fills by importing each kind's module (`MEMORY_KINDS`) the first time it is built.
"""

from hybridmem.models.memory.config import MEMORY_KINDS, MemoryConfig

__all__ = ["MEMORY_KINDS", "MemoryConfig"]
