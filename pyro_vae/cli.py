"""pyro-vae's command line: `pyro-vae train | generate | evaluate | plot | reconstruct |
interpolate | quiz | judge | tune | download | explore | latent-map` (also `python -m pyro_vae`, and `python cli.py` in the clone).

Only parsing and printing happen here; the work and every default are in `pyro_vae`. Heavy
libraries load inside the commands, so `--help` stays fast.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from pyro_vae.config import EXPLORE_HOST, EXPLORE_PORT
from pyro_vae.config import JudgeConfig
from pyro_vae.config import (GRID_COLS, INTERPOLATE_FROM, INTERPOLATE_STEPS, INTERPOLATE_TO, MAX_INTERPOLATE_STEPS,
                             MAX_NOISE, MAX_RECONSTRUCT_IMAGES, MAX_SCALE, MAX_SEED, MIN_NOISE, PICTURE_SCALE,
                             PSEUDO_INPUTS, RECONSTRUCT_IMAGES, Device, EvaluateConfig, GenerateConfig, Mode,
                             ModelConfig, Objective, Paths, Precision, Prior, QuizConfig, TrainConfig, TuneConfig,
                             check_mode_options, either)
from pyro_vae.errors import Hint, Hinted, Interrupted, PyroVAEError, render


class _OneLineErrors(TyperGroup):
    """Every mistake, in the options or in what they point at, becomes one line on stderr and a non-zero exit."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.TyperException as exc:  # click's usage errors: bad or missing option values
            where = f" (see: {exc.ctx.command_path} --help)" if getattr(exc, "ctx", None) else ""
            typer.echo(f"error: {_usage_error(exc)}{where}", err=True)
            code = exc.exit_code
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            code = 130
        except Interrupted as exc:  # not a mistake: says where it stopped and how to continue
            typer.echo(_spelled(exc.template, exc.hint), err=True)
            code = exc.exit_code
        except PyroVAEError as exc:
            typer.echo(f"error: {_spelled(exc.template, exc.hint)}", err=True)
            code = getattr(exc, "exit_code", 1)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


# Typer's words for a value outside a list of choices: "Value error, 'priors' is not one of 'prior', 'digit'."
_NOT_A_CHOICE = re.compile(r"(?:Value error, )?('.*') is not one of (.*?)\.?$")


def _usage_error(exc: typer.TyperException) -> str:
    """Click's message, except a value outside a list of choices: "--mode must be prior or digit, got 'priors'"."""
    choice = _NOT_A_CHOICE.fullmatch(str(getattr(exc, "message", "")))
    param = getattr(exc, "param", None)
    if choice is None or param is None or not getattr(param, "opts", None):
        return exc.format_message()
    choices = tuple(quoted.strip("'") for quoted in choice[2].split(", "))
    return f"{param.opts[0]} must be {either(choices)}, got {choice[1]}"


def _flag(name: str) -> str:
    """A setting's option: z_dim -> --z-dim."""
    return "--" + name.replace("_", "-")


def program() -> list[str]:
    """The words that start this program again in the user's shell, however it was started:
    `pyro-vae` (the console script, as found on PATH, else its path), `python -m pyro_vae`, or
    `python cli.py` in the clone. `python` is spelled as this interpreter's path when PATH's
    `python` is another one (e.g. `make run` uses .venv/bin/python without activating the venv)."""
    started = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("pyro-vae")
    if started.name == "cli.py" or (started.name == "__main__.py" and started.parent.name == "pyro_vae"):
        python = sys.executable
        if shutil.which("python") == python:
            python = "python"
        elif Path(python).is_absolute() and Path(python).is_relative_to(Path.cwd()):
            python = os.path.relpath(python)
        return [python, "-m", "pyro_vae"] if started.name == "__main__.py" else [python, str(started)]
    on_path = shutil.which("pyro-vae")
    if started.stem == "pyro-vae" and (on_path is None or Path(on_path).resolve() != started.resolve()):
        return [str(started)]  # run by a path that PATH does not lead to
    return ["pyro-vae"]


