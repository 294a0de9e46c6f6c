"""The training objectives: our IWAE bound is Pyro's RenyiELBO(alpha=0), in value and gradient; the ELBO's
terms are Pyro's sites; the KL weight is Pyro's scale on the latent sites, and at 1 changes no bit."""

from __future__ import annotations

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import RenyiELBO, Trace_ELBO

from pyro_vae.model import VAE
from pyro_vae.objectives import iwae_bound, log_weight_terms, loss_fn


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
    elbo = _seeded(lambda: loss_fn("elbo")(vae, x).loss)
    iwae = _seeded(lambda: loss_fn("iwae", particles=1)(vae, x).loss)
    assert torch.allclose(elbo, iwae, rtol=1e-5)


def test_elbo_with_particles_averages_the_log_weights(setup):
    vae, x = setup
    loss = _seeded(lambda: loss_fn("elbo", particles=5)(vae, x).loss)
    weights = _seeded(lambda: log_weight_terms(vae, x, particles=5).weights)
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
    ours = _seeded(lambda: loss_fn("iwae", particles=8)(vae, x).loss)
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
        one = iwae_bound(_seeded(lambda: log_weight_terms(vae, x, particles=1).weights)).mean()
        many = iwae_bound(_seeded(lambda: log_weight_terms(vae, x, particles=64).weights)).mean()
    assert many > one + 0.5


def test_unknown_objective_is_refused():
    with pytest.raises(ValueError, match="unknown objective 'vimco'"):
        loss_fn("vimco")


@pytest.mark.parametrize("particles", [1, 5])
def test_the_elbo_equals_trace_elbo_in_value_and_every_gradient(setup, particles):
    # The ELBO is built from the same traces as the IWAE bound (Trace_ELBO's float() calls wait
    # for the device every step); on the same draws it is Trace_ELBO's differentiable loss.
    vae, x = setup
    ours = _seeded(lambda: loss_fn("elbo", particles=particles)(vae, x).loss)
    ours.backward()
    ours_grads = [p.grad.clone() for p in vae.parameters()]
    vae.zero_grad(set_to_none=True)
    elbo = (Trace_ELBO() if particles == 1 else
            Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1))
    theirs = _seeded(lambda: elbo.differentiable_loss(vae.model, vae.guide, x))
    theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    assert ours.item() != pytest.approx(_seeded(lambda: loss_fn("elbo", particles=particles)(vae, x).loss, seed=8).item(),
                                        rel=1e-6)  # other draws, another value: the comparison means something
    for (name, parameter), mine in zip(vae.named_parameters(), ours_grads):
        assert parameter.grad.abs().sum() > 0, name
        assert torch.allclose(mine, parameter.grad, rtol=1e-5, atol=1e-6), name


@pytest.mark.parametrize("objective, particles", [("elbo", 1), ("elbo", 4), ("iwae", 4)])
def test_at_beta_1_the_loss_is_todays_bit_for_bit(setup, objective, particles):
    # Today's losses, as loss_fn wrote them before the KL weight and the terms (main at f6a49c5):
    # `log_weight_terms(...).weights.sum().div(-particles)` and `-iwae_bound(log_weight_terms(...).weights).sum()`.
    vae, x = setup
    today = {"elbo": lambda: log_weight_terms(vae, x, particles=particles).weights.sum().div(-particles),
             "iwae": lambda: -iwae_bound(log_weight_terms(vae, x, particles=particles).weights).sum()}[objective]
    theirs = _seeded(today)
    theirs.backward()
    their_grads = [p.grad.clone() for p in vae.parameters()]
    vae.zero_grad(set_to_none=True)
    step = _seeded(lambda: loss_fn(objective, particles=particles, beta=1.0)(vae, x))
    step.loss.backward()
    assert torch.equal(step.loss, theirs) and torch.equal(step.sums[0], theirs.detach())
    assert all(torch.equal(p.grad, g) for p, g in zip(vae.parameters(), their_grads))


