"""The explorer: a trained VAE exported for the page in `pyro_vae/page/` (weights, test images, the
map of their codes), written to a folder for any static host, or served from memory on 127.0.0.1.

The networks run in the page, in plain JavaScript over the exported float32 weights (`page/nets.js`
mirrors `model.py`); the server only hands out a fixed list of files and never writes anything.
"""

from __future__ import annotations

import errno
import http.server
import io
import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyro_vae.config import EXPLORE_HOST, EXPLORE_PORT, INTERPOLATE_FROM, INTERPOLATE_TO, QuizConfig
from pyro_vae import data
from pyro_vae.data import IMAGE_SIZE, binarize_once
from pyro_vae.errors import PyroVAEError
from pyro_vae.fsutil import atomic_write
from pyro_vae.model import VAE

log = logging.getLogger(__name__)

FORMAT = 1  # of manifest.json; the page refuses another
# The data set's name and class names, in one place (the data-set registry will supply them).


@dataclass(frozen=True)
class Classes:
    """What the page and the map say of the data: its title, the class names in label order, and
    the test image `generate --mode digit` encodes for each class (data.py's registry)."""

    title: str = "MNIST"
    names: tuple[str, ...] = tuple(str(d) for d in range(10))
    exemplars: tuple[int, ...] = data.DIGIT_EXEMPLARS

    @classmethod
    def of(cls, dataset: str, data_dir: Path | None = None) -> Classes:
        return cls(title=data.get(dataset).title, names=tuple(data.class_names(dataset, data_dir)),
                   exemplars=tuple(data.exemplars(dataset, data_dir)))
NOISE_MARKS = (0.7, 1.4)  # the seed's two spreads, marked on every noise slider
MAX_NOISE_SLIDER = 2.0
WALK_DIRECTIONS = 6  # principal directions exported for the Walk panel (fewer when z is smaller)
LATENT_MAP = "latent_map.png"  # under the results folder

PAGE_FILES = ("index.html", "style.css", "nets.js", "app.js")  # pyro_vae/page/, shipped as package data
MANIFEST, WEIGHTS, TEST, MAP = "manifest.json", "weights.bin", "test.bin", "map.bin"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".js": "text/javascript; charset=utf-8", ".json": "application/json",
                 ".bin": "application/octet-stream"}
