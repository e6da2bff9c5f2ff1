"""Adversarial Autoencoders (Makhzani et al., 2016) in JAX/Flax."""

__version__ = '0.1.0'
