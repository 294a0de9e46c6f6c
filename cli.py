"""pyro-vae's command line: `python cli.py train | generate | evaluate | plot | reconstruct | interpolate |
quiz | tune | download` (also installed as `pyro-vae`).

Only parsing and printing happen here; the work and every default are in `pyro_vae`. Heavy
libraries load inside the commands, so `--help` stays fast.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from pyro_vae.config import (GRID_COLS, INTERPOLATE_FROM, INTERPOLATE_STEPS, INTERPOLATE_TO, MAX_INTERPOLATE_STEPS,
                             MAX_RECONSTRUCT_IMAGES, MAX_SCALE, MAX_SEED, PICTURE_SCALE, RECONSTRUCT_IMAGES, Device,
                             EvaluateConfig, GenerateConfig, Mode, ModelConfig, Objective, Paths, Precision,
                             QuizConfig, TrainConfig, TuneConfig)
from pyro_vae.errors import Interrupted, PyroVAEError


class _OneLineErrors(TyperGroup):
    """Every mistake, in the options or in what they point at, becomes one line on stderr and a non-zero exit."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
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


app = typer.Typer(cls=_OneLineErrors, add_completion=False, rich_markup_mode=None,
                  pretty_exceptions_enable=False, help="Train a Pyro VAE on MNIST and generate handwritten digits.")


class _EchoHandler(logging.Handler):
    """Library log records go to stdout (warnings to stderr), one line each.

    Written with print() on the current sys.stdout, so a live progress bar (which redirects
    sys.stdout) keeps them above itself, and CliRunner in tests captures them.
    """

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr if record.levelno >= logging.WARNING else sys.stdout, flush=True)


@app.callback(invoke_without_command=True)
def _setup(ctx: typer.Context, verbose: Annotated[bool, typer.Option(
           "--verbose", "-v", help="Also log details (fetch attempts, kernel timings, pruning).")] = False) -> None:
    if ctx.invoked_subcommand is None:  # `python cli.py` alone: the help, and the usage error's status
        typer.echo(ctx.get_help())
        raise typer.Exit(2)
    logger = logging.getLogger("pyro_vae")
    logger.handlers = [_EchoHandler()]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


# Options shared by several commands, declared once.
DataDir = Annotated[Optional[Path], typer.Option(help="The data set's folder [default: data/<dataset>; for mnist "
                                                 "$PYRO_VAE_DATA when set].")]
DatasetOpt = Annotated[Optional[str], typer.Option(help="mnist, fashion-mnist, or idx (your own IDX files in "
                                                   "--data-dir); evaluate takes several, comma-separated [default: "
                                                   "mnist; for a command that reads a checkpoint, its data set].")]
CheckpointDir = Annotated[Path, typer.Option(help="Where checkpoints are written and found.")]
ResultsDir = Annotated[Path, typer.Option(help="Where images and metrics/history.csv are written.")]
DeviceOpt = Annotated[Device, typer.Option("--device", help="auto, cpu or cuda (auto picks CUDA when present).")]
CheckpointFile = Annotated[Optional[Path], typer.Option(help="Checkpoint file [default: the furthest in --checkpoint-dir].")]
Scale = Annotated[int, typer.Option(min=1, max=MAX_SCALE, help="Draw each pixel as scale x scale.")]
Seed = Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Random seed: same seed, same output.")]


def Given(kind: type, text: str) -> Any:  # noqa: N802 (used as a type)
    """A train option whose None means "not given": a resumed run takes its checkpoint's value."""
    return Annotated[Optional[kind], typer.Option(help=text)]


def _paths(data_dir: Optional[Path], checkpoint_dir: Path = Paths.checkpoint_dir,
           results_dir: Path = Paths.results_dir, dataset: Optional[str] = None) -> Paths:
    """The folders; `Paths` supplies the data folder's default (data/<dataset>)."""
    from pyro_vae.data import dataset_names

    return Paths(data_dir=data_dir, checkpoint_dir=checkpoint_dir, results_dir=results_dir,
                 **({"dataset": dataset_names(dataset)[0]} if dataset else {}))


