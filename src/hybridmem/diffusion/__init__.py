"""Flow-matching schedule and sampler (flow.py) and long rollouts by chained segments (rollout.py)."""
