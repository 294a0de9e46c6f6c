"""pyro-vae's command line: `pyro-vae train | generate | evaluate | plot | reconstruct |
interpolate | quiz | judge | tune | download | explore | latent-map` (also `python -m pyro_vae`, and `python cli.py` in the clone).

Only parsing and printing happen here; the work and every default are in `pyro_vae`. Heavy
libraries load inside the commands, so `--help` stays fast.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from pyro_vae.config import (EXPLORE_HOST, EXPLORE_PORT, INTERPOLATE_FROM, INTERPOLATE_STEPS, INTERPOLATE_TO,
                             MAX_INTERPOLATE_STEPS, MAX_NOISE, MAX_RECONSTRUCT_IMAGES, MAX_SCALE, MAX_SEED, MIN_NOISE,
                             MODEL_SETTINGS, PICTURE_SCALE, PSEUDO_INPUTS, RECONSTRUCT_IMAGES, WIDE_NOISE, Device, EvaluateConfig,
                             GenerateConfig, JudgeConfig, Mode, ModelConfig, Objective, Paths, Precision, Prior, QuizConfig,
                             TrainConfig, TuneConfig, either)
from pyro_vae.errors import Hint, Hinted, Interrupted, PyroVAEError, render

if TYPE_CHECKING:  # the library loads inside the commands, so that --help stays fast
    from pyro_vae.outputs import Source, Written


class _OneLineErrors(TyperGroup):
    """Every mistake, in the options or in what they point at, becomes one line on stderr and a non-zero exit."""

    def main(self, args: Sequence[str] | None = None, *rest: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            code = super().main(self._verbose_first(sys.argv[1:] if args is None else list(args)), *rest,
                                standalone_mode=False, **kwargs)
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

    def _verbose_first(self, args: list[str]) -> list[str]:
        """`train -v` as `-v train`: --verbose is the program's option, but users put it anywhere.
        A -v that is the value of the option before it (`--recipe -v`), or comes after `--`, stays."""
        first = next((k for k, word in enumerate(args) if word in self.commands), None)
        if first is None:
            return args
        takes_value = {opt for param in self.commands[args[first]].params if not getattr(param, "is_flag", True)
                       for opt in getattr(param, "opts", ())}
        front, kept = [], args[:first + 1]
        for word in args[first + 1:]:
            if word in ("-v", "--verbose") and kept[-1] not in takes_value and "--" not in kept:
                front.append(word)
            else:
                kept.append(word)
        return front + kept


# Typer's words for a value outside a list of choices: "Value error, 'priors' is not one of 'prior', 'digit'."
_NOT_A_CHOICE = re.compile(r"(?:Value error, )?('.*') is not one of (.*?)\.?$")


def _usage_error(exc: typer.TyperException) -> str:
    """Click's message, except a value outside a list of choices: "--mode must be prior, digit, label or style, got 'priors'"."""
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
ResultsDir = Annotated[Optional[Path], typer.Option(help="Where pictures and metrics/history.csv are written "
                                                   "[default: beside --checkpoint-dir, one folder a run: checkpoints "
                                                   "-> results, checkpoints/small -> results/small, runs/a -> "
                                                   "results/runs/a, /data/ck2 -> /data/results/ck2].")]
DeviceOpt = Annotated[Device, typer.Option("--device", help="auto, cpu, cuda or mps (auto picks CUDA, then Apple's MPS, when present).")]
CheckpointFile = Annotated[Optional[Path], typer.Option(help="Checkpoint file [default: the furthest in --checkpoint-dir].")]
Size = Annotated[Optional[int], typer.Option(help="Only checked against the checkpoint.")]
Scale = Annotated[int, typer.Option(min=1, max=MAX_SCALE, help="Draw each pixel as scale x scale.")]
Seed = Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Random seed: same seed, same output.")]
PretrainedOpt = Annotated[Optional[str], typer.Option(
    metavar="NAME", help="Read a model shipped with pyro-vae instead of a checkpoint (`pyro-vae pretrained` lists "
    "them, e.g. mnist); its results go to results/pretrained-NAME.")]
ThreadsOpt = Annotated[Optional[str], typer.Option(
    "--threads", metavar="N|auto", help="torch's CPU threads: a number, or auto: the CPUs this process may use "
    "(affinity mask, CPU quota), shared with other pyro-vae processes computing, adapted to load while training; "
    "-v says what was chosen [default: $PYRO_VAE_THREADS, else auto].")]

