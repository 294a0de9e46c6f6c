"""The labels model (Kingma et al.'s M2): its enumerated bound against a hand-summed one and Pyro's
TraceEnum_ELBO, the labelled images' choice, training and resuming with labels, asking for a class,
and the one-line errors of bad input."""

from __future__ import annotations

import dataclasses
import json
import math
import signal

import numpy as np
import pyro
import pyro.poutine as poutine
import pytest
import torch
import torch.distributions as td
from pyro.infer import TraceEnum_ELBO

import pyro_vae
from pyro_vae import checkpoint, data, explore, generate as gen, outputs
from pyro_vae.config import GenerateConfig, ModelConfig, TrainConfig
from pyro_vae.errors import ConfigError, Interrupted, NoLabels
from pyro_vae.m2 import M2, Y
from pyro_vae.metrics import HISTORY, read_history
from pyro_vae.model import VAE
from pyro_vae.objectives import enumerated_terms, iwae_bound, log_weight_terms, semi_supervised_loss
from pyro_vae.runtime import flush_denormals, seed_all
from pyro_vae.trainer import train

CLASSES = 3


@pytest.fixture
def m2() -> M2:
    torch.manual_seed(0)
    return M2(ModelConfig(z_dim=2, hidden_dim=16, classes=CLASSES))


@pytest.fixture
def x() -> torch.Tensor:
    return (torch.rand(5, 784, generator=torch.Generator().manual_seed(1)) < 0.3).float()


def _enumerated_z(model: M2, x: torch.Tensor) -> torch.Tensor:
    """The z the enumerated guide draws, one per class: (classes, batch, z_dim)."""
    return poutine.trace(poutine.enum(model.guide, first_available_dim=-2)).get_trace(x).nodes["z"]["value"]


def test_the_enumerated_bound_is_the_hand_summed_one(m2, x):
    pyro.set_rng_seed(3)
    z = _enumerated_z(m2, x).detach()
    pyro.set_rng_seed(3)  # the same draws again
    terms = enumerated_terms(m2, x)
    # By hand, with torch's distributions: each class in turn, weighted by the classifier's q(y | x).
    q_y = torch.softmax(m2.classifier(x), -1)
    elbo, weights, reconstruction = 0.0, [], 0.0
    for c in range(CLASSES):
        y = torch.full((len(x),), c)
        z_loc, z_logstd = m2.encoder(x, y)
        log_q_z = td.Normal(z_loc, z_logstd.exp()).log_prob(z[c]).sum(-1)
        log_p_z = td.Normal(0.0, 1.0).log_prob(z[c]).sum(-1)
        log_p_x = td.Bernoulli(logits=m2.decoder(z[c], y)).log_prob(x).sum(-1)
        w = log_p_x - math.log(CLASSES) + log_p_z - log_q_z
        elbo = elbo + q_y[:, c] * (w - q_y[:, c].log())
        reconstruction = reconstruction + q_y[:, c] * log_p_x
        weights.append(w)
    assert terms.elbo.shape == terms.weights.shape == (1, len(x))
    torch.testing.assert_close(terms.elbo[0], elbo)
    torch.testing.assert_close(terms.reconstruction[0], reconstruction)
    torch.testing.assert_close(terms.elbo, terms.reconstruction - terms.kl)
    torch.testing.assert_close(terms.weights[0], torch.logsumexp(torch.stack(weights), 0))


def test_the_enumerated_bound_agrees_with_pyros_trace_enum_elbo_in_value_and_gradient(m2, x):
    m2, x = m2.double(), x.double()  # in float64, so that the sums' orders cannot tell them apart
    pyro.set_rng_seed(5)
    ours = -enumerated_terms(m2, x).elbo.sum()
    ours_grads = torch.autograd.grad(ours, list(m2.parameters()))
    pyro.set_rng_seed(5)
    theirs = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(m2.model, m2.guide, x)
    their_grads = torch.autograd.grad(theirs, list(m2.parameters()))
    torch.testing.assert_close(ours, theirs)
    for a, b in zip(ours_grads, their_grads):
        torch.testing.assert_close(a, b)