def _load(checkpoint: Optional[Path], device: Device, dataset: Optional[str], data_dir: Optional[Path],
          checkpoint_dir: Path, results_dir: Path, **sizes: Optional[int]) -> tuple[Any, Path, Paths]:
    """The VAE of `checkpoint` (default: the furthest readable one) on the chosen device, and the
    folders, with the data set to read: `dataset` when given, else the one it was trained on."""
    from pyro_vae import checkpoint as ckpt, data
    from pyro_vae.runtime import resolve_device

    chosen = data.dataset_names(dataset)  # a bad name fails before anything loads
    vae, path = ckpt.load_vae(checkpoint, checkpoint_dir=checkpoint_dir, device=resolve_device(device), **sizes)
    name, folder = data.reading(ckpt.dataset_of(path), dataset=chosen[0] if chosen else None, data_dir=data_dir)
    return vae, path, Paths(data_dir=folder, checkpoint_dir=checkpoint_dir, results_dir=results_dir, dataset=name)


def _int_list(text: Optional[str], flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip()) if text else ()
    except ValueError:
        raise typer.BadParameter(f"{flag} takes comma-separated whole numbers, e.g. 3,8; got {text!r}") from None


@app.command()
def download(dataset: DatasetOpt = None, data_dir: DataDir = None) -> None:
    """Fetch the data set's files missing from its folder, verifying each."""
    from pyro_vae import data

    paths = _paths(data_dir, dataset=dataset)
    for path in data.download(paths.data_dir, dataset=paths.dataset):
        typer.echo(f"wrote {path}")
    typer.echo(f"{data.get(paths.dataset).title} is complete in {paths.data_dir}")


@app.command()
def train(
    epochs: Annotated[int, typer.Option(help="Train up to this epoch (a resumed run continues to it).")] = TrainConfig.epochs,
    batch_size: Given(int, f"Images per step [default: {TrainConfig.batch_size}].") = None,
    lr: Given(float, f"Adam learning rate [default: {TrainConfig.lr}].") = None,
    z_dim: Given(int, f"Latent dimensions [default: {ModelConfig.z_dim}].") = None,
    hidden_dim: Given(int, f"Hidden units per layer [default: {ModelConfig.hidden_dim}].") = None,
    seed: Given(int, f"Random seed [default: {TrainConfig.seed}].") = None,
    save_every: Annotated[int, typer.Option(help="Checkpoint every N epochs (and at the last).")] = TrainConfig.save_every,
    keep: Annotated[int, typer.Option(help="Keep the newest N checkpoints.")] = TrainConfig.keep,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over; earlier checkpoints move to an archive folder.")] = False,
    precision: Annotated[Precision, typer.Option(help="bf16: autocast with fp32 master weights, where the hardware "
                                                 "has it.")] = Precision(TrainConfig.precision),
    objective: Given(Objective, "elbo, or iwae: the importance-weighted bound [default: elbo].") = None,
    particles: Given(int, "z draws per image in the objective (iwae's k) [default: 1].") = None,
    lr_decay: Given(float, "Multiply the learning rate by this every epoch [default: 1, constant].") = None,
    valid_size: Given(int, "Hold out the last N training images; keep best.pt by their log p(x) [default: 0].") = None,
    eval_every: Given(int, "Score the test (and validation) images every N epochs; 0: never [default: 0].") = None,
    eval_particles: Given(int, f"Importance samples per image in those scores [default: {TrainConfig.eval_particles}].") = None,
    checkpoint_dir: CheckpointDir = Paths.checkpoint_dir, results_dir: ResultsDir = Paths.results_dir,
    dataset: DatasetOpt = None, data_dir: DataDir = None, device: DeviceOpt = Device.auto,
) -> None:
    """Train the VAE, resuming from the newest checkpoint by itself."""
    from pyro_vae.runtime import resolve_device
    from pyro_vae.train import train as run_training

    given = {k: v for k, v in dict(batch_size=batch_size, lr=lr, seed=seed, objective=objective, particles=particles,
                                   lr_decay=lr_decay, valid_size=valid_size, eval_every=eval_every,
                                   eval_particles=eval_particles).items() if v is not None}
    sizes = {k: v for k, v in dict(z_dim=z_dim, hidden_dim=hidden_dim).items() if v is not None}
    config = TrainConfig(epochs=epochs, save_every=save_every, keep=keep, precision=precision.value,
                         **{k: v.value if isinstance(v, Objective) else v for k, v in given.items()})
    try:
        result = run_training(config, model_config=ModelConfig(**sizes), paths=_paths(data_dir, checkpoint_dir,
                              results_dir, dataset), device=resolve_device(device), fresh=fresh,
                              progress=sys.stdout.isatty(), explicit=frozenset(given) | frozenset(sizes))
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, without saving the position
        typer.echo("error: interrupted twice; checkpoints on disk are whole: run `python cli.py train` again "
                   "to resume from the newest", err=True)
        raise typer.Exit(130) from None
    if result.saved:
        typer.echo(f"Done. Newest checkpoint: {result.saved[-1]}")


