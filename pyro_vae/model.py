"""The VAE as Pyro programs: `Encoder` and `Decoder` networks, the generative `model` and the `guide`.

Parameters live in the torch modules, not in Pyro's global parameter store, so a freshly
loaded state dict can never be shadowed by stale parameters from an earlier model.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pyro_vae.config import ModelConfig, Prior
from pyro_vae.data import IMAGE_PIXELS
from pyro_vae.priors import EqualMixture, PseudoInputs, standard_normal

# Sample-site names, shared by training, generation and tests.
Z = "z"
X = "x"
DATA_PLATE = "data"


def two_hidden_layers(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """The seed's network shape: in -> hidden -> hidden (ReLU) -> out (the decoder's, and the labels
    model's classifier)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.ReLU(),
        nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
        nn.Linear(hidden_dim, out_dim),
    )


class Encoder(nn.Module):
    """q(z | x)'s network: 784 -> hidden -> hidden (ReLU) -> (z_loc, z_logstd)."""

    def __init__(self, *, z_dim: int, hidden_dim: int, x_dim: int = IMAGE_PIXELS) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(x_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
        )
        self.loc = nn.Linear(hidden_dim, z_dim)
        self.logstd = nn.Linear(hidden_dim, z_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (..., 784) -> z_loc, z_logstd: (..., z_dim)."""
        h = self.body(x)
        return self.loc(h), self.logstd(h)


class Decoder(nn.Module):
    """p(x | z)'s network: z -> hidden -> hidden (ReLU) -> 784 Bernoulli logits."""

    def __init__(self, *, z_dim: int, hidden_dim: int, x_dim: int = IMAGE_PIXELS) -> None:
        super().__init__()
        self.net = two_hidden_layers(z_dim, hidden_dim, x_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (..., z_dim) -> x_logits: (..., 784)."""
        return self.net(z)


class _Bernoulli(dist.Bernoulli):
    """Pyro's Bernoulli over logits with its log-density written as x * logits - softplus(logits).

    The same value as torch's `binary_cross_entropy_with_logits`, which the stock class calls: that
    one broadcasts x to the logits' shape and makes about eight passes over the pixels, a third
    of `evaluate`'s time when 1000 particles share each image; this makes three.
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return value * self.logits - F.softplus(self.logits)


def _glorot_(module: nn.Module) -> None:
    # The seed's tf.layers.dense starts from Glorot-uniform weights and zero biases, not
    # torch's default; matching it keeps the early epochs comparable with the seed.
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


class VAE(nn.Module):
    """The seed's VAE: p(z) p(x | z) with z ~ N(0, I), and the guide q(z | x); or with the
    VampPrior p(z) = (1/K) sum_k q(z | u_k) at K learned pseudo-inputs u_k (`config.prior`).

    Training maximises the evidence lower bound E_q[log p(x, z) - log q(z | x)]
    (Kingma & Welling 2014, "Auto-Encoding Variational Bayes"), or the IWAE bound, computed from
    Pyro traces of `model` and `guide` (`objectives.py`).
    """

    latent_sites = (Z,)  # x_probs' arguments, in order (the labels model's are z and y)

    def __init__(self, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(z_dim=config.z_dim, hidden_dim=config.hidden_dim)
        self.decoder = Decoder(z_dim=config.z_dim, hidden_dim=config.hidden_dim)
        _glorot_(self)
        # Drawn after the networks, so a standard model's initial weights are what they always were.
        self.pseudo_inputs = PseudoInputs(config.pseudo_inputs) if config.prior == Prior.vamp else None

    def prior(self, n: int) -> dist.TorchDistribution:
        """p(z) over `n` images: batch (n,), event (z_dim,). The VampPrior's components are the
        encoder's Gaussians at the pseudo-inputs, computed afresh (they move as the encoder learns)."""
        weight = self.decoder.net[0].weight
        if self.pseudo_inputs is None:
            return standard_normal(n, self.config.z_dim, like=weight)
        loc, logstd = self.encoder(self.pseudo_inputs())
        dtype = torch.promote_types(loc.dtype, torch.float32)  # as the guide's, under bf16 autocast
        return EqualMixture(loc.to(dtype), logstd.to(dtype).exp(), batch_shape=(n,))

    def model(self, x: torch.Tensor | None = None, *, batch_size: int | None = None,
              noise: float = 0.0) -> None:
        """p(z) p(x | z) over a batch.

        Args:
            x: (batch, 784) float in {0, 1}, observed; None to generate.
            batch_size: how many images to generate when `x` is None.
            noise: unused here; accepted so model and guide take the same arguments.
        Sites: `z` (batch, z_dim) and `x` (batch, 784).
        """
        n = x.shape[0] if x is not None else batch_size
        if n is None:
            raise ValueError("model needs x or batch_size")
        with pyro.plate(DATA_PLATE, n):
            z = pyro.sample(Z, self.prior(n))
            # x is binarized by construction; skipping the per-step support check saves time.
            # (No deterministic site for the probabilities: it would cost a sigmoid and a Delta
            # log-density over every pixel at every step; `x_probs` decodes when a picture is wanted.)
            x_dist = _Bernoulli(logits=self.decoder(z), validate_args=False).to_event(1)
            pyro.sample(X, x_dist, obs=x)

    def x_probs(self, z: torch.Tensor) -> torch.Tensor:
        """p(x | z)'s pixel probabilities: z (..., z_dim) -> (..., 784) in [0, 1]."""
        return torch.sigmoid(self.decoder(z))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x)'s parameters: x (..., 784) -> z_loc, z_logstd (..., z_dim)."""
        return self.encoder(x)

    def guide(self, x: torch.Tensor, *, batch_size: int | None = None, noise: float = 0.0) -> None:
        """q(z | x) = Normal(z_loc, exp(z_logstd + noise)).

        Args:
            x: (batch, 784) float in {0, 1}.
            noise: added to the log-std; 0 in training, > 0 widens the spread when generating.
        """
        z_loc, z_logstd = self.encoder(x)
        # Under bf16 autocast the heads come out in bf16; q(z)'s density stays in fp32 (or fp64).
        dtype = torch.promote_types(z_loc.dtype, torch.float32)
        z_loc, z_logstd = z_loc.to(dtype), z_logstd.to(dtype)
        with pyro.plate(DATA_PLATE, x.shape[0]):
            pyro.sample(Z, dist.Normal(z_loc, torch.exp(z_logstd + noise)).to_event(1))
