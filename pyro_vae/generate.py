"""Sampling from a trained VAE: prior samples and digit samples, as tensors of pixel probabilities."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import torch
from pyro.infer import Predictive

from pyro_vae import data, options
from pyro_vae.config import GRID_COLS, GenerateConfig, Mode, Paths, QuizConfig, either
from pyro_vae.errors import ConfigError
from pyro_vae.model import Z, VAE
from pyro_vae.priors import in_words
from pyro_vae.runtime import seed_all

PRIOR_NAME = "random_samples"
# The settings only digit mode uses, with what they do: given in prior mode they would do nothing.
DIGIT_ONLY = {"noise": "it widens the guide around real digits", "digits": "it picks the digits to encode",
              "index": "it picks the test images to encode"}


def check_mode(mode: str, given: frozenset[str] = frozenset()) -> None:
    """Refuse, in one line, a setting that `mode` would ignore (`given`: the names given): the
    digit-mode ones in prior mode, and digits beside index (the test images given replace the
    classes' exemplars)."""
    if mode not in Mode.values():
        raise ConfigError(f"⟨mode⟩ must be {either(Mode.values())}, got {mode!r}")
    for name, does in DIGIT_ONLY.items():
        if mode != Mode.digit and name in given:
            raise ConfigError(f"⟨{name}⟩ does nothing in prior mode ({does}); drop it, or pass ⟨mode⟩ digit")
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
def prior_samples(vae: VAE, *, n: int) -> torch.Tensor:
    """Decode `n` draws of z ~ p(z) (the model's prior: N(0, I) or its VampPrior).

    Returns:
        (n, 784) float pixel probabilities in [0, 1].
    """
    z = Predictive(vae.model, num_samples=1, return_sites=(Z,))(batch_size=n)[Z]
    return vae.x_probs(z).reshape(n, -1)


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
    predictive = Predictive(vae.model, guide=guide, num_samples=n, parallel=True, return_sites=(Z,))
    z = predictive(x)[Z]  # (n, k, z_dim)
    return vae.x_probs(z).reshape(n, x.shape[0], -1).transpose(0, 1)


def titles(mode: str, config: GenerateConfig, *, chosen: dict[str, int] | None = None,
           classes: Sequence[str] = (), prior: str = in_words("standard", 0)) -> dict[str, str]:
    """The output names of a `generate` call, in `samples`' order, each with what its picture shows.

    Names are `random_samples` (prior), `3` (class 3's exemplar) or `index_17` (test image 17),
    plus `suffix(config, mode)` for settings other than the seed program's ("3_noise1.4").

    Args:
        chosen: digit mode's names and test images, `chosen(config, exemplars)`.
        classes: the data set's class names, to say what each exemplar shows ("a 3", "a Sneaker").
        prior: what p(z) is (`priors.in_words`).
    """
    check_mode(mode)
    added = suffix(config, mode)
    if mode == Mode.prior:
        return {PRIOR_NAME + added: f"{config.n} samples from {prior}"}
    return {name + added: f"{config.n} draws from the guide around test image {index}"
            + (f" (a {classes[int(name)]})" if name.isdigit() and int(name) < len(classes) else "")
            for name, index in (chosen or {}).items()}


def samples(vae: VAE, mode: str, config: GenerateConfig, *, x: torch.Tensor | None = None,
            names: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """The images a `generate` call produces, by output name, before anything is written.

    Args:
        mode: `prior` (one grid) or `digit` (one grid per image of `x`).
        x: digit mode's test images, binarized: (k, 784), as `chosen(config, ...)` picks them.
        names: the output names, `titles(...)`'s keys (one for prior mode, one per image of `x`).
    Returns:
        name -> (config.n, 784) float pixel probabilities.
    """
    names = list(names) or list(titles(mode, config))
    seed_all(config.seed)
    if mode == Mode.prior:
        return {names[0]: prior_samples(vae, n=config.n)}
    if x is None or len(names) != len(x):
        raise ValueError("digit mode needs the test images to encode, and a name for each")
    drawn = guide_samples(vae, x.to(next(vae.parameters()).device), n=config.n, noise=config.noise)
    return {name: drawn[k] for k, name in enumerate(names)}


def grids(vae: VAE, mode: str, config: GenerateConfig, *, paths: Paths, digits: str | None = None
          ) -> dict[str, tuple[str, torch.Tensor]]:
    """What a `generate` call draws, by output name: (what the picture shows, (config.n, 784) pixel
    probabilities). Digit mode encodes the test exemplars of `digits` (numbers or class names of
    `paths.dataset`, e.g. "3,8"; None: every class), or `config.indices` when given."""
    picked: dict[str, int] = {}
    if mode == Mode.digit:
        if digits is not None:
            config = dataclasses.replace(config, digits=options.class_numbers(digits, paths.dataset, paths.data_dir))
        picked = chosen(config, data.exemplars(paths.dataset, paths.data_dir))
    x = data.test_images(paths.data_dir, indices=list(picked.values()), dataset=paths.dataset)[0] if picked else None
    shown = titles(mode, config, chosen=picked, classes=data.class_names(paths.dataset, paths.data_dir),
                   prior=in_words(vae.config.prior, vae.config.pseudo_inputs))
    drawn = samples(vae, mode, config, x=x, names=list(shown))
    return {name: (shown[name], x_probs) for name, x_probs in drawn.items()}


@torch.no_grad()
def reconstructions(vae: VAE, x: torch.Tensor, *, cols: int = GRID_COLS) -> torch.Tensor:
    """Images and their reconstructions (decoded guide means), arranged for a grid of `cols`:
    each row of originals is followed by the row of their reconstructions.

    Args:
        x: (n, 784) float in {0, 1}.
    Returns:
        (2 * n, 784) pixel values in [0, 1].
    """
    z_loc, _ = vae.encoder(x)
    decoded = vae.x_probs(z_loc)
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
