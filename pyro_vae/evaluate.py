"""Test-set figures as papers report them: the mean ELBO with its two terms, the importance-sampled
log-likelihood and the active units, on the data set a model was trained on or on another one's test images.

log p(x) is estimated with K particles from the guide as proposal (Burda et al. 2015):
log p(x) ~ logsumexp_k [log p(x, z_k) - log q(z_k | x)] - log K,  z_k ~ q(z | x).
It never falls below the ELBO in expectation, and tends to log p(x) as K grows. A labels model's
class is summed out exactly inside each weight (`objectives.enumerated_terms`), and its classifier
q(y | x) is scored on the test labels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pyro
import torch

from pyro_vae import data
from pyro_vae.config import EVAL_CHUNK, EVAL_CHUNK_CUDA, EvaluateConfig
from pyro_vae.errors import ConfigError
from pyro_vae.latent import active_units, guide_params
from pyro_vae.m2 import M2, has_labels
from pyro_vae.model import VAE
from pyro_vae.objectives import iwae_bound, log_weight_terms
from pyro_vae.runtime import ThreadGovernor, computing, isolated_rng


@dataclass(frozen=True)
class Evaluation:
    """Per-image means in nats, with their standard errors over images; the ELBO's two terms
    (elbo = reconstruction - kl) from the same K draws; the latent dimensions the images use."""

    images: int
    particles: int
    elbo: float
    elbo_se: float
    log_likelihood: float
    log_likelihood_se: float
    reconstruction: float  # E_q[log p(x | z)]
    kl: float  # KL(q(z | x) || p(z)), estimated from the draws (latent.kl_per_dimension has its closed form)
    active_units: int  # of z_dim: Burda et al.'s, over these images' guide means (latent.active_units)
    # A labels model's test accuracy (the classifier's most probable class), with its standard error
    # over images; None for the VAE, or for images whose labels are not the model's classes.
    accuracy: float | None = None
    accuracy_se: float | None = None


class PerImage(NamedTuple):
    """`per_image`'s figures: each (n,) float64, in nats."""

    elbo: torch.Tensor  # the mean of the image's log weights
    log_likelihood: torch.Tensor  # their log-mean-exp
    reconstruction: torch.Tensor  # the mean of log p(x | z_k)
    kl: torch.Tensor  # the mean of log q(z_k | x) - log p(z_k)


class Stopped(Exception):
    """`evaluate` was asked to stop before it had scored every image."""


def evaluate(vae: VAE | M2, x: torch.Tensor, *, particles: int, seed: int = 0,
             batch_size: int = EvaluateConfig.batch_size, chunk: int | None = None,
             on_batch: Callable[[int], None] | None = None, stop: Callable[[], bool] | None = None,
             y: torch.Tensor | None = None) -> Evaluation:
    """ELBO, its terms and log-likelihood over all images (`per_image`'s), with standard errors; and
    the active units of the images' guide means (one pass of the encoder, no draws); with a labels
    model and the images' labels `y` ((n,) int64), the test accuracy and its standard error."""
    scores = per_image(vae, x, particles=particles, seed=seed, batch_size=batch_size, chunk=chunk,
                       on_batch=on_batch, stop=stop)
    n = len(scores.elbo)
    se = lambda values: (values.std(unbiased=True) / math.sqrt(n)).item() if n > 1 else float("nan")  # noqa: E731
    correct = (classify(vae, x, batch_size=batch_size).argmax(-1).cpu() == y.cpu()).double() if (
        y is not None and has_labels(vae)) else None
    return Evaluation(images=n, particles=particles, elbo=scores.elbo.mean().item(), elbo_se=se(scores.elbo),
                      log_likelihood=scores.log_likelihood.mean().item(), log_likelihood_se=se(scores.log_likelihood),
                      reconstruction=scores.reconstruction.mean().item(), kl=scores.kl.mean().item(),
                      active_units=int(active_units(guide_params(vae, x)[0]).sum()),
                      **({} if correct is None else {"accuracy": correct.mean().item(), "accuracy_se": se(correct)}))


