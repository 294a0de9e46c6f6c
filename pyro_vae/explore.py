"""The explorer's Python side: a trained model (the VAE, or the labels model M2) exported for the page
in `pyro_vae/page/` (weights, test images, the latent views of their codes from `latent.py`), written
to a folder for any static host, or served from memory on 127.0.0.1.

The networks run in the page, in plain JavaScript over the exported float32 weights (`page/nets.js`
mirrors `model.py` and `m2.py`); the server only hands out a fixed list of files and never writes anything.
"""

from __future__ import annotations

import dataclasses
import errno
import http.server
import io
import json
import logging
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyro_vae.config import (EXPLORE_HOST, EXPLORE_PORT, INTERPOLATE_FROM, INTERPOLATE_TO, SEED_NOISE, WIDE_NOISE,
                             QuizConfig)
from pyro_vae.data import IMAGE_SIZE, binarize_once
from pyro_vae.errors import PyroVAEError
from pyro_vae.fsutil import atomic_write
from pyro_vae.latent import ACTIVE_THRESHOLD, Classes, guide_params, latent_views, usage
from pyro_vae.m2 import M2
from pyro_vae.model import VAE
from pyro_vae.priors import in_words
from pyro_vae.runtime import StopRequest

log = logging.getLogger(__name__)

FORMAT = 2  # of manifest.json; the page refuses another
NOISE_MARKS = (SEED_NOISE, WIDE_NOISE)  # the blog's two spreads, marked on every noise slider
QUIZ_THRESHOLD = 0.5  # the blog's game draws black-and-white data black and white, real and generated alike
MAX_NOISE_SLIDER = 2.0

# pyro_vae/page/, shipped as package data: the page, app.js that mounts one module a panel, and the
# modules they share (the networks, the model's files, painting, random numbers, elements, "more of this").
PAGE_FILES = ("index.html", "style.css", "boot.js", "app.js", "nets.js", "data.js", "paint.js", "random.js", "dom.js",
              "grid.js", *(f"panels/{panel}.js" for panel in ("more", "draw", "map", "dims", "walk", "quiz")))
MANIFEST, WEIGHTS, TEST, MAP = "manifest.json", "weights.bin", "test.bin", "map.bin"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".js": "text/javascript; charset=utf-8", ".json": "application/json",
                 ".bin": "application/octet-stream"}
# A request is a line and a few headers: anything longer is refused before it is read further.
MAX_REQUEST_LINE = 2048
MAX_HEADERS = 32
REQUEST_TIMEOUT_S = 10.0  # a client that stops sending does not hold a thread


@dataclasses.dataclass(frozen=True)
class Words:
    """How the page speaks of one data set's images, so that no sentence calls a garment a digit."""

    item: str = "image"  # one image, as a thing: "digit", "garment"
    items: str = "images"
    an_item: str = "an image"  # with its article
    made: str = "drawn from your data"  # how the real ones came to be, after "real test images, ..."
    real: str = "real"  # what the quiz calls a real one, against the machine's: "human" for handwriting


# Each registered data set's words; a user's own IDX data is spoken of as `Words()`'s plain images.
WORDS: dict[str, Words] = {
    "mnist": Words("digit", "digits", "a digit", "written by people", "human"),
    "fashion-mnist": Words("garment", "garments", "a garment", "photographed"),
}


def _packed_bits(binarized: torch.Tensor) -> np.ndarray:
    """(n, 784) in {0, 1} -> (n, 98) uint8, eight pixels a byte, first pixel in the high bit."""
    return np.packbits(binarized.numpy().astype(np.uint8), axis=1)


def bundle(vae: VAE | M2, images: torch.Tensor, labels: torch.Tensor, *, checkpoint: Path, epoch: int,
           classes: Classes = Classes(), judged: dict[str, Any] | None = None) -> dict[str, bytes]:
    """Every file of the page for this model, by name: the page, `manifest.json` and three binaries.

    Args:
        images: the test split, (n, 784) uint8 intensities; labels: (n,) int in 0..9.
    A labels model (M2) exports as the VAE does: its codes are `M2.encode`'s, q(z | x, y) at the
    classifier's class, and the page runs its three networks (`checkpoint.classes` says which
    family: 0 for the VAE, else the number of classes).

    Returns:
        name -> content. `weights.bin` is every layer of `vae.state_dict()` as float32
        little-endian, in state-dict order; `test.bin` the images (uint8), the binarized images the
        guide sees (`data.binarize_once`, bit-packed) and the labels; `map.bin` the views of the
        test codes (`latent_views`). `manifest.json` gives each array's file, byte offset, dtype and
        shape, the words the page uses for the data set's images (`WORDS`), and each latent dimension's KL
        and activity over the test set with the active ones (`latent.kl_per_dimension`,
        `latent.active_units`), and under "judge" how a classifier did at the quiz's game on this
        checkpoint (`judge.page_figure`; null when `judge` has not measured it).
    """
    binarized = binarize_once(images)
    z_loc, z_scale = guide_params(vae, binarized)
    views = latent_views(z_loc, labels)
    used = usage(vae, z_loc, z_scale)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "checkpoint": {"path": str(checkpoint), "epoch": epoch, "z_dim": vae.config.z_dim,
                       "hidden_dim": vae.config.hidden_dim, "classes": vae.config.classes},
        "dataset": {"name": classes.title, "classes": list(classes.names), "image_size": IMAGE_SIZE,
                    "exemplars": list(classes.exemplars),
                    "words": dataclasses.asdict(WORDS.get(classes.dataset, Words()))},
        "defaults": {"noise_marks": list(NOISE_MARKS), "max_noise": MAX_NOISE_SLIDER,
                     "interpolate": _interpolate_ends(classes), "quiz_noise": QuizConfig.noise,
                     "quiz_real_fraction": QuizConfig.real_fraction,
                     # None: real and generated cells both as grey levels (intensities and probabilities)
                     "quiz_threshold": QUIZ_THRESHOLD if classes.black_and_white else None},
        "latent": {"kl": used.kl.tolist(), "activity": used.activity.tolist(), "active": used.active.tolist(),
                   "threshold": ACTIVE_THRESHOLD, "prior": vae.config.prior,
                   "about_prior": in_words(vae.config.prior, vae.config.pseudo_inputs)},
        "judge": judged,
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
        files[name] = page.joinpath(*name.split("/")).read_bytes()
    return files


def _interpolate_ends(classes: Classes) -> list[int]:
    """The test images the Walk panel's line joins at first: the exemplars of the first two classes,
    so that it crosses classes on every data set (on MNIST test images 3 and 2, a 0 and a 1, which
    `interpolate` joins)."""
    ends = list(classes.exemplars[:2])
    return ends if len(ends) == 2 and min(ends) >= 0 else [INTERPOLATE_FROM, INTERPOLATE_TO]


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


def serve(server: _Server, *, ready: Callable[[], None] = lambda: None) -> None:
    """Call `ready` (which tells the user the URL), then serve until Ctrl-C or SIGTERM, then close
    the socket; returns normally either way, also when the signal comes during `ready`."""
    # The handler runs in this thread, inside serve_forever, which `shutdown` waits for: another
    # thread asks for it. Asked before serve_forever starts (during `ready`), it returns at once.
    request = StopRequest(on_stop=lambda: threading.Thread(target=server.shutdown, daemon=True).start())
    with request.installed():
        try:
            ready()
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:  # a second Ctrl-C
            pass
        finally:
            server.server_close()
