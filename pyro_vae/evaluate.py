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
import pyro.poutine as poutine
import torch

from pyro_vae.model import VAE

PARTICLES_PLATE = "particles"


@dataclass(frozen=True)
class Evaluation:
    """Per-image means in nats, with their standard errors over images."""

    images: int
    particles: int
    elbo: float
    elbo_se: float
    log_likelihood: float
    log_likelihood_se: float


@torch.no_grad()
def log_weights(vae: VAE, x: torch.Tensor, *, particles: int) -> torch.Tensor:
    """log p(x, z_k) - log q(z_k | x) for `particles` draws z_k from the guide, vectorised.

    Args:
        x: (batch, 784) float in {0, 1}.
    Returns:
        (particles, batch) log importance weights.
    """
    with pyro.plate(PARTICLES_PLATE, particles, dim=-2):
        guide_trace = poutine.trace(vae.guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    weights = torch.zeros(particles, x.shape[0], device=x.device)
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()
        for site in trace.nodes.values():
            if site["type"] == "sample":
                weights = weights + sign * site["log_prob"]  # each (particles, batch) or broadcastable
    return weights


def evaluate(vae: VAE, x: torch.Tensor, *, particles: int, batch_size: int = 100, chunk: int = 250,
             on_batch: Callable[[int], None] | None = None) -> Evaluation:
    """ELBO (mean of the log weights) and log-likelihood (their log-mean-exp) over all images.

    Particles are drawn in chunks so memory stays bounded: (chunk, batch_size, 784) at a time.

    Args:
        x: (n, 784) float in {0, 1}.
        on_batch: called with the number of images done after every batch (a progress bar).
    """
    vae.eval()
    elbos, lls = [], []
    with pyro.validation_enabled(False):
        for first in range(0, len(x), batch_size):
            batch = x[first : first + batch_size]
            parts = [log_weights(vae, batch, particles=min(chunk, particles - done))
                     for done in range(0, particles, chunk)]
            weights = torch.cat(parts)  # (particles, batch)
            elbos.append(weights.mean(0))
            lls.append(torch.logsumexp(weights, 0) - math.log(particles))
            if on_batch is not None:
                on_batch(first + len(batch))
    elbo, ll = torch.cat(elbos).double(), torch.cat(lls).double()
    n = len(elbo)
    se = lambda values: (values.std(unbiased=True) / math.sqrt(n)).item() if n > 1 else float("nan")  # noqa: E731
    return Evaluation(images=n, particles=particles, elbo=elbo.mean().item(), elbo_se=se(elbo),
                      log_likelihood=ll.mean().item(), log_likelihood_se=se(ll))
