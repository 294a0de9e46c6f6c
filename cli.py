"""pyro-vae's command line: `python cli.py train | generate | evaluate | plot | reconstruct | interpolate |
quiz | download` (also installed as `pyro-vae`).

Only parsing and printing happen here; the work is in `pyro_vae`. Heavy libraries load
inside the commands, so `--help` stays fast.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import typer
from typer._click.exceptions import NoArgsIsHelpError
from typer.core import TyperGroup

from pyro_vae.config import MAX_SEED, GenerateConfig, ModelConfig, Paths, TrainConfig, default_data_dir
from pyro_vae.errors import Interrupted, PyroVAEError


class _OneLineErrors(TyperGroup):
    """Every mistake, in the options or in what they point at, becomes one line on stderr and a non-zero exit."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as exc:
            exc.show()
            code = exc.exit_code
        except typer.TyperException as exc:  # click's usage errors: bad or missing option values
            where = f" (see: {exc.ctx.command_path} --help)" if getattr(exc, "ctx", None) else ""
            typer.echo(f"error: {exc.format_message()}{where}", err=True)
            code = exc.exit_code
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            code = 130
        except Interrupted as exc:  # not a mistake: says where it stopped and how to continue
            typer.echo(str(exc), err=True)
            code = exc.exit_code
        except PyroVAEError as exc:
            typer.echo(f"error: {exc}", err=True)
            code = 1
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(cls=_OneLineErrors, add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False, help="Train a Pyro VAE on MNIST and generate handwritten digits.")


class _EchoHandler(logging.Handler):
    """Library log records go to stdout (warnings to stderr), one line each.

    Written with print() on the current sys.stdout, so a live progress bar (which redirects
    sys.stdout) keeps them above itself, and CliRunner in tests captures them.
    """

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr if record.levelno >= logging.WARNING else sys.stdout, flush=True)


@app.callback()
def _setup(verbose: bool = typer.Option(False, "--verbose", "-v", help="Also log details (fetch attempts, pruning).")) -> None:
    logger = logging.getLogger("pyro_vae")
    logger.handlers = [_EchoHandler()]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def _int_list(text: Optional[str], flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip()) if text else ()
    except ValueError:
        raise typer.BadParameter(f"{flag} takes comma-separated whole numbers, e.g. 3,8; got {text!r}") from None


class Precision(str, enum.Enum):
    fp32 = "fp32"
    bf16 = "bf16"


class Objective(str, enum.Enum):
    elbo = "elbo"
    iwae = "iwae"


class Mode(str, enum.Enum):
    prior = "prior"
    digit = "digit"


class DeviceName(str, enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


DataDir = typer.Option(None, help="MNIST folder [default: $PYRO_VAE_DATA or data/mnist]")
CheckpointDir = typer.Option(Paths.checkpoint_dir, help="Where checkpoints are written and found.")
ResultsDir = typer.Option(Paths.results_dir, help="Where images and metrics/history.csv are written.")
Device = typer.Option(DeviceName.auto, help="auto, cpu or cuda (auto picks CUDA when present).")
PictureScale = typer.Option(2, min=1, max=16, help="Draw each pixel as scale x scale.")
CheckpointFile = typer.Option(None, help="Checkpoint file [default: the furthest in --checkpoint-dir].")


def _load(checkpoint: Optional[Path], checkpoint_dir: Path, device: DeviceName, **sizes: Optional[int]) -> Any:
    """The VAE of `checkpoint` (default: the furthest readable one), on the chosen device."""
    from pyro_vae import checkpoint as ckpt
    from pyro_vae.runtime import resolve_device

    return ckpt.load_vae(checkpoint, checkpoint_dir=checkpoint_dir, device=resolve_device(device.value), **sizes)


@app.command()
def download(data_dir: Optional[Path] = DataDir) -> None:
    """Fetch the MNIST files missing from the data folder, verifying each."""
    from pyro_vae import data

    folder = data_dir or default_data_dir()
    written = data.download(folder)
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"MNIST is complete in {folder}")


