"""Tools around the ``aae_jax`` library, not part of it: the README's results
table (``python -m tools.report``)."""
