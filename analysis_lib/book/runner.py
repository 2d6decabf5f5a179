"""The book runner: jupytext sources -> papermill-executed notebooks -> an offline HTML book.

python -m analysis_lib.book run [--chapter 01_same_encoder] [-p seeds '[0, 1]'] [-p smoke True] [--write-book]
python -m analysis_lib.book render [--out folder]

Only a run with the book's parameters (each chapter's ``parameters`` cell; ``NEUTRAL`` ones may differ) or
``--write-book`` writes the book: the executed notebooks next to their sources, ``results/`` and ``figures/``.
Any other run writes its notebooks, results and figures under its own folder in ``runs/``.
A chapter executes into a temporary file that replaces its executed notebook only when every cell
ran; a failed or interrupted run is left beside it as ``NN_name.failed.ipynb``.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import html
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat
import papermill
from nbconvert import HTMLExporter
from papermill.exceptions import PapermillExecutionError

from analysis_lib.book import pages
from analysis_lib.book.pages import FRONT_PAGE
from analysis_lib.core.leftovers import remove_dead
from analysis_lib.core.progress import PROGRESS_ENV
from analysis_lib.core.results import results_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO_ROOT / "notebooks"
REFERENCE_PAGE = NOTEBOOKS / "reference.md"  # the book's reference: the claims, protocols, formats, published numbers
BOOK_DIR = REPO_ROOT / "book"
RUNS_DIR = REPO_ROOT / "runs"  # runs with parameters other than the book's, one folder each (git-ignored)
TEMPLATES = Path(__file__).resolve().parent / "templates"
KERNEL = "python3"
# Parameter name -> the only values a chapter that declares it accepts (checked before anything runs).
ALLOWED_VALUES: dict[str, tuple] = {
    "scale": ("toy", "full"),
    "device": ("cpu", "cuda", "auto"),
    "dtype": ("auto", "bfloat16", "float16", "float32"),
}
# Parameters that change a run's speed, not its numbers (at most their float rounding): a run that differs from
# the book's parameters only in these still writes the book.
NEUTRAL = frozenset({"torch_threads", "workers"})
OUTPUT_ROOTS = ("results_root", "figures_root")  # where a chapter writes its results and figures
RUNNING = re.compile(r"^\..+\.(?P<pid>\d+)\.running\.ipynb$")  # what execute_chapter executes into
SLUG_LENGTH = 60  # longest run-folder slug kept as it is; a longer one is cut and ends in a hash


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


def _seeds_problem(name: str, seeds: list) -> str | None:
    """Why ``seeds`` cannot be a chapter's seeds (none, not whole numbers from 0, repeated), or None."""
    rule = f"parameter {name!r} must be a non-empty list of distinct whole numbers from 0, like [0, 1, 2]"
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        return f"{rule}, got {seeds!r}"
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    return f"{rule}, got {seeds!r} ({', '.join(map(str, repeated))} repeated)" if repeated else None


def _output_folder_problem(name: str, folder: str) -> str | None:
    """Why a chapter cannot write into ``folder`` (relative to the repository; '' is the repository's), or None."""
    if not folder:
        return None
    path = REPO_ROOT / folder
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return f"parameter {name!r} must be a folder, but {existing} is a file: pass a folder (or '' for the book's)"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"parameter {name!r}: this user cannot write to {existing}: pass a folder you can write to"
    return None


def _workers_problem(name: str, workers: int) -> str | None:
    """Why ``workers`` cannot be a number of worker processes (it is negative), or None."""
    if workers < 0:
        return f"parameter {name!r} must be 0 (two processes, one on a 1-core machine) or more, got {workers!r}"
    return None


# Parameter name -> a check of a well-typed value beyond its type: why it cannot be used, or None.
VALUE_CHECKS: dict[str, Callable[[str, object], str | None]] = {
    "seeds": _seeds_problem,
    "pilot_seeds": _seeds_problem,
    "workers": _workers_problem,
    "results_root": _output_folder_problem,
    "figures_root": _output_folder_problem,
}


def _parameter_problem(name: str, value: object, declared: dict[str, object]) -> str | None:
    """Why ``value`` cannot be the chapter's parameter ``name`` (unknown, wrong type, not allowed), or None."""
    if name not in declared:
        return f"unknown parameter {name!r}"
    if not _type_ok(value, declared[name]):
        return f"parameter {name!r} must be {type(declared[name]).__name__} like {declared[name]!r}, got {value!r}"
    allowed = ALLOWED_VALUES.get(name)
    if allowed is not None and value not in allowed:
        return f"parameter {name!r} must be one of {', '.join(map(repr, allowed))}, got {value!r}"
    check = VALUE_CHECKS.get(name)
    return check(name, value) if check else None