def command_line(hint: Hint) -> str:
    """`hint` as a shell-quoted command line: `pyro-vae train --epochs 10 --fresh`. True is a bare
    flag; floats keep every digit (`repr`), so a pasted learning rate is the same number."""
    words = [*program(), hint.command]
    for key, value in hint.given().items():
        words.append(_flag(key))
        if value is not True:
            words.append(repr(value) if isinstance(value, float) else str(value))
    return shlex.join(words)


def _spelled(text: str, hint: Hint | None) -> str:
    """A library message with its settings as options and its hint as a command line."""
    return render(text, hint, name=_flag, call=command_line)


app = typer.Typer(cls=_OneLineErrors, add_completion=False, rich_markup_mode=None,
                  pretty_exceptions_enable=False, help="Train a Pyro VAE on MNIST and generate handwritten digits.")


class _EchoHandler(logging.Handler):
    """Library log records go to stdout (warnings to stderr), one line each.

    Written with print() on the current sys.stdout, so a live progress bar (which redirects
    sys.stdout) keeps them above itself, and CliRunner in tests captures them.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, Hinted):
            record.msg = _spelled(record.msg.text, record.msg.hint)
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
ResultsDir = Annotated[Optional[Path], typer.Option(help="Where images and metrics/history.csv are written "
                                                   "[default: from --checkpoint-dir: checkpoints -> results, "
                                                   "checkpoints/small -> results/small].")]
DeviceOpt = Annotated[Device, typer.Option("--device", help="auto, cpu or cuda (auto picks CUDA when present).")]
CheckpointFile = Annotated[Optional[Path], typer.Option(help="Checkpoint file [default: the furthest in --checkpoint-dir].")]
Scale = Annotated[int, typer.Option(min=1, max=MAX_SCALE, help="Draw each pixel as scale x scale.")]
Seed = Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Random seed: same seed, same output.")]


def Given(kind: type, text: str) -> Any:  # noqa: N802 (used as a type)
    """A train option whose None means "not given": a resumed run takes its checkpoint's value."""
    return Annotated[Optional[kind], typer.Option(help=text)]


def _paths(data_dir: Optional[Path], checkpoint_dir: Path = Paths.checkpoint_dir,
           results_dir: Optional[Path] = None, dataset: Optional[str] = None) -> Paths:
    """The folders; `Paths` supplies the defaults (data/<dataset>, the results of `checkpoint_dir`)."""
    from pyro_vae.data import dataset_names

    return Paths(data_dir=data_dir, checkpoint_dir=checkpoint_dir, results_dir=results_dir,
                 **({"dataset": dataset_names(dataset)[0]} if dataset else {}))


def _load(checkpoint: Optional[Path], device: Device, dataset: Optional[str], data_dir: Optional[Path],
          checkpoint_dir: Path, results_dir: Optional[Path], *, writes: bool = True,
          **sizes: Optional[int]) -> tuple[Any, Paths]:
    """`pyro_vae.load` of `checkpoint` (default: the furthest readable one in `checkpoint_dir`), checked
    against the sizes given, and the folders to read and write (`data.reading`)."""
    import pyro_vae
    from pyro_vae.checkpoint import require_file

    if checkpoint is not None:
        require_file(checkpoint)  # --checkpoint names a file; a folder is --checkpoint-dir
    model = pyro_vae.load(checkpoint if checkpoint is not None else checkpoint_dir, device=device.value, **sizes)
    return model, model.paths(dataset=dataset, data_dir=data_dir, results_dir=results_dir, writes=writes)


def _saved(path: Path, write: Callable[[Path], Path], note: str = "") -> None:
    """Write `path` with `write` and say so: "replaced" where a file of that name was there before."""
    verb = "replaced" if path.exists() else "wrote"
    typer.echo(f"{verb} {write(path)}{note}")


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


def _recipes() -> str:
    """train's epilog: each recipe, what it is and the options it sets (kept as written: click would
    break the options at their hyphens)."""
    from pyro_vae.config import RECIPES

    lines = ["\b", "Recipes (--recipe NAME; an option given beside it overrides its value):"]
    for name, recipe in RECIPES.items():
        lines.append(f"  {name}: {recipe.about}")
        if recipe.settings:
            lines.append("    " + " ".join(f"{_flag(k)} {v}" for k, v in recipe.settings.items()))
    return "\n".join(lines)


