"""Memories: which keys and values each query latent frame attends to. See base.py for the interface."""

from hybridmem.models.memory.base import MemoryConfig, MemoryContext, build_memory

__all__ = ["MemoryConfig", "MemoryContext", "build_memory"]