def test_log_weights_sum_the_class_out_inside_the_importance_sampling(m2, x):
    pyro.set_rng_seed(0)
    terms = log_weight_terms(m2, x, particles=4)  # unlabelled: y summed out
    assert terms.weights.shape == terms.elbo.shape == (4, len(x))
    # log p(x) >= the IWAE bound in expectation >= the ELBO: each draw's weight is above its ELBO.
    assert bool((terms.weights >= terms.elbo - 1e-4).all())
    assert bool((iwae_bound(terms.weights) >= terms.elbo.mean(0)).all())
    # With the labels observed there is nothing to sum: the labelled bound of class 1 is below the sum.
    labelled = log_weight_terms(m2, x, particles=4, y=torch.ones(len(x), dtype=torch.int64))
    assert labelled.elbo is None and labelled.weights.shape == (4, len(x))


def test_a_labelled_batch_adds_its_bound_and_the_classification_term(m2, x):
    images = torch.from_numpy(np.arange(6 * 784).reshape(6, 784) % 256).to(torch.uint8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    generator = torch.Generator().manual_seed(0)
    labelled = data.LabelledSet(images=images, labels=labels, indices=tuple(range(6)), epoch_images=60,
                                batch_size=4, generator=generator)
    with_alpha = semi_supervised_loss(labelled, alpha=2.0)
    without = semi_supervised_loss(labelled, alpha=0.0)
    pyro.set_rng_seed(0)
    generator.manual_seed(0)
    a = with_alpha(m2, x)
    pyro.set_rng_seed(0)
    generator.manual_seed(0)
    x_l, y_l = labelled.draw()
    generator.manual_seed(0)
    b = without(m2, x)
    # The classification term: alpha x the batch's images x the labelled draws' mean -log q(y | x).
    expected = -2.0 * len(x) * m2.class_log_probs(x_l).gather(-1, y_l.unsqueeze(-1)).mean()
    torch.testing.assert_close(a.loss - b.loss, expected, rtol=0, atol=1e-3)  # the difference of two losses of ~3000
    torch.testing.assert_close(a.sums, b.sums)  # the recorded bound is the unlabelled batch's alone


def test_the_labelled_images_are_balanced_and_chosen_by_the_seed():
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, 10, size=500))
    names = tuple(map(str, range(10)))
    chosen = data.choose_labelled(labels, 100, names=names, seed=0)
    assert len(set(chosen.tolist())) == 100 and torch.equal(chosen, chosen.sort().values)
    assert torch.bincount(labels[chosen], minlength=10).tolist() == [10] * 10
    assert torch.equal(chosen, data.choose_labelled(labels, 100, names=names, seed=0))
    assert not torch.equal(chosen, data.choose_labelled(labels, 100, names=names, seed=1))
    uneven = torch.bincount(labels[data.choose_labelled(labels, 25, names=names, seed=0)], minlength=10)
    assert sorted(uneven.tolist()) == [2] * 5 + [3] * 5
    assert data.choose_labelled(labels, 0, names=names, seed=0).numel() == 0
    # The choice draws from its own generator: the global streams are untouched.
    torch.manual_seed(7)
    before = torch.get_rng_state()
    data.choose_labelled(labels, 100, names=names, seed=0)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("count, message", [(81, "more than the 80 training images"), (60, "takes 6 images of digit")])
def test_too_many_labels_are_refused(count, message, n_train):
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, 10, size=n_train))
    with pytest.raises(ConfigError, match=message):
        data.choose_labelled(labels, count, names=tuple(map(str, range(10))), seed=0, noun="digit")


