"""The explorer in a real browser (Debian's chromium through Playwright) against a real `explore`
process serving a small trained model. Marked slow: `make test-slow` (CI runs it).

A browser that cannot start fails these tests with Playwright's reason; they never skip.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

_SPEC = importlib.util.spec_from_file_location("bench_browser", Path(__file__).parent.parent / "bench" / "browser.py")
bench_browser = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench_browser)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's browser, pointed at the system's chromium (Playwright's downloads are never used)."""
    return {**browser_type_launch_args, **bench_browser.launch_args()}


@pytest.fixture(scope="session")
def base_url():
    """No base URL: pages are opened by their full address. (Replacing pytest-base-url's own fixture,
    which pytest 9 warns about, a session fixture written as a method, and warnings are errors here.)"""
    return None


@pytest.fixture
def explore_model(cli_invoke, tiny_options, mnist_dir, fashion_dir, python_command, tmp_path):
    """`explore_model(dataset="mnist", labels=0)`: the URL of a real explore process serving a model
    trained 40 epochs at lr 0.01 (seconds) on the synthetic `dataset` (mnist or fashion-mnist), with
    `labels` labelled images a labels model: enough to draw its bars. Every process is stopped, and
    must exit cleanly, after the test."""
    processes = []

    def start(dataset: str = "mnist", *, labels: int = 0) -> str:
        folder = tmp_path / "checkpoints" / (f"{dataset}-labels" if labels else dataset)
        result = cli_invoke("train", "--epochs", "40", "--save-every", "40", "--lr", "0.01", "--dataset", dataset,
                            "--checkpoint-dir", folder, "--labels", str(labels), *tiny_options)
        assert result.exit_code == 0, result.output
        argv = ", ".join(repr(a) for a in ("cli.py", *bench_browser.EXPLORE, "--checkpoint-dir", str(folder)))
        process, url = bench_browser.start_explore(python_command(f"import cli; sys.argv = [{argv}]; cli.main()"),
                                                   cwd=tmp_path)
        processes.append(process)
        return url

    yield start
    assert [bench_browser.stop(process) for process in processes] == [0] * len(processes)


@pytest.fixture
def explorer(explore_model):
    """The URL of a real explore process serving a small model of the synthetic MNIST."""
    return explore_model("mnist")