@app.command()
def train(
    epochs: int = typer.Option(TrainConfig.epochs, help="Train up to this epoch (a resumed run continues to it)."),
    batch_size: Optional[int] = typer.Option(None, help=f"Images per step [default: {TrainConfig.batch_size}]."),
    lr: Optional[float] = typer.Option(None, help=f"Adam learning rate [default: {TrainConfig.lr}]."),
    z_dim: Optional[int] = typer.Option(None, help=f"Latent dimensions [default: {ModelConfig.z_dim}]."),
    hidden_dim: Optional[int] = typer.Option(None, help=f"Hidden units per layer [default: {ModelConfig.hidden_dim}]."),
    seed: Optional[int] = typer.Option(None, help=f"Random seed [default: {TrainConfig.seed}]."),
    save_every: int = typer.Option(TrainConfig.save_every, help="Checkpoint every N epochs (and at the last)."),
    keep: int = typer.Option(TrainConfig.keep, help="Keep the newest N checkpoints."),
    fresh: bool = typer.Option(False, "--fresh", help="Start over; earlier checkpoints move to an archive folder."),
    precision: Precision = typer.Option(Precision.fp32, help="bf16: autocast with fp32 master weights, where the hardware has it."),
    objective: Optional[Objective] = typer.Option(None, help="elbo, or iwae: the importance-weighted bound [default: elbo]."),
    particles: Optional[int] = typer.Option(None, help="z draws per image in the objective (iwae's k) [default: 1]."),
    lr_decay: Optional[float] = typer.Option(None, help="Multiply the learning rate by this every epoch [default: 1, constant]."),
    valid_size: Optional[int] = typer.Option(None, help="Hold out the last N training images; keep best.pt by their log p(x) [default: 0]."),
    eval_every: Optional[int] = typer.Option(None, help="Score the test (and validation) images every N epochs; 0: never [default: 0]."),
    eval_particles: Optional[int] = typer.Option(None, help=f"Importance samples per image in those scores [default: {TrainConfig.eval_particles}]."),
    checkpoint_dir: Path = CheckpointDir, results_dir: Path = ResultsDir,
    data_dir: Optional[Path] = DataDir, device: DeviceName = Device,
) -> None:
    """Train the VAE, resuming from the newest checkpoint by itself."""
    from pyro_vae.runtime import resolve_device
    from pyro_vae.train import train as run_training

    # Options left unset (None) are not "given": a resumed run takes them from its checkpoint.
    given = {k: v for k, v in dict(batch_size=batch_size, lr=lr, seed=seed, objective=objective and objective.value,
                                   particles=particles, lr_decay=lr_decay, valid_size=valid_size,
                                   eval_every=eval_every, eval_particles=eval_particles).items()
             if v is not None}
    sizes = {k: v for k, v in dict(z_dim=z_dim, hidden_dim=hidden_dim).items() if v is not None}
    train_config = TrainConfig(epochs=epochs, save_every=save_every, keep=keep, precision=precision.value, **given)
    paths = Paths(data_dir=data_dir or default_data_dir(), checkpoint_dir=checkpoint_dir, results_dir=results_dir)
    explicit = frozenset(given) | frozenset(sizes)
    try:
        result = run_training(train_config, model_config=ModelConfig(**sizes), paths=paths,
                              device=resolve_device(device.value), fresh=fresh, progress=sys.stdout.isatty(),
                              explicit=explicit)
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, without saving the position
        typer.echo("error: interrupted twice; checkpoints on disk are whole: run `python cli.py train` again "
                   "to resume from the newest", err=True)
        raise typer.Exit(130) from None
    if result.saved:
        typer.echo(f"Done. Newest checkpoint: {result.saved[-1]}")


