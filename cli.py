"""`python cli.py train | generate | ...` inside the clone, as the design card has it.

The command line is `pyro_vae/cli.py` (installed as `pyro-vae`, or `python -m pyro_vae`); this shim is not installed.
"""

from pyro_vae.cli import app, main  # noqa: F401  (app: for tests that invoke it in process)

if __name__ == "__main__":
    main()
