"""Tensors of pixel probabilities to PNG grids."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pyro_vae.data import IMAGE_SIZE
from pyro_vae.fsutil import atomic_write


def grid(x_probs: torch.Tensor, *, cols: int | None = None) -> np.ndarray:
    """Tile images into a grid, row by row.

    Args:
        x_probs: (n, 784) float in [0, 1].
        cols: images per row; default ceil(sqrt(n)), so 100 images make 10x10.
    Returns:
        (rows * 28, cols * 28) uint8, white digits on black as in MNIST; empty cells are black.
    """
    n = x_probs.shape[0]
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    pixels = (x_probs.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    canvas = np.zeros((rows * cols, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    canvas[:n] = pixels.reshape(n, IMAGE_SIZE, IMAGE_SIZE)
    canvas = canvas.reshape(rows, cols, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 1, 3)
    return canvas.reshape(rows * IMAGE_SIZE, cols * IMAGE_SIZE)


def _image(pixels: np.ndarray, scale: int) -> Image.Image:
    image = Image.fromarray(pixels)  # (h, w) uint8: greyscale; (h, w, 3): RGB
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    return image


def save_grid(x_probs: torch.Tensor, path: Path, *, scale: int = 1, cols: int | None = None) -> Path:
    """Write `grid(x_probs)` as a greyscale PNG, each pixel `scale` x `scale`, atomically.

    Args:
        x_probs: (n, 784) float in [0, 1].
    """
    path = Path(path)
    with atomic_write(path) as handle:
        _image(grid(x_probs, cols=cols), scale).save(handle, format="PNG")
    return path


def save_animation(x_probs: torch.Tensor, path: Path, *, scale: int = 1, frame_ms: int = 120) -> Path:
    """Write the images as the frames of a looping GIF (there and back), atomically.

    Args:
        x_probs: (frames, 784) float in [0, 1].
    """
    frames = [_image(grid(x[None], cols=1), scale) for x in x_probs]
    frames = frames + frames[-2:0:-1]  # back again, so the loop has no jump
    path = Path(path)
    with atomic_write(path) as handle:
        frames[0].save(handle, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return path


def save_marked_grid(x_probs: torch.Tensor, marked: list[bool], path: Path, *, scale: int = 1,
                     cols: int | None = None) -> Path:
    """`save_grid`, with a red frame around every marked cell (RGB PNG), atomically.

    Args:
        x_probs: (n, 784) float in [0, 1]; marked: n flags.
    """
    grey = grid(x_probs, cols=cols)
    cols = cols or math.ceil(math.sqrt(len(x_probs)))
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    for k, flag in enumerate(marked):
        if flag:
            top, left = (k // cols) * IMAGE_SIZE, (k % cols) * IMAGE_SIZE
            cell = rgb[top : top + IMAGE_SIZE, left : left + IMAGE_SIZE]
            for edge in (cell[0], cell[-1], cell[:, 0], cell[:, -1]):
                edge[:] = (255, 0, 0)
    path = Path(path)
    with atomic_write(path) as handle:
        _image(rgb, scale).save(handle, format="PNG")
    return path
