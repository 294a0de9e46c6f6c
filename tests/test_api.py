"""The public Python API (`import pyro_vae`): what the CLI, the page's export and the notebook use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pyro_vae
from pyro_vae import data
from pyro_vae.metrics import HISTORY, read_history

TINY = dict(z_dim=2, hidden_dim=16, batch_size=16)


@pytest.fixture
def trained(tmp_path, mnist_dir) -> Path:
    """A run of two epochs in tmp/ck, trained from Python."""
    result = pyro_vae.train(epochs=2, checkpoint_dir=tmp_path / "ck", save_every=1, **TINY)
    assert [r.epoch for r in result.history] == [1, 2]
    return tmp_path / "ck"


def test_importing_is_cheap_and_names_the_api():
    done = subprocess.run([sys.executable, "-c", "import sys, pyro_vae; print('torch' in sys.modules); "
                           "print(sorted(set(pyro_vae.__all__) & set(dir(pyro_vae))) == sorted(pyro_vae.__all__))"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]
    assert {"load", "train", "load_dataset", "download", "Model", "CheckpointNotFound"} <= set(pyro_vae.__all__)
    with pytest.raises(AttributeError):
        pyro_vae.no_such_name  # noqa: B018


def test_load_a_folder_or_a_file_and_know_what_it_is(trained):
    model = pyro_vae.load(trained)
    assert isinstance(model, pyro_vae.Model)
    assert model.path == trained / "vae.epoch.2.pt" and model.epoch == 2 and model.dataset == "mnist"
    assert model.model_config == pyro_vae.ModelConfig(z_dim=2, hidden_dim=16)
    assert model.train_config.batch_size == 16
    first = pyro_vae.load(trained / "vae.epoch.1.pt")
    assert first.epoch == 1 and first.path == trained / "vae.epoch.1.pt"


def test_sampling_is_seeded_and_leaves_the_global_stream_alone(trained):
    model = pyro_vae.load(trained)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    a, b, c = model.sample(8, seed=3), model.sample(8, seed=3), model.sample(8, seed=4)
    assert a.shape == (8, 28, 28) and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(torch.get_rng_state(), before)


def test_the_prior_samples_are_the_cli_grid(trained, cli_invoke, tmp_path):
    """`model.sample(n, seed)` is the tensor `generate --mode prior --seed` draws."""
    from pyro_vae import generate as gen
    from pyro_vae.config import GenerateConfig

    model = pyro_vae.load(trained)
    drawn = gen.samples(model.vae, "prior", GenerateConfig(n=9, seed=7))
    assert torch.equal(model.sample(9, seed=7), next(iter(drawn.values())).reshape(9, 28, 28))


def test_encode_decode_reconstruct_more_like(trained):
    model = pyro_vae.load(trained)
    images, labels = pyro_vae.load_dataset("mnist", split="test")
    assert images.shape[1:] == (28, 28) and images.dtype == torch.float32 and labels.dtype == torch.int64
    assert 0 <= float(images.min()) and float(images.max()) <= 1
    z_loc, z_scale = model.encode(images[:5])
    assert z_loc.shape == z_scale.shape == (5, 2) and bool((z_scale > 0).all())
    assert model.decode(z_loc).shape == (5, 28, 28)
    assert torch.equal(model.reconstruct(images[:5]), model.decode(z_loc))
    more = model.more_like(images[:3], n=4, noise=0.7, seed=1)
    assert more.shape == (3, 4, 28, 28) and torch.equal(more, model.more_like(images[:3], n=4, noise=0.7, seed=1))
    wider = model.more_like(images[:3], n=4, noise=1.4, seed=1)
    assert not torch.equal(more, wider)
    with pytest.raises(pyro_vae.ConfigError, match=r"z must be \(m, 2\)"):
        model.decode(torch.zeros(3, 5))
    with pytest.raises(pyro_vae.ConfigError, match="values in"):
        model.encode(torch.full((2, 28, 28), 3.0))


def test_log_likelihood_is_evaluates_per_image(trained, tmp_path):
    """The mean of `log_likelihood` over the test images is the figure `evaluate` records."""
    from pyro_vae import evaluate as ev

    model = pyro_vae.load(trained)
    binarized, intensities = data.test_images(data.default_data_dir())
    per_image = model.log_likelihood(binarized, particles=5, seed=2)
    assert per_image.shape == (len(binarized),) and bool((per_image < 0).all())
    scored = ev.evaluate(model.vae, binarized, particles=5, seed=2)
    assert per_image.mean().item() == pytest.approx(scored.log_likelihood, rel=1e-9)
    # Grey images are binarized as the test sets are (the same fixed seed), so the figure is the same.
    assert torch.equal(model.log_likelihood(intensities, particles=5, seed=2), per_image)


def test_training_from_python_resumes_and_returns_the_whole_history(trained, tmp_path):
    again = pyro_vae.train(epochs=3, checkpoint_dir=trained)
    assert again.restored_from is not None and [r.epoch for r in again.history] == [1, 2, 3]
    assert again.checkpoint == trained / "vae.epoch.3.pt" and again.model_config.z_dim == 2
    # The results go to the run's own folder: checkpoint folder ck -> results/ck.
    assert read_history(tmp_path / "results" / "ck" / HISTORY) == again.history
    done = pyro_vae.train(epochs=3, checkpoint_dir=trained)
    assert done.saved == [] and done.further.options["epochs"] == 6


def test_errors_are_types_with_fields_and_read_as_python(tmp_path, mnist_dir):
    with pytest.raises(pyro_vae.CheckpointNotFound) as missing:
        pyro_vae.load(tmp_path / "nothing here")
    assert missing.value.folder == tmp_path / "nothing here"
    assert str(missing.value).endswith(f"train first: pyro_vae.train(checkpoint_dir='{tmp_path / 'nothing here'}')")
    with pytest.raises(pyro_vae.ConfigError, match="^z_dim must be between") as bad:
        pyro_vae.train(epochs=1, checkpoint_dir=tmp_path / "ck", z_dim=0)
    assert "--" not in str(bad.value)
    with pytest.raises(pyro_vae.ConfigError, match="unknown settings zdim"):
        pyro_vae.train(epochs=1, checkpoint_dir=tmp_path / "ck", zdim=3)


def test_a_missing_checkpoint_names_the_folder_in_full(tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # a notebook started in another folder than the run's
    with pytest.raises(pyro_vae.CheckpointNotFound) as missing:
        pyro_vae.load("checkpoints")
    assert str(missing.value).startswith(f"no checkpoint in {tmp_path / 'elsewhere' / 'checkpoints'};")
    assert missing.value.folder == Path("checkpoints")


def test_an_interrupt_from_python_saves_the_position(tmp_path, mnist_dir, signal_during_loss):
    import signal

    with signal_during_loss(3, signal.SIGINT), pytest.raises(pyro_vae.Interrupted) as stopped:
        pyro_vae.train(epochs=2, checkpoint_dir=tmp_path / "ck", **TINY)
    assert stopped.value.checkpoint == tmp_path / "ck" / "last.pt"
    assert "pyro_vae.train(epochs=2" in str(stopped.value)
    resumed = pyro_vae.train(epochs=2, checkpoint_dir=tmp_path / "ck", **TINY)
    assert [r.epoch for r in resumed.history] == [1, 2]


def test_the_docs_example_runs(tmp_path, mnist_dir):
    """docs/api.md's first example, run as written (on the synthetic MNIST that $PYRO_VAE_DATA names)."""
    import re

    page = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    example = re.search(r"```python\n(.*?)```", page, re.S)[1]
    exec(compile(example, "docs/api.md", "exec"), {})
    assert (tmp_path / "checkpoints" / "api" / "last.pt").is_file()


def test_training_from_python_takes_the_kl_weight_and_its_warm_up(tmp_path, mnist_dir):
    result = pyro_vae.train(epochs=3, checkpoint_dir=tmp_path / "ck", beta=0.5, kl_warmup=2, **TINY)
    assert (result.train_config.beta, result.train_config.kl_warmup) == (0.5, 2)
    assert [r.beta for r in result.history] == [0.0, 0.25, 0.5]
    assert all(r.reconstruction - r.kl == pytest.approx(r.lower_bound, abs=1e-3) for r in result.history)
    assert pyro_vae.load(result.checkpoint).train_config.beta == 0.5
    with pytest.raises(pyro_vae.ConfigError, match="^beta must be between 0 and"):
        pyro_vae.train(epochs=1, checkpoint_dir=tmp_path / "other", beta=-1.0)
    with pytest.raises(pyro_vae.ConfigError, match="^kl_warmup must be 0"):
        pyro_vae.train(epochs=1, checkpoint_dir=tmp_path / "other", kl_warmup=-1)