@app.command(epilog=_recipes())
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
    beta: Given(float, "Weight of the KL term in the loss (beta-VAE); the bound printed stays the true one "
                "[default: 1].") = None,
    kl_warmup: Given(int, "Raise the KL weight linearly from 0 to --beta over the first N epochs [default: 0].") = None,
    prior: Given(Prior, "p(z): standard, the seed's N(0, I); or vamp, a mixture of the guide at learned "
                 "pseudo-inputs (Tomczak & Welling 2018) [default: standard].") = None,
    pseudo_inputs: Given(int, f"With --prior vamp: how many pseudo-inputs [default: {PSEUDO_INPUTS}, the "
                         "paper's].") = None,
    recipe: Annotated[Optional[str], typer.Option(help="Start from a named bundle of settings (seed, iwae, vamp: "
                                                  "listed below); an option given beside it overrides its value.",
                                                  metavar="NAME")] = None,
    tensorboard: Annotated[bool, typer.Option("--tensorboard", help="Also log every epoch's figures to TensorBoard, "
                                              "in the results folder's tensorboard/ (needs the tensorboard "
                                              "extra).")] = False,
    tensorboard_images_every: Annotated[Optional[int], typer.Option(
        help="With --tensorboard: a grid of prior samples at epoch 1, every N-th and the last; 0: none "
             f"[default: {TrainConfig.tensorboard_images_every}].")] = None,
    checkpoint_dir: CheckpointDir = Paths.checkpoint_dir, results_dir: ResultsDir = None,
    dataset: DatasetOpt = None, data_dir: DataDir = None, device: DeviceOpt = Device.auto,
) -> None:
    """Train the VAE, resuming from the newest checkpoint by itself.

    The lower bound printed and recorded is the ELBO (or with --objective iwae the IWAE bound), per image in nats,
    never weighted by --beta or --kl-warmup, with its two terms: reconstruction E_q[log p(x|z)] and KL(q(z|x)||p(z)),
    whose difference it is (with iwae: each draw's ELBO terms, averaged over the particles)."""
    import pyro_vae

    given = {k: v for k, v in dict(batch_size=batch_size, lr=lr, seed=seed, objective=objective, particles=particles,
                                   lr_decay=lr_decay, valid_size=valid_size, eval_every=eval_every,
                                   eval_particles=eval_particles, beta=beta, kl_warmup=kl_warmup, z_dim=z_dim,
                                   hidden_dim=hidden_dim, tensorboard_images_every=tensorboard_images_every,
                                   prior=prior, pseudo_inputs=pseudo_inputs).items()
             if v is not None}
    _paths(data_dir, checkpoint_dir, results_dir, dataset)  # a bad --dataset fails before anything is read
    result = pyro_vae.train(epochs=epochs, checkpoint_dir=checkpoint_dir, results_dir=results_dir,
                            dataset=dataset or Paths.dataset, data_dir=data_dir, device=device.value, fresh=fresh,
                            progress=sys.stdout.isatty(), save_every=save_every, keep=keep,
                            precision=precision.value, tensorboard=tensorboard, recipe=recipe, **given)
    if result.further is not None:
        typer.echo(f"to train on, e.g. to epoch {result.further.options['epochs']}, run: "
                   f"{command_line(result.further)}")
    if result.saved:
        typer.echo(f"Done. Newest checkpoint: {result.saved[-1]}")


