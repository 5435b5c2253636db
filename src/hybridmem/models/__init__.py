"""Models: the causal video VAE, the camera-conditioned flow-matching DiT, and its memories."""
