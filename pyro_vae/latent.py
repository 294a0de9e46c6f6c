"""Views of a model's latent space computed from its codes: the guide's means of the test images,
their PCA and LDA planes (each point of which lifts back to a z), and the classes they are coloured by.

The page (`explore.py`) exports these views, and `plots.latent_map` draws them; neither computes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pyro_vae import data
from pyro_vae.config import ENCODE_BATCH
from pyro_vae.data import binarize_once
from pyro_vae.model import VAE
from pyro_vae.priors import EqualMixture

WALK_DIRECTIONS = 6  # principal directions exported for the Walk panel (fewer when z is smaller)


@dataclass(frozen=True)
class Classes:
    """What the page and the map say of the data: its title, the class names in label order, the
    test image `generate --mode digit` encodes for each class, the data set (whose words the page
    uses for its images), and whether they are black and white by nature (data.py's registry;
    MNIST's by default)."""

    title: str = "MNIST"
    names: tuple[str, ...] = tuple(str(d) for d in range(10))
    exemplars: tuple[int, ...] = data.DIGIT_EXEMPLARS
    dataset: str = "mnist"  # its registry name
    black_and_white: bool = data.DATASETS["mnist"].black_and_white

    @classmethod
    def of(cls, dataset: str, data_dir: Path | None = None) -> Classes:
        spec = data.get(dataset)
        return cls(title=spec.title, names=tuple(data.class_names(dataset, data_dir)),
                   exemplars=tuple(data.exemplars(dataset, data_dir)), dataset=spec.name,
                   black_and_white=spec.black_and_white)


@dataclass(frozen=True)
class Plane:
    """A linear view of the codes in two dimensions: `coords` (n, 2) = (codes - mean) @ axes.T.

    A point c of the plane lifts back to the latent vector mean + c @ lift: the average code
    that lands on c, for a normal fit of the codes (for PCA, lift = axes). So every point of the
    map, not only the codes drawn on it, is a z the page can decode. `axes`, `lift`: (2, z_dim).
    """

    name: str
    label: str  # what the axes are, for a picture or the page
    axes: torch.Tensor
    lift: torch.Tensor
    coords: torch.Tensor


@dataclass(frozen=True)
class Map:
    """The test codes' views: `planes` (LDA, then PCA), and the principal directions for walking."""

    mean: torch.Tensor  # (z_dim,)
    directions: torch.Tensor  # (k, z_dim) orthonormal rows, largest spread first
    variance: torch.Tensor  # (k,) the codes' variance along each
    share: list[float]  # each direction's share of the codes' total variance
    planes: tuple[Plane, ...]


@torch.no_grad()
def guide_params(vae: VAE, binarized: torch.Tensor, *, batch_size: int = ENCODE_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """q(z | x)'s parameters for each image (a labels model's q(z | x, y) at the class its classifier
    finds most probable, `M2.encode`): binarized (n, 784) -> (z_loc, z_scale), each (n, z_dim) float32
    on the CPU."""
    device = next(vae.parameters()).device
    parts = [vae.encode(binarized[i : i + batch_size].to(device)) for i in range(0, len(binarized), batch_size)]
    return (torch.cat([loc.float().cpu() for loc, _ in parts]),
            torch.cat([logstd.float().exp().cpu() for _, logstd in parts]))


def test_codes(vae: VAE, binarized: torch.Tensor, *, batch_size: int = ENCODE_BATCH) -> torch.Tensor:
    """The guide's means of the test images: binarized (n, 784) -> z_loc (n, z_dim) float32 on the CPU."""
    return guide_params(vae, binarized, batch_size=batch_size)[0]


# Burda et al. 2015 (IWAE), section 5.2: dimension u is active when Cov_x(E_q[u | x]) > 0.01.
ACTIVE_THRESHOLD = 0.01
# z draws per image in a VampPrior model's KL per dimension: over 10000 test images the estimate's
# standard error is a few thousandths of a nat.
KL_DRAWS = 4


def activity(z_loc: torch.Tensor) -> torch.Tensor:
    """Burda et al.'s Cov_x(E_q[u | x]) of each dimension u: the variance over images of the guide's
    mean, z_loc (n, z_dim) -> (z_dim,) float64."""
    return z_loc.double().var(dim=0, unbiased=True)


def active_units(z_loc: torch.Tensor, *, threshold: float = ACTIVE_THRESHOLD) -> torch.Tensor:
    """Which latent dimensions the model uses: z_loc (n, z_dim) -> (z_dim,) bool, `activity` above
    `threshold` (Burda et al.'s definition)."""
    return activity(z_loc) > threshold


def kl_per_dimension(z_loc: torch.Tensor, z_scale: torch.Tensor, prior: EqualMixture | None = None, *,
                     draws: int = KL_DRAWS, chunk: int = 500) -> torch.Tensor:
    """KL(q(z_u | x) || p(z_u)) for each dimension u, averaged over the images, in nats: (z_dim,) float64.

    prior: None for N(0, I), in closed form, where the dimensions sum to the KL term of the ELBO. A
    VampPrior does not factorise over the dimensions: each is scored against its own marginal, a
    1-d mixture, by Monte Carlo (`draws` per image, fixed seed), and the sum is not the KL term.
    """
    loc, scale = z_loc.double(), z_scale.double()
    if prior is None:
        return (0.5 * (loc.square() + scale.square() - 1.0) - scale.log()).mean(dim=0)
    generator = torch.Generator().manual_seed(0)
    total = torch.zeros(loc.shape[-1], dtype=torch.float64)
    marginal = EqualMixture(prior.loc.detach().cpu(), prior.scale.detach().cpu())  # beside the codes, on the CPU
    for i in range(0, len(loc), chunk):
        m, s = loc[i : i + chunk], scale[i : i + chunk]
        z = m + s * torch.randn((draws, *m.shape), generator=generator, dtype=torch.float64)  # (draws, n, D)
        log_q = torch.distributions.Normal(m, s).log_prob(z)
        total += (log_q.flatten(0, 1) - marginal.marginal_log_prob(z.flatten(0, 1))).sum(0)
    return total / (draws * len(loc))


@dataclass(frozen=True)
class Usage:
    """How much of the latent space a model uses on some images: per dimension, the KL of the guide
    from the prior, Burda et al.'s activity, and whether it is active."""

    kl: torch.Tensor  # (z_dim,) float64, nats per image (`kl_per_dimension`)
    activity: torch.Tensor  # (z_dim,) float64, Var_x E_q[z_u | x]
    active: torch.Tensor  # (z_dim,) bool, activity > ACTIVE_THRESHOLD


@torch.no_grad()
def usage(vae: VAE, z_loc: torch.Tensor, z_scale: torch.Tensor) -> Usage:
    """`Usage` from the guide's parameters of some images, each (n, z_dim), against `vae`'s prior."""
    prior = vae.prior(1)
    return Usage(kl=kl_per_dimension(z_loc, z_scale, prior if isinstance(prior, EqualMixture) else None),
                 activity=activity(z_loc), active=active_units(z_loc))


def usage_of(vae: VAE, images: torch.Tensor) -> Usage:
    """`Usage` over test images (n, 784) uint8, binarized as every evaluation binarizes them."""
    return usage(vae, *guide_params(vae, binarize_once(images)))


def _plane(name: str, label: str, axes: torch.Tensor, centred: torch.Tensor, covariance: torch.Tensor) -> Plane:
    # E[z | axes (z - mean) = c] = mean + cov axes^T (axes cov axes^T)^+ c, for z normal.
    lift = (covariance @ axes.T @ torch.linalg.pinv(axes @ covariance @ axes.T)).T
    return Plane(name, label, axes.float(), lift.float(), (centred @ axes.T).float())


def latent_views(codes: torch.Tensor, labels: torch.Tensor, *, k: int = WALK_DIRECTIONS) -> Map:
    """PCA and LDA of the codes (n, z_dim) with their labels (n,), in float64 through torch.linalg.

    Both are linear, so a click anywhere on either plane decodes a well-defined z (see `Plane`):
    t-SNE and UMAP have no such inverse, and need libraries this project does not carry (see the
    README). PCA shows the codes' own largest spread, where classes overlap because the model
    spreads them over all z_dim directions; LDA (Fisher's) picks the two directions that best
    separate the classes, using the labels the model never saw.
    """
    codes = codes.double()
    mean = codes.mean(0)
    centred = codes - mean
    n, z_dim = codes.shape
    covariance = centred.T @ centred / max(n - 1, 1)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    # Each direction's sign is fixed (largest entry positive) so re-exports draw the same map.
    vh = vh * torch.sign(vh.gather(1, vh.abs().argmax(1, keepdim=True)))
    variance = s**2 / max(n - 1, 1)
    pca = _two(vh)
    within, between = torch.zeros_like(covariance), torch.zeros_like(covariance)
    for c in labels.unique():
        members = centred[labels == c]
        centre = members.mean(0)
        within += (members - centre).T @ (members - centre)
        between += len(members) * torch.outer(centre, centre)
    within += 1e-6 * within.trace() / z_dim * torch.eye(z_dim, dtype=within.dtype)  # one-image classes
    # Fisher's directions: eigenvectors of within^-1 between, through the whitening of `within`.
    whiten = torch.linalg.inv(torch.linalg.cholesky(within))
    _, vectors = torch.linalg.eigh(whiten @ between @ whiten.T)
    lda = (whiten.T @ vectors.flip(1)).T
    lda = lda / lda.norm(dim=1, keepdim=True)
    lda = _two(lda * torch.sign(lda.gather(1, lda.abs().argmax(1, keepdim=True))))
    k = min(k, z_dim)
    return Map(mean=mean.float(), directions=vh[:k].float(), variance=variance[:k].float(),
               share=(variance[:k] / variance.sum()).tolist(),
               planes=(_plane("lda", "LDA: the two directions that best separate the classes", lda, centred,
                              covariance),
                       _plane("pca", "PCA: the two directions of largest spread", pca, centred, covariance)))


def _two(rows: torch.Tensor) -> torch.Tensor:
    """The first two rows, with a zero row added for a 1-d latent (its map is a line)."""
    rows = rows[:2]
    return torch.cat([rows, torch.zeros(2 - len(rows), rows.shape[1], dtype=rows.dtype)]) if len(rows) < 2 else rows


def views_of(vae: VAE, images: torch.Tensor, labels: torch.Tensor) -> Map:
    """`latent_views` of the codes of test images (n, 784) uint8 with their labels (n,), binarized
    as every evaluation binarizes them (`data.binarize_once`)."""
    return latent_views(test_codes(vae, binarize_once(images)), labels)