def test_labels_0_trains_the_vae_bit_for_bit_as_main(paths, tiny_model, tiny_train, monkeypatch, todays_epoch):
    from pyro_vae import kernels

    monkeypatch.setattr(kernels, "calibrate", lambda *args, **kwargs: {})  # torch's default kernels for both
    config = dataclasses.replace(tiny_train, epochs=2, labels=0)
    train(config, model_config=tiny_model, paths=paths, explicit=frozenset({"labels"}))

    images, _ = data.load_split(paths.data_dir, "train")
    seed_all(config.seed)
    vae = VAE(tiny_model)
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.lr, fused=True)
    generator = torch.Generator().manual_seed(config.seed)
    with flush_denormals(torch.device("cpu")):
        for _ in (1, 2):
            todays_epoch(vae, optimizer, images, batch_size=config.batch_size, generator=generator)
    state = checkpoint.load(paths.checkpoint_dir / "last.pt")
    assert state["model_config"]["classes"] == 0 and "labelled" not in state["dataset"]
    assert state["model"].keys() == vae.state_dict().keys()
    assert all(torch.equal(state["model"][k], v) for k, v in vae.state_dict().items())


def test_a_labels_run_records_its_choice_and_resumes_bit_for_bit(tmp_path, paths, tiny_model, tiny_train,
                                                                 signal_during_loss):
    config = dataclasses.replace(tiny_train, epochs=3, save_every=10, labels=20, eval_every=3, eval_particles=5)
    straight = dataclasses.replace(paths, checkpoint_dir=tmp_path / "straight", results_dir=tmp_path / "r1")
    train(config, model_config=tiny_model, paths=straight)

    interrupted = dataclasses.replace(paths, checkpoint_dir=tmp_path / "interrupted", results_dir=tmp_path / "r2")
    with signal_during_loss(8, signal.SIGINT), pytest.raises(Interrupted, match="stopped at epoch 2, batch 3 of 5"):
        train(config, model_config=tiny_model, paths=interrupted)
    # Resumed without --labels: the checkpoint's settings and choice continue.
    result = train(dataclasses.replace(tiny_train, epochs=3, save_every=10), model_config=tiny_model, paths=interrupted)
    assert result.train_config.labels == 20 and result.model_config.classes == 10

    a, b = (checkpoint.load(p.checkpoint_dir / "last.pt") for p in (straight, interrupted))
    assert a["model"].keys() == b["model"].keys() and any("classifier" in key for key in a["model"])
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    images_labels = data.load_split(paths.data_dir, "train")[1]
    chosen = a["dataset"]["labelled"]
    assert chosen == b["dataset"]["labelled"] and len(chosen) == 20
    assert torch.bincount(images_labels[chosen], minlength=10).tolist() == [2] * 10
    history = [read_history(p.results_dir / HISTORY) for p in (straight, interrupted)]
    assert history[0] == [dataclasses.replace(r, seconds=history[0][i].seconds) for i, r in enumerate(history[1])]
    last = history[0][-1]
    assert last.reconstruction - last.kl == pytest.approx(last.lower_bound, abs=1e-3)
    assert 0 <= last.test_accuracy <= 1 and last.test_log_likelihood >= last.test_elbo