@app.command()
def generate(
    mode: Annotated[Mode, typer.Option(help="prior: decode z ~ N(0, I); digit: widen the guide around real test "
                                       "digits.")] = Mode.prior,
    n: Annotated[int, typer.Option(help="Images per grid.")] = GenerateConfig.n,
    noise: Annotated[float, typer.Option(help="Added to the guide's log-std in digit mode (the seed uses "
                                         "0.7).")] = GenerateConfig.noise,
    digits: Annotated[str, typer.Option(help="Digit mode: which classes' exemplars, by number or name, e.g. 3,8 or "
                                        "Sneaker,Bag.")] = ",".join(
        map(str, GenerateConfig.digits)),
    index: Annotated[Optional[str], typer.Option(help="Digit mode: encode these test images instead, e.g. "
                                                 "17,42.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same images.")] = GenerateConfig.seed,
    scale: Annotated[int, typer.Option(help="Draw each pixel as scale x scale.")] = GenerateConfig.scale,
    checkpoint: CheckpointFile = None,
    z_dim: Annotated[Optional[int], typer.Option(help="Only checked against the checkpoint.")] = None,
    hidden_dim: Annotated[Optional[int], typer.Option(help="Only checked against the checkpoint.")] = None,
    checkpoint_dir: CheckpointDir = Paths.checkpoint_dir, results_dir: ResultsDir = Paths.results_dir,
    dataset: DatasetOpt = None, data_dir: DataDir = None, device: DeviceOpt = Device.auto,
) -> None:
    """Generate grids of digits from a trained checkpoint."""
    from pyro_vae import data, generate as gen, images

    config = GenerateConfig(n=n, noise=noise, seed=seed, scale=scale, indices=_int_list(index, "--index"))
    vae, _, paths = _load(checkpoint, device, dataset, data_dir, checkpoint_dir, results_dir, z_dim=z_dim,
                          hidden_dim=hidden_dim)
    chosen = {}
    if mode == Mode.digit:
        config = replace(config, digits=data.class_numbers(digits, paths.dataset, paths.data_dir))
        chosen = config.chosen(data.exemplars(paths.dataset, paths.data_dir))
    x = data.test_images(paths.data_dir, indices=list(chosen.values()), dataset=paths.dataset)[0] if chosen else None
    for name, x_probs in gen.samples(vae, mode.value, config, x=x, names=list(chosen)).items():
        typer.echo(f"wrote {images.save_grid(x_probs, results_dir / f'{name}.png', scale=config.scale)}")