@torch.no_grad()
def classify(vae: M2, x: torch.Tensor, *, batch_size: int = EvaluateConfig.batch_size) -> torch.Tensor:
    """q(y | x) of a labels model: x (n, 784) float in {0, 1} -> (n, classes) probabilities, on x's device."""
    was_training = vae.training
    vae.eval()
    try:
        return torch.cat([vae.class_log_probs(x[i : i + batch_size]).exp() for i in range(0, len(x), batch_size)])
    finally:
        vae.train(was_training)


def per_image(vae: VAE, x: torch.Tensor, *, particles: int, seed: int = 0,
              batch_size: int = EvaluateConfig.batch_size, chunk: int | None = None,
              on_batch: Callable[[int], None] | None = None,
              stop: Callable[[], bool] | None = None) -> PerImage:
    """Each image's ELBO (mean of its log weights), log-likelihood (their log-mean-exp) and the
    ELBO's two terms (means over the same draws), in nats: `PerImage` of (n,) float64 tensors.

    Particles are drawn in chunks so memory stays bounded: (chunk, batch_size, 784) at a time.

    Args:
        x: (n, 784) float in {0, 1}, on the model's device.
        chunk: particles drawn at a time; default EVAL_CHUNK on the CPU, EVAL_CHUNK_CUDA on a GPU.
        seed: the draws' seed (same seed, same figures); the global generators are restored after.
        on_batch: called with the number of images done after every batch (a progress bar).
        stop: asked after every batch; True raises `Stopped` (an interrupt during training).
    """
    chunk = chunk or (EVAL_CHUNK_CUDA if x.device.type == "cuda" else EVAL_CHUNK)
    chunk = max(1, chunk // max(1, vae.config.classes))  # a labels model decodes each draw once per class
    was_training = vae.training
    vae.eval()
    found: list[tuple[torch.Tensor, ...]] = []
    try:
        with pyro.validation_enabled(False), torch.no_grad(), isolated_rng(seed, device=x.device):
            for first in range(0, len(x), batch_size):
                batch = x[first : first + batch_size]
                parts = [log_weight_terms(vae, batch, particles=min(chunk, particles - done))
                         for done in range(0, particles, chunk)]
                weights = torch.cat([part.weights for part in parts])  # (particles, batch)
                elbos = torch.cat([part.weights if part.elbo is None else part.elbo for part in parts])
                # Each chunk's terms summed over its draws (they may broadcast), then averaged.
                terms = [sum(_draw_sums(part, name) for part in parts) / particles for name in ("reconstruction", "kl")]
                found.append((elbos.mean(0), iwae_bound(weights), *terms))
                if on_batch is not None:
                    on_batch(first + len(batch))
                if stop is not None and stop():
                    raise Stopped
    finally:
        vae.train(was_training)
    return PerImage(*(torch.cat(column).double() for column in zip(*found)))


def _draw_sums(part: Any, name: str) -> torch.Tensor:
    """A chunk's term `name` (its (draws, images) shape, or one that broadcasts to it) summed over the draws: (images,)."""
    return torch.broadcast_to(getattr(part, name), part.weights.shape).sum(0)


def log_likelihoods(vae: VAE, x: torch.Tensor, *, particles: int, seed: int = 0,
                    batch_size: int = EvaluateConfig.batch_size) -> torch.Tensor:
    """Each image's importance-sampled log p(x) with `particles` draws, in nats: (n,) float64."""
    return per_image(vae, x, particles=particles, seed=seed, batch_size=batch_size)[1]


@dataclass(frozen=True)
class TestSet:
    """One data set's test images, as `evaluate` scores them, and whether the model was trained on that data."""

    dataset: str
    data_dir: Path
    x: torch.Tensor  # (n, 784) float in {0, 1}, binarized once
    foreign: str | None  # why it is not the model's training data (`data.mismatch`); None when it is
    y: torch.Tensor | None = None  # (n,) int64, their labels


def test_sets(trained: dict[str, Any], names: Sequence[str] = (), *, data_dir: Path | None = None) -> list[TestSet]:
    """The test sets to score a model trained on `trained` (a checkpoint's `data.record`) on:
    each of `names`, or the checkpoint's own when none. Scoring another data set's test images
    with the same estimator is how a likelihood is compared across data sets (Nalisnick et al.
    2019 found a Fashion-MNIST model gives MNIST the higher one).

    Args:
        data_dir: the folder of the one data set named; several are each read from their own default.
    """
    if len(names) > 1 and data_dir is not None:
        raise ConfigError("⟨data_dir⟩ names one data set's folder; with several ⟨dataset⟩ each is read from its "
                          "default folder (data/<dataset>, $PYRO_VAE_DATA for mnist)")
    sets = []
    for name in names or (None,):
        dataset, folder = data.reading(trained, dataset=name, data_dir=data_dir)
        x, _ = data.test_images(folder, dataset=dataset)
        sets.append(TestSet(dataset=dataset, data_dir=folder, x=x,
                            foreign=data.mismatch(trained, data.record(dataset, folder)),
                            y=data.load_split(folder, "test", dataset=dataset)[1]))
    return sets


def score(vae: VAE, sets: Sequence[TestSet], *, particles: int, seed: int = 0,
          batch_size: int = EvaluateConfig.batch_size,
          on_batch: Callable[[str, int], None] | None = None) -> list[Evaluation]:
    """`evaluate` on each test set in turn, with the same particles and seed, on the model's device.

    Args:
        on_batch: called with the set's data set name and the images done after every batch.
    """
    device = next(vae.parameters()).device
    return [evaluate(vae, test.x.to(device), particles=particles, seed=seed, batch_size=batch_size,
                     on_batch=None if on_batch is None else functools.partial(on_batch, test.dataset),
                     y=None if test.foreign else test.y)
            for test in sets]


@dataclass(frozen=True)
class Scored:
    """One test set's scores for a checkpoint, and where its record went."""

    test: TestSet
    result: Evaluation
    record_file: Path
    replaced: bool  # a record with the same checkpoint, data set, K and seed was there before


def score_and_record(model: Any, sets: Sequence[TestSet], *, results_dir: Path, particles: int, seed: int = 0,
                     batch_size: int = EvaluateConfig.batch_size, threads: str | int | None = None,
                     on_batch: Callable[[str, int], None] | None = None) -> list[Scored]:
    """`score` a loaded model (`pyro_vae.Model`) on `sets`, and keep one record per checkpoint,
    data set and setting in `results_dir/metrics/evaluation.json` (a damaged record file fails
    before the work).

    Args:
        threads: as `train`'s: auto (None: $PYRO_VAE_THREADS, else auto) shares the CPUs with other
            pyro-vae processes and keeps the faster thread count batch by batch. The figures do not
            depend on it.
    """
    from pyro_vae.metrics import EVALUATION, add_evaluation, read_evaluations

    read_evaluations(results_dir / EVALUATION)
    with computing(threads) as chosen:
        governor = ThreadGovernor.of(chosen, device=model.device)

        def each_batch(dataset: str, done: int) -> None:
            governor()
            if on_batch is not None:
                on_batch(dataset, done)

        results = score(model.vae, sets, particles=particles, seed=seed, batch_size=batch_size, on_batch=each_batch)
    scored = []
    for test, result in zip(sets, results):
        record = {**model.about(), "trained_on": model.dataset, "dataset": test.dataset, "seed": seed, **vars(result)}
        scored.append(Scored(test, result, *add_evaluation(record, results_dir / EVALUATION)))
    return scored