# The options of a command that reads a trained model (`outputs.Source`'s fields), in --help's order.
_SOURCE_OPTIONS = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=default)
                   for name, kind, default in (("checkpoint", CheckpointFile, None), ("z_dim", Size, None),
                                               ("hidden_dim", Size, None),
                                               ("checkpoint_dir", CheckpointDir, Paths.checkpoint_dir),
                                               ("results_dir", ResultsDir, None), ("dataset", DatasetOpt, None),
                                               ("data_dir", DataDir, None), ("device", DeviceOpt, Device.auto),
                                               ("threads", ThreadsOpt, None), ("pretrained", PretrainedOpt, None))]


def _reads_checkpoint(*omit: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A command that reads a trained model takes `source: Source` instead of the options that
    say which (`_SOURCE_OPTIONS`, less `omit`), declared here once and added to its signature."""

    def add_options(command: Callable[..., None]) -> Callable[..., None]:
        # Its own options, their annotations evaluated (typer reads the Annotated objects); `Source`
        # is only named there, and imported when the command runs, so that --help stays fast.
        own = [p for p in inspect.signature(command, eval_str=True, locals={"Source": object}).parameters.values()
               if p.name != "source"]
        shared = [p for p in _SOURCE_OPTIONS if p.name not in omit]

        @functools.wraps(command)
        def run(**options: Any) -> None:
            from pyro_vae.outputs import Source

            chosen = {p.name: options.pop(p.name) for p in shared}
            chosen["device"] = str(chosen.get("device", Device.auto))
            command(Source(**chosen), **options)

        run.__signature__ = inspect.Signature([*own, *shared], return_annotation=None)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in (*own, *shared)}
        return run

    return add_options


def Given(kind: type, text: str) -> Any:  # noqa: N802 (used as a type)
    """A train option whose None means "not given": a resumed run takes its checkpoint's value."""
    return Annotated[Optional[kind], typer.Option(help=text)]


def _paths(data_dir: Optional[Path], checkpoint_dir: Path = Paths.checkpoint_dir,
           results_dir: Optional[Path] = None, dataset: Optional[str] = None) -> Paths:
    """The folders; `Paths` supplies the defaults (data/<dataset>, the results of `checkpoint_dir`)."""
    from pyro_vae.options import dataset_names

    return Paths(data_dir=data_dir, checkpoint_dir=checkpoint_dir, results_dir=results_dir,
                 **({"dataset": dataset_names(dataset)[0]} if dataset else {}))


def _report(written: Sequence[Written]) -> None:
    """Say what a command wrote: "wrote PATH", or "replaced PATH" where a file of that name was there before."""
    for one in written:
        typer.echo(f"{'replaced' if one.replaced else 'wrote'} {one.path}{one.note}")


def _given(**options: Any) -> dict[str, Any]:
    """The options given (not None), choices as their values."""
    return {k: getattr(v, "value", v) for k, v in options.items() if v is not None}


def _int_list(text: Optional[str], flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip()) if text else ()
    except ValueError:
        raise typer.BadParameter(f"{flag} takes comma-separated whole numbers, e.g. 3,8; got {text!r}") from None


@app.command()
def download(dataset: DatasetOpt = None, data_dir: DataDir = None) -> None:
    """Fetch the data set's files missing from its folder, verifying each."""
    from pyro_vae import data, fetch

    paths = _paths(data_dir, dataset=dataset)
    for path in fetch.download(paths.data_dir, dataset=paths.dataset):
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


# train's options that are settings of the run (`ModelConfig` and `TrainConfig` fields); None: not given.
_TRAIN_SETTINGS = MODEL_SETTINGS | {"batch_size", "lr", "seed", "objective", "particles", "lr_decay", "valid_size",
                                    "eval_every", "eval_particles", "beta", "kl_warmup", "tensorboard_images_every",
                                    "labels", "alpha"}


# train's --help (its body is kept to the call): what the printed bound is.
_TRAIN_HELP = """Train the VAE, resuming from the newest checkpoint by itself.

The lower bound printed and recorded is the ELBO (or with --objective iwae the IWAE bound), per image in nats, never
weighted by --beta or --kl-warmup, with its two terms: reconstruction E_q[log p(x|z)] and KL(q(z|x)||p(z)), whose
difference it is (with iwae: each draw's ELBO terms, averaged over the particles)."""


@app.command(help=_TRAIN_HELP, epilog=_recipes())
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
    labels: Given(int, "Keep the labels of N training images, balanced across classes and chosen by --seed, and "
                  "train the semi-supervised M2 (Kingma et al. 2014) [default: 0, the unsupervised VAE].") = None,
    alpha: Given(float, f"With --labels: the classification term's weight per training image (Kingma et al.'s "
                 f"alpha / N) [default: {TrainConfig.alpha}].") = None,
    recipe: Annotated[Optional[str], typer.Option(help="Start from a named bundle of settings (seed, iwae, vamp: "
                                                  "listed below); an option given beside it overrides its value.",
                                                  metavar="NAME")] = None,
    tensorboard: Annotated[bool, typer.Option("--tensorboard", help="Also log every epoch's figures to TensorBoard, "
                                              "in the results folder's tensorboard/ (needs the tensorboard "
                                              "extra).")] = False,
    tensorboard_images_every: Annotated[Optional[int], typer.Option(
        help="With --tensorboard: a grid of prior samples at epoch 1, every N-th and the last; 0: none "
             f"[default: {TrainConfig.tensorboard_images_every}].")] = None,
    checkpoint_dir: Annotated[Path, typer.Option(help="Where checkpoints are written and found; results go "
                                                 "beside it (--results-dir).")] = Paths.checkpoint_dir,
    results_dir: ResultsDir = None,
    dataset: DatasetOpt = None, data_dir: DataDir = None, device: DeviceOpt = Device.auto, threads: ThreadsOpt = None,
) -> None:
    import pyro_vae

    given = _given(**{k: v for k, v in locals().items() if k in _TRAIN_SETTINGS})
    _paths(data_dir, checkpoint_dir, results_dir, dataset)  # a bad --dataset fails before anything is read
    result = pyro_vae.train(epochs=epochs, checkpoint_dir=checkpoint_dir, results_dir=results_dir,
                            dataset=dataset or Paths.dataset, data_dir=data_dir, device=device.value, fresh=fresh,
                            progress=sys.stdout.isatty(), save_every=save_every, keep=keep,
                            precision=precision.value, tensorboard=tensorboard, recipe=recipe, threads=threads,
                            **given)
    if result.further is not None:
        typer.echo(f"to train on, e.g. to epoch {result.further.options['epochs']}, run: "
                   f"{command_line(result.further)}")
    if result.saved:
        typer.echo(f"Done. Newest checkpoint: {result.saved[-1]}")


