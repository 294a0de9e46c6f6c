"""Model and guide: sites, shapes, the guide's noise, and one SVI step."""

from __future__ import annotations

import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyro_vae.model import DATA_PLATE, X, Z, VAE


@pytest.fixture
def vae(tiny_model):
    return VAE(tiny_model)


def test_model_sites_and_shapes(vae):
    x = torch.bernoulli(torch.full((5, 784), 0.3))
    trace = poutine.trace(vae.model).get_trace(x)
    assert trace.nodes[Z]["value"].shape == (5, 2)
    assert trace.nodes[Z]["fn"].event_shape == (2,)
    assert trace.nodes[X]["is_observed"] and torch.equal(trace.nodes[X]["value"], x)
    assert trace.nodes[X]["fn"].event_shape == (784,)
    assert [name for name, site in trace.nodes.items() if site["type"] == "sample"] == [DATA_PLATE, Z, X]
    probs = vae.x_probs(trace.nodes[Z]["value"])
    assert probs.shape == (5, 784) and 0 <= probs.min() and probs.max() <= 1
    assert torch.allclose(probs, trace.nodes[X]["fn"].base_dist.probs)
    assert trace.nodes[DATA_PLATE]["value"].shape == (5,)


def test_prior_is_standard_normal(vae):
    trace = poutine.trace(vae.model).get_trace(batch_size=3)
    prior = trace.nodes[Z]["fn"].base_dist
    assert torch.equal(prior.loc, torch.zeros(3, 2)) and torch.equal(prior.scale, torch.ones(3, 2))
    assert not trace.nodes[X]["is_observed"]


def test_guide_uses_encoder_and_noise_widens_it(vae):
    x = torch.bernoulli(torch.full((4, 784), 0.5))
    z_loc, z_logstd = vae.encoder(x)
    for noise in (0.0, 0.7):
        q = poutine.trace(vae.guide).get_trace(x, noise=noise).nodes[Z]["fn"].base_dist
        assert torch.allclose(q.loc, z_loc)
        assert torch.allclose(q.scale, torch.exp(z_logstd + noise))


def test_network_sizes_follow_the_config():
    vae = VAE()
    assert vae.encoder.body[0].in_features == 784 and vae.encoder.body[0].out_features == 500
    assert vae.encoder.loc.out_features == 40 and vae.encoder.logstd.out_features == 40
    assert [m.out_features for m in vae.decoder.net if isinstance(m, torch.nn.Linear)] == [500, 500, 784]


def test_svi_step_is_finite_and_lowers_the_loss(vae):
    x = torch.bernoulli(torch.full((32, 784), 0.2))
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-2)
    elbo = Trace_ELBO(num_particles=8, vectorize_particles=True)
    before = elbo.loss(vae.model, vae.guide, x)
    for _ in range(30):
        loss = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in vae.parameters())
        optimizer.step()
    assert elbo.loss(vae.model, vae.guide, x) < before
