"""The book runner: jupytext sources -> papermill-executed notebooks -> an offline HTML book.

python -m analysis_lib.book run [--chapter 01_same_encoder] [-p seeds '[0, 1]'] [-p smoke True]
python -m analysis_lib.book render

A chapter executes into a temporary file that replaces its executed notebook only when every cell
ran; a failed or interrupted run is left beside it as ``NN_name.failed.ipynb``.
"""

from __future__ import annotations

import argparse
import ast
import html
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jupytext
import nbformat
import papermill
from nbconvert import HTMLExporter
from papermill.exceptions import PapermillExecutionError

from analysis_lib.progress import PROGRESS_ENV

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO_ROOT / "notebooks"
BOOK_DIR = REPO_ROOT / "book"
TEMPLATES = Path(__file__).resolve().parent / "templates"
KERNEL = "python3"
FRONT_PAGE = "00_claims"  # the claims scoreboard: executed last, rendered as the book's index page
# Parameter name -> the only values a chapter that declares it accepts (checked before anything runs).
ALLOWED_VALUES: dict[str, tuple] = {
    "scale": ("toy", "full"),
    "device": ("cpu", "cuda", "auto"),
    "dtype": ("auto", "bfloat16", "float16", "float32"),
}


class BookError(ValueError):
    """A chapter or parameter the book cannot run."""


def chapters(folder: Path = NOTEBOOKS) -> list[Path]:
    """The chapter sources, ``NN_name.py``, in order."""
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.py"))


def run_order(paths: list[Path]) -> list[Path]:
    """The order to execute chapters in: the front page (``00_claims``, which reads the others' results) last."""
    return sorted(paths, key=lambda p: p.stem == FRONT_PAGE)


def find_chapter(name: str, folder: Path = NOTEBOOKS) -> Path:
    """A chapter by stem (``01_same_encoder``) or number (``01``)."""
    matches = [p for p in chapters(folder) if p.stem == name or p.stem.split("_")[0] == name]
    if len(matches) != 1:
        known = ", ".join(p.stem for p in chapters(folder))
        raise BookError(f"unknown chapter {name!r}; chapters are: {known}")
    return matches[0]


def read_chapter(path: Path) -> nbformat.NotebookNode:
    """The chapter as a notebook with a Python kernel spec."""
    nb = jupytext.read(path)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    nb.metadata.setdefault("language_info", {"name": "python"})
    return nb


def declared_parameters(nb: nbformat.NotebookNode) -> dict[str, object]:
    """The defaults of the cell tagged ``parameters``: name -> default value."""
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise BookError(f"a chapter needs exactly one cell tagged 'parameters', found {len(cells)}")
    declared = {}
    for node in ast.parse(cells[0].source).body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if not isinstance(target, ast.Name) or getattr(node, "value", None) is None:
            raise BookError(f"parameters cell: line {node.lineno} is not 'name = literal'")
        declared[target.id] = ast.literal_eval(node.value)
    return declared


def _type_ok(value: object, default: object) -> bool:
    """Whether ``value`` may replace ``default`` (ints are accepted for floats; bools are not ints)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if default is None:
        return True
    return isinstance(value, type(default))


def _parameter_problem(name: str, value: object, declared: dict[str, object]) -> str | None:
    """Why ``value`` cannot be the chapter's parameter ``name`` (unknown, wrong type, not allowed), or None."""
    if name not in declared:
        return f"unknown parameter {name!r}"
    if not _type_ok(value, declared[name]):
        return f"parameter {name!r} must be {type(declared[name]).__name__} like {declared[name]!r}, got {value!r}"
    allowed = ALLOWED_VALUES.get(name)
    if allowed is not None and value not in allowed:
        return f"parameter {name!r} must be one of {', '.join(map(repr, allowed))}, got {value!r}"
    return None


def chapter_parameters(paths: list[Path], parameters: dict[str, object]) -> dict[Path, dict[str, object]]:
    """Each chapter's share of ``parameters``: those it declares, each checked. A name that no chapter of ``paths``
    declares is an error, as is a value of the wrong type or not allowed; one ``BookError`` lists them all."""
    declared = {path: declared_parameters(read_chapter(path)) for path in paths}
    unknown = [name for name in parameters if not any(name in d for d in declared.values())]
    problems = [f"unknown parameter {name!r}" for name in unknown]
    for path, names in declared.items():
        problems += [f"chapter {path.stem}: {p}" for n, v in parameters.items() if n in names
                     and (p := _parameter_problem(n, v, names))]  # fmt: skip
    if problems:
        known = sorted({name for d in declared.values() for name in d})
        raise BookError("; ".join(dict.fromkeys(problems)) + f". The chapters' parameters are: {', '.join(known)}")
    return {path: {n: v for n, v in parameters.items() if n in names} for path, names in declared.items()}


def validate_parameters(nb: nbformat.NotebookNode, parameters: dict[str, object], chapter: str = "") -> None:
    """Raise one ``BookError`` listing every unknown name, wrongly typed value or value not allowed."""
    declared = declared_parameters(nb)
    problems = [p for name, value in parameters.items() if (p := _parameter_problem(name, value, declared))]
    if problems:
        raise BookError(f"chapter {chapter}: " + "; ".join(problems) + f". Its parameters are: {', '.join(declared)}")


