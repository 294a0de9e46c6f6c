"""The training objectives as losses over a batch: the ELBO and the importance-weighted bound
(IWAE), both from the log importance weights that evaluation uses too.

With K particles z_k ~ q(z | x), the IWAE bound (Burda et al. 2015) is
    log (1/K) sum_k p(x, z_k) / q(z_k | x)  <=  log p(x),
the ELBO when K = 1, and it tightens as K grows. It is Pyro's RenyiELBO with alpha = 0; that
class only steps parameters in Pyro's global store, so the same bound is written here from
Pyro traces, as a differentiable tensor (tests check both agree). The ELBO is the mean of the
same log weights: Pyro's Trace_ELBO computes it from the same traces, but its float() calls and
NaN check wait for the device at every step (tests check both agree in value and gradient).

A model with a discrete latent (the labels model, pyro_vae.m2) sums it out exactly on unlabelled
images: `enumerated_terms` scores every class at once under Pyro's parallel enumeration, and
`semi_supervised_loss` adds the labelled images' bound and Kingma et al.'s classification term.

The same traces split each log weight into its two terms, log p(x | z) (reconstruction) and
log q(z | x) - log p(z) (the KL term's one-draw estimate), which training records and `beta`
weights (the KL weight of beta-VAEs and of KL warm-up, Higgins et al. 2017, Sønderby et al. 2016).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import NamedTuple

import pyro
import pyro.poutine as poutine
import torch
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import site_is_subsample

from pyro_vae.config import Objective
from pyro_vae.data import LabelledSet
from pyro_vae.m2 import M2
from pyro_vae.model import VAE

PARTICLES_PLATE = "particles"



class LogWeights(NamedTuple):
    """The log importance weights of `particles` draws and their two terms, each (particles, batch)
    or broadcastable to it: weights = reconstruction - kl, up to rounding (weights are summed site
    by site, as they always were, so a loss of the weights alone keeps its bits)."""

    weights: torch.Tensor  # log p(x, z_k) - log q(z_k | x)
    reconstruction: torch.Tensor  # log p(x | z_k): the observed sites
    kl: torch.Tensor  # log q(z_k | x) - log p(z_k): the latent sites; its mean over draws estimates KL(q || p)
    # Each draw's ELBO where it is not the weight itself (a summed-out discrete latent); None: the weights.
    elbo: torch.Tensor | None = None


def log_weight_terms(vae: VAE | M2, x: torch.Tensor, *, particles: int, y: torch.Tensor | None = None) -> LogWeights:
    """log p(x, z_k) - log q(z_k | x) for `particles` draws z_k from the guide, vectorised, with its terms.

    Differentiable (reparameterised draws); wrap in `torch.no_grad()` to evaluate. For the labels
    model, y is observed where given, and otherwise summed out (`enumerated_terms`).

    Args:
        x: (batch, 784) float in {0, 1}; y: (batch,) labels, for the labels model.
    Returns:
        LogWeights of (particles, batch) tensors.
    """
    if isinstance(vae, M2) and y is None:
        return enumerated_terms(vae, x, particles=particles)
    labels = {} if y is None else {"y": y}
    # One particle (the default ELBO) draws the same numbers without the plate, and Pyro's
    # plate costs about a tenth of a millisecond of Python a step.
    with pyro.plate(PARTICLES_PLATE, particles, dim=-2) if particles > 1 else contextlib.nullcontext():
        guide_trace = poutine.trace(vae.guide).get_trace(x, **labels)
        model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x, **labels)
    weights = x.new_zeros(particles, x.shape[0], dtype=torch.float32)
    observed, latent = [], []  # log p(x | z); log p(z) and -log q(z | x)
    for log_prob, sign, site in _log_densities(model_trace, guide_trace):
        weights = weights.add(log_prob, alpha=sign)  # each (particles, batch) or broadcastable
        if not site_is_subsample(site):  # a plate's site: log-density 0
            (observed if site["is_observed"] else latent).append((log_prob, sign))
    return LogWeights(weights, _signed_sum(observed), _signed_sum(latent, sign=-1.0))


def _log_densities(model_trace: poutine.Trace, guide_trace: poutine.Trace):
    """(log density, sign, site) of every sample site: +1 the model's, -1 the guide's."""
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for site in trace.nodes.values():
            if site["type"] == "sample":
                # What Trace.compute_log_prob stores as site["log_prob"], without the per-site
                # sum it adds (a kernel each, unused here).
                yield scale_and_mask(site["fn"].log_prob(site["value"]), site["scale"], site["mask"]), sign, site


def enumerated_terms(vae: M2, x: torch.Tensor, *, particles: int = 1) -> LogWeights:
    """The bound of unlabelled images with the guide's discrete y summed out exactly (Kingma et al.
    2014's U(x)): Pyro's parallel enumeration scores every class at once, one z_y drawn per class.

        ELBO       = sum_y q(y | x) [log p(x, y, z_y) - log q(z_y | x, y) - log q(y | x)]
        log weight = log sum_y p(x, y, z_y) / q(z_y | x, y)

    The weight is an importance weight of p(x) with y summed out inside: the log-mean-exp over
    draws equals logsumexp_y of each class's own estimate, so `iwae_bound` and evaluation's log p(x)
    take it as they take the VAE's. Pyro's TraceEnum_ELBO computes the same ELBO from the same
    traces (tests check both agree); this one also gives the terms, and never waits for the device.

    Returns:
        LogWeights of (particles, batch): the weights, reconstruction sum_y q(y) log p(x | y, z_y),
        kl (KL(q(y | x) || p(y)) plus sum_y q(y) [log q(z_y | x, y) - log p(z_y)]) and elbo = reconstruction - kl.
    """
    # The enumerated classes take the dimension left of the plates (data -1, particles -2).
    with pyro.plate(PARTICLES_PLATE, particles, dim=-2) if particles > 1 else contextlib.nullcontext():
        guide_trace = poutine.trace(poutine.enum(vae.guide, first_available_dim=-3 if particles > 1 else -2)
                                    ).get_trace(x)
        model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    log_q_y, observed, latent = None, [], []  # log q(y | x); log p(x | y, z); log p(y), log p(z), -log q(z | x, y)
    for log_prob, sign, site in _log_densities(model_trace, guide_trace):
        if site_is_subsample(site):
            continue
        if sign < 0 and site["infer"].get("enumerate") == "parallel":
            log_q_y = log_prob  # (classes, [particles,] batch)
        else:
            (observed if site["is_observed"] else latent).append((log_prob, sign))
    reconstruction, kl = _signed_sum(observed), _signed_sum(latent, sign=-1.0)  # each class's: (classes, ..., batch)
    q_y = log_q_y.exp()
    shape = (particles, x.shape[0])
    expected = lambda t: (q_y * t).sum(0).reshape(shape)  # noqa: E731  (over the classes)
    reconstruction_sum, kl_sum = expected(reconstruction), expected(kl + log_q_y)
    return LogWeights(torch.logsumexp(reconstruction - kl, 0).reshape(shape), reconstruction_sum, kl_sum,
                      elbo=reconstruction_sum - kl_sum)


def _signed_sum(terms: list[tuple[torch.Tensor, float]], *, sign: float = 1.0) -> torch.Tensor:
    """sign * sum of s * t over (t, s); the model's one site of each kind costs no kernel at all."""
    if len(terms) == 1 and terms[0][1] * sign == 1.0:
        return terms[0][0]
    total = terms[0][0] * (terms[0][1] * sign)
    for log_prob, s in terms[1:]:
        total = total.add(log_prob, alpha=s * sign)
    return total


