"""The VampPrior (pyro_vae.priors) and the named recipes of `train --recipe`."""

from __future__ import annotations

import math
import signal

import pytest
import torch

import pyro_vae
from pyro_vae import checkpoint, latent
from pyro_vae.config import RECIPES, ModelConfig
from pyro_vae.errors import CheckpointError, ConfigError
from pyro_vae.model import VAE
from pyro_vae.objectives import log_weight_terms
from pyro_vae.priors import EqualMixture

TINY = dict(z_dim=2, hidden_dim=16, batch_size=16)
VAMP = dict(TINY, prior="vamp", pseudo_inputs=7)


def _components(k: int = 5, d: int = 3, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # Narrow and wide components, far from and near the points: the expanded product must not cancel.
    return torch.randn(k, d, generator=g) * 3, torch.rand(k, d, generator=g) * 1.5 + 0.02


def _direct(loc: torch.Tensor, scale: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k prod_d N(z_d; loc_kd, scale_kd), term by term in float64."""
    per = torch.distributions.Normal(loc.double(), scale.double()).log_prob(z.double().unsqueeze(-2)).sum(-1)
    return torch.logsumexp(per, -1) - math.log(loc.shape[0])


def test_the_mixture_density_is_the_direct_mixture_computation():
    loc, scale = _components()
    z = torch.randn(4, 6, 3) * 4  # (particles, batch, D)
    mixture = EqualMixture(loc, scale, batch_shape=(6,))
    got = mixture.log_prob(z)
    assert got.shape == (4, 6) and got.dtype == torch.float32
    assert torch.allclose(got.double(), _direct(loc, scale, z), rtol=0, atol=1e-4)
    # At a component's own mean with a tiny scale, where 1/scale^2 is 2500.
    at_mean = mixture.log_prob(loc[None].expand(6, -1, -1)[:, 0])
    assert torch.allclose(at_mean.double(), _direct(loc, scale, loc[0].expand(6, -1)), rtol=0, atol=1e-4)


def test_the_marginals_are_the_one_dimensional_mixtures():
    loc, scale = _components()
    z = torch.randn(8, 3) * 2
    got = EqualMixture(loc, scale).marginal_log_prob(z)
    for d in range(3):
        assert torch.allclose(got[:, d].double(), _direct(loc[:, d:d + 1], scale[:, d:d + 1], z[:, d:d + 1]),
                              atol=1e-5)


def test_the_model_scores_z_with_the_vampprior_of_its_pseudo_inputs():
    torch.manual_seed(0)
    vae = VAE(ModelConfig(z_dim=3, hidden_dim=8, prior="vamp", pseudo_inputs=4))
    u = vae.pseudo_inputs()
    assert u.shape == (4, 784) and bool(((u >= 0) & (u <= 1)).all())
    x = torch.bernoulli(torch.full((5, 784), 0.3))
    torch.manual_seed(1)
    terms = log_weight_terms(vae, x, particles=2)
    # The KL term's draws, scored by hand: log q(z | x) - log p(z) with p the encoder at u.
    torch.manual_seed(1)
    z_loc, z_logstd = vae.encoder(x)
    with torch.no_grad():
        z = z_loc + z_logstd.exp() * torch.randn(2, 5, 3)
        loc, logstd = vae.encoder(u)
        log_q = torch.distributions.Normal(z_loc, z_logstd.exp()).log_prob(z).sum(-1)
        expected = log_q - _direct(loc, logstd.exp(), z).float()
    assert torch.allclose(terms.kl.detach(), expected, atol=1e-4)


def test_a_vampprior_model_trains_resumes_exactly_evaluates_and_generates(tmp_path, mnist_dir, signal_during_loss):
    straight = pyro_vae.train(epochs=3, checkpoint_dir=tmp_path / "straight", **VAMP)
    # The same run, stopped by Ctrl-C in epoch 2's third batch and resumed with no settings.
    with signal_during_loss(8, signal.SIGINT), pytest.raises(pyro_vae.Interrupted):
        pyro_vae.train(epochs=3, checkpoint_dir=tmp_path / "split", **VAMP)
    torch.manual_seed(12345)
    split = pyro_vae.train(epochs=3, checkpoint_dir=tmp_path / "split")
    a, b = checkpoint.load(straight.checkpoint)["model"], checkpoint.load(split.checkpoint)["model"]
    assert "pseudo_inputs.raw" in a
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert [r.lower_bound for r in straight.history] == [r.lower_bound for r in split.history]
    assert straight.history[-1].lower_bound > straight.history[0].lower_bound

    model = pyro_vae.load(split.checkpoint)
    assert (model.model_config.prior, model.model_config.pseudo_inputs) == ("vamp", 7)
    assert model.about()["prior"] == "vamp 7"
    u = model.vae.pseudo_inputs()
    assert bool(((u >= 0) & (u <= 1)).all()) and not torch.equal(u, VAE(model.model_config).pseudo_inputs())
    images = pyro_vae.load_dataset(split="test")[0][:20]
    log_p = model.log_likelihood(images, particles=20)
    assert log_p.shape == (20,) and bool(torch.isfinite(log_p).all())
    used = latent.usage_of(model.vae, (images.reshape(20, -1) * 255).to(torch.uint8))
    assert used.kl.shape == (2,) and bool((used.kl > -0.05).all())


def test_prior_samples_are_seeded(tmp_path, mnist_dir):
    model = pyro_vae.load(pyro_vae.train(epochs=1, checkpoint_dir=tmp_path / "ck", **VAMP).checkpoint)
    first, again, other = model.sample(12, seed=3), model.sample(12, seed=3), model.sample(12, seed=4)
    assert torch.equal(first, again) and not torch.equal(first, other)
    # They are the VampPrior's: each draw comes from one of the encoder's components at the pseudo-inputs.
    torch.manual_seed(3)
    z = model.vae.prior(2000).sample()
    loc, _ = model.vae.encoder(model.vae.pseudo_inputs())
    assert torch.allclose(z.mean(0), loc.mean(0).detach(), atol=0.15)


def test_generate_from_the_command_line_names_the_vampprior(tmp_path, mnist_dir, cli_invoke, tiny_run_options):
    assert cli_invoke("train", *tiny_run_options, "--prior", "vamp", "--pseudo-inputs", "5").exit_code == 0
    result = cli_invoke("generate", "--mode", "prior")
    assert result.exit_code == 0, result.output
    scored = cli_invoke("evaluate", "--particles", "5")
    assert scored.exit_code == 0 and "log p(x)" in scored.output, scored.output
    from PIL import Image

    with Image.open("results/random_samples.png") as picture:
        assert "the VampPrior of 5 pseudo-inputs" in picture.text["Title"]
        assert picture.text["prior"] == "vamp 5"


def test_a_checkpoint_without_a_prior_loads_as_standard(tmp_path, mnist_dir):
    result = pyro_vae.train(epochs=1, checkpoint_dir=tmp_path / "ck", **TINY)
    state = checkpoint.load(result.checkpoint)
    del state["model_config"]["prior"], state["model_config"]["pseudo_inputs"]
    torch.save(state, result.checkpoint)
    model = pyro_vae.load(result.checkpoint)
    assert model.model_config.prior == "standard" and model.vae.pseudo_inputs is None
    assert "prior" not in model.about()
    with pytest.raises(CheckpointError, match="trained with prior standard, not vamp"):
        pyro_vae.train(epochs=2, checkpoint_dir=tmp_path / "ck", prior="vamp")


def test_bad_prior_settings_are_one_line_errors(tmp_path, mnist_dir, cli_invoke, one_line_error, tiny_run_options):
    one_line_error(cli_invoke("train", *tiny_run_options, "--prior", "vampire"), "--prior must be standard or vamp")
    one_line_error(cli_invoke("train", *tiny_run_options, "--pseudo-inputs", "5"),
                   "--pseudo-inputs sizes the VampPrior; add --prior vamp")
    one_line_error(cli_invoke("train", *tiny_run_options, "--prior", "vamp", "--pseudo-inputs", "0"),
                   "--pseudo-inputs must be between 1 and")
    one_line_error(cli_invoke("train", *tiny_run_options, "--recipe", "iwea"), "--recipe must be seed, iwae or vamp")
    assert not (tmp_path / "checkpoints").exists() or not list((tmp_path / "checkpoints").glob("*.pt"))


def test_a_recipe_sets_its_options_and_an_explicit_one_overrides_it(tmp_path, mnist_dir, cli_invoke, tiny_run_options):
    result = cli_invoke("train", *tiny_run_options, "--recipe", "vamp", "--particles", "2", "--valid-size", "32",
                        "--eval-every", "1", "--eval-particles", "3")
    assert result.exit_code == 0, result.output
    model = pyro_vae.load("checkpoints")
    config = model.train_config
    assert (config.recipe, config.objective, config.lr_decay) == ("vamp", "iwae", RECIPES["vamp"].settings["lr_decay"])
    assert (config.particles, config.valid_size, config.eval_every) == (2, 32, 1)
    assert (model.model_config.prior, model.model_config.pseudo_inputs) == ("vamp", 500)
    assert model.about()["recipe"] == "vamp"
    # The recipe is fixed on resume: another one is refused, in one line, and nothing moves.
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    refused = cli_invoke("train", "--epochs", "2", "--recipe", "iwae")
    assert refused.exit_code == 1 and "trained with --recipe vamp, not iwae" in refused.output
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before


def test_the_resume_hint_names_the_recipe_and_what_differs(tmp_path, mnist_dir):
    from pyro_vae import commands
    from pyro_vae.config import Paths, TrainConfig

    config = TrainConfig(recipe="iwae", objective="iwae", particles=3, lr_decay=0.997, valid_size=10_000,
                         eval_every=10)
    hint = commands.train(config, paths=Paths(), model_config=ModelConfig())
    assert hint.given() == {"epochs": 1000, "recipe": "iwae", "particles": 3}
    assert hint.python() == "pyro_vae.train(epochs=1000, recipe='iwae', particles=3)"


def test_help_lists_what_each_recipe_sets(cli_invoke):
    text = " ".join(cli_invoke("train", "--help").output.split())
    for name in RECIPES:
        assert f"{name}: " in text
    assert "--objective iwae --particles 5 --lr-decay 0.997 --valid-size 10000 --eval-every 10" in text
    assert "--prior vamp --pseudo-inputs 500" in text


def test_the_python_api_takes_a_recipe_with_overrides(tmp_path, mnist_dir):
    result = pyro_vae.train(epochs=1, checkpoint_dir=tmp_path / "ck", recipe="iwae", particles=2, valid_size=0,
                            eval_every=0, **TINY)
    assert (result.train_config.recipe, result.train_config.objective, result.train_config.particles) == (
        "iwae", "iwae", 2)
    standard = pyro_vae.train(epochs=1, checkpoint_dir=tmp_path / "std", recipe="vamp", prior="standard",
                              valid_size=0, eval_every=0, **TINY)
    assert standard.model_config.prior == "standard" and standard.train_config.recipe == "vamp"
    with pytest.raises(ConfigError, match="^recipe must be seed, iwae or vamp, got 'best'"):
        pyro_vae.train(epochs=1, checkpoint_dir=tmp_path / "other", recipe="best")


def test_kl_per_dimension_against_a_vampprior_of_standard_normals_is_the_closed_form():
    """Components all N(0, 1): every marginal is N(0, 1), so the Monte Carlo KL per dimension must
    match the standard prior's closed form, within its sampling error."""
    g = torch.Generator().manual_seed(0)
    z_loc, z_scale = torch.randn(3000, 4, generator=g), torch.rand(3000, 4, generator=g) + 0.2
    standard = EqualMixture(torch.zeros(6, 4), torch.ones(6, 4))
    closed = latent.kl_per_dimension(z_loc, z_scale)
    sampled = latent.kl_per_dimension(z_loc, z_scale, standard, draws=8)
    assert torch.allclose(sampled, closed, atol=0.03), (sampled, closed)
    # Against a mixture far from the codes, much larger: the prior is used.
    far = EqualMixture(torch.full((6, 4), 5.0), torch.full((6, 4), 0.5))
    assert bool((latent.kl_per_dimension(z_loc, z_scale, far) > closed + 10).all())


def test_the_page_says_what_the_prior_is(mnist_dir, tmp_path):
    import json
    from pathlib import Path

    import pyro_vae.explore as ex
    from pyro_vae import data

    torch.manual_seed(0)
    vae = VAE(ModelConfig(z_dim=3, hidden_dim=16, prior="vamp", pseudo_inputs=6)).eval()
    images, labels = data.load_split(mnist_dir, "test")
    manifest = json.loads(ex.bundle(vae, images, labels, checkpoint=Path("ck.pt"), epoch=1)[ex.MANIFEST])
    assert manifest["latent"]["prior"] == "vamp"
    assert manifest["latent"]["about_prior"] == "the VampPrior of 6 pseudo-inputs"
    assert manifest["layers"]["pseudo_inputs.raw"]["shape"] == [6, 784]
    script = (Path(ex.__file__).parent / "page" / "app.js").read_text()
    assert "never from the prior (generate --mode prior does)" in script


def test_latent_map_draws_the_pseudo_inputs(tmp_path, mnist_dir, cli_invoke, tiny_run_options):
    assert cli_invoke("train", *tiny_run_options, "--prior", "vamp", "--pseudo-inputs", "12").exit_code == 0
    result = cli_invoke("latent-map")
    assert result.exit_code == 0, result.output
    from PIL import Image

    with Image.open("results/pseudo_inputs.png") as picture:
        assert "12 of its 12 learned images" in picture.text["Title"]
    u = pyro_vae.load("checkpoints").pseudo_inputs()
    assert u.shape == (12, 28, 28) and bool(((u >= 0) & (u <= 1)).all())
    standard = cli_invoke("train", *tiny_run_options, "--checkpoint-dir", "checkpoints/std")
    assert standard.exit_code == 0 and pyro_vae.load("checkpoints/std").pseudo_inputs() is None
