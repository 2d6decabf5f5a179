import math
import re
from html import unescape

import numpy as np
import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

from analysis_lib.book import tables


def _transitions() -> pd.DataFrame:
    """A table like the chapters' curriculum transitions: long names, step counts with gaps, fractions, a list."""
    long = "pre-trained LM + grounding task (the chapter's trained LLaVA, trained that way)"
    return pd.DataFrame({"variant": [long, "LM from scratch"], "seed": [0, 1], "passed at": [600.0, np.nan],
                         "final check": [0.99, np.nan], "mean": [0.974, 0.5], "weight": [7.545e-05, 0.396],
                         "met": [True, None], "seeds": [[0, 1, 2], []], "seconds": [1234.4, 0.1]})  # fmt: skip


def test_a_table_for_people_has_no_cut_nan_exponent_or_float_step():
    html = tables.table_html(_transitions())
    cells = [unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", html)]
    first = [_transitions().variant[0], "0", "600", "99.0%", "97.4%", "0.0000755", "True", "0, 1, 2", "1234"]
    assert cells[:9] == first
    assert cells[9:] == ["LM from scratch", "1", "—", "—", "50.0%", "0.396", "—", "—", "0.1"]
    assert "NaN" not in html and "nan" not in html and "e-05" not in html and "..." not in html


def test_only_named_fraction_columns_within_one_become_percentages():
    timing = pd.DataFrame(
        {"scoring": [0.1, 0.0], "relation 4-way": [0.25, 1.0], "relation 4-way change": [-0.665, 0.0]}
    )
    html = tables.table_html(timing.rename_axis("seed"))
    assert ">0.1<" in html and ">25.0%<" in html and ">-66.5%<" in html and "10.0%" not in html
    assert tables.column_format("mean", [None], pd.Series([3.5, 1.0])) is tables.cell_text  # not a fraction
    layers = pd.DataFrame([[0.5, 1.0]], columns=pd.MultiIndex.from_tuples([("CLIP", 0), ("CLIP", 1)]))
    layers.columns.names = ["encoder", "layer"]
    assert ">50.0%<" in tables.table_html(layers) and ">100.0%<" in tables.table_html(layers)


def test_cells_are_escaped_and_ids_are_stable():
    table = pd.DataFrame({"target": ["LLaVA >= 90% <image>"], "value": [0.5]})
    html = tables.table_html(table)
    assert "&gt;= 90% &lt;image&gt;" in html and html == tables.table_html(table)


@pytest.mark.parametrize(
    "value, text",
    [(7.545e-05, "0.0000755"), (87.602, "87.6"), (170.0, "170"), (0.0, "0"), (-0.0462, "-0.0462"), (1e9, "1000000000")],
)
def test_plain_numbers_have_three_significant_digits_and_no_exponent(value, text):
    assert tables.plain_number(value) == text


def test_a_notebook_shows_every_dataframe_for_people():
    shell = InteractiveShell.instance()
    try:
        tables.show_tables_for_people()
        data, _ = shell.display_formatter.format(pd.DataFrame({"mean": [0.974], "passed at": [math.nan]}))
        assert "97.4%" in data["text/html"] and "—" in data["text/html"] and "NaN" not in data["text/html"]
        assert pd.get_option("display.max_colwidth") is None
    finally:
        InteractiveShell.clear_instance()
        pd.reset_option("display.max_colwidth")