@app.command()
def generate(
    mode: Annotated[Mode, typer.Option(help="prior: decode z ~ p(z), the model's prior; digit: widen the guide "
                                       "around real test digits.")] = Mode.prior,
    n: Annotated[int, typer.Option(help="Images per grid.")] = GenerateConfig.n,
    noise: Annotated[Optional[float], typer.Option(help=f"Digit mode: added to the guide's log-std, {MIN_NOISE:g} "
                                                   f"to {MAX_NOISE:g}; 1.4 gives more varied digits [default: "
                                                   f"{GenerateConfig.noise:g}, the seed's].")] = None,
    digits: Annotated[Optional[str], typer.Option(help="Digit mode: which classes' exemplars, by number or name, "
                                                  "e.g. 3,8 or Sneaker,Bag [default: every class].")] = None,
    index: Annotated[Optional[str], typer.Option(help="Digit mode: encode these test images instead, e.g. "
                                                 "17,42.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same images.")] = GenerateConfig.seed,
    scale: Annotated[int, typer.Option(help="Draw each pixel as scale x scale; 1: the seed's raw grid, no "
                                       "caption band.")] = GenerateConfig.scale,
    checkpoint: CheckpointFile = None,
    z_dim: Annotated[Optional[int], typer.Option(help="Only checked against the checkpoint.")] = None,
    hidden_dim: Annotated[Optional[int], typer.Option(help="Only checked against the checkpoint.")] = None,
    checkpoint_dir: CheckpointDir = Paths.checkpoint_dir, results_dir: ResultsDir = None,
    dataset: DatasetOpt = None, data_dir: DataDir = None, device: DeviceOpt = Device.auto,
) -> None:
    """Generate grids of digits from a trained checkpoint (other settings than the seed's get other names)."""
    from pyro_vae import generate as gen, images

    check_mode_options(mode.value, frozenset(k for k, v in dict(noise=noise, digits=digits, index=index).items()
                                              if v is not None))
    config = GenerateConfig(n=n, noise=GenerateConfig.noise if noise is None else noise, seed=seed, scale=scale,
                            indices=_int_list(index, "--index"))
    model, paths = _load(checkpoint, device, dataset, data_dir, checkpoint_dir, results_dir, z_dim=z_dim,
                         hidden_dim=hidden_dim)
    about = {**model.about(), "mode": mode.value, **({"noise": config.noise} if mode == Mode.digit else {}),
             "seed": seed}
    for name, (title, x_probs) in gen.grids(model.vae, mode.value, config, paths=paths, digits=digits).items():
        _saved(paths.results_dir / f"{name}.png", lambda out: images.save_grid(
            x_probs, out, scale=config.scale, caption=images.Caption(title, about)))


@app.command()
def evaluate(
    particles: Annotated[int, typer.Option(min=1, help="Importance samples per image for log p(x).")] = EvaluateConfig.particles,
    batch_size: Annotated[int, typer.Option(min=1, help="Test images per batch (memory: particles x batch x 784 "
                                            "floats).")] = EvaluateConfig.batch_size,
    seed: Seed = EvaluateConfig.seed, checkpoint: CheckpointFile = None,
    checkpoint_dir: CheckpointDir = Paths.checkpoint_dir, results_dir: ResultsDir = None,
    dataset: DatasetOpt = None, data_dir: DataDir = None, device: DeviceOpt = Device.auto,
) -> None:
    """Test-set ELBO and importance-sampled log-likelihood, per image in nats, on one or several data sets
    (one record per checkpoint, data set and setting in results/metrics/evaluation.json)."""
    from pyro_vae import data, evaluate as ev
    from pyro_vae.progress import Bars

    names = data.dataset_names(dataset, several=True)
    model, paths = _load(checkpoint, device, None, None, checkpoint_dir, results_dir)
    sets = ev.test_sets(model.data, names, data_dir=data_dir)
    for test in (test for test in sets if test.foreign):
        typer.echo(f"note: {model.path} {test.foreign}; {data.get(test.dataset).title}'s test images are scored "
                   "with the same estimator")
    typer.echo(f"scoring {model.path} (epoch {model.epoch}) on "
               f"{' and '.join(f'{len(test.x)} {test.dataset}' for test in sets)} test images with {particles} "
               "particles...")
    with Bars(sys.stdout.isatty()) as bars:
        for test in sets:
            bars.add(f"{test.dataset} test images", total=len(test.x))
        scored = ev.score_and_record(model, sets, results_dir=paths.results_dir, particles=particles, seed=seed,
                                     batch_size=batch_size,
                                     on_batch=lambda name, done: bars.update(f"{name} test images", completed=done))
    _print_scores(model, scored, particles=particles)
    for one in scored:
        typer.echo(f"replaced this checkpoint's record on {one.test.dataset} with K={particles}, seed {seed} in "
                   f"{one.record_file}" if one.replaced else f"wrote {one.record_file} (a record of its own for this "
                   f"checkpoint on {one.test.dataset}, K={particles}, seed {seed})")