@app.command()
def evaluate(
    particles: Annotated[int, typer.Option(min=1, help="Importance samples per image for log p(x).")] = EvaluateConfig.particles,
    batch_size: Annotated[int, typer.Option(min=1, help="Test images per batch (memory: particles x batch x 784 "
                                            "floats).")] = EvaluateConfig.batch_size,
    seed: Seed = EvaluateConfig.seed, checkpoint: CheckpointFile = None,
    checkpoint_dir: CheckpointDir = Paths.checkpoint_dir, results_dir: ResultsDir = Paths.results_dir,
    dataset: DatasetOpt = None, data_dir: DataDir = None, device: DeviceOpt = Device.auto,
) -> None:
    """Test-set ELBO and importance-sampled log-likelihood, per image in nats, on one or several data sets."""
    from pyro_vae import checkpoint as ckpt, data, evaluate as ev
    from pyro_vae.runtime import resolve_device
    from pyro_vae.metrics import EVALUATION, write_json
    from pyro_vae.progress import Bars

    names = data.dataset_names(dataset, several=True)
    vae, path = ckpt.load_vae(checkpoint, checkpoint_dir=checkpoint_dir, device=resolve_device(device))
    trained = ckpt.dataset_of(path)
    sets = ev.test_sets(trained, names, data_dir=data_dir)
    with Bars(sys.stdout.isatty()) as bars:
        for test in sets:
            bars.add(f"{test.dataset} test images", total=len(test.x))
        results = ev.score(vae, sets, particles=particles, seed=seed, batch_size=batch_size,
                           on_batch=lambda name, done: bars.update(f"{name} test images", completed=done))
    for test in sets:
        if test.foreign:
            typer.echo(f"note: {path} {test.foreign}; {data.get(test.dataset).title}'s test images are scored with "
                       "the same estimator")
    records = [{"checkpoint": str(path), "seed": seed, "trained_on": trained["name"], "dataset": test.dataset,
                **vars(result)} for test, result in zip(sets, results)]
    if len(sets) == 1:
        result = results[0]
        typer.echo(f"checkpoint {path}: {result.images} test images, {particles} particles")
        typer.echo(f"  ELBO            {result.elbo:9.2f} +- {result.elbo_se:.2f} nats")
        typer.echo(f"  log p(x) (IS)   {result.log_likelihood:9.2f} +- {result.log_likelihood_se:.2f} nats")
        out = write_json(records[0], results_dir / EVALUATION)
    else:
        typer.echo(f"checkpoint {path} (trained on {data.describe(trained)}): {particles} particles, nats per image")
        typer.echo(f"  {'test set':<15} {'images':>6}  {'ELBO':>17}  {'log p(x) (IS)':>17}")
        for test, result in zip(sets, results):
            typer.echo(f"  {test.dataset:<15} {result.images:>6}  {result.elbo:9.2f} +- {result.elbo_se:<4.2f}  "
                       f"{result.log_likelihood:9.2f} +- {result.log_likelihood_se:<4.2f}")
        out = write_json({"checkpoint": str(path), "evaluations": records}, results_dir / EVALUATION)
    typer.echo(f"wrote {out}")


@app.command()
def reconstruct(
    n: Annotated[int, typer.Option(min=1, max=MAX_RECONSTRUCT_IMAGES, help="Test images to reconstruct (the first "
                                   "n).")] = RECONSTRUCT_IMAGES,
    scale: Scale = PICTURE_SCALE, checkpoint: CheckpointFile = None,
    checkpoint_dir: CheckpointDir = Paths.checkpoint_dir, results_dir: ResultsDir = Paths.results_dir,
    dataset: DatasetOpt = None, data_dir: DataDir = None, device: DeviceOpt = Device.auto,
) -> None:
    """Test digits, each row followed by its reconstructions: results/reconstructions.png."""
    from pyro_vae import data, generate as gen, images

    vae, _, paths = _load(checkpoint, device, dataset, data_dir, checkpoint_dir, results_dir)
    x = data.test_images(paths.data_dir, indices=range(n), dataset=paths.dataset)[0].to(next(vae.parameters()).device)
    pairs = gen.reconstructions(vae, x)
    typer.echo(f"wrote {images.save_grid(pairs, results_dir / 'reconstructions.png', scale=scale, cols=GRID_COLS)}")


