"""Every chapter executes end to end through papermill with smoke=True."""

import json

import nbformat
import pandas as pd
import pytest

from analysis_lib import book


@pytest.mark.parametrize("chapter", book.chapters(), ids=lambda p: p.stem)
def test_chapter_smoke(chapter, tmp_path):
    params = {
        "smoke": True,
        "seeds": [0],
        "results_root": str(tmp_path / "results"),
        "figures_root": str(tmp_path / "figures"),
    }
    out = book.execute_chapter(chapter, params, tmp_path / f"{chapter.stem}.ipynb")
    assert out.is_file()
    executed = nbformat.read(out, as_version=4)
    stderr = [o["text"] for c in executed.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert not stderr, f"the executed chapter shows stderr output: {stderr[:3]}"
    folder = tmp_path / "results" / chapter.stem / "toy-smoke"
    metrics = pd.read_csv(folder / "metrics.csv")
    assert {"model", "condition", "benchmark", "metric", "seed", "value"} <= set(metrics.columns)
    run = json.loads((folder / "run.json").read_text())
    assert run["parameters"]["smoke"] is True and "torch" in run["versions"]
    assert list((tmp_path / "figures").glob("*.png"))