@app.command()
@_reads_checkpoint()
def generate(
    source: Source,
    mode: Annotated[Mode, typer.Option(help="prior: decode z ~ p(z), the model's prior; digit: widen the guide "
                                       "around real test digits; a model trained with --labels also has label: "
                                       "ask for each class of --digits, and style: test digits' styles written "
                                       "as every class.")] = Mode.prior,
    n: Annotated[int, typer.Option(help="Images per grid.")] = GenerateConfig.n,
    noise: Annotated[Optional[float], typer.Option(help=f"Digit mode: added to the guide's log-std, {MIN_NOISE:g} "
                                                   f"(its own spread) to {MAX_NOISE:g}; {WIDE_NOISE:g} gives more varied digits "
                                                   f"[default: {GenerateConfig.noise:g}, the seed's].")] = None,
    digits: Annotated[Optional[str], typer.Option(help="Digit and style modes: which classes' exemplars "
                                                  "(label mode: which classes to ask for), by number or name, e.g. "
                                                  "3,8 or Sneaker,Bag [default: every class].")] = None,
    index: Annotated[Optional[str], typer.Option(help="Digit and style modes: encode these test images "
                                                 "instead, e.g. 17,42.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same images.")] = GenerateConfig.seed,
    scale: Annotated[int, typer.Option(help="Draw each pixel as scale x scale; 1: the seed's raw grid, no "
                                       "caption band.")] = GenerateConfig.scale,
) -> None:
    """Generate grids of digits from a trained checkpoint (other settings than the seed's get other names)."""
    from pyro_vae import outputs

    _report(outputs.generate(source, mode.value, n=n, noise=noise, digits=digits,
                             indices=_int_list(index, "--index"), seed=seed, scale=scale))


