"""The public Python API: load a trained model and use it, train one, read the data sets.

`import pyro_vae` re-exports these names; the command line, the page's export and the tutorial
notebook all come in through here. Images are (n, 28, 28) tensors (or (n, 784)) of values in [0, 1].
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from pyro_vae import checkpoint, data, evaluate as ev, fetch, generate as gen, options, pretrained
from pyro_vae.config import (EvaluateConfig, GenerateConfig, JudgeConfig, Mode, ModelConfig, Paths, Prior, TrainConfig,
                             results_dir_for, split_settings, with_recipe)
from pyro_vae.errors import ConfigError
from pyro_vae.m2 import build, has_labels
from pyro_vae.metrics import claim
from pyro_vae.model import VAE
from pyro_vae.runtime import isolated_rng, resolve_device

if TYPE_CHECKING:  # the trainer (with TensorBoard's and the progress bars' modules) loads when `train` is called
    from pyro_vae.trainer import TrainResult

log = logging.getLogger(__name__)


def _pixels(images: torch.Tensor, *, device: torch.device) -> torch.Tensor:
    """(n, 28, 28), (n, 784), (28, 28) or (784,) values in [0, 1] -> (n, 784) float32 in {0, 1} on `device`.

    The networks were trained on binarized images (x ~ Bernoulli(intensity)): images that are not
    already 0/1 are binarized once, with the fixed seed the test sets use, so a call is repeatable.
    """
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:  # raw IDX pixels, 0 to 255
        x = x.to(torch.float32).div_(255.0)
    x = x.to(torch.float32).reshape(-1, data.IMAGE_PIXELS) if x.numel() % data.IMAGE_PIXELS == 0 else None
    if x is None or not bool(((x >= 0) & (x <= 1)).all()):
        raise ConfigError(f"images must be (n, {data.IMAGE_SIZE}, {data.IMAGE_SIZE}) or (n, {data.IMAGE_PIXELS}) "
                          "values in [0, 1]")
    if not bool(((x == 0) | (x == 1)).all()):
        x = data.binarize_once(x.mul(255.0).round_().to(torch.uint8))
    return x.to(device)


def _square(x_probs: torch.Tensor) -> torch.Tensor:
    """(..., 784) -> (..., 28, 28), on the CPU."""
    return x_probs.reshape(*x_probs.shape[:-1], data.IMAGE_SIZE, data.IMAGE_SIZE).cpu()


@dataclass(frozen=True, eq=False)
class Model:
    """A trained VAE loaded from a checkpoint, with what it was trained with.

    Every method is deterministic given its `seed`, and leaves the global random generators as they were.
    """

    vae: VAE
    path: Path  # the checkpoint file
    epoch: int  # epochs it had trained
    data: dict[str, Any]  # what it was trained on (`data.record`); `data["name"]` is the data set
    train_config: TrainConfig
    pretrained: str | None = None  # a shipped model's name (`load_pretrained`); None: a checkpoint of a run

    @property
    def dataset(self) -> str:
        """The data set it was trained on: "mnist", "fashion-mnist" or "idx"."""
        return self.data["name"]

    @property
    def model_config(self) -> ModelConfig:
        return self.vae.config

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def named(self) -> str:
        """What the model is, in words: "checkpoint PATH", or "shipped model NAME"."""
        return f"shipped model {self.pretrained}" if self.pretrained else f"checkpoint {self.path}"

    def about(self) -> dict[str, Any]:
        """What a picture or a record says of this checkpoint: data set, file and epoch, and its
        recipe and prior where it has one or it is not the seed's; a shipped model by its name."""
        config = self.model_config
        shown = f"shipped model {self.pretrained}" if self.pretrained else str(self.path)
        return {"dataset": self.dataset, "checkpoint": shown, "epoch": self.epoch,
                **({"recipe": self.train_config.recipe} if self.train_config.recipe else {}),
                **({"prior": f"vamp {config.pseudo_inputs}"} if config.prior == Prior.vamp else {}),
                **({"labels": self.train_config.labels} if self.train_config.labels else {})}

    def paths(self, *, dataset: str | None = None, data_dir: str | Path | None = None,
              results_dir: str | Path | None = None, writes: bool = True) -> Paths:
        """The folders a command reading this model uses: `dataset` when given, else the one it was
        trained on (`data.reading`), and its run's results folder (from the checkpoint's folder; a
        shipped model's own, results/pretrained-NAME), claimed for this run when the command
        `writes` there (`metrics.claim`)."""
        chosen = options.dataset_names(dataset)
        name, folder = data.reading(self.data, dataset=chosen[0] if chosen else None,
                                    data_dir=None if data_dir is None else Path(data_dir))
        if results_dir is None and self.pretrained:
            results_dir = pretrained.results_dir(self.pretrained)
        paths = Paths(data_dir=folder, checkpoint_dir=self.path.parent, dataset=name,
                      results_dir=None if results_dir is None else Path(results_dir))
        if writes:
            claim(paths.results_dir, paths.checkpoint_dir)
        return paths

    @property
    def has_labels(self) -> bool:
        """Whether it was trained with labels (`train(labels=N)`), so that it can be asked for a class."""
        return has_labels(self.vae)

    def sample(self, n: int = GenerateConfig.n, *, digit: int | None = None, seed: int = GenerateConfig.seed
               ) -> torch.Tensor:
        """Decode `n` draws of z ~ p(z), the model's prior: (n, 28, 28) pixel probabilities (`generate
        --mode prior`'s grid); with `digit`, a labels model's draws of that class (`--mode label`'s grid).

        Raises:
            NoLabels: `digit` asked of a model trained without labels.
        """
        mode, digits = (Mode.prior, GenerateConfig.digits) if digit is None else (Mode.label, (int(digit),))
        with isolated_rng(seed, device=self.device):  # `generate`'s own draws, its ranges checked
            drawn = gen.samples(self.vae, mode, GenerateConfig(n=n, seed=seed, digits=digits))
        return _square(next(iter(drawn.values())))

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """q(y | x) of a labels model: images (m, 28, 28) in [0, 1] -> (m, classes) class probabilities.

        Raises:
            NoLabels: a model trained without labels.
        """
        vae = gen.require_labels(self.vae)
        return ev.classify(vae, _pixels(images, device=self.device)).cpu()

    def more_like(self, images: torch.Tensor, *, n: int = GenerateConfig.n, noise: float = GenerateConfig.noise,
                  seed: int = GenerateConfig.seed) -> torch.Tensor:
        """Encode each image and decode `n` draws of z ~ Normal(z_loc, exp(z_logstd + noise)).

        Args:
            images: (m, 28, 28) in [0, 1]; noise: added to the guide's log-std (the blog's 0.7; 1.4 varies more).
        Returns:
            (m, n, 28, 28) pixel probabilities (`generate --mode digit`'s grids).
        """
        config = GenerateConfig(n=n, noise=noise, seed=seed)  # first: a bad setting says so before the images
        x = _pixels(images, device=self.device)
        with isolated_rng(seed, device=self.device):  # `generate --mode digit`'s own draws
            drawn = gen.samples(self.vae, Mode.digit, config, x=x, names=[str(k) for k in range(len(x))])
        return _square(torch.stack(list(drawn.values())))

    @torch.no_grad()
    def pseudo_inputs(self) -> torch.Tensor | None:
        """The VampPrior's learned images u_k, (K, 28, 28) in [0, 1]; None for the standard prior."""
        u = self.vae.pseudo_inputs
        return None if u is None else _square(u())

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x)'s parameters: images (m, 28, 28) -> (z_loc, z_scale), each (m, z_dim)."""
        z_loc, z_logstd = self.vae.encode(_pixels(images, device=self.device))
        return z_loc.cpu(), z_logstd.exp().cpu()

    @torch.no_grad()
    def decode(self, z: torch.Tensor, *, digit: int | torch.Tensor | None = None) -> torch.Tensor:
        """p(x | z)'s pixel probabilities: z (m, z_dim) -> (m, 28, 28); a labels model decodes p(x | z, y)
        with y = `digit` (one class for all, or (m,) classes), which it needs.

        Raises:
            NoLabels: `digit` given to a model trained without labels.
        """
        z = torch.as_tensor(z, dtype=torch.float32, device=self.device)
        if z.shape[-1] != self.model_config.z_dim:
            raise ConfigError(f"z must be (m, {self.model_config.z_dim}) for this model, got {tuple(z.shape)}")
        if digit is None and not self.has_labels:
            return _square(self.vae.x_probs(z))
        vae = gen.require_labels(self.vae)
        if digit is None:
            raise ConfigError("a labels model decodes z with a class: pass digit= (a class number, or one per row)")
        y = torch.as_tensor(digit, dtype=torch.long, device=self.device).expand(z.shape[:-1])
        if not bool(((y >= 0) & (y < vae.config.classes)).all()):
            raise ConfigError(f"digit must be a class 0 to {vae.config.classes - 1}, got {digit}")
        return _square(vae.x_probs(z, y))

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Each image through the guide's mean and back: (m, 28, 28) -> (m, 28, 28) probabilities (a labels
        model decodes each at the class its classifier finds most probable, as it encoded it)."""
        z_loc, _ = self.encode(images)
        digit = self.classify(images).argmax(-1) if self.has_labels else None
        return self.decode(z_loc, digit=digit)

    def log_likelihood(self, images: torch.Tensor, *, particles: int = EvaluateConfig.particles,
                       seed: int = EvaluateConfig.seed, batch_size: int = EvaluateConfig.batch_size) -> torch.Tensor:
        """Importance-sampled log p(x) per image, in nats, with `particles` draws from the guide: (m,)."""
        x = _pixels(images, device=self.device)
        return ev.log_likelihoods(self.vae, x, particles=particles, seed=seed, batch_size=batch_size).cpu()


    def judge(self, *, samples: int = JudgeConfig.samples, noises: tuple[float, ...] = JudgeConfig.noises,
              seed: int = JudgeConfig.seed, dataset: str | None = None, data_dir: str | Path | None = None,
              progress: bool = False) -> list[dict[str, Any]]:
        """How its samples look to a classifier (`pyro_vae.judge`): one record per source, in order the
        prior's, "more like this" at each of `noises`, a labels model's samples of classes asked for
        (`label`, balanced over the classes), and real test images as the reference.

        Each record has `source`, `samples`, `judge_accuracy`, `legible`, `judge_score`, `frechet_distance`,
        `c2st_accuracy` and `c2st_se` (Bernoulli draws against binarized real images),
        `c2st_grey_accuracy` and `c2st_grey_se` (pixel probabilities against grey levels), `classes`,
        `class_distance`, and for "more like this" and `label` `target_share` (judged the exemplar's class, or
        the class asked for).
        The judge trains once per data set (minutes on a CPU) and is cached in the user cache folder.
        Nothing is written but that cache; the command line's `judge` also writes results/metrics/judge.json.
        """
        from pyro_vae import judge as jg

        config = JudgeConfig(samples=samples, noises=tuple(noises), seed=seed)
        paths = self.paths(dataset=dataset, data_dir=data_dir, writes=False)
        return jg.judge(self, config, paths=paths, progress=progress).records


def load(path: str | Path = Paths.checkpoint_dir, *, device: str | torch.device = "cpu", z_dim: int | None = None,
         hidden_dim: int | None = None) -> Model:
    """The model of a checkpoint file, or of a folder's furthest readable checkpoint.

    Args:
        device: "cpu", "cuda" or "auto"; z_dim, hidden_dim: checked against the checkpoint's when given.
    Raises:
        CheckpointNotFound: a folder with no checkpoint in it (its `folder` field says which).
        CheckpointError: a file that is missing, damaged or not a pyro-vae checkpoint.
    """
    path = Path(path)
    file, folder = (None, path) if path.is_dir() or not path.suffix else (path, path.parent)
    vae, file, state = checkpoint.read_vae(file, checkpoint_dir=folder, device=_device(device), z_dim=z_dim,
                                           hidden_dim=hidden_dim)
    return Model(vae=vae, path=file, epoch=int(state["epoch"]), data=state["dataset"],
                 train_config=checkpoint.configs_of(state)[1])


def load_pretrained(name: str, *, device: str | torch.device = "cpu", z_dim: int | None = None,
                    hidden_dim: int | None = None) -> Model:
    """A model shipped with pyro-vae (`pyro-vae pretrained` lists them, docs/pretrained.md says how
    each was trained): the same `Model` as `load` gives, from package data, with no data set needed.

    Args:
        device: "cpu", "cuda" or "auto"; z_dim, hidden_dim: checked against the model's when given.
    Raises:
        UnknownPretrained: no shipped model of that name (the message lists those there are).
        DamagedCheckpoint: its file does not match the manifest's sha256 (edited or damaged).
    """
    state, record = pretrained.weights(name)
    path = pretrained.FOLDER / record["file"]
    vae = build(checkpoint.model_config_of(record, path=path, z_dim=z_dim, hidden_dim=hidden_dim))  # VAE or M2
    vae.load_state_dict(state)
    return Model(vae=vae.to(_device(device)).eval(), path=path,
                 epoch=int(record["epoch"]), data={"name": record["dataset"]["name"]},
                 train_config=checkpoint.configs_of(record)[1], pretrained=name)


def _device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else resolve_device(str(device))


# (classes is no setting: labels=N sets it from the data.)
_SETTINGS = frozenset(f.name for config in (TrainConfig, ModelConfig) for f in fields(config)) - {"epochs", "classes"}


def train(*, epochs: int = TrainConfig.epochs, checkpoint_dir: str | Path = Paths.checkpoint_dir,
          results_dir: str | Path | None = None, dataset: str = Paths.dataset, data_dir: str | Path | None = None,
          device: str | torch.device = "auto", fresh: bool = False, progress: bool = False,
          on_evaluation: Callable[[int, dict[str, float]], None] | None = None, recipe: str | None = None,
          threads: str | int | None = None, **settings: Any) -> TrainResult:
    """Train a VAE, resuming from `checkpoint_dir`'s furthest checkpoint by itself.

    Args:
        epochs: train up to this epoch (a resumed run continues to it).
        results_dir: where metrics/history.csv goes [default: from `checkpoint_dir`, see `config.results_dir_for`].
        dataset, data_dir: what to train on [default: MNIST in data/mnist, or $PYRO_VAE_DATA].
        fresh: archive the folder's checkpoints and start from epoch 1.
        threads: torch's CPU threads, "auto" or a number [default: $PYRO_VAE_THREADS, else auto: the
            CPUs this process may use, shared with other pyro-vae processes computing, adapted to load
            while training]. The figures do not depend on it.
        recipe: a named bundle of settings (`config.RECIPES`: "seed", "iwae", "vamp"); the settings
            given beside it override its values. It is recorded, and counts as given on resume.
        settings: any `TrainConfig` or `ModelConfig` field (lr=3e-4, z_dim=20, objective="iwae", ...).
            The settings given are checked against a resumed run's checkpoint; the others are its own.
            tensorboard=True also logs each epoch to TensorBoard, in `results_dir/tensorboard/`
            (needs the tensorboard extra; a resumed run logs only when asked again).
    Returns:
        TrainResult. An interrupt (Ctrl-C, or a notebook's stop button) ends the current step, saves the
        position and raises `Interrupted`; calling `train` again continues from that batch.
    """
    unknown = sorted(set(settings) - _SETTINGS)
    if unknown:
        raise ConfigError(f"train() got unknown settings {', '.join(unknown)}; it takes {', '.join(sorted(_SETTINGS))}")
    given, settings = settings, with_recipe(recipe, settings)
    if settings.get("prior") != Prior.vamp:
        if "pseudo_inputs" in given:
            raise ConfigError("⟨pseudo_inputs⟩ sizes the VampPrior; add ⟨prior⟩ vamp, or drop it")
        settings.pop("pseudo_inputs", None)  # the vamp recipe's K, with the prior overridden to standard
    if "tensorboard_images_every" in settings and not settings.get("tensorboard"):
        raise ConfigError("⟨tensorboard_images_every⟩ does nothing without ⟨tensorboard⟩; add ⟨tensorboard⟩, or drop it")
    model_config, train_config = split_settings({**settings, "epochs": epochs})
    paths = Paths(data_dir=None if data_dir is None else Path(data_dir), checkpoint_dir=Path(checkpoint_dir),
                  results_dir=results_dir_for(Path(checkpoint_dir)) if results_dir is None else Path(results_dir),
                  dataset=dataset)
    # Said before the first epoch: a results folder derived from the checkpoint folder is not one the user named.
    log.info("Checkpoints go to %s, results (metrics/history.csv, pictures) to %s", paths.checkpoint_dir,
             paths.results_dir)
    from pyro_vae import trainer

    return trainer.train(train_config, model_config=model_config, paths=paths, device=_device(device), fresh=fresh,
                         progress=progress, explicit=frozenset(settings), threads=threads,
                         on_evaluation=on_evaluation)


def load_dataset(dataset: str = Paths.dataset, *, split: str = "train", data_dir: str | Path | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """A data set's images and labels ("mnist", "fashion-mnist", or "idx": your own files in `data_dir`),
    fetched first where it can be and a file is missing.

    Returns:
        images (n, 28, 28) float32 intensities in [0, 1]; labels (n,) int64.
    """
    images, labels = data.ensure_split(_folder(dataset, data_dir), split, dataset=dataset)
    return images.reshape(-1, data.IMAGE_SIZE, data.IMAGE_SIZE).to(torch.float32).div_(255.0), labels


def download(dataset: str = Paths.dataset, *, data_dir: str | Path | None = None) -> list[Path]:
    """Fetch the data set's files missing from its folder, verifying each; returns the files written."""
    return fetch.download(_folder(dataset, data_dir), dataset=dataset)


def _folder(dataset: str, data_dir: str | Path | None) -> Path:
    """`data_dir`, else the data set's default folder (data/<dataset>; $PYRO_VAE_DATA for MNIST)."""
    return Paths(dataset=dataset, data_dir=None if data_dir is None else Path(data_dir)).data_dir