def iwae_bound(weights: torch.Tensor) -> torch.Tensor:
    """(particles, batch) log weights -> (batch,) log-mean-exp over the particles."""
    return torch.logsumexp(weights, 0) - math.log(weights.shape[0])


class Step(NamedTuple):
    """A batch's loss and what training records of it."""

    loss: torch.Tensor  # (), to minimise: the negative bound, with the KL term weighted by beta
    sums: torch.Tensor  # (3,), detached: the negative true (unweighted) bound, the reconstruction and the KL
    # terms, each summed over the batch's images (averaged over the particles)


Loss = Callable[[VAE, torch.Tensor], Step]


def loss_fn(objective: str = "elbo", *, particles: int = 1, beta: float = 1.0) -> Loss:
    """The negative bound summed over a batch, to minimise: `loss(vae, x) -> Step`.

    elbo: the ELBO (Kingma & Welling 2014), averaged over `particles` draws per image.
    iwae: the importance-weighted bound with `particles` draws per image.
    beta: the KL term's weight in the loss (the bound recorded in `Step.sums` is always the true
        one); with iwae it weights log p(z) - log q(z | x) inside each log weight. At 1, the loss
        is the log weights' own, bit for bit.
    Step.sums' terms are each draw's ELBO terms averaged over the particles; for iwae they sum
    to the mean per-draw ELBO, below the IWAE bound.
    """
    if objective not in Objective.values():
        raise ValueError(f"unknown objective {objective!r}; expected one of {Objective.values()}")
    negative = _negative_elbo if objective == Objective.elbo else _negative_iwae

    def loss(vae: VAE, x: torch.Tensor) -> Step:
        terms = log_weight_terms(vae, x, particles=particles)
        if beta == 1.0:
            value = negative(terms.weights, particles)
            true = value.detach()
        else:
            # (batch,) terms without the particles' plate: shaped as the weights, (particles, batch)
            weighted = torch.broadcast_to(terms.reconstruction - beta * terms.kl, terms.weights.shape)
            value = negative(weighted, particles)
            true = negative(terms.weights.detach(), particles)
        average = (lambda t: t) if particles == 1 else (lambda t: t.div(particles))  # noqa: E731
        return Step(value, torch.stack([true, average(terms.reconstruction.detach().sum()),
                                        average(terms.kl.detach().sum())]))

    return loss