def _print_scores(model: Any, scored: list[Any], *, particles: int) -> None:
    """One data set: a line a figure; several: a table, a row a data set."""
    from pyro_vae import data

    if len(scored) == 1:
        result = scored[0].result
        typer.echo(f"checkpoint {model.path}: {result.images} test images, {particles} particles")
        typer.echo(f"  ELBO            {result.elbo:9.2f} +- {result.elbo_se:.2f} nats")
        typer.echo(f"  log p(x) (IS)   {result.log_likelihood:9.2f} +- {result.log_likelihood_se:.2f} nats")
        typer.echo(f"  reconstruction  {result.reconstruction:9.2f} nats   E_q[log p(x|z)], over the same draws")
        typer.echo(f"  KL              {result.kl:9.2f} nats   KL(q(z|x) || p(z)); ELBO = reconstruction - KL")
        typer.echo(f"  active units    {result.active_units:6d} of {model.model_config.z_dim}  (Burda et al.: "
                   "Var_x E_q[z_u|x] > 0.01)")
        return
    typer.echo(f"checkpoint {model.path} (trained on {data.describe(model.data)}): {particles} particles, nats per "
               "image")
    typer.echo(f"  {'test set':<15} {'images':>6}  {'ELBO':>17}  {'log p(x) (IS)':>17}  {'reconstruction':>14}  "
               f"{'KL':>8}  {'active':>6}")
    for one in scored:
        r = one.result
        typer.echo(f"  {one.test.dataset:<15} {r.images:>6}  {r.elbo:9.2f} +- {r.elbo_se:<4.2f}  "
                   f"{r.log_likelihood:9.2f} +- {r.log_likelihood_se:<4.2f}  {r.reconstruction:14.2f}  {r.kl:8.2f}  "
                   f"{r.active_units:>6}")


