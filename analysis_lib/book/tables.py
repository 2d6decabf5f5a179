"""Tables for people: how a chapter's DataFrames are shown (the CSVs and ``run.json`` keep the raw values).

A fraction metric (an accuracy, a share, a chance level, a difference of those) is a percentage with one decimal;
whole numbers stored as floats (step counts with gaps) are integers; other numbers have three significant digits and
never an exponent; a missing value is "—"; a list is its items; no cell is cut short. ``show_tables_for_people``
makes every DataFrame a notebook displays look so.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd

MISSING = "—"
# A column (any level of its label) whose name says it holds a fraction metric; its values must also lie in [-1, 1].
FRACTION_NAME = re.compile(
    r"^(mean|ci95_low|ci95_high|chance|value|final check|target|share|gap closed|majority class|"
    r"CLIP \(cosine\)|LLaVA \(VQAScore\))$|accuracy|\d-way|pairs\b|\bchange$",
    re.IGNORECASE,
)
FRACTION_LEVEL = "layer"  # a column level of probe accuracies per encoder layer


def is_missing(value: object) -> bool:
    """Whether a cell's ``value`` is missing (None, NaN, NA); a list never is."""
    return not isinstance(value, (list, tuple, np.ndarray)) and bool(pd.isna(value))


def plain_number(value: float) -> str:
    """A number with three significant digits (whole above 100), never in scientific notation."""
    if abs(value) >= 100:
        return f"{value:.0f}"
    return np.format_float_positional(value, precision=3, unique=True, fractional=False, trim="-")


def cell_text(value: object) -> str:
    """Any cell as text: a list as its items, a missing value as ``MISSING``, a float as a ``plain_number``."""
    if isinstance(value, (list, tuple)):
        return ", ".join(cell_text(v) for v in value) or MISSING
    if is_missing(value):
        return MISSING
    if isinstance(value, (float, np.floating)):
        return plain_number(float(value))
    return str(value)


def percent(value: object) -> str:
    """A fraction as a percentage with one decimal (``MISSING`` if missing)."""
    return MISSING if is_missing(value) else f"{float(value):.1%}"


def whole(value: object) -> str:
    """A whole number stored as a float, as an integer (``MISSING`` if missing)."""
    return MISSING if is_missing(value) else str(int(value))


def is_fraction_column(label: object, names: list[object], values: pd.Series) -> bool:
    """Whether a numeric column holds a fraction metric: its name (or a level ``layer``) says so and every value
    lies in [-1, 1]."""
    levels = label if isinstance(label, tuple) else (label,)
    named = any(FRACTION_NAME.search(str(level)) for level in levels if isinstance(level, str))
    named = named or FRACTION_LEVEL in names
    finite = values.dropna()
    return named and len(finite) > 0 and bool(finite.abs().le(1).all())


def column_format(label: object, names: list[object], values: pd.Series) -> Callable[[object], str]:
    """How to show one column's cells."""
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return cell_text
    if is_fraction_column(label, names, values):
        return percent
    finite = values.dropna()
    if pd.api.types.is_integer_dtype(values) or (len(finite) and bool((finite == finite.round()).all())):
        return whole
    return cell_text


def readable_labels(index: pd.Index) -> pd.Index:
    """An index (or columns) with every label as ``cell_text``, its names kept."""
    if isinstance(index, pd.MultiIndex):
        return pd.MultiIndex.from_tuples([tuple(map(cell_text, t)) for t in index], names=index.names)
    return pd.Index([cell_text(label) for label in index], name=index.name)


def for_people(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` as text to be read: every cell formatted by its column's kind, its labels kept."""
    names = list(table.columns.names)
    columns = [table.iloc[:, i] for i in range(table.shape[1])]
    shown = pd.DataFrame(
        {i: values.map(column_format(label, names, values)) for i, (label, values) in enumerate(zip(table, columns))}
    )
    shown.index, shown.columns = readable_labels(table.index), readable_labels(table.columns)
    return shown


def table_html(table: pd.DataFrame) -> str:
    """``for_people`` as an HTML table, escaped, no cell cut short."""
    with pd.option_context("display.max_colwidth", None):
        return for_people(table).to_html(escape=True, classes="book-table")


def show_tables_for_people() -> None:
    """In an IPython kernel, show every displayed DataFrame through ``table_html`` and never cut a cell's text;
    elsewhere, only the latter."""
    pd.set_option("display.max_colwidth", None)
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, table_html)