@app.command()
@_reads_checkpoint()
def evaluate(
    source: Source,
    particles: Annotated[int, typer.Option(help="Importance samples per image for log p(x) (1: the ELBO "
                                           "itself).")] = EvaluateConfig.particles,
    batch_size: Annotated[int, typer.Option(help="Test images per batch (memory: particles x batch x 784 "
                                            "floats).")] = EvaluateConfig.batch_size,
    seed: Seed = EvaluateConfig.seed,
) -> None:
    """Test-set ELBO and importance-sampled log-likelihood, per image in nats, on one or several data sets
    (one record per checkpoint, data set and setting in results/metrics/evaluation.json)."""
    from pyro_vae import outputs

    config = EvaluateConfig(particles=particles, batch_size=batch_size, seed=seed)
    scores = outputs.evaluate(source, config, progress=sys.stdout.isatty())
    _print_scores(scores, particles=particles)
    for one in scores.scored:
        typer.echo(f"replaced this checkpoint's record on {one.test.dataset} with K={particles}, seed {seed} in "
                   f"{one.record_file}" if one.replaced else f"wrote {one.record_file} (a record of its own for this "
                   f"checkpoint on {one.test.dataset}, K={particles}, seed {seed})")


def _print_scores(scores: Any, *, particles: int) -> None:
    """One data set: a line a figure; several: a table, a row a data set. With one particle the
    importance-sampled estimate is the ELBO itself, and says so instead of repeating it."""
    from pyro_vae import data

    model, one_draw = scores.model, particles == 1
    if len(scores.scored) == 1:
        result = scores.scored[0].result
        typer.echo(f"{model.named}: {result.images} test images, {particles} particle{'s' * (not one_draw)}")
        typer.echo(f"  ELBO            {result.elbo:9.2f} +- {result.elbo_se:.2f} nats")
        if one_draw:
            typer.echo("  log p(x) (IS)   the ELBO: with 1 particle the estimate is the ELBO itself; pass --particles "
                       f"{EvaluateConfig.particles} for a tighter one")
        else:
            typer.echo(f"  log p(x) (IS)   {result.log_likelihood:9.2f} +- {result.log_likelihood_se:.2f} nats")
        typer.echo(f"  reconstruction  {result.reconstruction:9.2f} nats   E_q[log p(x|z)], over the same draws")
        typer.echo(f"  KL              {result.kl:9.2f} nats   KL(q(z|x) || p(z)); ELBO = reconstruction - KL")
        typer.echo(f"  active units    {result.active_units:6d} of {model.model_config.z_dim}  (Burda et al.: "
                   "Var_x E_q[z_u|x] > 0.01)")
        if result.accuracy is not None:
            typer.echo(f"  accuracy        {100 * result.accuracy:9.2f} +- {100 * result.accuracy_se:.2f} %    "
                       "q(y|x)'s most probable class, against the test labels")
        return
    typer.echo(f"{model.named} (trained on {data.title_of(model.data)}): {particles} "
               f"particle{'s' * (not one_draw)}, nats per image" + ("; with 1 particle log p(x) (IS) is the ELBO "
                                                                     "itself" if one_draw else ""))
    typer.echo(f"  {'test set':<15} {'images':>6}  {'ELBO':>17}  {'log p(x) (IS)':>17}  {'reconstruction':>14}  "
               f"{'KL':>8}  {'active':>6}")
    for one in scores.scored:
        r = one.result
        typer.echo(f"  {one.test.dataset:<15} {r.images:>6}  {r.elbo:9.2f} +- {r.elbo_se:<4.2f}  "
                   f"{r.log_likelihood:9.2f} +- {r.log_likelihood_se:<4.2f}  {r.reconstruction:14.2f}  {r.kl:8.2f}  "
                   f"{r.active_units:>6}")


@app.command()
@_reads_checkpoint("z_dim", "hidden_dim")
def reconstruct(
    source: Source,
    n: Annotated[int, typer.Option(min=1, max=MAX_RECONSTRUCT_IMAGES, help="Test images to reconstruct (the first "
                                   "n).")] = RECONSTRUCT_IMAGES,
    scale: Scale = PICTURE_SCALE,
) -> None:
    """Test digits, each row followed by its reconstructions: results/reconstructions.png."""
    from pyro_vae import outputs

    _report(outputs.reconstruct(source, n=n, scale=scale))


