import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from analysis_lib.book import pages, tables
from analysis_lib.book import runner as book

CLEAN = '<nav class="book-nav"><a href="index.html">claims</a></nav><table><tr><td>97.4%</td><td>—</td></tr></table>'


@pytest.mark.parametrize(
    "page, problem",
    [
        (CLEAN.replace("97.4%", "LLaVA: raster positions, ViT position embeddin..."), "table cell cut short"),
        (CLEAN.replace("97.4%", "pre-trained LM (the chapter's…"), "table cell cut short"),
        (CLEAN.replace("—", "NaN"), "'NaN' shown"),
        (CLEAN.replace("97.4%", "nan%"), "'nan%' shown"),
        (CLEAN.replace("—", "None"), "table cell 'None'"),
        (CLEAN + "<pre>results in /home/someone/repo/results/03_positions/toy</pre>", "absolute path"),
        (CLEAN.replace('class="book-nav"', 'class="other"'), "no navigation"),
        (CLEAN.replace('href="index.html"', 'href="01.html"'), "no navigation"),
    ],
)
def test_a_page_a_reader_cannot_use_is_caught(page, problem):
    assert pages.page_problems(CLEAN) == []
    assert any(problem in found for found in pages.page_problems(page)), pages.page_problems(page)


def test_code_and_urls_are_no_problem():
    code = '<details class="book-code"><summary>code</summary><pre>x = np.nan</pre></details>'
    urls = "<p>code: https://github.com/lst627/CLIP-Embeds, left/right, 2/3, tests/data/x.json, &lt;/s&gt;</p>"
    assert pages.page_problems(CLEAN + code + urls) == []


def test_citations_link_to_the_reference_page():
    linked = pages.link_citations(
        "(paper §1, REFERENCE claim 1). (REFERENCE claims 2 and 7's layer question) REFERENCE §3"
    )
    assert "[Reference, claim 1](reference.html#claim-1)" in linked
    assert "[Reference](reference.html) claims [2](reference.html#claim-2) and [7](reference.html#claim-7)'s" in linked
    assert "[Reference §3](reference.html#section-3)" in linked and "REFERENCE" not in linked


def test_absolute_paths_are_shown_from_the_repository():
    text = "results in /work/main/results/03_positions/toy; figures in /x/figures/a.png; cache /tmp/c; b64 +/ab/data/"
    shown = "results in results/03_positions/toy; figures in figures/a.png; cache /tmp/c; b64 +/ab/data/"
    assert pages.relative_paths(text) == shown


