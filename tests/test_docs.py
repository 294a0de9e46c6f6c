"""The README and docs/: every relative link and picture resolves (a `#heading` too), every docs page
is reachable from the README, and the README stays a front page with the two set-up commands on top."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250  # issue 22: a front page (nanoGPT's is about 230)
SETUP_COMMANDS, SETUP_WITHIN = ("make test", "make run"), 40

_FENCED = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[`~]*[ \t]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1", re.S)
# [text](target) and ![alt](target), with an optional "title"; <img src=...> and <a href=...>.
_MARKDOWN_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_LINK = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.I)
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _prose(text: str) -> str:
    """The text without code blocks and code spans, where brackets are code, not links."""
    return _CODE_SPAN.sub("", _FENCED.sub("", text))


def links(text: str) -> list[str]:
    prose = _prose(text)
    return [m[1] for m in (*_MARKDOWN_LINK.finditer(prose), *_HTML_LINK.finditer(prose))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text as rendered, lower case, without punctuation, spaces as '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    kept = (c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return "".join(kept).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for match in _HEADING.finditer(_FENCED.sub("", text)):
        base = slug(match[1])
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(page: Path, *, root: Path = ROOT) -> list[str]:
    """`page`'s relative links that do not resolve: a missing file, one outside `root`, or a
    `#fragment` that is no heading of its Markdown target."""
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in links(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
            continue  # another site (https:, mailto:): not this repository's to check
        path, _, fragment = target.partition("#")
        file = (page.parent / unquote(path)).resolve() if path else page
        if not path and not fragment:
            broken.append(f"{target!r}: empty link")
        elif not file.is_relative_to(root.resolve()):
            broken.append(f"{target!r}: outside the repository")
        elif not file.exists():
            broken.append(f"{target!r}: no such file")
        elif fragment and file.suffix == ".md" and unquote(fragment).lower() not in anchors(file.read_text("utf-8")):
            broken.append(f"{target!r}: no heading #{fragment} in {file.name}")
    return broken


def test_every_relative_link_and_picture_resolves():
    assert len(pages()) >= 9, "README.md and the docs pages (cli, checkpoints, datasets, results, ...)"
    broken = [f"{page.relative_to(ROOT).as_posix()}: {found}" for page in pages() for found in broken_links(page)]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_docs_page_is_reachable_from_the_readme():
    reached, todo = set(), [README.resolve()]
    while todo:
        page = todo.pop()
        if page in reached:
            continue
        reached.add(page)
        for target in links(page.read_text(encoding="utf-8")):
            path = target.partition("#")[0]
            file = (page.parent / unquote(path)).resolve()
            if path.endswith(".md") and file.is_file():
                todo.append(file)
    assert sorted(p.name for p in DOCS.glob("*.md") if p.resolve() not in reached) == []


def test_readme_is_a_front_page_with_the_setup_commands_on_top():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
    top = "\n".join(lines[:SETUP_WITHIN])
    for command in SETUP_COMMANDS:
        assert re.search(rf"^{command}\b", top, re.M), f"{command!r} is not among README.md's first {SETUP_WITHIN} lines"


def test_the_checker_finds_each_kind_of_broken_link(tmp_path):
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "a.png").write_bytes(b"")
    (repo / "docs" / "other.md").write_text("# Other page\n\n## The `train` command\n\n## Twice\n\n## Twice\n")
    (tmp_path / "outside.md").touch()
    page = repo / "README.md"
    page.write_text(
        "# Top\n\n"
        "![fine](docs/a.png) [fine](docs/other.md#the-train-command) [fine](docs/other.md#twice-1) [fine](#top)\n"
        "[fine](https://pyro.ai) <img src=\"docs/a.png\">\n"
        "`[code](missing.md)` and\n```\n[code](missing.md)\n```\n"
        "![gone](docs/b.png) [gone](docs/missing.md) [no heading](docs/other.md#twice-2) [here](#nowhere)\n"
        "<img src=\"docs/c.png\"> [up](../outside.md)\n")
    assert broken_links(page, root=repo) == [
        "'docs/b.png': no such file", "'docs/missing.md': no such file",
        "'docs/other.md#twice-2': no heading #twice-2 in other.md", "'#nowhere': no heading #nowhere in README.md",
        "'../outside.md': outside the repository", "'docs/c.png': no such file"]


def test_slugs_follow_githubs_rule():
    assert slug("`reconstruct` and `interpolate`") == "reconstruct-and-interpolate"
    assert slug("Explore: the model live in your browser") == "explore-the-model-live-in-your-browser"
    assert slug("Checkpoints, resuming and runs side by side") == "checkpoints-resuming-and-runs-side-by-side"
    assert slug('`pyro_vae.load(path="checkpoints", *, device="cpu")`') == "pyro_vaeloadpathcheckpoints--devicecpu"