def _problems(parameters: dict[str, object], declared: dict[str, object]) -> list[str]:
    """Every reason ``parameters`` cannot run a chapter whose parameters cell is ``declared``, each value checked
    alone and then together."""
    problems = [p for name, value in parameters.items() if (p := _parameter_problem(name, value, declared))]
    values = {**declared, **parameters}
    if not problems and values.get("smoke") is True and values.get("scale") == "full":
        problems.append("smoke=True is a toy-world plumbing check and cannot run at scale='full': "
                        "drop -p smoke True for a full-scale run, or use scale 'toy' for a smoke run")  # fmt: skip
    shared = [] if problems else sorted(set(values.get("seeds") or []) & set(values.get("pilot_seeds") or []))
    if shared:
        problems.append(f"pilot_seeds {values['pilot_seeds']!r} share seed(s) {shared} with seeds {values['seeds']!r}: "
                        "a pilot must run on seeds the chapter does not report; pass other pilot_seeds")  # fmt: skip
    return problems


def chapter_parameters(paths: list[Path], parameters: dict[str, object]) -> dict[Path, dict[str, object]]:
    """Each chapter's share of ``parameters``: those it declares, each checked. A name that no chapter of ``paths``
    declares is an error, as is a value of the wrong type or not allowed; one ``BookError`` lists them all."""
    return _shares({path: declared_parameters(read_chapter(path)) for path in paths}, parameters)


def _shares(declared: dict[Path, dict[str, object]], parameters: dict[str, object]) -> dict[Path, dict[str, object]]:
    """``chapter_parameters`` for chapters whose parameters cells are ``declared``."""
    shares = {path: {n: v for n, v in parameters.items() if n in names} for path, names in declared.items()}
    unknown = [name for name in parameters if not any(name in d for d in declared.values())]
    problems = [f"unknown parameter {name!r}" for name in unknown]
    problems += [
        f"chapter {path.stem}: {p}" for path, share in shares.items() for p in _problems(share, declared[path])
    ]
    if problems:
        known = sorted({name for d in declared.values() for name in d})
        raise BookError("; ".join(dict.fromkeys(problems)) + f". The chapters' parameters are: {', '.join(known)}")
    return shares


def validate_parameters(nb: nbformat.NotebookNode, parameters: dict[str, object], chapter: str = "") -> None:
    """Raise one ``BookError`` listing every unknown name, wrongly typed value or value not allowed."""
    declared = declared_parameters(nb)
    problems = _problems(parameters, declared)
    if problems:
        raise BookError(f"chapter {chapter}: " + "; ".join(problems) + f". Its parameters are: {', '.join(declared)}")


def departures(declared: dict[str, object], parameters: dict[str, object]) -> dict[str, object]:
    """The ``parameters`` that make a run other than the book's: those unlike the chapter's defaults (its
    parameters cell, ``declared``), leaving out the ``NEUTRAL`` ones."""
    return {n: v for n, v in parameters.items() if n not in NEUTRAL and v != declared[n]}


def run_slug(parameters: dict[str, object]) -> str:
    """A short folder-name slug of ``parameters`` (``ablations-False_seeds-5``); a long one is cut and hashed."""
    pairs = (f"{n}-{re.sub(r'[^A-Za-z0-9.]+', '-', str(v)).strip('-')}" for n, v in sorted(parameters.items()))
    slug = "_".join(pairs) or "book-parameters"
    if len(slug) <= SLUG_LENGTH:
        return slug
    return f"{slug[: SLUG_LENGTH - 9]}-{hashlib.sha256(slug.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class RunPlan:
    """Where a run writes: the book (``folder`` None) or its own folder, and each chapter's parameters."""

    shares: dict[Path, dict[str, object]]  # chapter -> the parameters it executes with
    outputs: dict[Path, Path]  # chapter -> its executed notebook, in the order to execute them
    folder: Path | None
    departures: dict[str, object]  # the parameters that are not the book's (empty for a book run)


