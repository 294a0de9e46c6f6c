"""The judge: a small CNN trained on a data set's labelled images (cached per data set in the user
cache folder), and the sample-quality figures it gives a model's samples as numbers: legibility,
the judge score, class shares, the Fréchet distance of its features, and classifier two-sample tests.

A C2ST (Lopez-Paz & Oquab 2017, "Revisiting classifier two-sample tests") trains a fresh classifier
to tell samples from real images and reads its held-out accuracy: 0.5 means they cannot be told apart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from pyro_vae import data
from pyro_vae.config import JudgeConfig, Paths, cache_dir
from pyro_vae.errors import ConfigError, DataError
from pyro_vae.fsutil import atomic_write
from pyro_vae.m2 import has_labels
from pyro_vae.metrics import add_records
from pyro_vae.progress import Bars
from pyro_vae.runtime import isolated_rng

if TYPE_CHECKING:
    from pyro_vae.api import Model

log = logging.getLogger(__name__)

VERSION = 1  # of the judge's network and training: part of its cache key, so a change retrains it
CACHE_FOLDER = "judges"  # under config.cache_dir(): one file a judge, named by its key
RECORDS = Path("metrics") / "judge.json"  # under the run's results folder
LEGIBLE = 0.9  # a sample is legible when the judge gives one class at least this probability
FEATURES = 128  # the judge's penultimate layer: the Fréchet distance's features
# One judge.json record per checkpoint, source and setting; judging again with them replaces it.
RECORD_KEY = ("checkpoint", "epoch", "dataset", "source", "noise", "samples", "seed")
PRIOR, MORE_LIKE_THIS, LABEL, REAL = "prior", "more_like_this", "label", "real"  # the sources' names in the records


class Net(nn.Module):
    """Two 3x3 convolutions with max-pooling, a dense layer of FEATURES units and a linear read-out:
    the judge (one output per class) and each C2ST's fresh classifier (two outputs)."""

    def __init__(self, outputs: int, *, width: int) -> None:
        """width: channels of the first convolution (the second has twice as many)."""
        super().__init__()
        side = data.IMAGE_SIZE // 4  # after two 2x2 poolings
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * side * side, FEATURES), nn.ReLU())
        self.dropout = nn.Dropout(0.3)  # training only: the judge must generalise to a model's strokes
        self.head = nn.Linear(FEATURES, outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, 784) in [0, 1] -> (n, FEATURES) penultimate activations."""
        return self.body(x.reshape(-1, 1, data.IMAGE_SIZE, data.IMAGE_SIZE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, 784) in [0, 1] -> (n, outputs) logits."""
        return self.head(self.dropout(self.features(x)))


def _fit(net: Net, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int, lr: float,
         generator: torch.Generator, binarize_half: bool = False, on_step: Callable[[], None] | None = None) -> Net:
    """Train `net` on images x (n, 784) in [0, 1] with labels y (n,) by Adam, the learning rate falling
    linearly to 0; with `binarize_half` half of each batch is drawn as Bernoulli(x) afresh, so the judge
    reads binary draws and grey levels (pixel probabilities) alike."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * math.ceil(len(x) / batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for first in range(0, len(x), batch_size):
            batch, labels = x[order[first:first + batch_size]], y[order[first:first + batch_size]]
            if binarize_half:
                drawn = (torch.rand(batch.shape, generator=generator) < batch).to(batch.dtype)
                half = torch.rand(len(batch), 1, generator=generator) < 0.5
                batch = torch.where(half, drawn, batch)
            loss = nn.functional.cross_entropy(net(batch.to(_device(net))), labels.to(_device(net)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            if on_step is not None:
                on_step()
    return net.eval()


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


@torch.no_grad()
def _outputs(net: Net, x: torch.Tensor, *, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(class probabilities (n, outputs), penultimate features (n, FEATURES)), float64 on the CPU."""
    net.eval()
    probs, features = [], []
    for first in range(0, len(x), batch_size):
        h = net.features(x[first:first + batch_size].to(_device(net)))
        probs.append(torch.softmax(net.head(h), dim=-1).double().cpu())
        features.append(h.double().cpu())
    return torch.cat(probs), torch.cat(features)


