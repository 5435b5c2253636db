"""Fixtures every test folder may use (tiny models: tests/tiny.py; tiny train configs and latent caches:
tests/train/helpers.py)."""

import pytest

from tiny import save_tiny_models


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A folder with world/ (a tiny hydra world model, weights perturbed) and vae/ (a tiny VAE); read-only."""
    return save_tiny_models(tmp_path_factory.mktemp("tiny_models"))
