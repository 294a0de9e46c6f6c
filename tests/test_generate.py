"""Prior and digit samples as tensors."""

from __future__ import annotations

import pytest
import torch

from pyro_vae import data
from pyro_vae.config import GenerateConfig
from pyro_vae.errors import ConfigError
from pyro_vae.generate import chosen as chosen_by, guide_samples, interpolation, prior_samples, samples, titles
from pyro_vae.generate import suffix as suffix_of
from pyro_vae.generate import reconstructions as reconstructions_of
from pyro_vae.model import VAE


@pytest.fixture
def vae(tiny_model):
    return VAE(tiny_model).eval()


def test_prior_samples_shape_and_range(vae):
    x_probs = prior_samples(vae, n=7)
    assert x_probs.shape == (7, 784) and 0 <= x_probs.min() and x_probs.max() <= 1
    assert not torch.allclose(x_probs[0], x_probs[1])  # different z, different images


def test_prior_mode_is_deterministic_with_a_seed(vae, mnist_dir):
    a = samples(vae, "prior", GenerateConfig(seed=3))
    b = samples(vae, "prior", GenerateConfig(seed=3))
    c = samples(vae, "prior", GenerateConfig(seed=4))
    # Names carry the settings that differ from the seed program's pictures: another seed, another file.
    assert list(a) == ["random_samples_seed3"] and a["random_samples_seed3"].shape == (100, 784)
    assert torch.equal(a["random_samples_seed3"], b["random_samples_seed3"])
    assert not torch.equal(a["random_samples_seed3"], c["random_samples_seed4"])
    assert list(samples(vae, "prior", GenerateConfig())) == ["random_samples"]


def test_digit_mode_names_and_determinism(vae, mnist_dir):
    config = GenerateConfig(n=5, noise=0.7, digits=(3, 8))
    chosen = chosen_by(config, data.DIGIT_EXEMPLARS)
    assert chosen == {"3": data.DIGIT_EXEMPLARS[3], "8": data.DIGIT_EXEMPLARS[8]}
    x, _ = data.test_images(mnist_dir, indices=list(chosen.values()))
    names = list(titles("digit", config, chosen=chosen))
    a = samples(vae, "digit", config, x=x, names=names)
    assert list(a) == ["3_n5", "8_n5"] and a["3_n5"].shape == (5, 784)
    b = samples(vae, "digit", config, x=x, names=names)
    assert all(torch.equal(a[k], b[k]) for k in a)
    by_index = GenerateConfig(n=2, indices=(17,))
    assert chosen_by(by_index, data.DIGIT_EXEMPLARS) == {"index_17": 17}
    names = list(titles("digit", by_index, chosen=chosen_by(by_index, data.DIGIT_EXEMPLARS)))
    assert list(samples(vae, "digit", by_index, x=x[:1], names=names)) == ["index_17_n2"]


@pytest.mark.parametrize("settings, mode, suffix", [
    ({}, "prior", ""),
    ({"noise": 1.4}, "prior", ""),  # prior mode has no noise (the CLI refuses it there)
    ({"noise": 0.7}, "digit", ""),  # the seed program's own pictures keep its names
    ({"noise": 0.0}, "digit", "_noise0"),
    ({"noise": 1.4, "seed": 7, "n": 64}, "digit", "_noise1.4_seed7_n64"),
    ({"noise": 2.5}, "digit", "_noise2.5"),
])
def test_names_carry_the_settings_that_differ_from_the_seeds(settings, mode, suffix):
    assert suffix_of(GenerateConfig(**settings), mode) == suffix


def test_more_noise_gives_more_spread(vae):
    x = torch.bernoulli(torch.full((2, 784), 0.3))
    spread = {}
    for noise in (0.0, 1.4):
        torch.manual_seed(0)
        spread[noise] = guide_samples(vae, x, n=200, noise=noise).std(dim=1).mean()
    assert spread[1.4] > 1.5 * spread[0.0]


def test_guide_samples_stay_with_their_image(vae):
    # With the spread shrunk to nothing, every draw decodes the image's own z_loc.
    x = torch.stack([torch.zeros(784), torch.ones(784), torch.bernoulli(torch.full((784,), 0.5))])
    drawn = guide_samples(vae, x, n=4, noise=-30.0)
    assert drawn.shape == (3, 4, 784)
    expected = torch.sigmoid(vae.decoder(vae.encoder(x)[0])).detach()
    for k in range(3):
        assert torch.allclose(drawn[k], expected[k].expand(4, -1), atol=1e-5)


def test_test_images_are_picked_in_one_place_with_one_error(mnist_dir):
    binarized, intensities = data.test_images(mnist_dir, indices=[5, 2])
    every, _ = data.test_images(mnist_dir)
    assert torch.equal(binarized, every[[5, 2]]) and set(binarized.unique().tolist()) <= {0.0, 1.0}
    assert intensities.shape == (2, 784) and 0 <= intensities.min() and intensities.max() <= 1
    for bad in (5000, -1):
        with pytest.raises(ConfigError, match=f"test image {bad} does not exist: the test set has 100"):
            data.test_images(mnist_dir, indices=[bad])


def test_reconstructions_put_each_row_above_its_reconstruction(vae):
    x = torch.bernoulli(torch.full((13, 784), 0.3))
    pairs = reconstructions_of(vae, x, cols=10)
    assert pairs.shape == (26, 784)
    assert torch.equal(pairs[:10], x[:10]) and torch.equal(pairs[20:23], x[10:])
    expected = torch.sigmoid(vae.decoder(vae.encoder(x)[0])).detach()
    assert torch.allclose(pairs[10:20], expected[:10]) and torch.allclose(pairs[23:], expected[10:])


def test_interpolation_runs_from_one_encoding_to_the_other(vae):
    a, b = torch.zeros(784), torch.ones(784)
    line = interpolation(vae, a, b, steps=5)
    ends = torch.sigmoid(vae.decoder(vae.encoder(torch.stack([a, b]))[0])).detach()
    assert line.shape == (5, 784)
    assert torch.allclose(line[0], ends[0], atol=1e-6) and torch.allclose(line[-1], ends[1], atol=1e-6)
    assert not torch.allclose(line[2], line[0])