@dataclass
class Judge:
    """A trained judge: its network, the data set's class names, and its test accuracy on grey
    levels (`accuracy`) and on the test images binarized once (`accuracy_binarized`)."""

    net: Net
    classes: tuple[str, ...]
    accuracy: float
    accuracy_binarized: float
    key: str  # the cache key: data set checksums and the settings that decide its weights
    path: Path  # its file in the cache
    trained: bool  # this call trained it; False: read from the cache

    def classify(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (n, 784) in [0, 1] -> p(y | x) (n, classes) and features (n, FEATURES), float64."""
        return _outputs(self.net, x)


@dataclass(frozen=True)
class Labelled:
    """A data set's splits as (n, 784) float intensities in [0, 1] with (n,) labels, and its class names."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]


def labelled(paths: Paths) -> Labelled:
    """The data set of `paths`, read (fetched first where it can be); DataError when it has no labels
    to learn from (label files missing, or every training label the same)."""
    spec = data.get(paths.dataset)
    missing = [name for _, name in data.FILES.values() if data.find_file(paths.data_dir, name) is None]
    if missing and spec.sha256 is None:
        raise DataError(f"the judge learns the classes from labels, and {paths.data_dir} has no "
                        f"{' or '.join(missing)}; put the label files there, or judge a model of a labelled data set")
    splits = [data.ensure_split(paths.data_dir, split, dataset=paths.dataset) for split in ("train", "test")]
    if len(torch.unique(splits[0][1])) < 2:
        raise DataError(f"the judge learns the classes from labels, and {paths.data_dir}'s training labels are "
                        "all one class (no labels); label the images, or judge a model of a labelled data set")
    (x_train, y_train), (x_test, y_test) = splits
    grey = lambda x: x.to(torch.float32).div_(255.0)  # noqa: E731
    return Labelled(grey(x_train), y_train, grey(x_test), y_test, data.class_names(paths.dataset, paths.data_dir))


def cache_key(paths: Paths, config: JudgeConfig) -> str:
    """What decides a judge's weights, hashed: the data set's name, its files' SHA-256 and class
    names, the network's version and the judge's training settings."""
    spec = data.get(paths.dataset)
    sums = spec.sha256 if spec.sha256 is not None else data.record(paths.dataset, paths.data_dir)["sha256"]
    decided = {"version": VERSION, "dataset": paths.dataset, "sha256": dict(sorted(sums.items())),
               "classes": list(data.class_names(paths.dataset, paths.data_dir)),
               **{k: v for k, v in asdict(config).items() if k.startswith("judge_")}}
    return hashlib.sha256(json.dumps(decided, sort_keys=True).encode()).hexdigest()[:20]


def load_judge(paths: Paths, config: JudgeConfig = JudgeConfig(), *, device: torch.device = torch.device("cpu"),
               progress: bool = False, sets: Labelled | None = None) -> Judge:
    """The judge of `paths`' data set: from the cache when one with the same key is there, else
    trained (seeded with `config.judge_seed`) on the training split and cached.

    Raises:
        DataError: the data set has no labels (see `labelled`).
    """
    sets = sets or labelled(paths)
    x_train, y_train, x_test, y_test, classes = sets.x_train, sets.y_train, sets.x_test, sets.y_test, sets.classes
    key = cache_key(paths, config)
    path = cache_dir() / CACHE_FOLDER / f"{paths.dataset}-{key}.pt"
    net = Net(len(classes), width=config.judge_width).to(device)
    if path.is_file():
        try:
            state = torch.load(path, map_location=device, weights_only=True)
            net.load_state_dict(state["net"])
            log.debug("judge of %s read from %s", paths.dataset, path)
            return Judge(net.eval(), classes, float(state["accuracy"]), float(state["accuracy_binarized"]), key,
                         path, trained=False)
        except Exception as exc:  # a damaged or foreign file: train afresh and replace it
            log.warning("%s is not a judge (%s); training a new one", path, exc)
    generator = torch.Generator().manual_seed(config.judge_seed)
    steps = config.judge_epochs * math.ceil(len(x_train) / config.judge_batch_size)
    log.info("training the judge on %d %s training images (%d epochs); it is cached in %s",
             len(x_train), data.get(paths.dataset).title, config.judge_epochs, path.parent)
    with isolated_rng(config.judge_seed, device=device), Bars(progress) as bars:
        torch.manual_seed(config.judge_seed)
        net = Net(len(classes), width=config.judge_width).to(device)  # initialised from the judge's seed
        bars.add("training the judge", total=steps)
        _fit(net, x_train, y_train, epochs=config.judge_epochs, batch_size=config.judge_batch_size,
             lr=config.judge_lr, generator=generator, binarize_half=True,
             on_step=lambda: bars.advance("training the judge"))
    accuracy = _accuracy(net, x_test, y_test)
    accuracy_binarized = _accuracy(net, data.binarize_once((x_test * 255).round().to(torch.uint8)), y_test)
    with atomic_write(path) as handle:
        torch.save({"net": {k: v.cpu() for k, v in net.state_dict().items()}, "accuracy": accuracy,
                    "accuracy_binarized": accuracy_binarized, "key": key, "dataset": paths.dataset}, handle)
    log.info("judge test accuracy %.2f%% (grey levels), %.2f%% (binarized)", 100 * accuracy, 100 * accuracy_binarized)
    return Judge(net, classes, accuracy, accuracy_binarized, key, path, trained=True)


def _accuracy(net: Net, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((_outputs(net, x)[0].argmax(-1) == y).double().mean())


# ---------------------------------------------------------------------------------------------
# The figures, each of (n, ...) tensors

def legible(probs: torch.Tensor) -> float:
    """The share of images whose most likely class has probability >= LEGIBLE; probs: (n, classes)."""
    return float((probs.max(-1).values >= LEGIBLE).double().mean())


def judge_score(probs: torch.Tensor) -> float:
    """exp(E_x[KL(p(y|x) || p(y))]), p(y) the mean of p(y|x): the Inception score (Salimans et al.
    2016) with the judge in Inception's place. 1 for images all alike or all ambiguous; at most the
    number of classes, for confident predictions spread evenly over the classes."""
    marginal = probs.mean(0, keepdim=True)
    kl = torch.special.xlogy(probs, probs) - torch.special.xlogy(probs, marginal)  # 0 log 0 = 0
    return float(kl.sum(-1).mean().exp())


def class_shares(probs: torch.Tensor) -> torch.Tensor:
    """The share of images the judge puts in each class (its most likely one): (classes,) float64."""
    return torch.bincount(probs.argmax(-1), minlength=probs.shape[-1]).double() / len(probs)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """Half the L1 distance between two distributions over classes: 0 the same, 1 disjoint."""
    return float((p - q).abs().sum() / 2)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussians fitted to two sets of
    features (n, d) and (m, d): FID's formula (Heusel et al. 2017).

    Tr((S_a S_b)^(1/2)) is the sum of the square roots of S_a S_b's eigenvalues (real and >= 0 for a
    product of covariances), from torch.linalg.eigvals in float64: torchmetrics' FID computes it so,
    and it needs no matrix square root (scipy is not a dependency; rounding's tiny imaginary parts
    and negative eigenvalues are dropped).
    """
    a, b = a.double(), b.double()
    mean = (a.mean(0) - b.mean(0)).square().sum()
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    root = torch.linalg.eigvals(cov_a @ cov_b).sqrt().real.sum()
    return max(float(mean + cov_a.trace() + cov_b.trace() - 2 * root), 0.0)


def c2st(fit: tuple[torch.Tensor, torch.Tensor], score: tuple[torch.Tensor, torch.Tensor], *,
         config: JudgeConfig, seed: int, device: torch.device = torch.device("cpu")) -> tuple[float, float]:
    """A classifier two-sample test: a fresh `Net` learns to tell the first set of `fit` (label 1)
    from the second (label 0), and is scored on `score`'s pair of held-out sets.

    Args:
        fit, score: (samples (k, 784), real images (k', 784)) in [0, 1].
    Returns:
        (accuracy, its standard error sqrt(a (1 - a) / n) over the n scored images).
    """
    label = lambda pair: torch.cat([torch.ones(len(pair[0])), torch.zeros(len(pair[1]))]).long()  # noqa: E731
    with isolated_rng(seed, device=device):
        net = Net(2, width=config.c2st_width).to(device)
        _fit(net, torch.cat(fit), label(fit), epochs=config.c2st_epochs, batch_size=config.c2st_batch_size,
             lr=config.judge_lr, generator=torch.Generator().manual_seed(seed))
    accuracy = _accuracy(net, torch.cat(score), label(score))
    return accuracy, math.sqrt(accuracy * (1 - accuracy) / (len(score[0]) + len(score[1])))


# ---------------------------------------------------------------------------------------------
# Sources of images to judge

@dataclass(frozen=True)
class Drawn:
    """A source's images: `grey` (n, 784) in [0, 1] (a model's pixel probabilities, or real grey
    levels), and the class each image should be (n,) where the source has one, else None."""

    grey: torch.Tensor
    targets: torch.Tensor | None = None


@dataclass(frozen=True)
class Source:
    """Something to judge: `draw(n, generator)` gives n images. `real`: the images are real test
    images, so its C2ST scores them against other training images rather than test images.

    A source whose draws have `targets` (more like this's exemplars' labels, the classes a labels
    model was asked for) also gets `target_share` in its record: the share judged to be that class."""

    name: str
    draw: Callable[[int, torch.Generator], Drawn]
    noise: float | None = None
    real: bool = False


def prior_source(model: Model) -> Source:
    """z ~ p(z), decoded: the model's own samples."""
    from pyro_vae import generate as gen

    return Source(PRIOR, lambda n, _: Drawn(gen.prior_samples(model.vae, n=n).cpu()))


def more_like_this_source(model: Model, test: tuple[torch.Tensor, torch.Tensor], *, noise: float) -> Source:
    """"More like this": random test images (each once, then again), one draw each from the guide
    widened by `noise` (`generate --mode digit`'s sampler, as the quiz draws); targets are their labels.

    Args:
        test: the test images binarized once (n, 784) in {0, 1} (what the guide sees), and labels (n,).
    """
    from pyro_vae import generate as gen

    def draw(n: int, generator: torch.Generator) -> Drawn:
        index = _indices(len(test[0]), n, generator)
        x = test[0][index].to(model.device)
        return Drawn(gen.guide_samples(model.vae, x, n=1, noise=noise)[:, 0].cpu(), test[1][index])

    return Source(MORE_LIKE_THIS, draw, noise=noise)


def label_source(model: Model) -> Source:
    """A labels model asked for each class in turn (0, 1, ..., classes - 1, 0, ...), so every class
    has n / classes draws (within one, in each C2ST half too): x ~ p(x | z, y = c), z ~ p(z)
    (`generate --mode label`'s sampler); targets are the classes asked for."""
    from pyro_vae import generate as gen

    def draw(n: int, generator: torch.Generator) -> Drawn:
        targets = torch.arange(n) % model.vae.config.classes
        return Drawn(gen.label_samples(model.vae, n=n, digit=targets.to(model.device)).cpu(), targets)

    return Source(LABEL, draw)


def real_source(test: tuple[torch.Tensor, torch.Tensor]) -> Source:
    """Real test images (grey levels) and their labels: the reference every model is measured against."""
    def draw(n: int, generator: torch.Generator) -> Drawn:
        index = torch.randperm(len(test[0]), generator=generator)[:n]
        return Drawn(test[0][index], test[1][index])

    return Source(REAL, draw, real=True)


def source_seed(seed: int, source: Source) -> int:
    """The seed of `source`'s draws and fits: from `seed` and what the source is, so its figures do
    not depend on which other sources were asked for (judge.json replaces a record by these keys alone)."""
    return (seed + zlib.crc32(f"{source.name} {source.noise}".encode())) % 2**32


def _indices(available: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """n indices below `available`: a random order of all, repeated as often as n needs."""
    return torch.cat([torch.randperm(available, generator=generator) for _ in range(-(-n // available))])[:n]


# ---------------------------------------------------------------------------------------------
# Judging a model

@dataclass
class Judged:
    """`judge`'s result: one record per source (the real images' last), the judge, the records' file."""

    records: list[dict[str, Any]]
    judge: Judge
    file: Path | None = None  # where `judge_and_record` wrote them


def check(model: Model, paths: Paths, config: JudgeConfig, sets: Labelled) -> None:
    """Refuse what cannot be judged before anything is computed or written: a data set other than
    the model's, and more samples than the test images the C2STs and the real row draw from."""
    differs = data.mismatch(model.data, data.record(paths.dataset, paths.data_dir))
    if differs:
        raise DataError(f"{model.path} {differs}: its samples are judged against the data it learned; "
                        "leave ⟨dataset⟩ and ⟨data_dir⟩ out, or judge a model trained on that data")
    if config.samples > min(len(sets.y_test), len(sets.y_train)):
        raise ConfigError(f"⟨samples⟩ must be at most {min(len(sets.y_test), len(sets.y_train))} here: the real "
                          f"row draws them from the {len(sets.y_test)} test images, and its C2ST as many from the "
                          f"{len(sets.y_train)} training images; got {config.samples}")


def judge(model: Model, config: JudgeConfig = JudgeConfig(), *, paths: Paths, progress: bool = False,
          sources: Sequence[Source] = ()) -> Judged:
    """Judge `model`'s samples from each source (the prior, "more like this" at `config.noises`, a
    labels model's samples of requested classes, any `sources` given) and real test images as the
    reference, `config.samples` images each.

    Each record: `source`, `noise`, `samples`, the judge's test accuracy `judge_accuracy`, `legible`,
    `judge_score`, `classes` (shares by class name) and `class_distance` (total variation from the
    judge's shares on the test set), `frechet_distance` (judge features against the test images'),
    `c2st_accuracy`/`c2st_se` (Bernoulli draws against real images binarized the same way: the
    model's own distribution) and `c2st_grey_accuracy`/`c2st_grey_se` (pixel probabilities against
    real grey levels: what its pictures show), and `target_share` where the source has targets
    (the share judged to be the exemplar's class, or for a labels model's `label` source the class
    asked for). Seeded by `config.seed`: same seed, same figures.
    """
    sets = labelled(paths)  # first: no labels is the first thing to say of a data set
    check(model, paths, config, sets)
    judge_net = load_judge(paths, config, device=model.device, progress=progress, sets=sets)
    x_train, x_test, y_test = sets.x_train, sets.x_test, sets.y_test
    binarized_test = data.binarize_once((x_test * 255).round().to(torch.uint8))
    test_probs, test_features = judge_net.classify(x_test)
    test_shares = class_shares(test_probs)
    chosen = [*([prior_source(model)] if config.prior else []),
              *(more_like_this_source(model, (binarized_test, y_test), noise=s) for s in config.noises),
              *([label_source(model)] if has_labels(model.vae) else []),
              *sources, *([real_source((x_test, y_test))] if config.real else [])]
    half = config.samples // 2
    records = []
    with Bars(progress) as bars:
        bars.add("judging sources", total=len(chosen))
        for source in chosen:
            seed = source_seed(config.seed, source)
            generator = torch.Generator().manual_seed(seed)
            with isolated_rng(seed, device=model.device):
                drawn = source.draw(config.samples, generator)
            probs, features = judge_net.classify(drawn.grey)
            # Real images to fit against (training) and to score against (test; for the real row,
            # other training images), disjoint, the same size as each half of the samples.
            real_order = torch.randperm(len(x_train), generator=generator)
            real_fit = x_train[real_order[:half]]
            real_score = (x_train[real_order[half:2 * half]] if source.real
                          else x_test[torch.randperm(len(x_test), generator=generator)[:half]])
            binary = lambda x: (torch.rand(x.shape, generator=generator) < x).to(x.dtype)  # noqa: E731
            fit, score = drawn.grey[:half], drawn.grey[half:2 * half]
            bits = c2st((binary(fit), binary(real_fit)), (binary(score), binary(real_score)), config=config,
                        seed=seed, device=model.device)
            grey = c2st((fit, real_fit), (score, real_score), config=config, seed=seed,
                        device=model.device)
            shares = class_shares(probs)
            record: dict[str, Any] = {
                **model.about(), "source": source.name, "noise": source.noise, "samples": config.samples,
                "seed": config.seed, "judge_accuracy": judge_net.accuracy, "legible": legible(probs),
                "judge_score": judge_score(probs), "frechet_distance": frechet_distance(features, test_features),
                "c2st_accuracy": bits[0], "c2st_se": bits[1], "c2st_grey_accuracy": grey[0], "c2st_grey_se": grey[1],
                "classes": dict(zip(judge_net.classes, shares.tolist())),
                "class_distance": total_variation(shares, test_shares),
            }
            if drawn.targets is not None and not source.real:
                record["target_share"] = float((probs.argmax(-1) == drawn.targets).double().mean())
            records.append(record)
            bars.advance("judging sources")
            log.debug("judged %s: %s", source.name, record)
    return Judged(records, judge_net)


def judge_and_record(model: Model, config: JudgeConfig = JudgeConfig(), *, paths: Paths,
                     progress: bool = False) -> Judged:
    """`judge`, then its records added to the run's results/metrics/judge.json (a record with the
    same RECORD_KEY replaced), the results folder claimed for this run first (`metrics.claim`)."""
    from pyro_vae.metrics import claim

    judged = judge(model, config, paths=paths, progress=progress)
    claim(paths.results_dir, paths.checkpoint_dir)
    judged.file = add_records(judged.records, paths.results_dir / RECORDS, key=RECORD_KEY)
    return judged


def page_figure(checkpoint: str, results_dir: Path) -> dict[str, Any] | None:
    """What the page's quiz says of a machine at the same game, from `results_dir`'s judge.json: the
    C2ST of the model's "more like this" at the quiz's noise, on pixel probabilities against real
    grey levels (the pictures a player sees); None when `judge` has not measured it.

    Args:
        checkpoint: the model as its records name it (`Model.about()["checkpoint"]`).
    """
    from pyro_vae.metrics import read_evaluations

    return quiz_figure([r for r in read_evaluations(Path(results_dir) / RECORDS) if r.get("checkpoint") == checkpoint])


def quiz_figure(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """`page_figure` of one model's judge records (judge.json's, or a shipped model's manifest's):
    the newest record of "more like this" at the quiz's noise; None when there is none."""
    from pyro_vae.config import QuizConfig

    wanted = [r for r in records if r.get("source") == MORE_LIKE_THIS and r.get("noise") == QuizConfig.noise]
    if not wanted:
        return None
    newest = wanted[-1]  # judge.json keeps the latest record of a setting last
    return {"c2st_accuracy": newest["c2st_grey_accuracy"], "c2st_se": newest["c2st_grey_se"],
            "samples": newest["samples"], "noise": newest["noise"], "epoch": newest["epoch"],
            "compares": "the model's pixel probabilities against real grey levels, by a classifier trained "
                        "on half of them; 0.5: it cannot tell them apart"}