@app.command()
@_reads_checkpoint("z_dim", "hidden_dim")
def interpolate(
    source: Source,
    from_index: Annotated[int, typer.Option(help="Test image to start from (3 is a 0).")] = INTERPOLATE_FROM,
    to_index: Annotated[int, typer.Option(help="Test image to end at (2 is a 1).")] = INTERPOLATE_TO,
    steps: Annotated[int, typer.Option(min=2, max=MAX_INTERPOLATE_STEPS, help="Points on the line, ends "
                                       "included.")] = INTERPOLATE_STEPS,
    scale: Scale = PICTURE_SCALE,
) -> None:
    """Decode the straight line between two test images' encodings: a PNG strip and a GIF."""
    from pyro_vae import outputs

    _report(outputs.interpolate(source, from_index=from_index, to_index=to_index, steps=steps, scale=scale))


@app.command()
@_reads_checkpoint("z_dim", "hidden_dim")
def quiz(
    source: Source,
    real_fraction: Annotated[float, typer.Option(help=f"Share of the {QuizConfig.cells} cells showing real test "
                                                 "digits, 0 to 1.")] = QuizConfig.real_fraction,
    noise: Annotated[float, typer.Option(help=f"Spread of the generated digits' guide, {MIN_NOISE:g} to "
                                         f"{MAX_NOISE:g} (the seed's {QuizConfig.noise:g}).")] = QuizConfig.noise,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same quiz.")] = QuizConfig.seed,
    scale: Scale = PICTURE_SCALE,
) -> None:
    """Human or machine? A 10x10 grid of real and generated digits, and its answers."""
    from pyro_vae import outputs

    config = QuizConfig(real_fraction=real_fraction, noise=noise, seed=seed)  # refused before the model is read
    _report(outputs.quiz(source, config, scale=scale))


@app.command()
@_reads_checkpoint("z_dim", "hidden_dim")
def judge(
    source: Source,
    samples: Annotated[int, typer.Option(help="Images per source; each C2ST fits on half, scores the "
                                         "other half.")] = JudgeConfig.samples,
    noise: Annotated[Optional[list[float]], typer.Option(help="A 'more like this' noise; repeat for several "
                                                         f"[default: {JudgeConfig.noises[0]:g}].")] = None,
    seed: Seed = JudgeConfig.seed,
) -> None:
    """Human or machine, asked of a classifier: legibility, judge score, Fréchet distance and C2ST of the
    model's samples and of real test images (results/metrics/judge.json; the judge trains once, cached)."""
    from pyro_vae import outputs

    config = JudgeConfig(samples=samples, noises=tuple(noise) if noise else JudgeConfig.noises, seed=seed)
    _print_judged(outputs.judge(source, config, progress=sys.stdout.isatty()), samples=samples)


def _print_judged(done: Any, *, samples: int) -> None:
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
    dataset: DatasetOpt = None, data_dir: DataDir = None, device: DeviceOpt = Device.auto, threads: ThreadsOpt = None,
) -> None:
    """Search recipes on Optuna: each trial an ordinary training run; start it on several machines."""
    from pyro_vae import tune as search

    config = TuneConfig(study=study, storage=storage, trials=trials, epochs=epochs, eval_every=eval_every,
                        valid_size=valid_size, eval_particles=eval_particles, test_particles=test_particles,
                        heartbeat_s=heartbeat, grace_s=grace_period)
    paths = _paths(data_dir, checkpoint_dir, results_dir, dataset)
    if report:
        return _print_study(config, paths)
    fixed = _given(objective=objective, particles=particles, lr=lr, lr_decay=lr_decay, z_dim=z_dim,
                   hidden_dim=hidden_dim)
    best = search.search(config, fixed=fixed, paths=paths, device=device.value, resume=resume,
                         progress=sys.stdout.isatty(), threads=threads)
    _print_best(best, search.study_dir(paths, config.study) / search.BEST)


def _print_study(config: TuneConfig, paths: Paths) -> None:
    """tune --report: the study's trials as a table, and the files written."""
    from pyro_vae import tune as search

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


def _print_best(best: dict[str, Any] | None, record: Path) -> None:
    """The study's best trial, how to reproduce it, and where its record is (nothing before a trial completes)."""
    if best is None:
        return
    typer.echo(f"best trial {best['trial']}: validation log p(x) {best['valid_log_likelihood']:.2f}, test "
               f"log p(x) {best['test_log_likelihood']:.2f} +- {best['test_log_likelihood_se']:.2f} "
               f"(K={best['test_particles']})")
    typer.echo(f"reproduce it with: {command_line(Hint.from_json(best['reproduce']))}")
    typer.echo(f"wrote {record}")


