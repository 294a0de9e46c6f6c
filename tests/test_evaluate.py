"""The importance-sampled log-likelihood against an exact integral, and its ordering with the ELBO."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_vae.config import ModelConfig
from pyro_vae.evaluate import evaluate
from pyro_vae.objectives import log_weight_terms
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
    a = log_weight_terms(vae, x, particles=7).weights
    torch.manual_seed(1)
    b = log_weight_terms(vae, x, particles=7).weights
    assert a.shape == (7, 4) and torch.equal(a, b) and torch.isfinite(a).all()


def test_the_elbos_terms_come_from_the_same_draws_and_the_active_units_from_the_guides_means(tiny_model):
    from pyro_vae import latent

    torch.manual_seed(0)
    vae = VAE(tiny_model)
    x = torch.bernoulli(torch.full((30, 784), 0.3))
    result = evaluate(vae, x, particles=120, batch_size=7, chunk=50)  # chunks of 50, 50 and 20 draws
    assert result.reconstruction - result.kl == pytest.approx(result.elbo, abs=1e-4)
    assert result.reconstruction > result.elbo and result.kl > 0
    # The KL term estimated from the draws is near its closed form (latent.kl_per_dimension's).
    closed = latent.kl_per_dimension(*latent.guide_params(vae, x)).sum().item()
    assert result.kl == pytest.approx(closed, abs=0.1)
    assert result.active_units == int(latent.active_units(latent.guide_params(vae, x)[0]).sum())
    assert 0 <= result.active_units <= tiny_model.z_dim
    # One draw each: the terms are those of the training loss.
    one = evaluate(vae, x, particles=1)
    assert one.reconstruction - one.kl == pytest.approx(one.elbo, abs=1e-4)


def test_active_units_count_the_dimensions_the_guide_moves(tiny_model):
    # An encoder whose mean ignores the image in one dimension: that one is never active.
    torch.manual_seed(0)
    vae = VAE(tiny_model)
    with torch.no_grad():
        vae.encoder.loc.weight[1].zero_()
        vae.encoder.loc.weight[0].mul_(50.0)
    result = evaluate(vae, torch.bernoulli(torch.full((40, 784), 0.3)), particles=2)
    assert result.active_units == 1