def failed_path(output: Path) -> Path:
    """Where a failed run of the notebook ``output`` is kept: ``NN_name.failed.ipynb`` beside it."""
    return output.with_suffix(".failed.ipynb")


def _error_line(err: Exception) -> str:
    """A failed execution's error in one line (for a cell that raised: the notebook's own exception)."""
    if isinstance(err, PapermillExecutionError):
        return f"cell In [{err.exec_count}] raised {err.ename}: {err.evalue}".splitlines()[0]
    return f"{type(err).__name__}: {err}".splitlines()[0]


@contextmanager
def relayed_progress() -> Iterator[None]:
    """Within the block, chapters' kernels write their progress to a file (``progress.PROGRESS_ENV``) that a
    thread relays to this process's stderr as it comes, so the console shows it and the notebooks do not."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "progress.log"
        path.touch()
        done = threading.Event()

        def relay() -> None:
            with path.open() as source:
                while True:
                    chunk = source.read()
                    if chunk:
                        sys.stderr.write(chunk)
                        sys.stderr.flush()
                    elif done.is_set():
                        return
                    else:
                        time.sleep(0.2)

        before = os.environ.get(PROGRESS_ENV)
        os.environ[PROGRESS_ENV] = str(path)
        thread = threading.Thread(target=relay, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            if before is None:
                os.environ.pop(PROGRESS_ENV, None)
            else:
                os.environ[PROGRESS_ENV] = before


def execute_chapter(path: Path, parameters: dict[str, object], output: Path | None = None) -> Path:
    """Validate ``parameters`` and execute the chapter with papermill; the executed ``.ipynb`` replaces
    ``output`` only on success, a failed or interrupted run goes to ``failed_path(output)``."""
    nb = read_chapter(path)
    validate_parameters(nb, parameters, path.stem)
    output = Path(output or path.with_suffix(".ipynb"))
    running, failed = output.with_name(f".{output.stem}.{os.getpid()}.running.ipynb"), failed_path(output)
    try:
        with relayed_progress():
            papermill.execute_notebook(
                nb,
                str(running),
                parameters=parameters,
                kernel_name=KERNEL,
                language="python",
                cwd=str(REPO_ROOT),
                progress_bar=False,
            )
        os.replace(running, output)
    except Exception as err:
        raise BookError(
            f"chapter {path.stem} failed: {_error_line(err)}. {output.name} is unchanged; the failed run is in {failed}"
        ) from err
    finally:
        if running.exists():  # failed or interrupted: keep it to read, never over the executed notebook
            os.replace(running, failed)
    failed.unlink(missing_ok=True)
    return output


def render_book(notebooks: list[Path], out_dir: Path = BOOK_DIR) -> Path:
    """Render executed notebooks to self-contained HTML (images embedded, no CDN) plus an index."""
    out_dir.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="offline", extra_template_basedirs=[str(TEMPLATES)], embed_images=True)
    entries = []
    for nb_path in notebooks:
        nb = nbformat.read(nb_path, as_version=4)
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": nb_path.stem}})
        (out_dir / f"{nb_path.stem}.html").write_text(body, encoding="utf-8")
        entries.append((nb_path.stem, chapter_title(nb, nb_path.stem)))
    front = out_dir / f"{FRONT_PAGE}.html"
    if front.is_file():  # the claims scoreboard, with the chapter list, is the book's front page
        (out_dir / "index.html").write_text(front.read_text(encoding="utf-8"), encoding="utf-8")
        return out_dir / "index.html"
    links = "\n".join(f'<li><a href="{stem}.html">{html.escape(title)}</a></li>' for stem, title in entries)
    index = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>The book</title></head><body>"
        f"<h1>Why generative MLLMs perceive more than CLIP</h1><ol>{links}</ol></body></html>"
    )
    (out_dir / "index.html").write_text(index, encoding="utf-8")
    return out_dir / "index.html"


def chapter_title(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The first Markdown heading of a notebook."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("# ").strip()
    return fallback


def parse_parameter(text: str) -> object:
    """A ``-p`` value as a Python literal, falling back to a plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m analysis_lib.book", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute chapters (all by default), then render the book")
    run.add_argument("--chapter", action="append", help="chapter stem or number; repeatable")
    run.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="parameter")
    sub.add_parser("render", help="render the executed notebooks to book/")
    args = parser.parse_args(argv)
    if args.command == "run":
        paths = run_order([find_chapter(c) for c in args.chapter] if args.chapter else chapters())
        parameters = {name: parse_parameter(value) for name, value in args.p}
        shares = chapter_parameters(paths, parameters)  # all checked before any chapter runs
        for i, path in enumerate(paths, 1):
            print(f"[{i}/{len(paths)}] {path.stem}: running", flush=True)
            start = time.perf_counter()
            execute_chapter(path, shares[path])
            print(f"[{i}/{len(paths)}] {path.stem}: done in {time.perf_counter() - start:.0f} s", flush=True)
    index = render_book([p.with_suffix(".ipynb") for p in chapters() if p.with_suffix(".ipynb").is_file()])
    print(f"book written to {index}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BookError as err:
        sys.exit(f"error: {err}")