def _own_folder_shares(
    declared: dict[Path, dict[str, object]], shares: dict[Path, dict[str, object]], folder: Path
) -> dict[Path, dict[str, object]]:
    """Each chapter's parameters for a run into ``folder``: results and figures under it unless given, and the
    front page (run with other chapters) reads the results this run writes."""
    results = next((s["results_root"] for s in shares.values() if "results_root" in s), str(folder / "results"))
    roots = {"results_root": results, "figures_root": str(folder / "figures")}
    if len(shares) > 1:
        roots["source_root"] = results
    return {
        path: {**{n: v for n, v in roots.items() if n in declared[path]}, **share} for path, share in shares.items()
    }


def plan_run(
    paths: list[Path], parameters: dict[str, object], write_book: bool = False, runs_dir: Path | None = None
) -> RunPlan:
    """Check ``parameters`` for every chapter of ``paths`` and decide where the run writes: the book when they are
    the book's (or ``write_book``), else ``<runs_dir>/<chapter or 'book'>-<slug>/``."""
    declared = {path: declared_parameters(read_chapter(path)) for path in paths}
    shares = _shares(declared, parameters)
    changed = {n: v for path in paths for n, v in departures(declared[path], shares[path]).items()}
    if write_book:
        if any(s.get("smoke") for s in shares.values()):
            raise BookError("a smoke run never writes the book: drop --write-book or -p smoke True")
        if any(root in parameters for root in OUTPUT_ROOTS):
            raise BookError("--write-book writes the book's results/ and figures/: drop -p results_root/figures_root")
        changed = {}
    if not changed:
        return RunPlan(shares, {path: path.with_suffix(".ipynb") for path in paths}, None, {})
    slug = run_slug({n: v for n, v in changed.items() if n not in OUTPUT_ROOTS})
    folder = Path(runs_dir or RUNS_DIR) / f"{paths[0].stem if len(paths) == 1 else 'book'}-{slug}"
    outputs = {path: folder / f"{path.stem}.ipynb" for path in paths}
    return RunPlan(_own_folder_shares(declared, shares, folder), outputs, folder, changed)


def failed_path(output: Path) -> Path:
    """Where a failed run of the notebook ``output`` is kept: ``NN_name.failed.ipynb`` beside it."""
    return output.with_suffix(".failed.ipynb")


def _error_line(err: Exception) -> str:
    """A failed execution's whole error on one line (for a cell that raised: the notebook's own exception)."""
    if isinstance(err, PapermillExecutionError):
        text = f"cell In [{err.exec_count}] raised {err.ename}: {err.evalue}"
    else:
        text = f"{type(err).__name__}: {err}"
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def remove_dead_runs(folder: Path) -> None:
    """Delete the temporary notebooks (``.NN_name.<pid>.running.ipynb``) that killed runs left in ``folder``."""
    remove_dead(Path(folder).glob(".*.running.ipynb"), RUNNING)


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
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_runs(output.parent)
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


def render_book(notebooks: list[Path], out_dir: Path = BOOK_DIR, reference: Path | None = REFERENCE_PAGE) -> Path:
    """Render executed notebooks and the book's reference page (Markdown) to self-contained HTML (images embedded,
    no CDN), each page with the book's navigation and its chapter's bookkeeping, plus an index."""
    out_dir.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="offline", extra_template_basedirs=[str(TEMPLATES)], embed_images=True)
    sources = {path.stem: nbformat.read(path, as_version=4) for path in notebooks}
    if reference is not None and reference.is_file():
        text = reference.read_text(encoding="utf-8")
        sources[pages.REFERENCE_STEM] = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)])
    contents = [pages.Page(stem, chapter_title(nb, stem)) for stem, nb in sources.items()]
    for stem, nb in sources.items():
        record = bookkeeping(nb, stem)
        resources = {
            "metadata": {"name": stem},
            "book_nav": pages.navigation(contents, stem) + how_to_rerun(nb, stem) + pages.time_note(record),
            "book_footer": pages.footer(contents, stem, record),
        }
        shown = pages.for_the_book(nb)
        shown.metadata["title"] = chapter_title(nb, stem)
        body, _ = exporter.from_notebook_node(shown, resources=resources)
        (out_dir / f"{stem}.html").write_text(body, encoding="utf-8")
    front = out_dir / f"{FRONT_PAGE}.html"
    if front.is_file():  # the claims scoreboard, with the chapter list, is the book's front page
        (out_dir / "index.html").write_text(front.read_text(encoding="utf-8"), encoding="utf-8")
        return out_dir / "index.html"
    links = "\n".join(f'<li><a href="{page.href}">{html.escape(page.title)}</a></li>' for page in contents)
    index = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>The book</title></head><body>"
        f"{pages.navigation(contents, contents[0].stem)}"
        f"<h1>Why generative MLLMs perceive more than CLIP</h1><ol>{links}</ol></body></html>"
    )
    (out_dir / "index.html").write_text(index, encoding="utf-8")
    return out_dir / "index.html"


