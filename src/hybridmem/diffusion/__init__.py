"""The flow-matching schedule and sampler (flow.py): stateless, apart from any network."""

# Torch-free: the training flags check it before torch is imported (flow.sample_timesteps draws them).
TIMESTEP_DISTRIBUTIONS = ("uniform", "logit_normal")
