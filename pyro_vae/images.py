"""Tensors of pixel probabilities to PNG grids (and a GIF), each with a caption saying what made it.

At `scale` 2 and up a picture carries its caption in a band above the grid, and its labels (rows
of reconstructions, ends of an interpolation) beside or below it; at scale 1 it is the seed's raw
grid, pixel for pixel. Every PNG keeps the caption's settings in its text metadata either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from pyro_vae.data import IMAGE_SIZE
from pyro_vae.fsutil import atomic_write

SOFTWARE = "pyro-vae"
_BAND, _INK = 48, 235  # the caption band's grey and its text's: apart from the black grid and its digits
_LABEL_INK = 160  # row and end labels, quieter than the caption
_MIN_WIDTH = 320  # pixels: room for a caption of a few words a line


@dataclass(frozen=True)
class Caption:
    """What made a picture: a title, and the settings that produced it (dataset, checkpoint, epoch,
    mode, noise, seed, ...; `pyro_vae.Model.about` gives the first three), drawn above the grid and
    kept in the PNG's metadata."""

    title: str
    settings: dict[str, Any] = field(default_factory=dict)

    def items(self) -> dict[str, str]:
        """Every setting as text, the data set first and the checkpoint's (long) path last; None values left out."""
        every = {"dataset": self.settings.get("dataset"),
                 **{k: v for k, v in self.settings.items() if k not in ("dataset", "checkpoint")},
                 "checkpoint": self.settings.get("checkpoint")}
        return {key: _text(value) for key, value in every.items() if value is not None}

    def text(self) -> str:
        """One line: "title | dataset mnist, epoch 100, mode digit, noise 0.7, seed 0"."""
        return f"{self.title} | " + ", ".join(f"{key} {value}" for key, value in self.items().items())

    def metadata(self) -> PngInfo:
        """PNG text chunks: Title, Description (the one line), Software, and each setting by name."""
        info = PngInfo()
        info.add_text("Title", self.title)
        info.add_text("Description", self.text())
        info.add_text("Software", SOFTWARE)
        for key, value in self.items().items():
            info.add_text(key, value)
        return info


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def grid(x_probs: torch.Tensor, *, cols: int | None = None) -> np.ndarray:
    """Tile images into a grid, row by row.

    Args:
        x_probs: (n, 784) float in [0, 1], or (rows, cols, 784) laid out as it is.
        cols: images per row; default ceil(sqrt(n)), so 100 images make 10x10.
    Returns:
        (rows * 28, cols * 28) uint8, white digits on black as in MNIST; empty cells are black.
    """
    if x_probs.dim() == 3 and x_probs.shape[-1] == IMAGE_SIZE * IMAGE_SIZE:
        cols, x_probs = cols or x_probs.shape[1], x_probs.reshape(-1, x_probs.shape[-1])
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