def _executed(path: Path, heading: str, parameters: bool = True) -> Path:
    """An executed chapter as papermill leaves it: a parameters cell, a table, the results line."""
    table = pd.DataFrame({"condition": ["LLaVA: raster positions, ViT position embeddings (LLaVA-1.5)"] * 2,
                          "mean": [0.974, float("nan")], "passed at": [600.0, float("nan")]})  # fmt: skip
    shown = nbformat.v4.new_output("display_data", {"text/html": tables.table_html(table), "text/plain": "table"})
    written = nbformat.v4.new_output(
        "stream", name="stdout", text=f"results in /elsewhere/repo/results/{path.stem}/toy\n"
    )
    cells = [nbformat.v4.new_markdown_cell(f"# {heading}\n\nThe claim (REFERENCE claim 1).")]
    if parameters:
        cells.append(
            nbformat.v4.new_code_cell(
                'scale = "toy"\nsmoke = False\nresults_root = ""', metadata={"tags": ["parameters"]}
            )
        )
    cells += [
        nbformat.v4.new_code_cell("display(table)", outputs=[shown]),
        nbformat.v4.new_code_cell("print(folder)", outputs=[written]),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["papermill"] = {
        "duration": 47.0,
        "end_time": "2026-11-26T15:59:48+00:00",
        "parameters": {"smoke": False},
    }
    nbformat.write(nb, path)
    return path


def test_every_page_has_navigation_folded_code_and_a_relative_footer(tmp_path):
    notebooks = [_executed(tmp_path / "00_claims.ipynb", "The claims"), _executed(tmp_path / "01_demo.ipynb", "Demo")]
    reference = tmp_path / "reference.md"
    reference.write_text('# The reference\n\n1. <a id="claim-1"></a>The claim.\n')
    book.render_book(notebooks, tmp_path / "book", reference)
    rendered = {p.name: p.read_text() for p in (tmp_path / "book").glob("*.html")}
    assert set(rendered) == {"index.html", "00_claims.html", "01_demo.html", "reference.html"}
    for name, page in rendered.items():
        assert pages.page_problems(page) == [], name
        assert all(f'href="{target}"' in page for target in ("index.html", "01_demo.html", "reference.html")), name
    demo = rendered["01_demo.html"]
    assert re.search(r'<a [^>]*href="index.html"[^>]*>← The claims</a>', demo)
    assert re.search(r'<a [^>]*href="reference.html"[^>]*>The reference →</a>', demo)
    assert demo.count('class="book-code"') == 3 and "<summary>code</summary>" in demo
    assert "LLaVA: raster positions, ViT position embeddings (LLaVA-1.5)" in demo and "97.4%" in demo
    assert "results in results/01_demo/toy" in demo and 'href="reference.html#claim-1"' in demo
    assert "Executed 2026-11-26 15:59 UTC in 47 s" in demo and "smoke=False" in demo
    assert "<title>Demo</title>" in demo and 'id="claim-1"' in rendered["reference.html"]
    assert "make book BOOK_ARGS='--chapter 01_demo'" in demo and "<code>smoke = False</code>" in demo
    assert "Probe a pair yourself" in rendered["index.html"] and "pair_probe.widget(seed=0)" in rendered["index.html"]
    assert "Re-run this chapter" not in rendered["reference.html"]
    assert "Time: this run took 47 s (it recorded no cache use)" in demo  # this fixture has no run.json


def _record(seconds: float, cache: dict | None) -> pages.Bookkeeping:
    """A chapter run's bookkeeping with only its wall time and cache use filled in."""
    return pages.Bookkeeping({}, seconds, None, None, [], None, cache)


def test_each_chapter_opening_says_its_warm_or_partial_and_its_cold_time():
    warm = {"used": 40, "built": 0, "build_seconds": 7830.0, "no_record": 0}
    note = pages.time_note(_record(25.4, warm))
    assert "this run took 25 s, warm (every model and score it uses was cached)" in note
    assert "building all 40 (those it loads and those they are built from) took 2 h 10 min" in note
    assert "recorded no build time" not in note
    partial = {**warm, "built": 12, "build_seconds": 1250.0, "no_record": 3}
    note = pages.time_note(_record(3725.0, partial))
    assert "this run took 1 h 2 min and built 12 of the 40 models and scores it uses" in note
    assert "took 20 min 50 s" in note and "3 of them recorded no build time" in note
    assert "uses no cached model" in pages.time_note(_record(20.0, {**warm, "used": 0}))
    assert pages.time_note(_record(None, warm)) == "" and pages.time_note(None) == ""


PANDAS_REPR = '<table border="1" class="dataframe">'  # a DataFrame displayed before analysis_lib.book.tables existed
TABLE_PROBLEMS = ("table cell", "shown")


def _html_outputs(path: Path) -> list[str]:
    """The HTML outputs of an executed notebook (none if there is no such notebook)."""
    if not path.is_file():
        return []
    cells = nbformat.read(path, as_version=4).cells
    return [o.get("data", {}).get("text/html", "") for c in cells for o in c.get("outputs", [])]


@pytest.fixture(scope="module")
def committed_book(tmp_path_factory) -> Path:
    """The committed executed chapters and the reference page, rendered as ``make render`` does, elsewhere."""
    folder = tmp_path_factory.mktemp("book")
    book.main(["render", "--out", str(folder)])
    return folder


@pytest.mark.parametrize("stem", [p.stem for p in book.chapters()] + [pages.REFERENCE_STEM, "index"])
def test_the_committed_book_renders_for_people(committed_book, stem):
    """Every page has navigation and no absolute path; its tables have no cut cell or NaN, except in a chapter
    executed before ``analysis_lib.book.tables`` (shown as an expected failure until it is executed again)."""
    problems = pages.page_problems((committed_book / f"{stem}.html").read_text())
    assert [p for p in problems if not p.startswith(TABLE_PROBLEMS) and not p.endswith(TABLE_PROBLEMS)] == []
    if problems and PANDAS_REPR in "".join(_html_outputs(book.NOTEBOOKS / f"{stem}.ipynb")):
        pytest.xfail(f"{stem} was executed before analysis_lib.book.tables; execute it again: {problems[:3]}")
    assert problems == []


def test_every_citation_of_the_reference_has_its_anchor(committed_book):
    cited = {
        m for p in committed_book.glob("*.html") for m in re.findall(r'href="reference.html#([\w-]+)"', p.read_text())
    }
    anchors = set(re.findall(r'id="([\w-]+)"', (committed_book / "reference.html").read_text()))
    assert cited and cited <= anchors


def test_a_chapter_executed_now_renders_its_tables_for_people(tmp_path):
    src = tmp_path / "01_demo.py"
    src.write_text(
        '# %% [markdown]\n# # Demo\n\n# %% tags=["parameters"]\nseeds = [0]\n\n# %%\nimport pandas as pd\n'
        "from IPython.display import display\n\nimport analysis_lib.chapters\n\n"
        'display(pd.DataFrame({"condition": ["LLaVA: raster positions, ViT position embeddings (LLaVA-1.5)"],\n'
        '                      "mean": [0.974], "passed at": [float("nan")], "seeds": [[0, 1, 2]]}))\n'
    )
    executed = book.execute_chapter(src, {}, tmp_path / "01_demo.ipynb")
    book.render_book([executed], tmp_path / "book", reference=None)
    page = (tmp_path / "book" / "01_demo.html").read_text()
    assert pages.page_problems(page) == []
    assert "LLaVA: raster positions, ViT position embeddings (LLaVA-1.5)" in page and "97.4%" in page
    assert "0, 1, 2" in page and "—" in page
