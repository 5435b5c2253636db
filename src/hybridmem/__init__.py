"""hybridmem: hybrid memory for dynamic video world models (HM-World, HyDRA, baselines, benchmark).

The package's layers (imports point down: cli, demo, recipe, eval, sample/train, world, data,
models/diffusion/warp, geometry/runlock and the low modules), what lives where, how to add a memory
variant, a metric or a budget, and the one shape glossary every module's shape strings use are in
docs/ARCHITECTURE.md; tests/test_import_layers.py checks the imports against that order.
"""

__version__ = "0.1.0"
