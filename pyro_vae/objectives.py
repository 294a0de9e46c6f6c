"""The training objectives as losses over a batch: the ELBO (Pyro's Trace_ELBO) and the
importance-weighted bound (IWAE), and the log importance weights both evaluation and IWAE use.

With K particles z_k ~ q(z | x), the IWAE bound (Burda et al. 2015) is
    log (1/K) sum_k p(x, z_k) / q(z_k | x)  <=  log p(x),
the ELBO when K = 1, and it tightens as K grows. It is Pyro's RenyiELBO with alpha = 0; that
class only steps parameters in Pyro's global store, so the same bound is written here from
Pyro traces, as a differentiable tensor (tests check both agree).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import Trace_ELBO

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
    with pyro.plate(PARTICLES_PLATE, particles, dim=-2):
        guide_trace = poutine.trace(vae.guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    weights = x.new_zeros(particles, x.shape[0], dtype=torch.float32)
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()
        for site in trace.nodes.values():
            if site["type"] == "sample":
                weights = weights + sign * site["log_prob"]  # each (particles, batch) or broadcastable
    return weights


def iwae_bound(weights: torch.Tensor) -> torch.Tensor:
    """(particles, batch) log weights -> (batch,) log-mean-exp over the particles."""
    return torch.logsumexp(weights, 0) - math.log(weights.shape[0])


def loss_fn(objective: str = "elbo", *, particles: int = 1) -> Loss:
    """The negative bound summed over a batch: `loss(vae, x) -> ()` tensor, to minimise.

    elbo: Trace_ELBO (Kingma & Welling 2014), averaged over `particles` draws per image.
    iwae: the importance-weighted bound with `particles` draws per image.
    """
    if objective == Objective.elbo:
        elbo = (Trace_ELBO() if particles == 1 else
                Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1))
        return lambda vae, x: elbo.differentiable_loss(vae.model, vae.guide, x)
    if objective == Objective.iwae:
        return lambda vae, x: -iwae_bound(log_weights(vae, x, particles=particles)).sum()
    raise ValueError(f"unknown objective {objective!r}; expected one of {Objective.values()}")
