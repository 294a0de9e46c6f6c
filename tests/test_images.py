"""PNG grids."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from pyro_vae.images import grid, save_grid


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