# A request is a line and a few headers: anything longer is refused before it is read further.
MAX_REQUEST_LINE = 2048
MAX_HEADERS = 32
REQUEST_TIMEOUT_S = 10.0  # a client that stops sending does not hold a thread


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
def test_codes(vae: VAE, binarized: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """The guide's means of the test images: binarized (n, 784) -> z_loc (n, z_dim) float32 on the CPU."""
    device = next(vae.parameters()).device
    return torch.cat([vae.encoder(binarized[i : i + batch_size].to(device))[0].float().cpu()
                      for i in range(0, len(binarized), batch_size)])


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


def _packed_bits(binarized: torch.Tensor) -> np.ndarray:
    """(n, 784) in {0, 1} -> (n, 98) uint8, eight pixels a byte, first pixel in the high bit."""
    return np.packbits(binarized.numpy().astype(np.uint8), axis=1)


def bundle(vae: VAE, images: torch.Tensor, labels: torch.Tensor, *, checkpoint: Path, epoch: int,
           classes: Classes = Classes()) -> dict[str, bytes]:
    """Every file of the page for this model, by name: the page, `manifest.json` and three binaries.

    Args:
        images: the test split, (n, 784) uint8 intensities; labels: (n,) int in 0..9.
    Returns:
        name -> content. `weights.bin` is every layer of `vae.state_dict()` as float32
        little-endian, in state-dict order; `test.bin` the images (uint8), the binarized images the
        guide sees (`data.binarize_once`, bit-packed) and the labels; `map.bin` the views of the
        test codes (`latent_views`). `manifest.json` gives each array's file, byte offset, dtype and shape.
    """
    binarized = binarize_once(images)
    views = latent_views(test_codes(vae, binarized), labels)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "checkpoint": {"path": str(checkpoint), "epoch": epoch, "z_dim": vae.config.z_dim,
                       "hidden_dim": vae.config.hidden_dim},
        "dataset": {"name": classes.title, "classes": list(classes.names), "image_size": IMAGE_SIZE,
                    "exemplars": list(classes.exemplars)},
        "defaults": {"noise_marks": list(NOISE_MARKS), "max_noise": MAX_NOISE_SLIDER,
                     "interpolate": [INTERPOLATE_FROM, INTERPOLATE_TO], "quiz_noise": QuizConfig.noise,
                     "quiz_real_fraction": QuizConfig.real_fraction},
        "map": {"planes": {plane.name: plane.label for plane in views.planes}, "variance_share": views.share},
        "layers": {}, "arrays": {},
    }
    files: dict[str, bytes] = {}
    for file, arrays, section in (
        (WEIGHTS, {name: t.detach().cpu() for name, t in vae.state_dict().items()}, "layers"),
        (TEST, {"images": images.numpy().astype(np.uint8), "bits": _packed_bits(binarized),
                "labels": labels.numpy().astype(np.uint8)}, "arrays"),
        (MAP, {"mean": views.mean, "directions": views.directions, "variance": views.variance,
               **{f"{plane.name}_{part}": getattr(plane, part) for plane in views.planes
                  for part in ("coords", "lift")}}, "arrays"),
    ):
        buffer = io.BytesIO()
        for name, array in arrays.items():
            array = array.float().cpu().numpy() if isinstance(array, torch.Tensor) else array  # the page's float32
            array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
            manifest[section][name] = {"file": file, "offset": buffer.tell(), "dtype": array.dtype.name,
                                       "shape": list(array.shape)}
            buffer.write(array.tobytes())
            buffer.write(b"\0" * (-buffer.tell() % 4))  # keep every float32 view aligned
        files[file] = buffer.getvalue()
    files[MANIFEST] = json.dumps(manifest, indent=1).encode()
    page = resources.files("pyro_vae") / "page"
    for name in PAGE_FILES:
        files[name] = (page / name).read_bytes()
    return files


def read_array(folder: Path, manifest: dict[str, Any], entry: dict[str, Any]) -> np.ndarray:
    """One array of an exported folder, as the page reads it: `entry` is a manifest item."""
    raw = (Path(folder) / entry["file"]).read_bytes()
    dtype = np.dtype(entry["dtype"]).newbyteorder("<")
    count = int(np.prod(entry["shape"]))
    return np.frombuffer(raw, dtype=dtype, count=count, offset=entry["offset"]).reshape(entry["shape"])


def export(files: dict[str, bytes], folder: Path) -> list[Path]:
    """Write `bundle`'s files into `folder` (each atomically); any static web server can serve it."""
    return [_write(Path(folder) / name, content) for name, content in files.items()]


def _write(path: Path, content: bytes) -> Path:
    with atomic_write(path) as handle:
        handle.write(content)
    return path


# ---------------------------------------------------------------------------------------------
# Serving