def _cell(column: str, value: Any) -> str:
    """A report cell: the objective's value to two decimals (a pruned or failed trial's as -), other floats to 3 digits."""
    if column == "value":
        return "-" if value is None or not math.isfinite(value) else f"{value:.2f}"
    return f"{value:.3g}" if isinstance(value, float) else "-" if value is None else str(value)


@app.command()
def plot(checkpoint_dir: CheckpointDir = Paths.checkpoint_dir, results_dir: ResultsDir = None) -> None:
    """Draw one run's training curves (its metrics/history.csv, and evaluate's figures) to its metrics/curves.png."""
    from pyro_vae import outputs

    _report([outputs.curves(_paths(None, checkpoint_dir, results_dir))])


@app.command()
@_reads_checkpoint("z_dim", "hidden_dim", "results_dir", "device")
def explore(
    source: Source,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free one).")] = EXPLORE_PORT,
    host: Annotated[str, typer.Option(help=f"Address to listen on; anything but {EXPLORE_HOST} shows the model to "
                                      "the network.")] = EXPLORE_HOST,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Only print the URL.")] = False,
    export: Annotated[Optional[Path], typer.Option(help="Write the page into this folder for a static web host, "
                                                   "instead of serving it.")] = None,
) -> None:
    """Play with a trained model in the browser: digits, drawing, the latent map, walks, the quiz."""
    from pyro_vae import outputs

    page = outputs.page(source)  # the page computes; the CPU only exports
    if export is not None:
        return _export(page, export)
    _serve(page, host=host, port=port, browser=not no_browser)


def _export(page: Any, folder: Path) -> None:
    from pyro_vae import explore as ex

    ex.export(page.files, folder)
    typer.echo(f"wrote {folder}/ ({len(page.files)} files) for {page.model.named} (epoch "
               f"{page.model.epoch}): serve it with any static web server, e.g. python -m http.server -d {folder}")


def _serve(page: Any, *, host: str, port: int, browser: bool) -> None:
    """Serve the page until Ctrl-C or SIGTERM, saying which checkpoint it shows and where."""
    from pyro_vae import explore as ex

    server = ex.open_server(page.files, host=host, port=port)  # a taken port fails here, before anything is served
    if host not in (EXPLORE_HOST, "localhost", "::1"):
        typer.echo(f"warning: listening on {host}: the model and the test images are visible to the network", err=True)
    url = ex.url_of(server)

    def ready() -> None:
        typer.echo(f"serving {page.model.named} (epoch {page.model.epoch}, {page.model.dataset}) at:",
                   err=True)
        typer.echo(url)
        typer.echo("Ctrl-C stops the server.", err=True)
        if browser:
            import webbrowser

            webbrowser.open(url)

    ex.serve(server, ready=ready)
    typer.echo("stopped", err=True)


@app.command("pretrained")
def pretrained_models() -> None:
    """The models shipped with pyro-vae, each with its training and test figures (docs/pretrained.md);
    any command that reads a model takes one with --pretrained NAME."""
    from pyro_vae import pretrained

    shipped = sorted(pretrained.names(), key=lambda name: name != "mnist")  # the design card's model first
    if not shipped:
        typer.echo("no models are shipped with this copy of pyro-vae (docs/pretrained.md says how to add one)")
        return
    for name in shipped:
        typer.echo("\n".join(pretrained.described(name)))
    typer.echo(f"e.g. {shlex.join([*program(), 'generate', '--pretrained', shipped[0]])}")


@app.command("latent-map")
@_reads_checkpoint("z_dim", "hidden_dim")
def latent_map(source: Source) -> None:
    """The test images' codes on two planes (LDA and PCA), coloured by class: results/latent_map.png;
    KL per latent dimension, the active ones marked: results/kl_per_dimension.png; and with a VampPrior,
    its pseudo-inputs: results/pseudo_inputs.png."""
    from pyro_vae import outputs

    _report(outputs.latent_map(source))


def main() -> None:
    """Console entry point `pyro-vae`."""
    app()


if __name__ == "__main__":
    main()
