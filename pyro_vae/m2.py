"""The semi-supervised VAE, Kingma et al.'s M2 ("Semi-Supervised Learning with Deep Generative Models",
2014), as Pyro programs: a class y and a style z make an image, p(y) p(z) p(x | y, z); the guide is
a classifier q(y | x) and an encoder given the class, q(z | x, y).

An unlabelled image's y is summed out exactly: the guide marks it for Pyro's parallel enumeration,
and `objectives.enumerated_terms` scores every class at once. Like model.py's VAE, parameters live
in the torch modules, and the networks are the seed's sizes (hidden 500, two layers, ReLU).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.config import ModelConfig
from pyro_vae.data import IMAGE_PIXELS
from pyro_vae.model import DATA_PLATE, X, Z, VAE, _Bernoulli, _glorot_, two_hidden_layers
from pyro_vae.priors import standard_normal

Y = "y"  # the class's sample site


class _ClassInput(nn.Module):
    """A first layer over (v, one_hot(y)), written as W_v v + b + W_y[:, y]: the product over v runs once
    for all classes, and the enumerated classes only add a column each (the same function as the
    concatenation, ten times cheaper for the encoder's 784 inputs)."""

    def __init__(self, *, in_dim: int, classes: int, hidden_dim: int) -> None:
        super().__init__()
        self.value = nn.Linear(in_dim, hidden_dim)
        self.label = nn.Embedding(classes, hidden_dim)

    def forward(self, v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """v: (..., in_dim), y: (...) int64 class numbers, broadcastable -> (broadcast, hidden_dim)."""
        return self.value(v) + self.label(y)


class Classifier(nn.Module):
    """q(y | x)'s network: 784 -> hidden -> hidden (ReLU) -> class logits."""

    def __init__(self, *, classes: int, hidden_dim: int, x_dim: int = IMAGE_PIXELS) -> None:
        super().__init__()
        self.net = two_hidden_layers(x_dim, hidden_dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., 784) -> y_logits: (..., classes)."""
        return self.net(x)


class ClassEncoder(nn.Module):
    """q(z | x, y)'s network: (784 + classes) -> hidden -> hidden (ReLU) -> (z_loc, z_logstd)."""

    def __init__(self, *, z_dim: int, classes: int, hidden_dim: int, x_dim: int = IMAGE_PIXELS) -> None:
        super().__init__()
        self.first = _ClassInput(in_dim=x_dim, classes=classes, hidden_dim=hidden_dim)
        self.body = nn.Sequential(nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU())
        self.loc = nn.Linear(hidden_dim, z_dim)
        self.logstd = nn.Linear(hidden_dim, z_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (..., 784), y: (...) -> z_loc, z_logstd: (..., z_dim), over their broadcast shape."""
        h = self.body(self.first(x, y))
        return self.loc(h), self.logstd(h)


class ClassDecoder(nn.Module):
    """p(x | z, y)'s network: (z_dim + classes) -> hidden -> hidden (ReLU) -> 784 Bernoulli logits."""

    def __init__(self, *, z_dim: int, classes: int, hidden_dim: int, x_dim: int = IMAGE_PIXELS) -> None:
        super().__init__()
        self.first = _ClassInput(in_dim=z_dim, classes=classes, hidden_dim=hidden_dim)
        self.body = nn.Sequential(nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, x_dim))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """z: (..., z_dim), y: (...) -> x_logits: (..., 784)."""
        return self.body(self.first(z, y))


def _fp32(t: torch.Tensor) -> torch.Tensor:
    # Under bf16 autocast the heads come out in bf16; densities stay in fp32 (or fp64), as in model.py.
    return t.to(torch.promote_types(t.dtype, torch.float32))


class M2(nn.Module):
    """p(y) p(z) p(x | y, z) with y uniform over `config.classes`, z ~ N(0, I); the guide q(y | x) q(z | x, y).

    The same interface as `VAE` where one fits: `model`, `guide`, `prior`, `x_probs`, `latent_sites`;
    `model` and `guide` take the labels `y` of a labelled batch, and a guide without them enumerates y.
    """

    latent_sites = (Z, Y)  # x_probs' arguments, in order

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.classes < 1:
            raise ValueError("M2 needs ModelConfig.classes >= 1")
        self.config = config
        sizes = dict(classes=config.classes, hidden_dim=config.hidden_dim)
        self.classifier = Classifier(**sizes)
        self.encoder = ClassEncoder(z_dim=config.z_dim, **sizes)
        self.decoder = ClassDecoder(z_dim=config.z_dim, **sizes)
        _glorot_(self)
        for layer in self.modules():  # the class columns of the first layers, as Glorot would start them
            if isinstance(layer, nn.Embedding):
                nn.init.xavier_uniform_(layer.weight)
        self.pseudo_inputs = None  # the standard prior only (config refuses a VampPrior)

    def prior(self, n: int) -> dist.TorchDistribution:
        """p(z) = N(0, I) over `n` images: batch (n,), event (z_dim,)."""
        return standard_normal(n, self.config.z_dim, like=self.decoder.first.value.weight)

    def y_prior(self, n: int) -> dist.TorchDistribution:
        """p(y), uniform over the classes: batch (n,)."""
        weight = self.decoder.first.value.weight
        return dist.Categorical(logits=weight.new_zeros(n, self.config.classes))

    def model(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None, *, batch_size: int | None = None,
              noise: float = 0.0) -> None:
        """p(y) p(z) p(x | y, z) over a batch.

        Args:
            x: (batch, 784) float in {0, 1}, observed; None to generate.
            y: (batch,) int64 class numbers, observed for labelled images; None: drawn (or the guide's).
            batch_size: how many images to generate when `x` and `y` are None.
            noise: unused; accepted so model and guide take the same arguments.
        Sites: `y` (batch,), `z` (batch, z_dim) and `x` (batch, 784).
        """
        n = next((t.shape[0] for t in (x, y) if t is not None), batch_size)
        if n is None:
            raise ValueError("model needs x, y or batch_size")
        with pyro.plate(DATA_PLATE, n):
            y = pyro.sample(Y, self.y_prior(n), obs=y)
            z = pyro.sample(Z, self.prior(n))
            x_dist = _Bernoulli(logits=self.decoder(z, y), validate_args=False).to_event(1)
            pyro.sample(X, x_dist, obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None, *, batch_size: int | None = None,
              noise: float = 0.0) -> None:
        """q(y | x) (unless `y` is given) and q(z | x, y) = Normal(z_loc, exp(z_logstd + noise)).

        Args:
            x: (batch, 784) float in {0, 1}; y: (batch,) labels, or None to infer them (enumerated
                in parallel under `poutine.enum`, drawn otherwise).
            noise: added to the log-std; 0 in training.
        """
        with pyro.plate(DATA_PLATE, x.shape[0]):
            if y is None:
                y = pyro.sample(Y, dist.Categorical(logits=_fp32(self.classifier(x))),
                                infer={"enumerate": "parallel"})
            z_loc, z_logstd = self.encoder(x, y)
            pyro.sample(Z, dist.Normal(_fp32(z_loc), torch.exp(_fp32(z_logstd) + noise)).to_event(1))

    def x_probs(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """p(x | z, y)'s pixel probabilities: z (..., z_dim), y (...) -> (..., 784) in [0, 1]."""
        return torch.sigmoid(self.decoder(z, y))

    def class_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """log q(y | x): x (n, 784) float in {0, 1} -> (n, classes)."""
        return torch.log_softmax(_fp32(self.classifier(x)), -1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x, y)'s parameters at the classifier's most probable y: x (n, 784) -> z_loc, z_logstd (n, z_dim)."""
        return self.encoder(x, self.classifier(x).argmax(-1))


def build(config: ModelConfig) -> VAE | M2:
    """The model `config` describes: the VAE, or with classes M2."""
    return M2(config) if config.classes else VAE(config)


def has_labels(vae: nn.Module) -> bool:
    """Whether a model knows classes (was trained with labels)."""
    return isinstance(vae, M2)
