"""The priors p(z) a VAE can have: the seed's N(0, I), and the VampPrior (Tomczak & Welling 2018,
"VAE with a VampPrior"), a mixture of the guide's own Gaussians at K learned pseudo-inputs:

    p(z) = (1/K) sum_k q(z | u_k),    u_k in [0, 1]^784.

Both are Pyro distributions with event shape (z_dim,), so the model samples and scores z the same
way whichever it has: the ELBO, the IWAE bound, evaluation's importance sampling and `generate
--mode prior` need nothing else.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from torch import nn

from pyro_vae.data import IMAGE_PIXELS

# The paper's initialisation (its code's --pseudoinputs_mean and --pseudoinputs_std): every
# pseudo-pixel starts near 0.05, a faint grey image, and the mixture's components start alike.
PSEUDO_MEAN, PSEUDO_STD = 0.05, 0.01
_LOG_2PI = math.log(2 * math.pi)


class PseudoInputs(nn.Module):
    """K learned images u_k: free parameters through hardtanh(., 0, 1), as the paper constrains them
    (its code's `means` layer), so each pixel stays a value in [0, 1]."""

    def __init__(self, count: int, *, x_dim: int = IMAGE_PIXELS) -> None:
        super().__init__()
        self.raw = nn.Parameter(torch.empty(count, x_dim).normal_(PSEUDO_MEAN, PSEUDO_STD))

    def forward(self) -> torch.Tensor:
        """-> (K, 784) pixel values in [0, 1]."""
        return F.hardtanh(self.raw, 0.0, 1.0)


class EqualMixture(dist.TorchDistribution):
    """An equally weighted mixture of K diagonal Gaussians over R^D, the same K for every batch element.

    Args:
        loc, scale: (K, D) the components' means and standard deviations.
        batch_shape: the batch it is drawn for (a plate's); every element shares the components.

    `log_prob` forms the K Mahalanobis terms as two matrix products, sum_d z_d^2 a_kd - 2 z_d b_kd
    + c_k, rather than broadcasting a (..., K, D) tensor: evaluation scores 5000 draws at a time,
    and that tensor would be 400 MB. The products are in float64, because the expansion cancels:
    its terms grow as 1/scale^2 while the result that matters (the nearest component's) stays small.
    """

    arg_constraints = {}  # loc and scale come from the encoder; the guide's own Normal checks the same values
    support = constraints.real_vector
    has_rsample = False  # picking a component is discrete; training only scores z, drawn by the guide

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, *, batch_shape: torch.Size | tuple[int, ...] = (),
                 validate_args: bool | None = None) -> None:
        if loc.dim() != 2 or loc.shape != scale.shape:
            raise ValueError(f"loc and scale must both be (K, D), got {tuple(loc.shape)} and {tuple(scale.shape)}")
        self.loc, self.scale = loc, scale
        super().__init__(torch.Size(batch_shape), loc.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape: torch.Size | tuple[int, ...], _instance: EqualMixture | None = None) -> EqualMixture:
        return EqualMixture(self.loc, self.scale, batch_shape=batch_shape)

    @property
    def components(self) -> int:
        return self.loc.shape[0]

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """value (..., D) -> log p(value) (...), broadcast against the batch shape."""
        shape = value.shape[:-1]
        v = value.reshape(-1, value.shape[-1]).double()
        precision = self.scale.double().pow(-2)  # (K, D)
        shifted = self.loc.double() * precision
        constant = (self.loc.double() * shifted).sum(-1) + 2 * self.scale.double().log().sum(-1)
        quadratic = torch.addmm(constant, v.square(), precision.T) - 2 * v @ shifted.T  # (n, K)
        log_p = torch.logsumexp(-0.5 * quadratic, -1) - 0.5 * value.shape[-1] * _LOG_2PI - math.log(self.components)
        log_p = log_p.to(torch.promote_types(value.dtype, torch.float32)).reshape(shape)
        return log_p.expand(torch.broadcast_shapes(shape, self.batch_shape))

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """(sample_shape + batch_shape + (D,)): a component chosen uniformly, then a draw of its Gaussian."""
        shape = torch.Size(sample_shape) + self.batch_shape
        with torch.no_grad():
            k = torch.randint(self.components, shape, device=self.loc.device)
            eps = torch.randn(shape + self.event_shape, device=self.loc.device, dtype=self.loc.dtype)
            return self.loc[k] + self.scale[k] * eps

    def marginal_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Each dimension's own marginal, a 1-d mixture: value (n, D) -> log p(z_d) (n, D)."""
        normal = torch.distributions.Normal(self.loc.double(), self.scale.double())  # (K, D)
        return (torch.logsumexp(normal.log_prob(value.double().unsqueeze(-2)), -2)
                - math.log(self.components)).to(torch.promote_types(value.dtype, torch.float32))


def in_words(prior: str, pseudo_inputs: int) -> str:
    """What p(z) is, for titles and captions: "the prior z ~ N(0, I)", "the VampPrior of 500 pseudo-inputs"."""
    return f"the VampPrior of {pseudo_inputs} pseudo-inputs" if prior == "vamp" else "the prior z ~ N(0, I)"


def standard_normal(n: int, z_dim: int, *, like: torch.Tensor) -> dist.TorchDistribution:
    """The seed's p(z) = N(0, I) over n images: batch (n,), event (z_dim,), on `like`'s device and dtype."""
    z_loc = torch.zeros(n, z_dim, device=like.device, dtype=like.dtype)
    return dist.Normal(z_loc, torch.ones_like(z_loc)).to_event(1)