@app.command()
def interpolate(
    from_index: Annotated[int, typer.Option(help="Test image to start from (3 is a 0).")] = INTERPOLATE_FROM,
    to_index: Annotated[int, typer.Option(help="Test image to end at (2 is a 1).")] = INTERPOLATE_TO,
    steps: Annotated[int, typer.Option(min=2, max=MAX_INTERPOLATE_STEPS, help="Points on the line, ends "
                                       "included.")] = INTERPOLATE_STEPS,
    scale: Scale = PICTURE_SCALE, checkpoint: CheckpointFile = None,
    checkpoint_dir: CheckpointDir = Paths.checkpoint_dir, results_dir: ResultsDir = Paths.results_dir,
    dataset: DatasetOpt = None, data_dir: DataDir = None, device: DeviceOpt = Device.auto,
) -> None:
    """Decode the straight line between two test images' encodings: a PNG strip and a GIF."""
    from pyro_vae import data, generate as gen, images

    vae, _, paths = _load(checkpoint, device, dataset, data_dir, checkpoint_dir, results_dir)
    x = data.test_images(paths.data_dir, indices=[from_index, to_index],
                         dataset=paths.dataset)[0].to(next(vae.parameters()).device)
    line = gen.interpolation(vae, x[0], x[1], steps=steps)
    stem = results_dir / f"interpolation_{from_index}_{to_index}"
    typer.echo(f"wrote {images.save_grid(line, stem.with_suffix('.png'), scale=scale, cols=steps)}")
    typer.echo(f"wrote {images.save_animation(line, stem.with_suffix('.gif'), scale=scale * 4)}")


@app.command()
def quiz(
    real_fraction: Annotated[float, typer.Option(help=f"Share of the {QuizConfig.cells} cells showing real test "
                                                 "digits.")] = QuizConfig.real_fraction,
    noise: Annotated[float, typer.Option(help="Spread of the generated digits' guide (the seed's "
                                         "0.7).")] = QuizConfig.noise,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same quiz.")] = QuizConfig.seed,
    scale: Scale = PICTURE_SCALE, checkpoint: CheckpointFile = None,
    checkpoint_dir: CheckpointDir = Paths.checkpoint_dir, results_dir: ResultsDir = Paths.results_dir,
    dataset: DatasetOpt = None, data_dir: DataDir = None, device: DeviceOpt = Device.auto,
) -> None:
    """Human or machine? A 10x10 grid of real and generated digits, and its answers."""
    from pyro_vae import data, generate as gen, images
    from pyro_vae.metrics import write_json

    config = GenerateConfig(noise=noise, seed=seed, scale=scale)  # validates noise, seed and scale
    vae, path, paths = _load(checkpoint, device, dataset, data_dir, checkpoint_dir, results_dir)
    binarized, intensities = data.test_images(paths.data_dir, dataset=paths.dataset)
    shown, answers = gen.quiz(vae, binarized, intensities, cells=QuizConfig.cells, real_fraction=real_fraction,
                              noise=config.noise, seed=config.seed)
    folder = results_dir / "quiz"
    typer.echo(f"wrote {images.save_grid(shown, folder / 'quiz.png', scale=scale)}")
    marked = [not answer["real"] for answer in answers]
    typer.echo(f"wrote {images.save_marked_grid(shown, marked, folder / 'answers.png', scale=scale)} (generated: red)")
    record = {"checkpoint": str(path), "seed": seed, "noise": noise, "real_fraction": real_fraction, "cells": answers}
    typer.echo(f"wrote {write_json(record, folder / 'answers.json')}")


