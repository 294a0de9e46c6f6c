"""The training objectives as losses over a batch: the ELBO and the importance-weighted bound
(IWAE), both from the log importance weights that evaluation uses too.

With K particles z_k ~ q(z | x), the IWAE bound (Burda et al. 2015) is
    log (1/K) sum_k p(x, z_k) / q(z_k | x)  <=  log p(x),
the ELBO when K = 1, and it tightens as K grows. It is Pyro's RenyiELBO with alpha = 0; that
class only steps parameters in Pyro's global store, so the same bound is written here from
Pyro traces, as a differentiable tensor (tests check both agree). The ELBO is the mean of the
same log weights: Pyro's Trace_ELBO computes it from the same traces, but its float() calls and
NaN check wait for the device at every step (tests check both agree in value and gradient).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import pyro
import pyro.poutine as poutine
import torch
from pyro.distributions.util import scale_and_mask

from pyro_vae.config import Objective
from pyro_vae.model import VAE

PARTICLES_PLATE = "particles"

Loss = Callable[[VAE, torch.Tensor], torch.Tensor]


def log_weights(vae: VAE, x: torch.Tensor, *, particles: int) -> torch.Tensor:
    """log p(x, z_k) - log q(z_k | x) for `particles` draws z_k from the guide, vectorised.

    Differentiable (reparameterised draws); wrap in `torch.no_grad()` to evaluate.

    Args:
        x: (batch, 784) float in {0, 1}.
    Returns:
        (particles, batch) log importance weights.
    """
    # One particle (the default ELBO) draws the same numbers without the plate, and Pyro's
    # plate costs about a tenth of a millisecond of Python a step.
    with pyro.plate(PARTICLES_PLATE, particles, dim=-2) if particles > 1 else contextlib.nullcontext():
        guide_trace = poutine.trace(vae.guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    weights = x.new_zeros(particles, x.shape[0], dtype=torch.float32)
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for site in trace.nodes.values():
            if site["type"] == "sample":
                # What Trace.compute_log_prob stores as site["log_prob"], without the per-site
                # sum it adds (a kernel each, unused here).
                log_prob = scale_and_mask(site["fn"].log_prob(site["value"]), site["scale"], site["mask"])
                weights = weights.add(log_prob, alpha=sign)  # each (particles, batch) or broadcastable
    return weights


def iwae_bound(weights: torch.Tensor) -> torch.Tensor:
    """(particles, batch) log weights -> (batch,) log-mean-exp over the particles."""
    return torch.logsumexp(weights, 0) - math.log(weights.shape[0])


def loss_fn(objective: str = "elbo", *, particles: int = 1) -> Loss:
    """The negative bound summed over a batch: `loss(vae, x) -> ()` tensor, to minimise.

    elbo: the ELBO (Kingma & Welling 2014), averaged over `particles` draws per image.
    iwae: the importance-weighted bound with `particles` draws per image.
    """
    if objective == Objective.elbo:
        return lambda vae, x: log_weights(vae, x, particles=particles).sum().div(-particles)
    if objective == Objective.iwae:
        return lambda vae, x: -iwae_bound(log_weights(vae, x, particles=particles)).sum()
    raise ValueError(f"unknown objective {objective!r}; expected one of {Objective.values()}")
