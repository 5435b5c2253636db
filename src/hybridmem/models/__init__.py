"""Models: the causal video VAE, the camera-conditioned flow-matching DiT, and its memories."""

# Torch-free names the CLI's flags check before anything heavy is imported (models.world reads them too).
OBJECTIVES = ("flow", "mean")  # see models.world.DiTConfig.objective
