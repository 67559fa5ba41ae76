"""superconsistency: sharpness, NTK spectra and learning-rate transfer across width, depth and γ, in JAX."""
__version__ = '0.1.0'
