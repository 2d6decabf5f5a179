"""Every chapter executes end to end through papermill with smoke=True."""

import json

import nbformat
import pandas as pd
import pytest

from analysis_lib.book import runner as book
from analysis_lib.stats import verdicts

SMOKE = {"smoke": True, "seeds": [0]}


def execute_smoke(chapter, tmp_path) -> nbformat.NotebookNode:
    """Run a chapter in smoke mode into ``tmp_path`` and return it, asserting it shows no stderr output."""
    params = {**SMOKE, "results_root": str(tmp_path / "results"), "figures_root": str(tmp_path / "figures")}
    if "workers" in book.declared_parameters(book.read_chapter(chapter)):
        params["workers"] = 1  # worker start-up costs more than a smoke run trains (see test_orchestration)
    out = book.execute_chapter(chapter, params, tmp_path / f"{chapter.stem}.ipynb")
    executed = nbformat.read(out, as_version=4)
    stderr = [o["text"] for c in executed.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert not stderr, f"the executed chapter shows stderr output: {stderr[:3]}"
    return executed


@pytest.mark.parametrize("chapter", [p for p in book.chapters() if p.stem != book.FRONT_PAGE], ids=lambda p: p.stem)
def test_chapter_smoke(chapter, tmp_path):
    execute_smoke(chapter, tmp_path)
    folder = tmp_path / "results" / chapter.stem / "toy-smoke"
    metrics = pd.read_csv(folder / "metrics.csv")
    assert {"model", "condition", "benchmark", "metric", "seed", "value"} <= set(metrics.columns)
    run = json.loads((folder / "run.json").read_text())
    assert run["parameters"]["smoke"] is True and "torch" in run["versions"]
    assert list((tmp_path / "figures").glob("*.png"))


def test_front_page_smoke_reads_the_committed_results(tmp_path):
    executed = execute_smoke(book.NOTEBOOKS / f"{book.FRONT_PAGE}.py", tmp_path)
    board = pd.read_csv(tmp_path / "results" / book.FRONT_PAGE / "toy-smoke" / "scoreboard.csv")
    assert set(board["verdict"]) <= {*verdicts.VERDICTS, "not run", "not measured"}
    assert (board["seeds"].dropna() == 1).all()  # only seed 0, as asked
    outputs = [o for c in executed.cells for o in c.get("outputs", [])]
    text = "".join(str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert "](01_same_encoder.html)" in text and "**partly**" in text  # one seed: at most "partly"
    assert "1 seed only: below 5 the intervals over seeds are of limited validity" in text
    assert list((tmp_path / "figures").glob("00_claims_toy.png"))