def how_to_rerun(nb: nbformat.NotebookNode, stem: str) -> str:
    """The re-run note of a chapter's page (the front page's re-run and pair-probe sections; none elsewhere)."""
    if stem == FRONT_PAGE:
        return pages.FRONT_PAGE_HOWTO
    tagged = any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells)
    return pages.rerun_note(stem, declared_parameters(nb)) if tagged else ""


def bookkeeping(nb: nbformat.NotebookNode, chapter: str) -> pages.Bookkeeping | None:
    """What the executed ``chapter`` (``nb``) records about its run (None for a page that is no chapter): its
    parameters, wall time, and results folder with the commit and the cache use its ``run.json`` records."""
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        return None
    papermill_record = nb.metadata.get("papermill", {})
    parameters = {**declared_parameters(nb), **papermill_record.get("parameters", {})}
    folder = None
    if "scale" in parameters and "results_root" in parameters:
        scale = f"{parameters['scale']}{'-smoke' if parameters.get('smoke') else ''}"
        folder = results_dir(chapter, scale, parameters["results_root"] or None)
    files = sorted(p.name for p in folder.iterdir() if p.is_file()) if folder and folder.is_dir() else []
    run_json = folder / "run.json" if folder else None
    run = json.loads(run_json.read_text()) if run_json and run_json.is_file() else {}
    return pages.Bookkeeping(
        parameters=parameters,
        seconds=papermill_record.get("duration"),
        finished=papermill_record.get("end_time"),
        results=pages.shown_path(folder, REPO_ROOT) if files else None,
        files=files,
        commit=run.get("git_commit"),
        cache=run.get("cache"),
    )


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
    run = sub.add_parser("run", help="execute chapters (all by default), then render the book (or the run's own)")
    run.add_argument("--chapter", action="append", help="chapter stem or number; repeatable")
    run.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="parameter")
    run.add_argument(
        "--write-book",
        action="store_true",
        help="write the book's notebooks, results/ and figures/ even with parameters other than the book's "
        "(never a smoke run); without it such a run writes under runs/",
    )
    render = sub.add_parser("render", help="render the executed notebooks to book/")
    render.add_argument("--out", type=Path, help="render into this folder instead of book/")
    args = parser.parse_args(argv)
    remove_dead_runs(NOTEBOOKS)
    if args.command == "run":
        paths = run_order([find_chapter(c) for c in args.chapter] if args.chapter else chapters())
        parameters = {name: parse_parameter(value) for name, value in args.p}
        plan = plan_run(paths, parameters, args.write_book)  # all checked before any chapter runs
        if plan.folder is not None:
            print(_own_folder_notice(plan), flush=True)
        execute_plan(plan)
        if plan.folder is not None:
            index = render_book(list(plan.outputs.values()), plan.folder / "book")
            print(f"run written to {plan.folder} (its book: {index}); the book is unchanged")
            return 0
    executed = [p.with_suffix(".ipynb") for p in chapters() if p.with_suffix(".ipynb").is_file()]
    index = render_book(executed, getattr(args, "out", None) or BOOK_DIR)
    print(f"book written to {index}")
    return 0


def _own_folder_notice(plan: RunPlan) -> str:
    """The line that says why and where a run other than the book's writes."""
    given = ", ".join(f"{name}={value!r}" for name, value in plan.departures.items())
    return (
        f"not the book's parameters ({given}): this run writes its notebooks, results and figures under "
        f"{plan.folder} and leaves the book alone (--write-book writes the book)"
    )


def execute_plan(plan: RunPlan) -> None:
    """Execute the plan's chapters in order, one console line as each starts and ends."""
    for i, (path, output) in enumerate(plan.outputs.items(), 1):
        print(f"[{i}/{len(plan.outputs)}] {path.stem}: running", flush=True)
        start = time.perf_counter()
        execute_chapter(path, plan.shares[path], output)
        print(f"[{i}/{len(plan.outputs)}] {path.stem}: done in {time.perf_counter() - start:.0f} s", flush=True)
