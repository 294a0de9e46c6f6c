"""The training objectives: our IWAE bound is Pyro's RenyiELBO(alpha=0), in value and gradient."""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro.infer import RenyiELBO, Trace_ELBO

from pyro_vae.model import VAE
from pyro_vae.objectives import iwae_bound, log_weights, loss_fn


@pytest.fixture
def setup(tiny_model):
    vae = VAE(tiny_model)
    x = torch.bernoulli(torch.full((6, 784), 0.3))
    return vae, x


def _seeded(fn, seed=7):
    torch.manual_seed(seed)
    return fn()


def test_iwae_with_one_particle_is_the_elbo(setup):
    vae, x = setup
    elbo = _seeded(lambda: loss_fn("elbo")(vae, x))
    iwae = _seeded(lambda: loss_fn("iwae", particles=1)(vae, x))
    assert torch.allclose(elbo, iwae, rtol=1e-5)


def test_elbo_with_particles_averages_the_log_weights(setup):
    vae, x = setup
    loss = _seeded(lambda: loss_fn("elbo", particles=5)(vae, x))
    weights = _seeded(lambda: log_weights(vae, x, particles=5))
    assert torch.allclose(loss, -weights.mean(0).sum(), rtol=1e-5)


def _pyro_renyi(vae, x, particles):
    """Pyro's RenyiELBO(alpha=0) on the same model; it steps only parameters registered with pyro.module."""
    def model(x):
        pyro.module("vae", vae)
        vae.model(x)

    def guide(x):
        pyro.module("vae", vae)
        vae.guide(x)

    renyi = RenyiELBO(alpha=0.0, num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
    return renyi.loss_and_grads(model, guide, x)


def test_iwae_matches_pyro_renyi_elbo_in_value_and_gradient(setup):
    vae, x = setup
    ours = _seeded(lambda: loss_fn("iwae", particles=8)(vae, x))
    ours.backward()
    ours_grads = [p.grad.clone() for p in vae.parameters()]
    vae.zero_grad()
    theirs = _seeded(lambda: _pyro_renyi(vae, x, 8))
    assert ours.item() == pytest.approx(theirs, rel=1e-5)
    for mine, pyros in zip(ours_grads, (p.grad for p in vae.parameters())):
        assert torch.allclose(mine, pyros, rtol=1e-4, atol=1e-5)


def test_more_particles_give_a_tighter_bound(setup):
    vae, x = setup
    x = x.repeat(50, 1)  # 300 images: the average gap is far above the sampling noise
    with torch.no_grad():
        one = iwae_bound(_seeded(lambda: log_weights(vae, x, particles=1))).mean()
        many = iwae_bound(_seeded(lambda: log_weights(vae, x, particles=64))).mean()
    assert many > one + 0.5


def test_unknown_objective_is_refused():
    with pytest.raises(ValueError, match="unknown objective 'vimco'"):
        loss_fn("vimco")


@pytest.mark.parametrize("particles", [1, 5])
def test_the_elbo_equals_trace_elbo_in_value_and_every_gradient(setup, particles):
    # The ELBO is built from the same traces as the IWAE bound (Trace_ELBO's float() calls wait
    # for the device every step); on the same draws it is Trace_ELBO's differentiable loss.
    vae, x = setup
    ours = _seeded(lambda: loss_fn("elbo", particles=particles)(vae, x))
    ours.backward()
    ours_grads = [p.grad.clone() for p in vae.parameters()]
    vae.zero_grad(set_to_none=True)
    elbo = (Trace_ELBO() if particles == 1 else
            Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1))
    theirs = _seeded(lambda: elbo.differentiable_loss(vae.model, vae.guide, x))
    theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    assert ours.item() != pytest.approx(_seeded(lambda: loss_fn("elbo", particles=particles)(vae, x), seed=8).item(),
                                        rel=1e-6)  # other draws, another value: the comparison means something
    for (name, parameter), mine in zip(vae.named_parameters(), ours_grads):
        assert parameter.grad.abs().sum() > 0, name
        assert torch.allclose(mine, parameter.grad, rtol=1e-5, atol=1e-6), name
