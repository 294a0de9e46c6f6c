"""How far the shipped unsupervised VAE's codes take a classifier of N labelled images (Kingma et
al.'s M1 features): `python bench/labels_m1_probe.py [--labels 100] [--model mnist]`
(real MNIST from $PYRO_VAE_DATA or the default data folder).

The labelled images are the ones `train --labels N` would choose (`data.choose_labelled`, seed 0);
a multinomial logistic regression (L-BFGS, an L2 penalty per setting) and a 1-nearest-neighbour
rule read the guide's means z_loc of the training images, and are scored on the test images'.
One route to the Labels issue's accuracy targets, measured against M2 in docs/results.md.
"""

from __future__ import annotations

import argparse
import json

import torch

import pyro_vae
from pyro_vae import data
from pyro_vae.config import default_data_dir


def codes(model: pyro_vae.Model, images: torch.Tensor) -> torch.Tensor:
    """z_loc of (n, 784) uint8 images, binarized once as the commands do -> (n, z_dim)."""
    with torch.no_grad():
        return torch.cat([model.vae.encode(data.binarize_once(part))[0] for part in images.split(1000)])


def logistic(x: torch.Tensor, y: torch.Tensor, *, classes: int, penalty: float) -> torch.Tensor:
    """Fitted (z_dim + 1, classes) weights of a softmax regression with an L2 penalty."""
    weights = torch.zeros(x.shape[1] + 1, classes, requires_grad=True)
    features = torch.cat([x, torch.ones(len(x), 1)], 1)
    optimizer = torch.optim.LBFGS([weights], max_iter=500)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(features @ weights, y) + penalty * weights[:-1].square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--model", default="mnist", help="the shipped model whose codes are read")
    args = parser.parse_args()
    model = pyro_vae.load_pretrained(args.model)
    train_images, train_labels = data.load_split(default_data_dir(), "train")
    test_images, test_labels = data.load_split(default_data_dir(), "test")
    names = [str(k) for k in range(10)]
    chosen = data.choose_labelled(train_labels, args.labels, names=names, seed=0)
    x, y = codes(model, train_images[chosen]), train_labels[chosen]
    test = codes(model, test_images)
    report = {"model": args.model, "epoch": model.epoch, "labels": args.labels, "test_images": len(test)}
    for penalty in (0.01, 0.1, 1.0):
        weights = logistic(x, y, classes=len(names), penalty=penalty)
        scores = torch.cat([test, torch.ones(len(test), 1)], 1) @ weights
        report[f"logistic_l2_{penalty:g}"] = round(100 * (scores.argmax(-1) == test_labels).double().mean().item(), 2)
    nearest = y[torch.cdist(test, x).argmin(1)]
    report["nearest_neighbour"] = round(100 * (nearest == test_labels).double().mean().item(), 2)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