def watch(page, origin: str) -> list[str]:
    """What went wrong on `page` from now on: console errors, page errors, failed or refused requests,
    and any request to another host than `origin` (the page must work with no network at all)."""
    problems = []
    page.on("request", lambda r: None if r.url.startswith((origin, "data:")) else problems.append(f"off-host: {r.url}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
    page.on("response", lambda r: problems.append(f"{r.status} for {r.url}") if r.status >= 400 else None)
    return problems


def open_ready(page, url: str) -> list[str]:
    """Open the page at `url` and wait until it is usable; returns `watch`'s list of problems."""
    problems = watch(page, url)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    return problems


@pytest.fixture
def opened(page, explorer):
    """The page on the MNIST model, open and ready; after the test, nothing may have gone wrong (see `watch`)."""
    problems = open_ready(page, explorer)
    yield page
    assert problems == []


@pytest.fixture(params=["mnist", "fashion-mnist"])
def opened_on(request, page, explore_model):
    """The page on a model of each data set in turn: (page, data set); nothing may go wrong (see `watch`)."""
    problems = open_ready(page, explore_model(request.param))
    yield page, request.param
    assert problems == []


def pixels(page, canvas_id: str) -> str:
    """The canvas's pixels, as a data URL to compare."""
    return page.evaluate("id => document.getElementById(id).toDataURL()", canvas_id)


def brightest(page, canvas_id: str) -> int:
    return page.evaluate("""id => { const c = document.getElementById(id);
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let most = 0;
        for (let i = 0; i < px.length; i++) if (i % 4 < 3 && px[i] > most) most = px[i];
        return most; }""",
                         canvas_id)


def test_the_grid_follows_the_noise_slider_while_dragged(opened):
    page = opened
    slider = page.locator("#more-noise")
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    before = pixels(page, "more-grid")
    assert brightest(page, "more-grid") > 0
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 0.35 * box["width"], y)  # the thumb, at 0.7 of 0..2
    page.mouse.down()
    page.mouse.move(box["x"] + 0.6 * box["width"], y, steps=5)
    during = pixels(page, "more-grid")
    assert during != before  # redrawn while the button is still held
    page.mouse.move(box["x"] + 0.95 * box["width"], y, steps=5)
    page.mouse.up()
    assert float(page.locator("#more-noise-value").inner_text()) > 1.5
    assert pixels(page, "more-grid") not in (before, during)
    page.locator("#more-classes button", has_text="8").click()
    assert "labelled 8" in page.locator("#more-caption").inner_text()


def test_the_page_draws_the_pixels_the_product_computes(opened, tmp_path, mnist_dir):
    """The reconstruction the page shows for a test image is the one `reconstruct` writes, pixel for pixel."""
    import numpy as np
    import torch

    from pyro_vae import checkpoint, data
    from pyro_vae.data import DIGIT_EXEMPLARS

    page = opened
    page.locator("#more-classes button", has_text="8").click()
    shown = np.array(page.evaluate("""() => { const c = document.getElementById('more-mean');
        return Array.from(c.getContext('2d').getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0)); }"""))
    vae, _ = checkpoint.load_vae(None, checkpoint_dir=tmp_path / "checkpoints" / "mnist", device=torch.device("cpu"))
    x, _ = data.test_images(mnist_dir, indices=[DIGIT_EXEMPLARS[8]])
    with torch.no_grad():
        expected = (vae.x_probs(vae.encoder(x)[0]).clamp(0, 1) * 255).round().numpy().ravel()  # as images.grid
    assert expected.max() - expected.min() > 100  # a digit, not a blank that any drawing would match
    assert np.abs(shown - expected).max() <= 1, np.abs(shown - expected).max()  # rounding at .5 may differ


def stroke(page, *, after_first=lambda: None) -> None:
    """Draw one stroke down the pad; `after_first()` runs when half of it is drawn (the button still held)."""
    pad = page.locator("#draw-pad")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    page.mouse.move(box["x"] + 140, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + 150, box["y"] + 150, steps=6)
    page.wait_for_function("() => document.getElementById('draw-recon').width === 28")
    after_first()
    page.mouse.move(box["x"] + 120, box["y"] + 250, steps=6)
    page.mouse.up()
    page.wait_for_timeout(100)  # the last update runs on the next animation frame


def test_a_stroke_gets_a_reconstruction_as_it_is_drawn(opened):
    page = opened
    assert brightest(page, "draw-recon") == 0
    mid_stroke = []
    stroke(page, after_first=lambda: mid_stroke.append(pixels(page, "draw-recon")))
    assert brightest(page, "draw-input") == 255 and brightest(page, "draw-recon") > 0
    assert brightest(page, "draw-more") > 0 and pixels(page, "draw-recon") != mid_stroke[0]
    page.locator("#draw-clear").click()
    assert brightest(page, "draw-recon") == 0
    # The VAE knows no classes: the buttons pick test images, and writing a style as every class needs labels.
    assert "pick a test image of each class" in page.locator("#more-buttons-note").inner_text()
    assert "--labels 100" in page.locator("#draw-style-about").inner_text()
    assert not page.locator("#draw-style").is_visible()


def test_a_labels_model_is_asked_for_a_class_and_writes_a_drawn_style_as_every_class(page, explore_model):
    problems = open_ready(page, explore_model("mnist", labels=20))
    assert "a labels model over 10 classes" in page.locator("#model-info").inner_text()
    assert "ask the model for a class" in page.locator("#more-buttons-note").inner_text()
    page.locator("#more-classes button", has_text="8").click()
    assert "decoded as class 8" in page.locator("#more-caption").inner_text()
    assert "each decoded as class 8" in page.locator("#more-grid-caption").inner_text()
    assert page.locator("#more-noise").is_disabled() and brightest(page, "more-grid") > 0  # p(z) has no noise to widen
    eight = pixels(page, "more-grid")
    page.locator("#more-redraw").click()
    redrawn = pixels(page, "more-grid")
    assert redrawn != eight  # new draws of z
    page.locator("#more-classes button", has_text="2").click()
    assert pixels(page, "more-grid") != redrawn  # the same draws of z, another class
    page.locator("#more-index").fill("5")
    page.locator("#more-index").dispatch_event("change")
    assert re.search(r"test image #5 \(labelled \w+; read as \w+, \d+%\)", page.locator("#more-caption").inner_text())
    assert page.locator("#more-noise").is_enabled()
    stroke(page)
    assert re.fullmatch(r"read as \w+, \d+%: its style decoded as 0, 1, 2, 3, 4, 5, 6, 7, 8, 9",
                        page.locator("#draw-style-caption").inner_text())
    assert page.evaluate("document.getElementById('draw-style').width") == 10 * 28 and brightest(page, "draw-style") > 0
    assert problems == []


def test_the_map_shows_images_and_decodes_where_it_is_clicked(opened):
    page = opened
    canvas = page.locator("#map-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    # Hover over a drawn point: the page knows where it put them.
    x, y = page.evaluate("""() => { const c = document.getElementById('map-canvas'), d = c.getContext('2d');
        const px = d.getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < px.length; i += 4) if (px[i] + px[i + 1] + px[i + 2] > 150) return [(i / 4) % c.width, Math.floor(i / 4 / c.width)];
        return null; }""")
    page.mouse.move(box["x"] + x * box["width"] / 560 + 0.5, box["y"] + y * box["height"] / 560 + 0.5)
    assert re.search(r"test image #\d+, labelled \d", page.locator("#map-hover-caption").inner_text())
    assert brightest(page, "map-hover") > 0
    page.mouse.click(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.6)
    assert "decoded at" in page.locator("#map-decoded-caption").inner_text() and brightest(page, "map-decoded") > 0
    first = pixels(page, "map-decoded")
    page.locator("#map-plane input[value=pca]").check()
    page.mouse.click(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.1)
    assert pixels(page, "map-decoded") != first


def test_the_walk_decodes_live(opened):
    page = opened
    before = pixels(page, "walk-digit")
    page.locator("#walk-direction-0").focus()
    for _ in range(40):
        page.keyboard.press("ArrowRight")
    assert pixels(page, "walk-digit") != before
    line = pixels(page, "walk-line-digit")
    page.locator("#walk-t").fill("0.9")
    assert pixels(page, "walk-line-digit") != line and brightest(page, "walk-strip") > 0


def test_one_quiz_round_to_its_score(opened):
    page = opened
    cells = page.locator("#quiz-grid .quiz-cell")
    assert cells.count() == 36
    for k in (0, 5, 17):
        cells.nth(k).click()
    assert page.locator("#quiz-grid .quiz-cell[aria-pressed=true]").count() == 3
    page.locator("#quiz-check").click()
    score = page.locator("#quiz-score").inner_text()
    match = re.search(r"Score: (\d+) of 36 right\. You found (\d+) of the 18 machine digits and took (\d+) human", score)
    assert match, score
    right, found, wrong_humans = map(int, match.groups())
    assert found + wrong_humans == 3 and right == 36 - 18 + found - wrong_humans  # unmarked humans are right
    assert page.locator("#quiz-grid .machine").count() == 18 and page.locator("#quiz-grid .human").count() == 18
    page.locator("#quiz-real").fill("1")
    page.locator("#quiz-new").click()
    assert page.locator("#quiz-score").inner_text() == ""
    page.locator("#quiz-check").click()
    assert "Score: 36 of 36 right. You found 0 of the 0 machine" in page.locator("#quiz-score").inner_text()


def test_the_exported_folder_works_from_a_plain_static_server(page, cli_invoke, tiny_options, mnist_dir, tmp_path):
    import functools
    import http.server
    import threading

    assert cli_invoke("train", "--epochs", "2", *tiny_options).exit_code == 0
    assert cli_invoke("explore", "--export", tmp_path / "site").exit_code == 0
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        problems = watch(page, url)
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        assert "epoch 2" in page.locator("#model-info").inner_text()
        assert page.locator("#quiz-grid .quiz-cell").count() == 36
        # Before `judge` has scored the checkpoint the quiz says how to see a machine's turn.
        assert "Run judge on this checkpoint" in page.locator("#quiz-machine").inner_text()
        assert problems == []
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# ---------------------------------------------------------------------------------------------
# On every data set: its own words, the latent dimensions, a fair quiz and readable answers


def manifest_of(page) -> dict:
    return page.evaluate("async () => (await fetch('manifest.json')).json()")


def test_the_page_speaks_of_the_data_sets_own_images(opened_on):
    page, dataset = opened_on
    text = page.locator("body").inner_text()
    if dataset == "fashion-mnist":
        assert "digit" not in text.lower(), [line for line in text.splitlines() if "digit" in line.lower()]
        for words in ("More of this garment", "real test garments, photographed", "Draw a garment", "Real or machine?"):
            assert words in text, words
    else:
        for words in ("More of this digit", "real test digits, written by people", "Draw a digit", "Human or machine?"):
            assert words in text, words
    # The blog's noise values are the blog's, not a random seed.
    assert "the blog's 0.7, 1.4" in text and "seed" not in text.lower()


def test_the_latent_dimensions_show_kl_sorted_and_the_active_ones(opened_on):
    page, _ = opened_on
    latent = manifest_of(page)["latent"]
    bars = page.locator("#dims-bars rect[data-dimension]")
    assert bars.count() == len(latent["kl"])
    drawn = page.evaluate("""() => Array.from(document.querySelectorAll('#dims-bars rect[data-dimension]'),
        (r) => [Number(r.dataset.dimension), r.getBBox().height, r.classList.contains('active'),
                getComputedStyle(r).fill])""")
    order = [u for u, *_ in drawn]
    assert sorted(order) == list(range(len(latent["kl"])))
    assert [latent["kl"][u] for u in order] == sorted(latent["kl"], reverse=True)  # the most KL first
    heights = [h for _, h, *_ in drawn]
    assert heights == sorted(heights, reverse=True) and heights[0] > 50
    assert [marked for _, _, marked, _ in drawn] == [latent["active"][u] for u in order]
    # Marked by a shape as well as a colour: active bars filled, inactive ones hollow (white inside).
    assert all((fill == "rgb(255, 255, 255)") != marked for _, _, marked, fill in drawn)
    count = sum(latent["active"])
    assert page.locator("#dims-count").inner_text().startswith(f"{count} of {len(latent['kl'])} dimensions active")


def test_the_walk_moves_along_the_active_dimensions(opened_on):
    page, _ = opened_on
    latent = manifest_of(page)["latent"]
    active = sorted((u for u, a in enumerate(latent["active"]) if a), key=lambda u: -latent["kl"][u])
    assert active, "the tiny model should use at least one dimension"
    page.locator("input[name=walk-along][value=active]").check()
    names = page.locator("#walk-sliders label span").all_inner_texts()
    assert names == [f"z[{u}]" for u in active[:len(names)]] and names
    before = pixels(page, "walk-digit")
    page.locator("#walk-direction-0").fill("2.5")
    assert pixels(page, "walk-digit") != before
    assert page.locator("#walk-direction-0 + output").inner_text() == "+2.5 sd"
    page.locator("input[name=walk-along][value=principal]").check()
    assert page.locator("#walk-sliders label span").first.inner_text() == "direction 1"


QUIZ_CELLS = """() => Array.from(document.querySelectorAll('#quiz-grid .quiz-cell canvas'), (c) => {
    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const values = new Set();
    for (let i = 0; i < px.length; i += 4) values.add(px[i]);
    return [...values].sort((a, b) => a - b); })"""


def test_the_quiz_draws_real_and_generated_cells_alike_and_none_blank(opened_on):
    page, dataset = opened_on
    for _ in range(3):  # three rounds
        cells = page.evaluate(QUIZ_CELLS)
        assert len(cells) == 36
        assert all(len(values) > 1 for values in cells), "a cell came out all one value"
        page.locator("#quiz-check").click()
        machine = page.evaluate("() => Array.from(document.querySelectorAll('#quiz-grid .quiz-cell'), "
                                "(c) => c.classList.contains('machine'))")
        assert 0 < sum(machine) < 36
        for values, made in zip(cells, machine):
            if dataset == "mnist":  # the blog's thresholded game, for real and generated alike
                assert values == [0, 255]
            else:  # grey levels, real and generated alike: intensities and probabilities
                assert len(values) > 8, (made, values)
        page.locator("#quiz-new").click()
    explained = page.locator("#quiz .explain").first.inner_text()
    assert ("thresholded to black and white" in explained) == (dataset == "mnist")
    assert ("as grey levels" in explained) == (dataset != "mnist")


OKABE_ITO_BLUE, OKABE_ITO_VERMILLION = "rgb(0, 114, 178)", "rgb(213, 94, 0)"


def test_the_quiz_answers_are_shapes_beside_the_image_and_your_marks_stay(opened_on):
    page, _ = opened_on
    cells = page.locator("#quiz-grid .quiz-cell")
    marked = (0, 5, 17, 30)
    for k in marked:
        cells.nth(k).click()
    frame = "(c) => { const s = getComputedStyle(c); return [parseFloat(s.borderTopWidth), s.borderTopColor]; }"
    before = [cells.nth(k).evaluate(frame) for k in range(36)]
    assert all(before[k][0] >= 3 and before[k][1] != "rgba(0, 0, 0, 0)" for k in marked)
    assert all(before[k][1] == "rgba(0, 0, 0, 0)" for k in range(36) if k not in marked)
    page.locator("#quiz-check").click()
    assert [cells.nth(k).evaluate(frame) for k in range(36)] == before  # your marks, still there
    for k in range(36):
        cell = cells.nth(k)
        human = "human" in cell.get_attribute("class")
        right = (k in marked) != human
        answer = cell.locator(".quiz-answer")
        assert answer.locator(".badge.right" if right else ".badge.wrong").count() == 1
        # a shape as well as a colour: a disc with a tick, or a square with a cross
        shape = answer.locator("circle" if right else "rect")
        assert shape.count() == 1
        colour = shape.evaluate("(s) => getComputedStyle(s).fill" if right else "(s) => getComputedStyle(s).stroke")
        assert colour == (OKABE_ITO_BLUE if right else OKABE_ITO_VERMILLION)
        assert answer.inner_text().strip() in ("machine", "human", "real")
        # beside the image, not over its strokes: the badge lies wholly below the picture
        image, mark = cell.locator("canvas").bounding_box(), answer.locator(".badge").bounding_box()
        assert mark["y"] >= image["y"] + image["height"], (image, mark)


def test_the_class_buttons_are_not_cramped(page, explore_model):
    problems = open_ready(page, explore_model("fashion-mnist"))
    boxes = page.evaluate("""() => Array.from(document.querySelectorAll('#more-classes button'), (b) => {
        const r = b.getBoundingClientRect(), s = getComputedStyle(b);
        return { text: b.innerText, x: r.x, y: r.y, w: r.width, h: r.height, fits: b.scrollWidth <= b.clientWidth,
                 pad: parseFloat(s.paddingLeft), line: parseFloat(s.lineHeight) }; })""")
    assert [b["text"] for b in boxes][:1] == ["T-shirt/top"] and "Ankle boot" in [b["text"] for b in boxes]
    for b in boxes:
        assert b["fits"] and b["pad"] >= 8, b  # room on either side of the name
        assert b["h"] < 2 * b["line"], b  # each name on one line
    for a, b in zip(boxes, boxes[1:]):
        if abs(a["y"] - b["y"]) < 1:  # neighbours on a row keep a gap
            assert b["x"] - (a["x"] + a["w"]) >= 4, (a, b)
    assert problems == []


def test_the_exported_page_opened_from_disk_says_how_to_serve_it(page, cli_invoke, tiny_options, mnist_dir, tmp_path):
    assert cli_invoke("train", "--epochs", "1", *tiny_options).exit_code == 0
    site = tmp_path / "site"
    assert cli_invoke("explore", "--export", site).exit_code == 0
    page.goto((site / "index.html").as_uri())
    failure = page.locator("#failure")
    failure.wait_for(state="visible", timeout=30_000)
    assert failure.inner_text() == (f"This page must be served: python -m http.server -d {site}, "
                                    "then open http://localhost:8000")
    text = page.locator("body").inner_text()
    assert "Loading" not in text and page.locator("main").is_hidden()
