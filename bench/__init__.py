"""Speed benchmark of the train step (``python -m bench.bench``) and its PyTorch
reference; tools around the ``aae_jax`` library, not part of it."""
