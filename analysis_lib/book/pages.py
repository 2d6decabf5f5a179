"""What every rendered page of the book carries besides its notebook: navigation (contents, previous and next, the
claims page), code folded, citations of the reference linked, paths shown relative to the repository, a
bookkeeping footer; and the checks a rendered page must pass."""

from __future__ import annotations

import copy
import html
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

FRONT_PAGE = "00_claims"  # the claims scoreboard: executed last, rendered as the book's index page
INDEX = "index.html"  # the claims page, the book's front page
REFERENCE_STEM = "reference"  # the book's reference page: notebooks/reference.md -> reference.html
# A folder at the repository's top: an absolute path is shown from it on (``/x/y/results/a`` -> ``results/a``).
REPO_FOLDERS = ("results", "figures", "notebooks", "runs", "book", "data", "benchmarks", "tests", "analysis_lib")
ABSOLUTE_PREFIX = re.compile(r"(?<![\w.:/<>~+=;-])/(?:[\w.-]+/)+?(?=(?:" + "|".join(REPO_FOLDERS) + r")\b)")
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/<>~+=;-])/(?:[\w.-]+/)+[\w.-]*")  # any absolute path left in a page's text
CLAIMS = re.compile(r"REFERENCE claims? (\d+)((?:(?:,| and) \d+\b)*)")
SECTION = re.compile(r"REFERENCE(?:\.md)? §(\d+)")
CELL = re.compile(r"<t([dh])\b[^>]*>(.*?)</t\1>", re.DOTALL)
TAG = re.compile(r"<[^>]+>")
HIDDEN = re.compile(r"<(script|style)\b.*?</\1>", re.DOTALL)
CODE = re.compile(r'<details[^>]*class="book-code"[^>]*>.*?</details>', re.DOTALL)
NOT_A_NUMBER = re.compile(r"(?<![\w.])(NaN|nan%?|<NA>|NaT|None%)(?![\w(])")


@dataclass(frozen=True)
class Page:
    """One page of the book: its file stem and title."""

    stem: str
    title: str

    @property
    def href(self) -> str:
        """The page's file in the book (the front page is ``index.html``)."""
        return INDEX if self.stem == FRONT_PAGE else f"{self.stem}.html"


def claim_link(number: str, text: str) -> str:
    """A Markdown link to claim ``number`` on the reference page."""
    return f"[{text}]({REFERENCE_STEM}.html#claim-{number})"


def link_citations(markdown: str) -> str:
    """``REFERENCE claim N`` and ``REFERENCE §N`` (the facts file the book was written from) as links to the book's
    reference page."""

    def claims(match: re.Match) -> str:
        numbers = [match.group(1), *re.findall(r"\d+", match.group(2))]
        if len(numbers) == 1:
            return claim_link(numbers[0], f"Reference, claim {numbers[0]}")
        cited = ", ".join(claim_link(n, n) for n in numbers[:-1]) + " and " + claim_link(numbers[-1], numbers[-1])
        return f"[Reference]({REFERENCE_STEM}.html) claims {cited}"

    markdown = CLAIMS.sub(claims, markdown)
    return SECTION.sub(lambda m: f"[Reference §{m.group(1)}]({REFERENCE_STEM}.html#section-{m.group(1)})", markdown)


def relative_paths(text: str) -> str:
    """``text`` with every absolute path into a repository shown from the repository's top folder on."""
    return ABSOLUTE_PREFIX.sub("", text)


def _relative_output(output: nbformat.NotebookNode) -> None:
    """Show an output's paths relative to the repository (its text and every text-like representation)."""
    if "text" in output:
        output["text"] = relative_paths(output["text"])
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/") and isinstance(value, str):
            output["data"][mime] = relative_paths(value)


