"""`python -m pyro_vae ...`: the same command line as `pyro-vae`."""

from pyro_vae.cli import main

main()