def test_a_labels_model_is_asked_for_a_class(paths, tiny_model, tiny_train, n_test):
    train(dataclasses.replace(tiny_train, epochs=1, labels=10), model_config=tiny_model, paths=paths)
    model = pyro_vae.load(paths.checkpoint_dir)
    assert model.has_labels and model.about()["labels"] == 10
    images, labels = pyro_vae.load_dataset(split="test", data_dir=paths.data_dir)
    probs = model.classify(images[:7])
    assert probs.shape == (7, 10) and torch.allclose(probs.sum(-1), torch.ones(7))
    sevens = model.sample(6, digit=7, seed=3)
    assert sevens.shape == (6, 28, 28)
    assert torch.equal(sevens, model.sample(6, digit=7, seed=3))
    assert not torch.equal(sevens, model.sample(6, digit=7, seed=4))
    assert not torch.equal(sevens, model.sample(6, digit=1, seed=3))
    # The class is what the decoder was given: the same z decoded as a 7.
    seed_all(3)
    y = torch.full((6,), 7)
    z = pyro.infer.Predictive(model.vae.model, num_samples=1, return_sites=("z",))(y=y)["z"][0]
    torch.testing.assert_close(sevens.reshape(6, -1), model.vae.x_probs(z, y))
    # Style: row i is test image i's z from q(z | x, y) decoded as every class.
    x, _ = data.test_images(paths.data_dir, indices=[0, 1])
    styles = gen.style_samples(model.vae, x, labels[:2])
    assert styles.shape == (2, 10, 784)
    z_loc, _ = model.vae.encoder(x, labels[:2])
    torch.testing.assert_close(styles[1, 4], model.vae.x_probs(z_loc[1], torch.tensor(4)))
    # decode and reconstruct: with a class given, and at the classifier's class.
    torch.testing.assert_close(model.decode(z, digit=7).reshape(6, -1), model.vae.x_probs(z, y))
    with pytest.raises(ConfigError, match="a labels model decodes z with a class: pass digit="):
        model.decode(z)
    with pytest.raises(ConfigError, match="digit must be a class 0 to 9"):
        model.decode(z, digit=10)
    again = model.reconstruct(images[:7])
    assert again.shape == (7, 28, 28)
    torch.testing.assert_close(again, model.decode(model.encode(images[:7])[0], digit=probs.argmax(-1)))
    result = pyro_vae.load(paths.checkpoint_dir)  # evaluate's accuracy, on the test labels
    scored = pyro_vae.evaluate.score(result.vae, pyro_vae.evaluate.test_sets(result.data, data_dir=paths.data_dir),
                                     particles=3)[0]
    expected = (model.classify(images).argmax(-1) == labels).double()
    assert scored.accuracy == pytest.approx(expected.mean().item())
    assert scored.accuracy_se == pytest.approx((expected.std() / math.sqrt(n_test)).item())


def test_generates_pipeline_asks_a_labels_model_for_classes_and_styles(paths, tiny_model, tiny_train):
    # outputs.generate, as the command calls it: label mode a grid per class asked for, style mode one grid
    # of the test images given, each followed by its style written as every class.
    train(dataclasses.replace(tiny_train, epochs=1, labels=10), model_config=tiny_model, paths=paths)
    source = outputs.Source(checkpoint_dir=paths.checkpoint_dir, results_dir=paths.results_dir, device="cpu")
    written = outputs.generate(source, "label", digits="7,1", n=4)
    assert [w.path.name for w in written] == ["label_7_n4.png", "label_1_n4.png"]
    assert [w.path.name for w in outputs.generate(source, "style", indices=(3, 4))] == ["style.png"]
    assert all(w.path.is_file() for w in written)
    # Model.sample(digit=) draws label mode's own grid.
    model = pyro_vae.load(paths.checkpoint_dir)
    drawn = gen.samples(model.vae, "label", GenerateConfig(n=4, digits=(7,)))
    torch.testing.assert_close(model.sample(4, digit=7).reshape(4, -1), drawn["label_7_n4"], rtol=0, atol=0)


def test_a_model_without_labels_cannot_be_asked_for_a_class(paths, tiny_model, tiny_train):
    train(dataclasses.replace(tiny_train, epochs=1), model_config=tiny_model, paths=paths)
    model = pyro_vae.load(paths.checkpoint_dir)
    assert not model.has_labels
    for ask in (lambda: model.sample(4, digit=7), lambda: model.classify(torch.zeros(1, 28, 28)),
                lambda: model.decode(torch.zeros(1, model.model_config.z_dim), digit=7)):
        with pytest.raises(NoLabels, match="labels"):
            ask()


def test_labels_need_the_elbo_and_one_draw():
    with pytest.raises(ConfigError, match="labels"):
        TrainConfig(labels=100, objective="iwae")
    with pytest.raises(ConfigError, match="standard prior"):
        ModelConfig(classes=10, prior="vamp")


# ---------------------------------------------------------------------------------------------
# The command line

