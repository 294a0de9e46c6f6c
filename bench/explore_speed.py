"""The explorer's speed in a real browser: `make bench-explore` (or `python bench/explore_speed.py`).

Starts `python cli.py explore` on a checkpoint (the furthest in checkpoints/ by default), opens it
in Debian's chromium through Playwright, and times what the issue sets targets for on this
machine: a slider move redrawing one digit (< 30 ms), one redrawing a 10x10 grid (< 150 ms), and
the page usable after opening (< 2 s). A move is timed from the slider's input event to the end of
its redraw (the work on the page's one thread), and again to the next animation frame (when the
browser can show it). With --screenshots DIR it also plays each panel a little and photographs it
(DIR/explore_<panel>.png; --name explore_fashion for the Fashion-MNIST model's).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

_SPEC = importlib.util.spec_from_file_location("bench_browser", Path(__file__).parent / "browser.py")
browser = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(browser)

TARGETS_MS = {"one digit (walk slider)": 30, "one digit (interpolation slider)": 30, "10x10 grid (noise slider)": 150,
              "page usable after opening": 2000}
PANELS = ("more", "draw", "map", "dims", "walk", "quiz")
# What the screenshots draw on the 280x280 pad, by what the page asks for: a 2, or a pair of trousers.
STROKES = {
    "a digit": [[(70, 95), (110, 55), (170, 50), (205, 90), (190, 140), (130, 185), (80, 230), (150, 228), (215, 230)]],
    "a garment": [[(100, 40), (180, 40)], [(105, 45), (92, 250)], [(175, 45), (188, 250)], [(125, 45), (110, 245)],
                  [(155, 45), (170, 245)], [(115, 60), (165, 60)]],
}

# Move a slider through `values` in turn; per move, the ms to the end of the input handler's redraw
# and to the next animation frame after it.
_MOVES = """async ([id, values]) => {
  const slider = document.getElementById(id), work = [], frame = [];
  for (const value of values) {
    await new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)));  // start on a quiet frame
    slider.value = String(value);
    const start = performance.now();
    slider.dispatchEvent(new Event("input", { bubbles: true }));
    work.push(performance.now() - start);
    await new Promise((done) => requestAnimationFrame(done));
    frame.push(performance.now() - start);
  }
  return [work, frame];
}"""


def _open(page: Page, url: str) -> float:
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    return page.evaluate("window.exploreReadyMs")  # since navigation started


def measure(page: Page, url: str, *, moves: int, opens: int) -> dict[str, dict[str, float]]:
    figures = {}
    ready = [_open(page, url) for _ in range(opens)]
    figures["page usable after opening"] = {"median_ms": statistics.median(ready), "max_ms": max(ready)}
    sweep = [round(-2.5 + 5 * (k % 11) / 10, 2) for k in range(moves)]
    for name, slider, values in (("one digit (walk slider)", "walk-direction-0", sweep),
                                 ("one digit (interpolation slider)", "walk-t", [abs(v) / 2.5 for v in sweep]),
                                 ("10x10 grid (noise slider)", "more-noise", [0.2 + abs(v) / 1.8 for v in sweep])):
        work, frame = page.evaluate(_MOVES, [slider, values])
        figures[name] = {"median_ms": statistics.median(work), "p95_ms": sorted(work)[int(0.95 * (len(work) - 1))],
                         "to_next_frame_median_ms": statistics.median(frame)}
    return figures


def screenshots(page: Page, folder: Path, *, name: str = "explore") -> list[Path]:
    """Play each panel a little, as a learner would, and photograph it: folder/<name>_<panel>.png."""
    folder.mkdir(parents=True, exist_ok=True)
    if page.locator("#more-noise").is_enabled():  # a labels model asked for a class draws from p(z), without it
        page.locator("#more-noise").fill("0.7")  # the blog's spread, where the timing left it elsewhere
    page.locator("#more-classes button").nth(3).click()  # class 3: a 3 on MNIST, a Dress on Fashion-MNIST
    pad = page.locator("#draw-pad")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    item = page.locator("#draw [data-word=an_item]").first.inner_text()  # the data set's words, as the page says them
    for stroke in STROKES.get(item, STROKES["a digit"]):
        page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
        page.mouse.up()
    page.wait_for_timeout(200)
    canvas = page.locator("#map-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + 0.3 * box["width"], box["y"] + 0.25 * box["height"])
    page.mouse.move(box["x"] + 0.62 * box["width"], box["y"] + 0.55 * box["height"])
    page.locator("input[name=walk-along][value=active]").check()  # the dimensions with the most KL
    page.locator("#walk-direction-0").fill("1.5")
    page.locator("#walk-t").fill("0.6")
    cells = page.locator("#quiz-grid .quiz-cell")
    for k in (1, 4, 9, 14, 20, 27, 33):
        cells.nth(k).click()
    page.locator("#quiz-check").click()
    page.mouse.move(0, 0)  # no hover highlight in the pictures
    written = []
    for panel in PANELS:
        path = folder / f"{name}_{panel}.png"
        page.locator(f"#{panel}").screenshot(path=str(path))
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint file [default: the furthest in --checkpoint-dir]")
    parser.add_argument("--checkpoint-dir", default="checkpoints")
    parser.add_argument("--data-dir", help="the data set's folder [default: the checkpoint's data set's]")
    parser.add_argument("--moves", type=int, default=40, help="slider moves timed per slider")
    parser.add_argument("--opens", type=int, default=3, help="times the page is opened afresh")
    parser.add_argument("--screenshots", type=Path, help="also photograph every panel into this folder")
    parser.add_argument("--name", default="explore", help="the photographs' names: NAME_<panel>.png")
    parser.add_argument("--docs", type=Path, help="and copy the photographs into this folder (docs/)")
    args = parser.parse_args()
    options = ["--checkpoint-dir", args.checkpoint_dir]
    options += ["--checkpoint", args.checkpoint] if args.checkpoint else []
    options += ["--data-dir", args.data_dir] if args.data_dir else []
    started = time.perf_counter()
    process, url = browser.start_explore(browser.explore_command(*options), cwd=browser.ROOT)
    to_url_s = time.perf_counter() - started  # Python, torch and the export, before the page is opened
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(**browser.launch_args())
            page = chromium.new_page(viewport={"width": 1280, "height": 900})
            version = chromium.version
            figures = measure(page, url, moves=args.moves, opens=args.opens)
            shots = screenshots(page, args.screenshots, name=args.name) if args.screenshots else []
            chromium.close()
    finally:
        browser.stop(process)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"explorer in chromium {version} on {platform.machine()}, {cores} cores, checkpoint {args.checkpoint or 'furthest'}")
    print(f"{'':34} {'median ms':>10} {'p95/max ms':>11} {'to frame':>9} {'target':>7}")
    for name, row in figures.items():
        spread = row.get("p95_ms", row.get("max_ms"))
        frame = row.get("to_next_frame_median_ms")
        print(f"{name:34} {row['median_ms']:10.1f} {spread:11.1f} {'' if frame is None else f'{frame:9.1f}':>9} "
              f"{'< ' + str(TARGETS_MS[name]):>7}")
    print(f"(the command printed its URL {to_url_s:.1f} s after it started: Python, torch and the export)")
    for path in shots:
        print(f"wrote {path}")
        if args.docs:
            args.docs.mkdir(parents=True, exist_ok=True)
            print(f"wrote {shutil.copy(path, args.docs / path.name)}")
    print(json.dumps({"chromium": version, "command_to_url_s": to_url_s, "figures": figures}))


if __name__ == "__main__":
    sys.exit(main())