def _site_sums(vae, x):
    """log p(x | z), log p(z) and log q(z | x) summed over the batch, from Pyro's own traces."""
    guide = poutine.trace(vae.guide).get_trace(x)
    model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x)
    return (model.nodes["x"]["fn"].log_prob(model.nodes["x"]["value"]).sum(),
            model.nodes["z"]["fn"].log_prob(model.nodes["z"]["value"]).sum(),
            guide.nodes["z"]["fn"].log_prob(guide.nodes["z"]["value"]).sum())


def test_the_recorded_terms_are_the_sites_and_sum_to_the_elbo(setup):
    vae, x = setup
    step = _seeded(lambda: loss_fn("elbo")(vae, x))
    negative_bound, reconstruction, kl = step.sums.tolist()
    log_px, log_pz, log_qz = (t.item() for t in _seeded(lambda: _site_sums(vae, x)))
    assert reconstruction == pytest.approx(log_px, rel=1e-6) and kl == pytest.approx(log_qz - log_pz, rel=1e-6)
    assert reconstruction - kl == pytest.approx(-negative_bound, rel=1e-6)
    assert kl > 0 and reconstruction < 0 and not step.sums.requires_grad
    # With particles, each term is the mean over the draws, as the ELBO is.
    step = _seeded(lambda: loss_fn("elbo", particles=5)(vae, x))
    assert step.sums[1] - step.sums[2] == pytest.approx(-step.sums[0].item(), rel=1e-6)


class _ScaleLatent(pyro.poutine.messenger.Messenger):
    """poutine.scale, for the latent site alone: the KL weight as Pyro would apply it."""

    def __init__(self, beta):
        super().__init__()
        self.beta = beta

    def _process_message(self, msg):
        if msg["name"] == "z":
            msg["scale"] = self.beta * msg["scale"]


@pytest.mark.parametrize("beta", [0.0, 0.25, 4.0])
def test_beta_weights_the_latent_sites_as_pyros_scale_does(setup, beta):
    # Trace_ELBO with log p(z) and log q(z | x) scaled by beta: the beta-VAE's loss, in value and gradient.
    vae, x = setup
    step = _seeded(lambda: loss_fn("elbo", beta=beta)(vae, x))
    step.loss.backward()
    ours = [p.grad.clone() for p in vae.parameters()]
    vae.zero_grad(set_to_none=True)
    theirs = _seeded(lambda: Trace_ELBO().differentiable_loss(_ScaleLatent(beta)(vae.model),
                                                                _ScaleLatent(beta)(vae.guide), x))
    theirs.backward()
    assert step.loss.item() == pytest.approx(theirs.item(), rel=1e-6)
    for mine, parameter in zip(ours, vae.parameters()):
        assert torch.allclose(mine, parameter.grad, rtol=1e-5, atol=1e-6)
    # What is recorded is the true ELBO of the same draws, whatever the weight.
    unweighted = _seeded(lambda: loss_fn("elbo")(vae, x))
    assert torch.equal(step.sums, unweighted.sums)
    assert (step.loss.item() == pytest.approx(unweighted.loss.item())) == (beta == 1.0)


def test_beta_with_iwae_weights_the_latent_part_of_each_log_weight(setup):
    vae, x = setup
    step = _seeded(lambda: loss_fn("iwae", particles=6, beta=0.5)(vae, x))
    terms = _seeded(lambda: log_weight_terms(vae, x, particles=6))
    assert step.loss.item() == pytest.approx(-iwae_bound(terms.reconstruction - 0.5 * terms.kl).sum().item(), rel=1e-6)
    assert step.sums[0].item() == pytest.approx(-iwae_bound(terms.weights).sum().item(), rel=1e-6)
    # The terms are the draws' ELBO terms: they sum to the mean per-draw ELBO, below the IWAE bound.
    assert step.sums[1] - step.sums[2] == pytest.approx(terms.weights.mean(0).sum().item(), rel=1e-6)
    assert step.sums[1] - step.sums[2] < -step.sums[0]