def test_train_labels_and_generate_its_modes(mnist_dir, cli_invoke, one_line_error, tiny_run_options, tmp_path):
    result = cli_invoke("train", *tiny_run_options, "--labels", "20", "--eval-every", "1", "--eval-particles", "3")
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output
    result = cli_invoke("evaluate", "--particles", "3")
    assert result.exit_code == 0 and "accuracy" in result.output, result.output
    for args, name in ((("--mode", "label", "--digits", "7", "--n", "16"), "label_7_n16.png"),
                       (("--mode", "style", "--index", "3,4"), "style.png")):
        result = cli_invoke("generate", *args)
        assert result.exit_code == 0, result.output
        assert (tmp_path / "results" / name).is_file()
    # Reconstructions decode each code at the classifier's class; the VAE's line between codes is refused
    # in one line; the page exports the labels model with its classes (tests/test_explore.py runs it).
    assert cli_invoke("reconstruct", "--n", "4").exit_code == 0
    assert cli_invoke("latent-map").exit_code == 0  # the codes at the classifier's class (`M2.encode`)
    one_line_error(cli_invoke("interpolate"), "labels model", "--mode style")
    result = cli_invoke("explore", "--export", tmp_path / "site")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "site" / explore.MANIFEST).read_text())
    assert manifest["checkpoint"]["classes"] == 10 and "classifier.net.0.weight" in manifest["layers"]


@pytest.mark.parametrize("args, fragments", [
    (("--labels", "81"), ["--labels 81 is more than the 80 training images"]),
    (("--labels", "20", "--objective", "iwae"), ["--labels trains the ELBO", "--objective"]),
])
def test_bad_labels_are_one_line_each_and_write_nothing(mnist_dir, cli_invoke, one_line_error, tiny_run_options,
                                                        tmp_path, args, fragments):
    result = cli_invoke("train", *tiny_run_options, *args)
    one_line_error(result, *fragments)
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_labels_on_data_without_labels_is_one_line(tmp_path, write_idx, cli_invoke, one_line_error, tiny_run_options):
    folder = tmp_path / "mine"
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 20)):  # images whose label files say 0 throughout
        write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 255, size=(n, 28, 28)))
        write_idx(folder / f"{split}-labels-idx1-ubyte", np.zeros(n))
    result = cli_invoke("train", *tiny_run_options, "--dataset", "idx", "--data-dir", folder, "--labels", "10")
    one_line_error(result, "--labels needs labelled data", "one class")


def test_label_mode_on_a_model_without_labels_is_one_line(mnist_dir, cli_invoke, one_line_error, tiny_run_options):
    assert cli_invoke("train", *tiny_run_options).exit_code == 0
    for mode in ("label", "style"):
        one_line_error(cli_invoke("generate", "--mode", mode), "trained without labels", "--labels")


@pytest.mark.parametrize("precision, kernels", [("bf16", "default"), ("fp32", "onednn")])
def test_labels_train_under_bf16_and_on_onednn_kernels(paths, tiny_model, tiny_train, monkeypatch, precision, kernels):
    # The enumerated classes add a leading dimension to the networks' inputs: oneDNN's products take
    # them reshaped to rows, and bf16 autocast leaves the densities in fp32 as the VAE's.
    from pyro_vae import kernels as kernels_module

    if kernels == "onednn" and not kernels_module.onednn_available(torch.device("cpu")):
        pytest.skip("this torch has no oneDNN")
    monkeypatch.setenv("PYRO_VAE_KERNELS", kernels)
    config = dataclasses.replace(tiny_train, epochs=2, labels=20, precision=precision, eval_every=2, eval_particles=3)
    result = train(config, model_config=tiny_model, paths=paths)
    state = checkpoint.load(paths.checkpoint_dir / "last.pt")
    assert all(k == kernels for plan in state["kernels"].values() for k in plan.values())  # bf16: torch's own
    last = result.metrics[-1]
    assert math.isfinite(last.lower_bound) and last.lower_bound > result.metrics[0].lower_bound
    assert 0 <= last.test_accuracy <= 1