class _Handler(http.server.BaseHTTPRequestHandler):
    """GET and HEAD of the bundle's names only; no path from a request ever reaches the file system."""

    files: dict[str, bytes] = {}
    timeout = REQUEST_TIMEOUT_S
    server_version = "pyro-vae"
    sys_version = ""

    def parse_request(self) -> bool:
        # http.server has read at most 64 KiB a line and 100 headers; this server wants far less.
        if not super().parse_request():
            return False
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self.send_error(414)
            return False
        if len(self.headers) > MAX_HEADERS:
            self.send_error(431)
            return False
        if int(self.headers.get("Content-Length") or 0) > 0:  # nothing here takes a body
            self.send_error(413)
            return False
        return True

    def _content(self) -> tuple[bytes, str] | None:
        name = self.path.split("?", 1)[0].split("#", 1)[0]
        name = "index.html" if name == "/" else name[1:] if name.startswith("/") else ""
        if name not in self.files:
            return None
        return self.files[name], CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream")

    def _answer(self, body: bool) -> None:
        found = self._content()
        if found is None:
            self.send_error(404)
            return
        content, kind = found
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if body:
            self.wfile.write(content)

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self._answer(True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s %s", self.address_string(), format % args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never keeps the process alive
    allow_reuse_address = True


def open_server(files: dict[str, bytes], *, host: str = EXPLORE_HOST, port: int = EXPLORE_PORT) -> _Server:
    """Bind (but do not yet serve) a server for `files`; port 0 picks a free one.

    Raises:
        PyroVAEError: the port is taken or the address cannot be used, in one line.
    """
    handler = type("Handler", (_Handler,), {"files": dict(files)})
    try:
        return _Server((host, port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PyroVAEError(f"port {port} on {host} is already in use (another explore?); pass ⟨port⟩ with "
                               "another number, e.g. ⟨port⟩ 0 for any free one") from None
        raise PyroVAEError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pass another ⟨host⟩ or "
                           "⟨port⟩") from None


def url_of(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"


class Stopped(Exception):
    """SIGTERM arrived: stop serving as Ctrl-C does."""


@contextmanager
def _sigterm_stops() -> Iterator[None]:
    if not hasattr(signal, "SIGTERM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise Stopped

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(server: _Server, *, ready: Callable[[], None] = lambda: None) -> None:
    """Call `ready` (which tells the user the URL), then serve until Ctrl-C or SIGTERM, then close
    the socket; returns normally either way, also when the signal comes during `ready`."""
    with _sigterm_stops():
        try:
            ready()
            server.serve_forever(poll_interval=0.2)
        except (KeyboardInterrupt, Stopped):
            pass
        finally:
            server.server_close()


# ---------------------------------------------------------------------------------------------
# The map as a picture


def latent_map(vae: VAE, images: torch.Tensor, labels: torch.Tensor, path: Path, *, classes: Classes = Classes(),
               about: str = "") -> Path:
    """Draw the test codes on both planes of `latent_views`, coloured by class, to a PNG at `path`.

    Args:
        images: the test split, (n, 784) uint8; labels: (n,) int class numbers.
        about: the checkpoint in words (its epoch and path), for the caption.
    """
    codes = test_codes(vae, binarize_once(images))
    return save_latent_map(latent_views(codes, labels), labels, path, classes=classes, about=about)


def save_latent_map(views: Map, labels: torch.Tensor, path: Path, *, classes: Classes = Classes(),
                    about: str = "") -> Path:
    """The map as a PNG at `path` (atomically): each plane's coords coloured by `labels`, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(views.planes), figsize=(7 * len(views.planes), 7))
    colours = plt.get_cmap("tab10")
    axis_names = {"lda": ("LDA direction 1", "LDA direction 2"),
                  "pca": (f"PCA direction 1 ({100 * views.share[0]:.0f}% of the codes' variance)",
                          f"PCA direction 2 ({100 * views.share[-1 if len(views.share) < 2 else 1]:.0f}%)")}
    for ax, plane in zip(axes, views.planes):
        xy = plane.coords.numpy()
        for k, name in enumerate(classes.names):
            chosen = labels.numpy() == k
            ax.scatter(xy[chosen, 0], xy[chosen, 1], s=3, color=colours(k), label=name, alpha=0.6, linewidths=0)
        ax.set(xlabel=axis_names[plane.name][0], ylabel=axis_names[plane.name][1], title=plane.label)
        ax.legend(title="class", markerscale=4, loc="best", fontsize=9)
        ax.grid(alpha=0.2)
    fig.suptitle(f"The guide's means (z_loc) of {len(labels)} {classes.title} test images, coloured by class"
                 + (f"\n{about}" if about else ""))
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return _write(Path(path), buffer.getvalue())
