"""Sampling: the Python API (pipeline.WorldPipeline) and the `hybridmem sample` command (cli.py)."""
