"""PNG grids."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from pyro_vae.images import Caption, grid, save_grid


def test_grid_places_images_row_by_row():
    x = torch.zeros(6, 784)
    for k in range(6):
        x[k, k] = 1.0  # image k has one white pixel at (0, k)
    g = grid(x)  # 6 images -> 3 columns, 2 rows
    assert g.shape == (56, 84) and g.dtype == np.uint8
    for k in range(6):
        row, col = divmod(k, 3)
        assert g[row * 28, col * 28 + k] == 255
    assert g.sum() == 6 * 255


def test_hundred_images_make_ten_by_ten_and_scale(tmp_path):
    path = save_grid(torch.rand(100, 784), tmp_path / "out" / "g.png", scale=2)
    with Image.open(path) as image:
        assert image.size == (560, 560) and image.mode == "L"
        pixels = np.asarray(image)
    assert (pixels[::2, ::2] == pixels[1::2, 1::2]).all()  # each pixel drawn 2x2
    assert [p.name for p in path.parent.iterdir()] == ["g.png"]


def test_probabilities_map_to_grey_levels():
    g = grid(torch.tensor([[0.0, 0.5, 1.0] + [0.0] * 781]))
    assert g[0, :3].tolist() == [0, 128, 255]


def test_a_caption_band_above_the_grid_and_the_settings_in_the_metadata(tmp_path):
    caption = Caption("100 samples from the prior", {"checkpoint": "ck/last.pt", "epoch": 7, "mode": "prior",
                                                      "seed": 3, "dataset": "mnist"})
    path = save_grid(torch.rand(100, 784), tmp_path / "g.png", scale=2, caption=caption)
    with Image.open(path) as image:
        assert image.width == 560 and image.height > 560  # the grid, pixels 2x2, and a band above it
        band = np.asarray(image)[: image.height - 560]
        assert len(np.unique(band)) > 2  # text drawn in it
        assert image.text["epoch"] == "7" and image.text["mode"] == "prior" and image.text["seed"] == "3"
        assert image.text["dataset"] == "mnist" and image.text["Title"] == "100 samples from the prior"
        assert image.text["Description"].startswith("100 samples from the prior | dataset mnist, epoch 7")


def test_scale_one_is_the_raw_grid_with_its_caption_in_the_metadata(tmp_path):
    x = torch.rand(100, 784)
    path = save_grid(x, tmp_path / "g.png", scale=1, caption=Caption("t", {"noise": 1.4}), row_labels=["a"] * 10)
    with Image.open(path) as image:
        assert image.size == (280, 280) and (np.asarray(image) == grid(x)).all()
        assert image.text["noise"] == "1.4"


def test_row_labels_sit_left_of_the_grid_and_end_labels_below(tmp_path):
    x = torch.rand(20, 784)
    labelled = save_grid(x, tmp_path / "rows.png", scale=2, cols=10, row_labels=["original", "reconstruction"])
    with Image.open(labelled) as image:
        assert image.width > 560 and image.height == 112
        pixels = np.asarray(image)
        doubled = np.repeat(np.repeat(grid(x, cols=10), 2, axis=0), 2, axis=1)
        assert (pixels[:, -560:] == doubled).all()  # the grid, right of the labels
        assert len(np.unique(pixels[:, : image.width - 560])) > 2  # the labels' text
    strip = save_grid(x[:5], tmp_path / "strip.png", scale=2, cols=5, end_labels=("test image 3", "test image 2"))
    with Image.open(strip) as image:
        assert image.width >= 280 and image.height > 56
        assert len(np.unique(np.asarray(image)[56:])) > 2


def test_a_narrow_grid_keeps_a_readable_caption(tmp_path):
    path = save_grid(torch.rand(4, 784), tmp_path / "g.png", scale=2,
                     caption=Caption("4 draws", {"checkpoint": "/a/very/long/folder/" * 5 + "last.pt"}))
    with Image.open(path) as image:
        assert image.width > 2 * 56  # wider than its 2x2 cells, for the caption
        assert image.text["checkpoint"].endswith("/last.pt") and image.text["checkpoint"].startswith("/a/very")
