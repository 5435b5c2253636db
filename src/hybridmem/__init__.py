"""hybridmem: hybrid memory for dynamic video world models (HM-World, HyDRA, baselines, benchmark)."""

__version__ = "0.1.0"
