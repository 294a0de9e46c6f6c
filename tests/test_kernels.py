"""The oneDNN path of the linear layers: exact fp32 against F.linear, the calibration's choices, the
plan a checkpoint keeps so a resumed run stays exact, and that only training measures kernels."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn
import pyro.poutine as poutine
from pyro.infer import Trace_ELBO

from pyro_vae import checkpoint, data, kernels
from pyro_vae.config import ModelConfig
from pyro_vae.model import Z, VAE
from pyro_vae.trainer import train

CPU = torch.device("cpu")
needs_onednn = pytest.mark.skipif(not kernels.onednn_available(CPU), reason="this torch build has no oneDNN")
ALL_ONEDNN = kernels.Choice(kernels.ONEDNN, kernels.ONEDNN, kernels.ONEDNN)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal within fp32 rounding of a sum over a few hundred terms (not bf16's or TF32's 1e-3)."""
    return torch.allclose(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


@needs_onednn
@pytest.mark.parametrize("shape", [(128, 784), (7, 3, 500)])
@pytest.mark.parametrize("product", kernels.PRODUCTS)
def test_each_onednn_product_matches_f_linear(shape, product):
    torch.manual_seed(0)
    layer = kernels.Linear(shape[-1], 300)
    x = torch.randn(*shape, requires_grad=True)
    grad = torch.randn(*shape[:-1], 300)
    expected = torch.autograd.grad(F.linear(x, layer.weight, layer.bias), (x, layer.weight, layer.bias), grad)
    layer.choice = kernels.Choice(**{product: kernels.ONEDNN})
    y = layer(x)
    assert y.shape == (*shape[:-1], 300) and _close(y, F.linear(x, layer.weight, layer.bias))
    for got, want in zip(torch.autograd.grad(y, (x, layer.weight, layer.bias), grad), expected):
        assert _close(got, want)


@needs_onednn
def test_the_elbo_and_its_gradients_are_as_exact_on_onednn_as_on_the_default():
    # Through five layers, fp32 rounding grows to ~1e-4 relative in some gradient entries on either
    # kernel; so both are measured against float64 on the same z, and oneDNN's error must be of the
    # default's size (bf16 or TF32 inside would be 100x that).
    torch.manual_seed(0)
    vae = VAE(ModelConfig(z_dim=40, hidden_dim=500))
    x = (torch.rand(128, data.IMAGE_PIXELS) < 0.3).float()

    with torch.no_grad():
        z = vae.encoder(x)[0] + torch.randn(128, 40)  # one draw of z, replayed in every precision

    def loss_and_grads(model: VAE, images: torch.Tensor) -> list[torch.Tensor]:
        trace = poutine.trace(model.guide).get_trace(images)
        trace.nodes[Z]["value"] = z.to(images.dtype)
        guide = poutine.replay(model.guide, trace=trace)
        loss = Trace_ELBO().differentiable_loss(model.model, guide, images)
        return [loss.detach().double(), *(g.double() for g in torch.autograd.grad(loss, list(model.parameters())))]

    exact = loss_and_grads(copy.deepcopy(vae).double(), x.double())
    default = loss_and_grads(vae, x)
    kernels.use(vae, {key: dataclasses.asdict(ALL_ONEDNN) for key in kernels.default_plan(vae)})
    onednn = loss_and_grads(vae, x)
    for want, a, b in zip(exact, default, onednn):
        scale = want.abs().max()
        error_default, error_onednn = (a - want).abs().max() / scale, (b - want).abs().max() / scale
        assert error_onednn <= 4 * error_default + 1e-6, (error_onednn, error_default)


def test_small_products_keep_the_default_and_a_pin_overrides(monkeypatch):
    vae = VAE(ModelConfig(z_dim=2, hidden_dim=16))
    plan = kernels.calibrate(vae, rows=16, backward=True, device=CPU)
    assert set(kernels.layer_shapes(vae)) == {(784, 16), (16, 16), (16, 2), (2, 16), (16, 784)}
    assert all(k == kernels.DEFAULT for choice in plan.values() for k in choice.values())
    if kernels.onednn_available(CPU):
        monkeypatch.setenv(kernels.KERNELS_ENV, kernels.ONEDNN)
        plan = kernels.calibrate(vae, rows=16, backward=False, device=CPU)
        assert all(choice == {"forward": "onednn", "grad_input": "default", "grad_weight": "default"}
                   for choice in plan.values())
    monkeypatch.setenv(kernels.KERNELS_ENV, "fastest")
    with pytest.raises(ValueError, match="PYRO_VAE_KERNELS"):
        kernels.calibrate(vae, rows=16, backward=True, device=CPU)


def test_used_restores_the_previous_plan():
    vae = VAE(ModelConfig(z_dim=2, hidden_dim=16))
    before = kernels.plan_of(vae)
    onednn = {key: dataclasses.asdict(ALL_ONEDNN) for key in before}
    with kernels.used(vae, onednn):
        expect = onednn if kernels.onednn_available(CPU) else before
        assert kernels.plan_of(vae) == expect
    assert kernels.plan_of(vae) == before


@needs_onednn
def test_a_resumed_run_keeps_the_kernels_of_its_checkpoint(tmp_path, paths, tiny_model, tiny_train, monkeypatch):
    straight = dataclasses.replace(paths, checkpoint_dir=tmp_path / "straight", results_dir=None)
    monkeypatch.setenv(kernels.KERNELS_ENV, kernels.ONEDNN)
    train(dataclasses.replace(tiny_train, epochs=3), model_config=tiny_model, paths=straight)
    train(dataclasses.replace(tiny_train, epochs=1), model_config=tiny_model, paths=paths)
    # The resumed run would pick the default now; it must keep the checkpoint's oneDNN instead.
    monkeypatch.setenv(kernels.KERNELS_ENV, kernels.DEFAULT)
    train(dataclasses.replace(tiny_train, epochs=3), model_config=tiny_model, paths=paths)
    a = checkpoint.load(checkpoint.latest(straight.checkpoint_dir))
    b = checkpoint.load(checkpoint.latest(paths.checkpoint_dir))
    assert b["kernels"] == a["kernels"] and all(
        k == kernels.ONEDNN for choice in b["kernels"].values() for k in choice.values())
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_a_checkpoint_without_kernels_resumes_on_the_default(paths, tiny_model, tiny_train, monkeypatch):
    # Checkpoints written before the kernels were chosen were trained on torch's default.
    train(dataclasses.replace(tiny_train, epochs=1), model_config=tiny_model, paths=paths)
    last = paths.checkpoint_dir / checkpoint.LAST
    state = checkpoint.load(last)
    del state["kernels"]
    checkpoint.save(state, last)
    monkeypatch.setenv(kernels.KERNELS_ENV, kernels.ONEDNN)
    train(dataclasses.replace(tiny_train, epochs=2), model_config=tiny_model, paths=paths)
    state = checkpoint.load(last)
    assert all(k == kernels.DEFAULT for choice in state["kernels"].values() for k in choice.values())


@needs_onednn
def test_a_measurement_is_kept_and_reused_so_reruns_pick_the_same_kernels(tmp_path):
    vae = VAE(ModelConfig())
    first = kernels.calibrate(vae, rows=128, backward=True, device=CPU)
    path = tmp_path / "cache" / kernels.KERNELS_CACHE
    cached = json.loads(path.read_text())
    assert list(cached.values()) == [first]
    # Whatever the cache says for this machine and these shapes is what a later run uses.
    onednn = {key: dataclasses.asdict(ALL_ONEDNN) for key in first}
    path.write_text(json.dumps({key: onednn for key in cached}))
    assert kernels.calibrate(vae, rows=128, backward=True, device=CPU) == onednn
    # Another batch size is another measurement, kept beside the first.
    kernels.calibrate(vae, rows=640, backward=True, device=CPU)
    assert len(json.loads(path.read_text())) == 2


@needs_onednn
def test_a_damaged_cache_is_measured_over(tmp_path):
    path = tmp_path / "cache" / kernels.KERNELS_CACHE
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    plan = kernels.calibrate(VAE(ModelConfig()), rows=128, backward=True, device=CPU)
    assert list(json.loads(path.read_text()).values()) == [plan]


def test_the_model_is_plain_torch_until_a_plan_puts_a_product_on_onednn():
    vae = VAE(ModelConfig(z_dim=2, hidden_dim=16))
    keys = list(vae.state_dict())
    assert all(type(m) is nn.Linear for m in vae.modules() if isinstance(m, nn.Linear))
    kernels.use(vae, kernels.default_plan(vae))
    assert all(type(m) is nn.Linear for m in vae.modules() if isinstance(m, nn.Linear))
    parameters = list(vae.parameters())
    kernels.use(vae, {"784x16": dataclasses.asdict(ALL_ONEDNN)})
    swapped = [m for m in vae.modules() if isinstance(m, kernels.Linear)]
    assert len(swapped) == (1 if kernels.onednn_available(CPU) else 0)
    # The same parameters (an optimizer built before keeps training them) under the same names.
    assert all(a is b for a, b in zip(parameters, vae.parameters())) and list(vae.state_dict()) == keys


def test_only_training_measures_kernels_and_a_loaded_model_never_touches_the_cache(
        tmp_path, mnist_dir, cli_invoke, tiny_run_options, monkeypatch):
    cache = tmp_path / "cache"  # conftest's $PYRO_VAE_CACHE
    assert cli_invoke("train", *tiny_run_options).exit_code == 0
    # Where oneDNN exists, training measured the kernels and kept them there.
    assert (cache / kernels.KERNELS_CACHE).is_file() == kernels.onednn_available(CPU)
    shutil.rmtree(cache, ignore_errors=True)
    asked = []
    monkeypatch.setattr(kernels, "cache_dir", lambda: asked.append(True) or cache)
    for args in (("evaluate", "--particles", "3"), ("generate", "--mode", "prior"),
                 ("generate", "--mode", "digit", "--noise", "0.7"), ("explore", "--export", tmp_path / "site"),
                 ("latent-map",)):
        result = cli_invoke(*args)
        assert result.exit_code == 0, (args, result.output)
    # (The cache folder may hold the running/ files by which computing processes share the CPUs.)
    assert not asked and not (cache / kernels.KERNELS_CACHE).exists()
