"""Reading clips (our layout and the released HM-World layout) and the latent cache."""