@app.command()
def generate(
    mode: Mode = typer.Option(Mode.prior, help="prior: decode z ~ N(0, I); digit: widen the guide around real test digits."),
    n: int = typer.Option(GenerateConfig.n, help="Images per grid."),
    noise: float = typer.Option(GenerateConfig.noise, help="Added to the guide's log-std in digit mode (the seed uses 0.7)."),
    digits: str = typer.Option("0,1,2,3,4,5,6,7,8,9", help="Digit mode: which digits' exemplars, e.g. 3,8."),
    index: Optional[str] = typer.Option(None, help="Digit mode: encode these test images instead, e.g. 17,42."),
    seed: int = typer.Option(GenerateConfig.seed, help="Random seed: same seed, same images."),
    scale: int = typer.Option(GenerateConfig.scale, help="Draw each pixel as scale x scale."),
    checkpoint: Optional[Path] = typer.Option(None, help="Checkpoint file [default: the newest in --checkpoint-dir]."),
    z_dim: Optional[int] = typer.Option(None, help="Only checked against the checkpoint."),
    hidden_dim: Optional[int] = typer.Option(None, help="Only checked against the checkpoint."),
    checkpoint_dir: Path = CheckpointDir, results_dir: Path = ResultsDir,
    data_dir: Optional[Path] = DataDir, device: DeviceName = Device,
) -> None:
    """Generate grids of digits from a trained checkpoint."""
    from pyro_vae import generate as gen, images

    config = GenerateConfig(n=n, noise=noise, seed=seed, scale=scale, digits=_int_list(digits, "--digits"),
                            indices=_int_list(index, "--index"))
    vae, _ = _load(checkpoint, checkpoint_dir, device, z_dim=z_dim, hidden_dim=hidden_dim)
    drawn = gen.samples(vae, mode.value, config, data_dir=data_dir or default_data_dir())
    for name, x_probs in drawn.items():
        typer.echo(f"wrote {images.save_grid(x_probs, results_dir / f'{name}.png', scale=config.scale)}")


@app.command()
def evaluate(
    particles: int = typer.Option(1000, min=1, help="Importance samples per image for log p(x)."),
    batch_size: int = typer.Option(100, min=1, help="Test images per batch (memory: particles x batch x 784 floats)."),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="Random seed: same seed, same figures."),
    checkpoint: Optional[Path] = CheckpointFile,
    checkpoint_dir: Path = CheckpointDir, results_dir: Path = ResultsDir,
    data_dir: Optional[Path] = DataDir, device: DeviceName = Device,
) -> None:
    """Test-set ELBO and importance-sampled log-likelihood, per image in nats."""
    from pyro_vae import evaluate as ev
    from pyro_vae.metrics import EVALUATION, write_json

    vae, path = _load(checkpoint, checkpoint_dir, device)
    x = _test_images(data_dir, None, vae=vae)
    with _progress_bar(len(x), "test images", enabled=sys.stdout.isatty()) as done:
        result = ev.evaluate(vae, x, particles=particles, seed=seed, batch_size=batch_size, on_batch=done)
    typer.echo(f"checkpoint {path}: {result.images} test images, {particles} particles")
    typer.echo(f"  ELBO            {result.elbo:9.2f} +- {result.elbo_se:.2f} nats")
    typer.echo(f"  log p(x) (IS)   {result.log_likelihood:9.2f} +- {result.log_likelihood_se:.2f} nats")
    out = write_json({"checkpoint": str(path), "seed": seed, **vars(result)}, results_dir / EVALUATION)
    typer.echo(f"wrote {out}")


@contextlib.contextmanager
def _progress_bar(total: int, what: str, *, enabled: bool) -> Iterator[Optional[Callable[[int], None]]]:
    """A transient rich bar on terminals; yields a callback taking how many are done, or None."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda done: bar.update(task, completed=done)


def _test_images(data_dir: Optional[Path], indices: Optional[list[int]], *, vae: Any) -> Any:
    """The binarized test set (fixed seed), or the images at `indices`, on `vae`'s device: (n, 784)."""
    from pyro_vae import data

    images, _ = data.ensure_split(data_dir or default_data_dir(), "test")
    for i in indices or []:
        if not 0 <= i < len(images):
            raise typer.BadParameter(f"test image {i} does not exist: there are {len(images)} (0 to {len(images) - 1})")
    x = data.binarize_once(images)
    return (x if indices is None else x[indices]).to(next(vae.parameters()).device)