def semi_supervised_loss(labelled: LabelledSet, *, alpha: float, beta: float = 1.0) -> Loss:
    """Kingma et al.'s M2 objective J^alpha over a batch of the epoch's images, to minimise:
    `loss(model, x) -> Step`.

    The batch x (all training images, labels unseen) has y summed out (`enumerated_terms`); beside
    it, `labelled.draw()` gives labelled images, whose bound observes y, and whose -log q(y | x) is the
    classification term. Both are weighted so that an epoch sums, in expectation, to Kingma et al.'s
        - sum_unlabelled U(x) - sum_labelled L(x, y) + alpha N E_labelled[-log q(y | x)]
    for N images an epoch (their alpha is this one times N; they use 0.1 N, config.ALPHA says why ours is 1). beta weights the KL
    terms as in `loss_fn`. Step.sums holds the unlabelled batch's true bound and terms, as the VAE's do.
    """

    def loss(vae: M2, x: torch.Tensor) -> Step:
        unlabelled = enumerated_terms(vae, x)
        x_l, y_l = labelled.draw()
        terms = log_weight_terms(vae, x_l, particles=1, y=y_l)
        # This batch's share of the epoch, spread over the labelled images drawn for it.
        share = len(x) / labelled.epoch_images / len(y_l)
        bound = (unlabelled.reconstruction - beta * unlabelled.kl).sum()
        labelled_bound = (terms.reconstruction - beta * terms.kl).sum()
        log_q = vae.class_log_probs(x_l).gather(-1, y_l.unsqueeze(-1)).sum()
        value = -bound - share * (len(labelled.labels) * labelled_bound + alpha * labelled.epoch_images * log_q)
        return Step(value, torch.stack([-unlabelled.elbo.detach().sum(), unlabelled.reconstruction.detach().sum(),
                                        unlabelled.kl.detach().sum()]))

    return loss


def _negative_elbo(weights: torch.Tensor, particles: int) -> torch.Tensor:
    """(particles, batch) log weights -> (): minus their mean over the particles, summed over the batch."""
    return weights.sum().div(-particles)


def _negative_iwae(weights: torch.Tensor, particles: int) -> torch.Tensor:
    """(particles, batch) log weights -> (): minus the IWAE bound, summed over the batch."""
    return -iwae_bound(weights).sum()