@app.command()
def tune(
    study: Annotated[str, typer.Option(help="The study's name (shared by every worker).")] = TuneConfig.study,
    storage: Annotated[Optional[str], typer.Option(help="Study database URL, e.g. postgresql://user:pw@host/db "
                                                   "[default: sqlite:///<results-dir>/tune/optuna.db].")] = None,
    trials: Annotated[int, typer.Option(help="Trials this worker runs.")] = TuneConfig.trials,
    epochs: Annotated[int, typer.Option(help="Epochs per trial.")] = TuneConfig.epochs,
    eval_every: Annotated[int, typer.Option(help="Score each trial every N epochs (the pruner sees "
                                            "these).")] = TuneConfig.eval_every,
    valid_size: Annotated[int, typer.Option(help="Held-out training images trials are scored on (never the "
                                            "test set).")] = TuneConfig.valid_size,
    eval_particles: Annotated[int, typer.Option(help="K of the validation scores.")] = TuneConfig.eval_particles,
    test_particles: Annotated[int, typer.Option(help="K of the best trial's test score.")] = TuneConfig.test_particles,
    objective: Given(Objective, "Fix the objective instead of searching it.") = None,
    particles: Given(int, "Fix the particles instead of searching them.") = None,
    lr: Given(float, "Fix the learning rate instead of searching it.") = None,
    lr_decay: Given(float, "Fix the learning-rate decay instead of searching it.") = None,
    z_dim: Given(int, "Fix the latent dimensions instead of searching them.") = None,
    hidden_dim: Given(int, "Fix the hidden units instead of searching them.") = None,
    resume: Annotated[bool, typer.Option("--resume", help="Only continue an existing study.")] = False,
    report: Annotated[bool, typer.Option("--report", help="Print the study's trials and write trials.csv and "
                                         "plots, instead of running trials.")] = False,
    heartbeat: Annotated[int, typer.Option(help="Seconds between a worker's heartbeats.")] = TuneConfig.heartbeat_s,
    grace_period: Annotated[int, typer.Option(help="Seconds without a heartbeat before a trial is retried "
                                              "elsewhere.")] = TuneConfig.grace_s,
    checkpoint_dir: CheckpointDir = Paths.checkpoint_dir, results_dir: ResultsDir = Paths.results_dir,
    dataset: DatasetOpt = None, data_dir: DataDir = None, device: DeviceOpt = Device.auto,
) -> None:
    """Search recipes on Optuna: each trial an ordinary training run; start it on several machines."""
    from pyro_vae import tune as search
    from pyro_vae.runtime import resolve_device

    config = TuneConfig(study=study, storage=storage, trials=trials, epochs=epochs, eval_every=eval_every,
                        valid_size=valid_size, eval_particles=eval_particles, test_particles=test_particles,
                        heartbeat_s=heartbeat, grace_s=grace_period)
    paths = _paths(data_dir, checkpoint_dir, results_dir, dataset)
    if report:
        rows, written = search.report(config, paths=paths)
        columns = list(dict.fromkeys(k for row in rows for k in row if k != "worker"))
        typer.echo("  ".join(f"{c:>10}" for c in columns))
        for row in rows:
            typer.echo("  ".join(f"{search.format_value(v) if c == 'value' else _cell(v):>10}"
                                 for c, v in ((c, row.get(c)) for c in columns)))
        for path in written:
            typer.echo(f"wrote {path}")
        return
    fixed = {k: v.value if isinstance(v, Objective) else v for k, v in dict(
        objective=objective, particles=particles, lr=lr, lr_decay=lr_decay, z_dim=z_dim,
        hidden_dim=hidden_dim).items() if v is not None}
    best = search.search(config, fixed=fixed, paths=paths, device=resolve_device(device), resume=resume)
    if best is not None:
        typer.echo(f"best trial {best['trial']}: validation log p(x) {best['valid_log_likelihood']:.2f}, test "
                   f"log p(x) {best['test_log_likelihood']:.2f} +- {best['test_log_likelihood_se']:.2f} "
                   f"(K={best['test_particles']})")
        typer.echo(f"reproduce it with: {best['command']}")
        typer.echo(f"wrote {search.study_dir(paths, config.study) / search.BEST}")


def _cell(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else "-" if value is None else str(value)


@app.command()
def plot(results_dir: ResultsDir = Paths.results_dir) -> None:
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