@app.command()
def reconstruct(
    n: int = typer.Option(50, min=1, max=1000, help="Test images to reconstruct (the first n)."),
    scale: int = PictureScale,
    checkpoint: Optional[Path] = CheckpointFile,
    checkpoint_dir: Path = CheckpointDir, results_dir: Path = ResultsDir,
    data_dir: Optional[Path] = DataDir, device: DeviceName = Device,
) -> None:
    """Test digits, each row followed by its reconstructions: results/reconstructions.png."""
    from pyro_vae import generate as gen, images

    vae, _ = _load(checkpoint, checkpoint_dir, device)
    x = _test_images(data_dir, list(range(n)), vae=vae)
    pairs = gen.reconstructions(vae, x, cols=10)
    typer.echo(f"wrote {images.save_grid(pairs, results_dir / 'reconstructions.png', scale=scale, cols=10)}")


@app.command()
def interpolate(
    from_index: int = typer.Option(3, help="Test image to start from (3 is a 0)."),
    to_index: int = typer.Option(2, help="Test image to end at (2 is a 1)."),
    steps: int = typer.Option(10, min=2, max=200, help="Points on the line, ends included."),
    scale: int = PictureScale,
    checkpoint: Optional[Path] = CheckpointFile,
    checkpoint_dir: Path = CheckpointDir, results_dir: Path = ResultsDir,
    data_dir: Optional[Path] = DataDir, device: DeviceName = Device,
) -> None:
    """Decode the straight line between two test images' encodings: a PNG strip and a GIF."""
    from pyro_vae import generate as gen, images

    vae, _ = _load(checkpoint, checkpoint_dir, device)
    x = _test_images(data_dir, [from_index, to_index], vae=vae)
    line = gen.interpolation(vae, x[0], x[1], steps=steps)
    stem = results_dir / f"interpolation_{from_index}_{to_index}"
    typer.echo(f"wrote {images.save_grid(line, stem.with_suffix('.png'), scale=scale, cols=steps)}")
    typer.echo(f"wrote {images.save_animation(line, stem.with_suffix('.gif'), scale=scale * 4)}")


@app.command()
def quiz(
    real_fraction: float = typer.Option(0.5, help="Share of the 100 cells showing real test digits."),
    noise: float = typer.Option(0.7, help="Spread of the generated digits' guide (the seed's 0.7)."),
    seed: int = typer.Option(0, help="Random seed: same seed, same quiz."),
    scale: int = PictureScale,
    checkpoint: Optional[Path] = CheckpointFile,
    checkpoint_dir: Path = CheckpointDir, results_dir: Path = ResultsDir,
    data_dir: Optional[Path] = DataDir, device: DeviceName = Device,
) -> None:
    """Human or machine? A 10x10 grid of real and generated digits, and its answers."""
    from pyro_vae import data, generate as gen, images
    from pyro_vae.metrics import write_json

    config = GenerateConfig(noise=noise, seed=seed, scale=scale)  # validates noise, seed and scale
    vae, path = _load(checkpoint, checkpoint_dir, device)
    test, _ = data.ensure_split(data_dir or default_data_dir(), "test")
    shown, answers = gen.quiz(vae, test, data.binarize_once(test), cells=100, real_fraction=real_fraction,
                              noise=config.noise, seed=config.seed)
    folder = results_dir / "quiz"
    typer.echo(f"wrote {images.save_grid(shown, folder / 'quiz.png', scale=scale)}")
    marked = [not answer["real"] for answer in answers]
    typer.echo(f"wrote {images.save_marked_grid(shown, marked, folder / 'answers.png', scale=scale)} (generated: red)")
    record = {"checkpoint": str(path), "seed": seed, "noise": noise, "real_fraction": real_fraction, "cells": answers}
    typer.echo(f"wrote {write_json(record, folder / 'answers.json')}")


@app.command()
def plot(results_dir: Path = ResultsDir) -> None:
    """Draw the training curves of results/metrics/history.csv to results/metrics/curves.png."""
    from pyro_vae.metrics import HISTORY, read_history
    from pyro_vae.plots import CURVES, plot_history

    records = read_history(results_dir / HISTORY)
    typer.echo(f"wrote {plot_history(records, results_dir / CURVES)} ({len(records)} epochs)")


def main() -> None:
    """Console entry point `pyro-vae`."""
    app()


if __name__ == "__main__":
    main()