def _font(scale: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's own font (no font files needed), sized with the picture: 14 px at scale 2."""
    try:
        return ImageFont.load_default(size=min(6 * scale + 2, 24))
    except (TypeError, ImportError, OSError):  # a Pillow without FreeType: its small bitmap font
        return ImageFont.load_default()


def _wrap(parts: list[str], font: Any, width: float, *, sep: str = " ") -> list[str]:
    """`parts` joined by `sep` in lines no wider than `width`; a part wider than that alone (a long
    checkpoint path) loses its start to an ellipsis (the metadata keeps it whole)."""
    lines: list[str] = []
    for part in parts:
        if lines and font.getlength(f"{lines[-1]}{sep}{part}") <= width:
            lines[-1] += f"{sep}{part}"
            continue
        while font.getlength(part) > width and len(part) > 2:
            part = "\u2026" + part[2:]
        lines.append(part)
    return lines


def _framed(grid_image: Image.Image, *, scale: int, caption: Caption | None, row_labels: list[str] | None = None,
            end_labels: tuple[str, str] | None = None, row_height: int = IMAGE_SIZE) -> Image.Image:
    """The grid with its caption in a band above, row labels in a column to its left and end
    labels in a band below; the grid alone at scale 1."""
    if scale == 1 or (caption is None and not row_labels and not end_labels):
        return grid_image
    font = _font(scale)
    pad, line = 2 * scale, (font.size + scale) if hasattr(font, "size") else 12
    left = int(max(font.getlength(label) for label in row_labels)) + 2 * pad if row_labels else 0
    # A narrow grid (a few images) sits in a canvas wide enough for a readable caption.
    inner = max(grid_image.width, _MIN_WIDTH if caption or end_labels else 0)
    width = left + inner - 2 * pad
    lines = [*_wrap(caption.title.split(), font, width),
             *_wrap([f"{k} {v}" for k, v in caption.items().items()], font, width, sep=", ")] if caption else []
    top = len(lines) * line + 2 * pad if lines else 0
    bottom = line + 2 * pad if end_labels else 0
    canvas = Image.new(grid_image.mode, (left + inner, top + grid_image.height + bottom),
                       (_BAND,) * 3 if grid_image.mode == "RGB" else _BAND)
    x0 = left + (inner - grid_image.width) // 2  # the grid's left edge
    canvas.paste(grid_image, (x0, top))
    draw = ImageDraw.Draw(canvas)
    ink = lambda grey: (grey,) * 3 if grid_image.mode == "RGB" else grey  # noqa: E731
    for k, text in enumerate(lines):
        draw.text((pad, pad + k * line), text, fill=ink(_INK), font=font)
    for k, label in enumerate(row_labels or []):
        middle = top + (k + 0.5) * row_height * scale
        draw.text((pad, middle - line / 2), label, fill=ink(_LABEL_INK), font=font)
    if end_labels:
        y = top + grid_image.height + pad
        # Under the strip's ends; a strip too short for both goes out to the canvas's edges.
        fits = sum(font.getlength(label) for label in end_labels) + 4 * pad <= grid_image.width
        start, end = (x0, x0 + grid_image.width) if fits else (0, canvas.width)
        draw.text((start + pad, y), end_labels[0], fill=ink(_LABEL_INK), font=font)
        draw.text((end - font.getlength(end_labels[1]) - pad, y), end_labels[1], fill=ink(_LABEL_INK), font=font)
    return canvas


def _save_png(image: Image.Image, path: Path, caption: Caption | None) -> Path:
    path = Path(path)
    with atomic_write(path) as handle:
        image.save(handle, format="PNG", pnginfo=caption.metadata() if caption else None)
    return path


def save_grid(x_probs: torch.Tensor, path: Path, *, scale: int = 1, cols: int | None = None,
              caption: Caption | None = None, row_labels: list[str] | None = None,
              end_labels: tuple[str, str] | None = None) -> Path:
    """Write `grid(x_probs)` as a greyscale PNG, each pixel `scale` x `scale`, atomically.

    Args:
        x_probs: (n, 784) float in [0, 1].
        caption: drawn above the grid (scale 2 and up) and kept in the metadata (always).
        row_labels: one per row of the grid, drawn to its left (e.g. "original", "reconstruction").
        end_labels: drawn below the first and the last cell of a strip (an interpolation's ends).
    """
    image = _framed(_image(grid(x_probs, cols=cols), scale), scale=scale, caption=caption, row_labels=row_labels,
                    end_labels=end_labels)
    return _save_png(image, path, caption)


def save_animation(x_probs: torch.Tensor, path: Path, *, scale: int = 1, frame_ms: int = 120,
                   caption: Caption | None = None) -> Path:
    """Write the images as the frames of a looping GIF (there and back), atomically; the caption's
    title is drawn above every frame and the whole caption kept as the GIF's comment.

    Args:
        x_probs: (frames, 784) float in [0, 1].
    """
    title = Caption(caption.title) if caption else None
    frames = [_framed(_image(grid(x[None], cols=1), scale), scale=max(2, scale // 4), caption=title)
              for x in x_probs]
    frames = frames + frames[-2:0:-1]  # back again, so the loop has no jump
    path = Path(path)
    with atomic_write(path) as handle:
        frames[0].save(handle, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0,
                       comment=caption.text() if caption else "")
    return path


def save_marked_grid(x_probs: torch.Tensor, marked: list[bool], path: Path, *, scale: int = 1,
                     cols: int | None = None, caption: Caption | None = None) -> Path:
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
    return _save_png(_framed(_image(rgb, scale), scale=scale, caption=caption), path, caption)