def for_the_book(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of an executed notebook as the book shows it: citations linked, paths relative."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = link_citations(cell.source)
        for output in cell.get("outputs", []):
            _relative_output(output)
    return nb


def _link(page: Page, label: str, rel: str) -> str:
    """An ``<a>`` to ``page``."""
    return f'<a rel="{rel}" href="{page.href}">{label}</a>'


def navigation(pages: list[Page], current: str) -> str:
    """The header of a page: the claims page, the contents (every page, the current one marked), previous and next."""
    items = []
    for page in pages:
        mark = ' aria-current="page"' if page.stem == current else ""
        items.append(f'<li><a href="{page.href}"{mark}>{html.escape(page.title)}</a></li>')
    return (
        f'<nav class="book-nav" aria-label="the book">{steps(pages, current)}'
        f'<details class="book-contents" open><summary>Contents</summary><ol>{"".join(items)}</ol></details></nav>'
    )


def rerun_note(stem: str, parameters: dict[str, object]) -> str:
    """How a reader re-runs a chapter: the command, and its parameters with the book's values."""
    listed = ", ".join(
        f"<code>{html.escape(name)} = {html.escape(repr(value))}</code>" for name, value in parameters.items()
    )
    return (
        f"<p class=\"book-rerun\">Re-run this chapter: <code>make book BOOK_ARGS='--chapter {stem}'</code>; another "
        f'value goes in as <code>-p name value</code> (for instance <code>-p seeds "[0, 1, 2, 3, 4]"</code>) and such '
        f"a run writes under <code>runs/</code>, never over the book. Parameters and the book's values: {listed}.</p>"
    )


def duration(seconds: float) -> str:
    """``seconds`` as a reader reads a duration: ``25 s``, ``3 min 10 s``, ``5 h 12 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def time_note(record: Bookkeeping | None) -> str:
    """How long a chapter takes, from its run: the run's wall time, warm (nothing built) or not, and how long
    building every model and score it uses took on the machine that ran it (cold)."""
    if record is None or record.seconds is None:
        return ""
    took = duration(record.seconds)
    cache = record.cache
    if not cache:
        return f'<p class="book-time">Time: this run took {took} (it recorded no cache use).</p>'
    used, built = cache["used"], cache["built"]
    if used == 0:
        return f'<p class="book-time">Time: this run took {took}; it uses no cached model or score.</p>'
    if built == 0:
        now = f"this run took {took}, warm (every model and score it uses was cached)"
    else:
        now = f"this run took {took} and built {built} of the {used} models and scores it uses (the rest cached)"
    unknown = f"; {cache['no_record']} of them recorded no build time" if cache["no_record"] else ""
    return (
        f'<p class="book-time">Time: {now}. Cold, from an empty cache: building all {used} (those it loads and '
        f"those they are built from) took {duration(cache['build_seconds'])} on the machine that ran it (each "
        f"its own time, one torch thread, summed{unknown}); the book trains models in up to two worker processes, "
        "so a cold run on two cores takes about half of that.</p>"
    )


FRONT_PAGE_HOWTO = (
    '<div class="book-rerun"><p><b>Re-run the book</b>: <code>make book</code> (it sets up <code>.venv</code>, '
    "executes every chapter at toy scale and renders this book); one chapter: "
    "<code>make book BOOK_ARGS='--chapter 01_same_encoder'</code>, with other parameters "
    '<code>-p seeds "[0, 1, 2, 3, 4]"</code> (written under <code>runs/</code>, never over the book). Each '
    "chapter's page names its parameters.</p><p><b>Probe a pair yourself</b>: two images and two statements, scored by "
    "the toy CLIP and LLaVA of a seed — <code>.venv/bin/python -m analysis_lib.book.pair_probe a.png b.png --text "
    '"..." --text "..."</code>, or in JupyterLab (<code>make lab</code>) '
    "<code>from analysis_lib.book import pair_probe; pair_probe.widget(seed=0)</code>.</p></div>"
)
"""The front page's "re-run" and "probe a pair" sections."""


def steps(pages: list[Page], current: str) -> str:
    """Links to the claims page (unless it is this page or the previous one) and to the previous and next pages."""
    at = [page.stem for page in pages].index(current)
    near = {page.stem for page in pages[max(at - 1, 0) : at + 1]}
    links = [] if FRONT_PAGE in near else [f'<a href="{INDEX}">The claims (front page)</a>']
    if at > 0:
        links.append(_link(pages[at - 1], f"← {html.escape(pages[at - 1].title)}", "prev"))
    if at + 1 < len(pages):
        links.append(_link(pages[at + 1], f"{html.escape(pages[at + 1].title)} →", "next"))
    return f'<p class="book-steps">{" · ".join(links)}</p>'


def shown_path(path: Path, root: Path) -> str:
    """``path`` relative to the repository ``root`` when inside it, else as given."""
    path = Path(path)
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


@dataclass(frozen=True)
class Bookkeeping:
    """What the footer of a chapter says about the run that produced it."""

    parameters: dict[str, object]  # the parameters it ran with (its parameters cell and any given)
    seconds: float | None  # papermill's wall time of the whole notebook
    finished: str | None  # when it finished (ISO time)
    results: str | None  # its results folder, relative to the repository
    files: list[str]  # the files in it
    commit: str | None  # the commit the run recorded in run.json
    cache: dict | None = None  # the cache entries the run used (run.json's "cache": core.cache.use_record)


def footer(pages: list[Page], current: str, record: Bookkeeping | None) -> str:
    """The end of a page: the chapter's bookkeeping (when it has any), then previous and next again."""
    if record is None:
        return f'<footer class="book-footer">{steps(pages, current)}</footer>'
    lines = []
    ran = ", ".join(f"{name}={value!r}" for name, value in record.parameters.items())
    if record.finished:
        took = f" in {record.seconds:.0f} s" if record.seconds is not None else ""
        lines.append(f"Executed {html.escape(record.finished[:16].replace('T', ' '))} UTC{took}.")
    lines.append(f"Parameters: <code>{html.escape(ran) or 'none'}</code>.")
    if record.results:
        files = f" ({html.escape(', '.join(record.files))})" if record.files else ""
        commit = f", written at commit <code>{html.escape(record.commit[:10])}</code>" if record.commit else ""
        lines.append(f"Results: <code>{html.escape(record.results)}/</code>{files}{commit}.")
    items = "".join(f"<li>{line}</li>" for line in lines)
    return (
        f'<footer class="book-footer"><p class="book-bookkeeping">Bookkeeping</p><ul>{items}</ul>'
        f"{steps(pages, current)}</footer>"
    )


def visible_text(page: str) -> str:
    """A rendered page's text: tags, scripts and styles removed, entities decoded."""
    return html.unescape(TAG.sub(" ", HIDDEN.sub(" ", page)))


def page_problems(page: str) -> list[str]:
    """What keeps a rendered page from being read: a table cell cut short, a value that is not a number, an absolute
    path, no navigation."""
    problems = []
    for _, cell in CELL.findall(HIDDEN.sub(" ", page)):
        text = html.unescape(TAG.sub("", cell)).strip()
        if text.endswith(("...", "…")):
            problems.append(f"table cell cut short: {text!r}")
        if text == "None":
            problems.append("table cell 'None'")
    problems += [f"{value!r} shown" for value in NOT_A_NUMBER.findall(visible_text(CODE.sub(" ", page)))]
    problems += [f"absolute path {m.group(0)!r}" for m in ABSOLUTE_PATH.finditer(visible_text(page))]
    if 'class="book-nav"' not in page or f'href="{INDEX}"' not in page:
        problems.append("no navigation (contents and a link to the claims page)")
    return list(dict.fromkeys(problems))
