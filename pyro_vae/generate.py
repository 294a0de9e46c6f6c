"""Sampling from a trained VAE: prior samples and digit samples, as tensors of pixel probabilities; and from
a labels model (pyro_vae.m2), samples of a class and one style written as every class."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import torch
from pyro.infer import Predictive

from pyro_vae import data, options
from pyro_vae.config import GRID_COLS, GenerateConfig, Mode, Paths, QuizConfig, either
from pyro_vae.errors import ConfigError, NoLabels
from pyro_vae.m2 import M2, has_labels
from pyro_vae.model import Z, VAE
from pyro_vae.priors import in_words
from pyro_vae.runtime import seed_all

PRIOR_NAME = "random_samples"
STYLE_NAME = "style"  # style mode's one grid
# The modes that encode test images (the exemplars of the classes, or the images given), and the
# modes that need a model trained with labels.
ENCODING = (Mode.digit, Mode.style)
LABELLED = (Mode.label, Mode.style)
# The settings only some modes use, with those modes and what they do: given to another they would do nothing.
MODE_ONLY = {"noise": ((Mode.digit,), "it widens the guide around real digits"),
             "digits": ((Mode.digit, *LABELLED), "it picks the classes"),
             "index": (ENCODING, "it picks the test images to encode")}


def check_mode(mode: str, given: frozenset[str] = frozenset()) -> None:
    """Refuse, in one line, a setting that `mode` would ignore (`given`: the names given): the
    digit-mode ones in prior mode, say, and digits beside index (the test images given replace the
    classes' exemplars)."""
    if mode not in Mode.values():
        raise ConfigError(f"⟨mode⟩ must be {either(Mode.values())}, got {mode!r}")
    for name, (modes, does) in MODE_ONLY.items():
        if mode not in modes and name in given:
            raise ConfigError(f"⟨{name}⟩ does nothing in {mode} mode ({does}); drop it, or pass ⟨mode⟩ "
                              f"{either(tuple(map(str, modes)))}")
    if {"digits", "index"} <= given:
        raise ConfigError("⟨digits⟩ and ⟨index⟩ both choose the images to encode; give one")


def suffix(config: GenerateConfig, mode: str) -> str:
    """What an output name adds for the settings that differ from the seed program's pictures
    (the defaults: noise 0.7 in digit mode, seed 0, 100 images), e.g. "_noise1.4_seed7"; "" for the
    seed's own, so a picture with other settings never replaces one with these."""
    parts = [f"noise{config.noise:g}"] if mode == Mode.digit and config.noise != GenerateConfig.noise else []
    parts += [f"seed{config.seed}"] if config.seed != GenerateConfig.seed else []
    parts += [f"n{config.n}"] if config.n != GenerateConfig.n else []
    return "".join("_" + part for part in parts)


def chosen(config: GenerateConfig, exemplars: Sequence[int]) -> dict[str, int]:
    """Digit mode's output names and the test images they encode: the data set's `exemplars`
    (a test index per class; MNIST's are the seed's) of each of `config.digits` ("3" -> 90), or
    the `config.indices` given instead ("index_17" -> 17)."""
    if config.indices:
        return {f"index_{i}": i for i in config.indices}
    for d in config.digits:
        if not (d < len(exemplars) and exemplars[d] >= 0):
            raise ConfigError(f"class {d} has no test image to encode; pass ⟨index⟩ to pick test images yourself")
    return {str(d): exemplars[d] for d in config.digits}


@torch.no_grad()
def prior_samples(vae: VAE | M2, *, n: int) -> torch.Tensor:
    """Decode `n` draws of z ~ p(z) (the model's prior: N(0, I) or its VampPrior; a labels model's
    class drawn from p(y) too).

    Returns:
        (n, 784) float pixel probabilities in [0, 1].
    """
    drawn = Predictive(vae.model, num_samples=1, return_sites=vae.latent_sites)(batch_size=n)
    return vae.x_probs(*(drawn[site] for site in vae.latent_sites)).reshape(n, -1)


def require_labels(vae: VAE | M2) -> M2:
    """The model, if it knows classes; else `NoLabels`, which names `train --labels`."""
    if not has_labels(vae):
        raise NoLabels("this model was trained without labels, so it cannot be asked for a class; train one with "
                       "⟨labels⟩ N (e.g. 100), or use ⟨mode⟩ digit, which encodes a test image of the class")
    return vae


def _check_class(vae: M2, digit: int) -> None:
    if not 0 <= digit < vae.config.classes:
        raise ConfigError(f"the model knows classes 0 to {vae.config.classes - 1}, got {digit}")


@torch.no_grad()
def label_samples(vae: VAE | M2, *, n: int, digit: int | torch.Tensor) -> torch.Tensor:
    """Decode `n` draws of z ~ p(z) with the class fixed at `digit`: x ~ p(x | z, y = digit).

    Args:
        digit: one class for all n draws, or one per draw: (n,) int64 (the judge's balanced classes).
    Returns:
        (n, 784) float pixel probabilities in [0, 1].
    """
    vae = require_labels(vae)
    y = torch.as_tensor(digit, dtype=torch.int64, device=next(vae.parameters()).device).expand(n).contiguous()
    for d in y.unique().tolist():
        _check_class(vae, d)
    z = Predictive(vae.model, num_samples=1, return_sites=(Z,))(y=y)[Z][0]
    return vae.x_probs(z, y)


@torch.no_grad()
def style_samples(vae: VAE | M2, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Kingma et al.'s analogies: each image's style, the mean of q(z | x, y) at its own class, decoded
    as every class ("this writer's 7").

    Args:
        x: (k, 784) float in {0, 1}; y: (k,) int64, their classes.
    Returns:
        (k, classes, 784) pixel probabilities: row i is image i's style written as class 0, 1, ...
    """
    vae = require_labels(vae)
    z_loc, _ = vae.encoder(x, y)  # (k, z_dim)
    classes = torch.arange(vae.config.classes, device=x.device).unsqueeze(-1)  # (classes, 1)
    return vae.x_probs(z_loc, classes).transpose(0, 1)


@torch.no_grad()
def guide_samples(vae: VAE, x: torch.Tensor, *, n: int, noise: float) -> torch.Tensor:
    """Encode each image, draw `n` latents from the guide widened by `noise`, and decode them.

    Args:
        x: (k, 784) float in {0, 1}, the images to condition on.
        n: latents drawn per image.
        noise: added to the guide's log-std (the seed uses 0.7).
    Returns:
        (k, n, 784) float pixel probabilities in [0, 1].
    """
    guide = functools.partial(vae.guide, noise=noise)
    # parallel=True vectorises the n draws in one pass: z is (n, k, z_dim).
    # (A labels model's guide draws each class from q(y | x) as well.)
    predictive = Predictive(vae.model, guide=guide, num_samples=n, parallel=True, return_sites=vae.latent_sites)
    drawn = predictive(x)  # z: (n, k, z_dim)
    return vae.x_probs(*(drawn[site] for site in vae.latent_sites)).reshape(n, x.shape[0], -1).transpose(0, 1)


def titles(mode: str, config: GenerateConfig, *, chosen: dict[str, int] | None = None,
           classes: Sequence[str] = (), prior: str = in_words("standard", 0)) -> dict[str, str]:
    """The output names of a `generate` call, in `samples`' order, each with what its picture shows.

    Names are `random_samples` (prior), `3` (class 3's exemplar) or `index_17` (test image 17),
    `label_7` (class 7 asked of a labels model) or `style`, plus `suffix(config, mode)` for settings
    other than the seed program's ("3_noise1.4").

    Args:
        chosen: digit and style modes' names and test images, `chosen(config, exemplars)`.
        classes: the data set's class names, to say what each exemplar shows ("a 3", "a Sneaker").
        prior: what p(z) is (`priors.in_words`).
    """
    check_mode(mode)
    added = suffix(config, mode)
    named = lambda k: classes[k] if k < len(classes) else str(k)  # noqa: E731
    if mode == Mode.prior:
        return {PRIOR_NAME + added: f"{config.n} samples from {prior}"}
    if mode == Mode.label:
        return {f"label_{d}{added}": f"{config.n} samples of class {named(d)}: x ~ p(x | z, y = {d}), z ~ N(0, I)"
                for d in config.digits}
    if mode == Mode.style:
        return {STYLE_NAME + added: f"the style of test images {', '.join(map(str, (chosen or {}).values()))} "
                f"(the mean of q(z | x, y)) written as every class, {', '.join(map(named, range(len(classes))))}; "
                "first column: the image"}
    return {name + added: f"{config.n} draws from the guide around test image {index}"
            + (f" (a {classes[int(name)]})" if name.isdigit() and int(name) < len(classes) else "")
            for name, index in (chosen or {}).items()}


def samples(vae: VAE | M2, mode: str, config: GenerateConfig, *, x: torch.Tensor | None = None,
            names: Sequence[str] = (), y: torch.Tensor | None = None, shown: torch.Tensor | None = None
            ) -> dict[str, torch.Tensor]:
    """The images a `generate` call produces, by output name, before anything is written.

    Args:
        mode: `prior` (one grid), `digit` (one grid per image of `x`), `label` (one per class of
            `config.digits`) or `style` (one grid, a row per image of `x`).
        x: digit and style modes' test images, binarized: (k, 784), as `chosen(config, ...)` picks them.
        y, shown: style mode's labels of `x` (k,) and the images as a person sees them (k, 784).
        names: the output names, `titles(...)`'s keys.
    Returns:
        name -> (config.n, 784) float pixel probabilities; style's -> (k, 1 + classes, 784), each
        image followed by its style written as every class.
    """
    names = list(names) or list(titles(mode, config))
    seed_all(config.seed)
    device = next(vae.parameters()).device
    if mode == Mode.prior:
        return {names[0]: prior_samples(vae, n=config.n)}
    if mode == Mode.label:
        return {name: label_samples(vae, n=config.n, digit=d) for name, d in zip(names, config.digits)}
    if x is None or len(names) != (1 if mode == Mode.style else len(x)):
        raise ValueError("digit and style modes need the test images to encode, and their names")
    if mode == Mode.style:
        styles = style_samples(vae, x.to(device), y.to(device))
        return {names[0]: torch.cat([shown.to(device).unsqueeze(1), styles], 1)}
    drawn = guide_samples(vae, x.to(device), n=config.n, noise=config.noise)
    return {name: drawn[k] for k, name in enumerate(names)}


def grids(vae: VAE | M2, mode: str, config: GenerateConfig, *, paths: Paths, digits: str | None = None
          ) -> dict[str, tuple[str, torch.Tensor]]:
    """What a `generate` call draws, by output name: (what the picture shows, (config.n, 784) pixel
    probabilities). Digit mode encodes the test exemplars of `digits` (numbers or class names of
    `paths.dataset`, e.g. "3,8"; None: every class), or `config.indices` when given; label mode asks
    a labels model for each of `digits`; style mode writes those exemplars' styles as every class."""
    if mode in LABELLED:
        require_labels(vae)
    if digits is not None:
        config = dataclasses.replace(config, digits=options.class_numbers(digits, paths.dataset, paths.data_dir))
    picked = chosen(config, data.exemplars(paths.dataset, paths.data_dir)) if mode in ENCODING else {}
    x = shown = y = None
    if picked:
        x, shown = data.test_images(paths.data_dir, indices=list(picked.values()), dataset=paths.dataset)
        y = data.load_split(paths.data_dir, "test", dataset=paths.dataset)[1][list(picked.values())]
    named = titles(mode, config, chosen=picked, classes=data.class_names(paths.dataset, paths.data_dir),
                   prior=in_words(vae.config.prior, vae.config.pseudo_inputs))
    drawn = samples(vae, mode, config, x=x, names=list(named), y=y, shown=shown)
    return {name: (named[name], x_probs) for name, x_probs in drawn.items()}


@torch.no_grad()
def reconstructions(vae: VAE, x: torch.Tensor, *, cols: int = GRID_COLS) -> torch.Tensor:
    """Images and their reconstructions (decoded guide means), arranged for a grid of `cols`:
    each row of originals is followed by the row of their reconstructions.

    Args:
        x: (n, 784) float in {0, 1}.
    Returns:
        (2 * n, 784) pixel values in [0, 1].
    """
    z_loc, _ = vae.encode(x)
    # A labels model decodes each image's code with the class its classifier finds most probable, as `encode` took it.
    decoded = vae.x_probs(z_loc, vae.classifier(x).argmax(-1)) if has_labels(vae) else vae.x_probs(z_loc)
    rows = [t for first in range(0, len(x), cols) for t in (x[first : first + cols], decoded[first : first + cols])]
    return torch.cat(rows)


@torch.no_grad()
def interpolation(vae: VAE, x_from: torch.Tensor, x_to: torch.Tensor, *, steps: int) -> torch.Tensor:
    """Decode evenly spaced points on the straight line between two images' encodings (guide means).

    Args:
        x_from, x_to: (784,) float in {0, 1}.
    Returns:
        (steps, 784) pixel probabilities, from `x_from`'s end to `x_to`'s.
    """
    if has_labels(vae):
        raise ConfigError("interpolate walks the VAE's codes, and a labels model's codes need their class; for one "
                          "style written as every class, run generate with ⟨mode⟩ style")
    z_loc, _ = vae.encoder(torch.stack([x_from, x_to]))
    t = torch.linspace(0, 1, steps, device=z_loc.device).unsqueeze(-1)  # (steps, 1)
    return vae.x_probs((1 - t) * z_loc[0] + t * z_loc[1])


@torch.no_grad()
def quiz(vae: VAE, binarized: torch.Tensor, intensities: torch.Tensor, config: QuizConfig = QuizConfig(),
         ) -> tuple[torch.Tensor, list[dict]]:
    """The blog's game: real test digits and generated ones at random places.

    A generated cell encodes a randomly chosen test image and decodes one draw of the guide
    widened by `config.noise`; a real cell shows another test image as it is.

    Args:
        binarized: (n, 784) test images as the guide sees them; intensities: the same in [0, 1].
    Returns:
        (config.cells, 784) pixel values in [0, 1], and per cell {"cell", "real", "test_index"}.
    """
    cells, seed = config.cells, config.seed
    seed_all(seed)
    generator = torch.Generator().manual_seed(seed)
    n_real = round(cells * config.real_fraction)
    real = torch.zeros(cells, dtype=torch.bool)
    real[torch.randperm(cells, generator=generator)[:n_real]] = True
    sources = torch.randperm(len(binarized), generator=generator)[:cells]  # a distinct test image per cell
    device = next(vae.parameters()).device
    shown = intensities[sources].to(device)
    fake = ~real.to(device)
    if fake.any():
        drawn = guide_samples(vae, binarized[sources].to(device)[fake], n=1, noise=config.noise)  # (k, 1, 784)
        shown[fake] = drawn[:, 0]
    answers = [{"cell": k, "real": bool(real[k]), "test_index": int(sources[k])} for k in range(cells)]
    return shown, answers