@app.command()
def reconstruct(
    n: Annotated[int, typer.Option(min=1, max=MAX_RECONSTRUCT_IMAGES, help="Test images to reconstruct (the first "
                                   "n).")] = RECONSTRUCT_IMAGES,
    scale: Scale = PICTURE_SCALE, checkpoint: CheckpointFile = None,
    checkpoint_dir: CheckpointDir = Paths.checkpoint_dir, results_dir: ResultsDir = None,
    dataset: DatasetOpt = None, data_dir: DataDir = None, device: DeviceOpt = Device.auto,
) -> None:
    """Test digits, each row followed by its reconstructions: results/reconstructions.png."""
    from pyro_vae import data, generate as gen, images

    model, paths = _load(checkpoint, device, dataset, data_dir, checkpoint_dir, results_dir)
    x = data.test_images(paths.data_dir, indices=range(n), dataset=paths.dataset)[0].to(model.device)
    pairs = gen.reconstructions(model.vae, x)
    caption = images.Caption(f"test images 0 to {n - 1} and their reconstructions (decoded guide means)",
                             model.about())
    labels = ["original", "reconstruction"] * -(-n // GRID_COLS)
    _saved(paths.results_dir / "reconstructions.png", lambda out: images.save_grid(
        pairs, out, scale=scale, cols=GRID_COLS, caption=caption, row_labels=labels))


@app.command()
def interpolate(
    from_index: Annotated[int, typer.Option(help="Test image to start from (3 is a 0).")] = INTERPOLATE_FROM,
    to_index: Annotated[int, typer.Option(help="Test image to end at (2 is a 1).")] = INTERPOLATE_TO,
    steps: Annotated[int, typer.Option(min=2, max=MAX_INTERPOLATE_STEPS, help="Points on the line, ends "
                                       "included.")] = INTERPOLATE_STEPS,
    scale: Scale = PICTURE_SCALE, checkpoint: CheckpointFile = None,
    checkpoint_dir: CheckpointDir = Paths.checkpoint_dir, results_dir: ResultsDir = None,
    dataset: DatasetOpt = None, data_dir: DataDir = None, device: DeviceOpt = Device.auto,
) -> None:
    """Decode the straight line between two test images' encodings: a PNG strip and a GIF."""
    from pyro_vae import data, generate as gen, images

    model, paths = _load(checkpoint, device, dataset, data_dir, checkpoint_dir, results_dir)
    x = data.test_images(paths.data_dir, indices=[from_index, to_index],
                         dataset=paths.dataset)[0].to(model.device)
    line = gen.interpolation(model.vae, x[0], x[1], steps=steps)
    stem = paths.results_dir / f"interpolation_{from_index}_{to_index}"
    caption = images.Caption(f"from test image {from_index} to test image {to_index}: {steps} points on the "
                             "line between their encodings", model.about())
    ends = (f"test image {from_index}", f"test image {to_index}")
    _saved(stem.with_suffix(".png"), lambda out: images.save_grid(line, out, scale=scale, cols=steps, caption=caption,
                                                                  end_labels=ends))
    _saved(stem.with_suffix(".gif"), lambda out: images.save_animation(line, out, scale=scale * 4, caption=caption))


@app.command()
def quiz(
    real_fraction: Annotated[float, typer.Option(help=f"Share of the {QuizConfig.cells} cells showing real test "
                                                 "digits.")] = QuizConfig.real_fraction,
    noise: Annotated[float, typer.Option(help="Spread of the generated digits' guide (the seed's "
                                         "0.7).")] = QuizConfig.noise,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same quiz.")] = QuizConfig.seed,
    scale: Scale = PICTURE_SCALE, checkpoint: CheckpointFile = None,
    checkpoint_dir: CheckpointDir = Paths.checkpoint_dir, results_dir: ResultsDir = None,
    dataset: DatasetOpt = None, data_dir: DataDir = None, device: DeviceOpt = Device.auto,
) -> None:
    """Human or machine? A 10x10 grid of real and generated digits, and its answers."""
    from pyro_vae import data, generate as gen, images
    from pyro_vae.metrics import write_json

    config = GenerateConfig(noise=noise, seed=seed, scale=scale)  # validates noise, seed and scale
    model, paths = _load(checkpoint, device, dataset, data_dir, checkpoint_dir, results_dir)
    binarized, intensities = data.test_images(paths.data_dir, dataset=paths.dataset)
    shown, answers = gen.quiz(model.vae, binarized, intensities, cells=QuizConfig.cells, real_fraction=real_fraction,
                              noise=config.noise, seed=config.seed)
    folder, about = paths.results_dir / "quiz", {**model.about(), "noise": noise, "seed": seed}
    marked = [not answer["real"] for answer in answers]
    ask = images.Caption("Human or machine? Some digits are real test images, the others generated", about)
    tell = images.Caption(f"The answers: the {sum(marked)} generated digits are framed in red", about)
    _saved(folder / "quiz.png", lambda out: images.save_grid(shown, out, scale=scale, caption=ask))
    _saved(folder / "answers.png", lambda out: images.save_marked_grid(shown, marked, out, scale=scale, caption=tell),
           " (generated: red)")
    record = {**about, "real_fraction": real_fraction, "cells": answers}
    _saved(folder / "answers.json", lambda out: write_json(record, out))


@app.command()
def judge(
    samples: Annotated[int, typer.Option(help="Images per source; each C2ST fits on half, scores the "
                                         "other half.")] = JudgeConfig.samples,
    noise: Annotated[Optional[list[float]], typer.Option(help="A 'more like this' noise; repeat for several "
                                                         f"[default: {JudgeConfig.noises[0]:g}].")] = None,
    seed: Seed = JudgeConfig.seed, checkpoint: CheckpointFile = None,
    checkpoint_dir: CheckpointDir = Paths.checkpoint_dir, results_dir: ResultsDir = None,
    dataset: DatasetOpt = None, data_dir: DataDir = None, device: DeviceOpt = Device.auto,
) -> None:
    """Human or machine, asked of a classifier: legibility, judge score, Fréchet distance and C2ST of the
    model's samples and of real test images (results/metrics/judge.json; the judge trains once, cached)."""
    from pyro_vae import judge as jg

    config = JudgeConfig(samples=samples, noises=tuple(noise) if noise else JudgeConfig.noises, seed=seed)
    model, paths = _load(checkpoint, device, dataset, data_dir, checkpoint_dir, results_dir, writes=False)
    done = jg.judge_and_record(model, config, paths=paths, progress=sys.stdout.isatty())
    typer.echo(f"judge: {done.judge.accuracy:.2%} test accuracy ({done.judge.path}); {samples} images a source")
    typer.echo(f"{'source':<26}{'legible':>8}{'score':>7}{'FD':>8}{'C2ST bits':>16}{'C2ST grey':>16}{'target':>7}")
    for r in done.records:
        name = r["source"] + ("" if r["noise"] is None else f" noise {r['noise']:g}")
        typer.echo(f"{name:<26}{r['legible']:8.3f}{r['judge_score']:7.2f}{r['frechet_distance']:8.2f}"
                   f"{r['c2st_accuracy']:10.3f} +-{r['c2st_se']:.3f}{r['c2st_grey_accuracy']:10.3f} +-"
                   f"{r['c2st_grey_se']:.3f}{format(r['target_share'], '7.3f') if 'target_share' in r else '-':>7}")
    typer.echo(f"wrote {done.file}")


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
    checkpoint_dir: CheckpointDir = Paths.checkpoint_dir, results_dir: ResultsDir = None,
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
        there = set(search.study_dir(paths, config.study).glob("*"))
        rows, written, notes = search.report(config, paths=paths)
        columns = list(dict.fromkeys(k for row in rows for k in row if k != "worker"))
        typer.echo("  ".join(f"{c:>10}" for c in columns))
        for row in rows:
            typer.echo("  ".join(f"{_cell(c, row.get(c)):>10}" for c in columns))
        for path in written:
            typer.echo(f"{'replaced' if path in there else 'wrote'} {path}")
        for note in notes:
            typer.echo(note)
        return
    fixed = {k: v.value if isinstance(v, Objective) else v for k, v in dict(
        objective=objective, particles=particles, lr=lr, lr_decay=lr_decay, z_dim=z_dim,
        hidden_dim=hidden_dim).items() if v is not None}
    best = search.search(config, fixed=fixed, paths=paths, device=resolve_device(device), resume=resume,
                         progress=sys.stdout.isatty())
    if best is not None:
        typer.echo(f"best trial {best['trial']}: validation log p(x) {best['valid_log_likelihood']:.2f}, test "
                   f"log p(x) {best['test_log_likelihood']:.2f} +- {best['test_log_likelihood_se']:.2f} "
                   f"(K={best['test_particles']})")
        typer.echo(f"reproduce it with: {command_line(Hint.from_json(best['reproduce']))}")
        typer.echo(f"wrote {search.study_dir(paths, config.study) / search.BEST}")


def _cell(column: str, value: Any) -> str:
    """A report cell: the objective's value to two decimals (a pruned or failed trial's as -), other floats to 3 digits."""
    if column == "value":
        return "-" if value is None or not math.isfinite(value) else f"{value:.2f}"
    return f"{value:.3g}" if isinstance(value, float) else "-" if value is None else str(value)


@app.command()
def plot(checkpoint_dir: CheckpointDir = Paths.checkpoint_dir, results_dir: ResultsDir = None) -> None:
    """Draw one run's training curves (its metrics/history.csv, and evaluate's figures) to its metrics/curves.png."""
    from pyro_vae.metrics import EVALUATION, HISTORY, read_evaluations, read_history
    from pyro_vae.plots import CURVES, plot_history

    paths = _paths(None, checkpoint_dir, results_dir)
    records, evaluations = read_history(paths.results_dir / HISTORY), read_evaluations(paths.results_dir / EVALUATION)
    counted = f", {len(evaluations)} evaluation{'s' * (len(evaluations) != 1)}" if evaluations else ""
    note = f" ({len(records)} epoch{'s' * (len(records) != 1)}{counted})"
    _saved(paths.results_dir / CURVES, lambda out: plot_history(records, out, evaluations=evaluations,
                                                                    run=str(paths.results_dir)), note)


@app.command()
def explore(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free one).")] = EXPLORE_PORT,
    host: Annotated[str, typer.Option(help=f"Address to listen on; anything but {EXPLORE_HOST} shows the model to "
                                      "the network.")] = EXPLORE_HOST,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Only print the URL.")] = False,
    export: Annotated[Optional[Path], typer.Option(help="Write the page into this folder for a static web host, "
                                                   "instead of serving it.")] = None,
    checkpoint: CheckpointFile = None, checkpoint_dir: CheckpointDir = Paths.checkpoint_dir,
    dataset: DatasetOpt = None, data_dir: DataDir = None,
) -> None:
    """Play with a trained model in the browser: digits, drawing, the latent map, walks, the quiz."""
    from pyro_vae import data, explore as ex, judge as jg, latent

    # The page computes; the CPU only exports.
    model, paths = _load(checkpoint, Device.cpu, dataset, data_dir, checkpoint_dir, None, writes=False)
    images, labels = data.ensure_split(paths.data_dir, "test", dataset=paths.dataset)
    files = ex.bundle(model.vae, images, labels, checkpoint=model.path, epoch=model.epoch,
                      classes=latent.Classes.of(paths.dataset, paths.data_dir),
                      judged=jg.page_figure(model.path, paths.results_dir))
    if export is not None:
        ex.export(files, export)
        typer.echo(f"wrote {export}/ ({len(files)} files): serve it with any static web server, e.g. "
                   f"python -m http.server -d {export}")
        return
    server = ex.open_server(files, host=host, port=port)  # a taken port fails here, before anything is served
    if host not in (EXPLORE_HOST, "localhost", "::1"):
        typer.echo(f"warning: listening on {host}: the model and the test images are visible to the network", err=True)
    url = ex.url_of(server)

    def ready() -> None:
        typer.echo(url)
        typer.echo("Ctrl-C stops the server.", err=True)
        if not no_browser:
            import webbrowser

            webbrowser.open(url)

    ex.serve(server, ready=ready)
    typer.echo("stopped", err=True)


