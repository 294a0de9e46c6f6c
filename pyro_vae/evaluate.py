"""Test-set figures as papers report them: the mean ELBO and the importance-sampled log-likelihood.

log p(x) is estimated with K particles from the guide as proposal (Burda et al. 2015):
log p(x) ~ logsumexp_k [log p(x, z_k) - log q(z_k | x)] - log K,  z_k ~ q(z | x).
It never falls below the ELBO in expectation, and tends to log p(x) as K grows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import torch

from pyro_vae import kernels
from pyro_vae.config import EVAL_CHUNK, EVAL_CHUNK_CUDA, EvaluateConfig
from pyro_vae.model import VAE
from pyro_vae.objectives import iwae_bound, log_weights
from pyro_vae.runtime import isolated_rng


@dataclass(frozen=True)
class Evaluation:
    """Per-image means in nats, with their standard errors over images."""

    images: int
    particles: int
    elbo: float
    elbo_se: float
    log_likelihood: float
    log_likelihood_se: float


class Stopped(Exception):
    """`evaluate` was asked to stop before it had scored every image."""


def evaluate(vae: VAE, x: torch.Tensor, *, particles: int, seed: int = 0, batch_size: int = EvaluateConfig.batch_size,
             chunk: int | None = None, on_batch: Callable[[int], None] | None = None,
             stop: Callable[[], bool] | None = None) -> Evaluation:
    """ELBO (mean of the log weights) and log-likelihood (their log-mean-exp) over all images.

    Particles are drawn in chunks so memory stays bounded: (chunk, batch_size, 784) at a time.

    Args:
        x: (n, 784) float in {0, 1}, on the model's device.
        chunk: particles drawn at a time; default EVAL_CHUNK on the CPU, EVAL_CHUNK_CUDA on a GPU.
        seed: the draws' seed (same seed, same figures); the global generators are restored after.
        on_batch: called with the number of images done after every batch (a progress bar).
        stop: asked after every batch; True raises `Stopped` (an interrupt during training).
    """
    chunk = chunk or (EVAL_CHUNK_CUDA if x.device.type == "cuda" else EVAL_CHUNK)
    was_training = vae.training
    vae.eval()
    elbos, lls = [], []
    plan = kernels.calibrate(vae, rows=min(chunk, particles) * batch_size, backward=False, device=x.device)
    try:
        with (pyro.validation_enabled(False), torch.no_grad(), isolated_rng(seed, device=x.device),
              kernels.used(vae, plan)):
            for first in range(0, len(x), batch_size):
                batch = x[first : first + batch_size]
                parts = [log_weights(vae, batch, particles=min(chunk, particles - done))
                         for done in range(0, particles, chunk)]
                weights = torch.cat(parts)  # (particles, batch)
                elbos.append(weights.mean(0))
                lls.append(iwae_bound(weights))
                if on_batch is not None:
                    on_batch(first + len(batch))
                if stop is not None and stop():
                    raise Stopped
    finally:
        vae.train(was_training)
    elbo, ll = torch.cat(elbos).double(), torch.cat(lls).double()
    n = len(elbo)
    se = lambda values: (values.std(unbiased=True) / math.sqrt(n)).item() if n > 1 else float("nan")  # noqa: E731
    return Evaluation(images=n, particles=particles, elbo=elbo.mean().item(), elbo_se=se(elbo),
                      log_likelihood=ll.mean().item(), log_likelihood_se=se(ll))
