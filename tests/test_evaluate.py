"""The importance-sampled log-likelihood against an exact integral, and its ordering with the ELBO."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_vae.config import ModelConfig
from pyro_vae.evaluate import evaluate
from pyro_vae.objectives import log_weights
from pyro_vae.model import VAE


def exact_log_likelihood(vae: VAE, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log of the integral of p(x | z) N(z; 0, 1) dz for a 1-d z, on a fine grid."""
    z = torch.linspace(-10, 10, 20001).unsqueeze(-1)  # (grid, 1)
    dz = (z[1] - z[0]).item()
    logits = vae.decoder(z)  # (grid, 784)
    log_px_z = -torch.nn.functional.binary_cross_entropy_with_logits(
        logits.unsqueeze(1).expand(-1, len(x), -1), x.expand(len(z), -1, -1), reduction="none").sum(-1)
    log_prior = -0.5 * z.squeeze(-1) ** 2 - 0.5 * math.log(2 * math.pi)
    return torch.logsumexp(log_px_z + log_prior.unsqueeze(-1), 0) + math.log(dz)


@torch.no_grad()
def test_log_likelihood_matches_the_exact_integral():
    torch.manual_seed(0)
    vae = VAE(ModelConfig(z_dim=1, hidden_dim=8))
    x = torch.bernoulli(torch.full((3, 784), 0.5))
    exact = exact_log_likelihood(vae, x)
    result = evaluate(vae, x, particles=4000, batch_size=3)
    assert result.log_likelihood == pytest.approx(exact.mean().item(), abs=0.1)
    assert result.elbo < result.log_likelihood


def test_more_particles_tighten_the_bound(tiny_model):
    torch.manual_seed(0)
    vae = VAE(tiny_model)
    x = torch.bernoulli(torch.full((20, 784), 0.3))
    one = evaluate(vae, x, particles=1)
    many = evaluate(vae, x, particles=500, chunk=64)
    assert one.log_likelihood == pytest.approx(one.elbo)  # with one particle they coincide
    assert many.log_likelihood > many.elbo
    assert many.elbo == pytest.approx(one.elbo, abs=5 * one.elbo_se + 1)
    assert many.images == 20 and many.log_likelihood_se > 0


def test_log_weights_shape_and_determinism(tiny_model):
    vae = VAE(tiny_model)
    x = torch.bernoulli(torch.full((4, 784), 0.3))
    torch.manual_seed(1)
    a = log_weights(vae, x, particles=7)
    torch.manual_seed(1)
    b = log_weights(vae, x, particles=7)
    assert a.shape == (7, 4) and torch.equal(a, b) and torch.isfinite(a).all()