PSEUDO_INPUTS_PNG = "pseudo_inputs.png"  # latent-map's picture of a VampPrior's learned images
PSEUDO_SHOWN = 100  # of them, a 10 x 10 grid


@app.command("latent-map")
def latent_map(
    checkpoint: CheckpointFile = None, checkpoint_dir: CheckpointDir = Paths.checkpoint_dir,
    results_dir: ResultsDir = None, dataset: DatasetOpt = None, data_dir: DataDir = None,
    device: DeviceOpt = Device.auto,
) -> None:
    """The test images' codes on two planes (LDA and PCA), coloured by class: results/latent_map.png;
    KL per latent dimension, the active ones marked: results/kl_per_dimension.png; and with a VampPrior,
    its pseudo-inputs: results/pseudo_inputs.png."""
    from pyro_vae import data, latent, plots

    model, paths = _load(checkpoint, device, dataset, data_dir, checkpoint_dir, results_dir)
    images, labels = data.ensure_split(paths.data_dir, "test", dataset=paths.dataset)
    about = model.about()
    where = f"checkpoint {about['checkpoint']}, epoch {about['epoch']}"
    _saved(paths.results_dir / plots.LATENT_MAP, lambda out: plots.latent_map(
        latent.views_of(model.vae, images, labels), labels, out,
        classes=latent.Classes.of(paths.dataset, paths.data_dir), about=where))
    used = latent.usage_of(model.vae, images)
    _saved(paths.results_dir / plots.KL_PER_DIMENSION, lambda out: plots.kl_per_dimension(
        used.kl, used.active, out, about=f"{len(images)} {data.get(paths.dataset).title} test images; {where}",
        marginal=model.model_config.prior != "standard"))
    pseudo = model.pseudo_inputs()
    if pseudo is not None:  # the VampPrior's own images: what its mixture is centred on
        from pyro_vae import images as pictures

        shown = pseudo[:PSEUDO_SHOWN]
        title = (f"The VampPrior's pseudo-inputs: {len(shown)} of its {len(pseudo)} learned images; p(z) is the "
                 "guide's mixture at them")
        _saved(paths.results_dir / PSEUDO_INPUTS_PNG, lambda out: pictures.save_grid(
            shown.reshape(len(shown), -1), out, scale=PICTURE_SCALE, caption=pictures.Caption(title, about)))


def main() -> None:
    """Console entry point `pyro-vae`."""
    app()


if __name__ == "__main__":
    main()
