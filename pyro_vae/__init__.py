"""pyro-vae: the ZhuSuan MNIST variational autoencoder, re-implemented in Pyro.

Importing the package is cheap: torch and Pyro load only when a module that needs them does.
"""

__version__ = "0.1.0"
