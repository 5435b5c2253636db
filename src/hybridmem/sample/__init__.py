"""Sampling: the Python API (pipeline.WorldPipeline, with long rollouts in rollout.py) and the `hybridmem
sample` command (cli.py)."""
