import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from analysis_lib.book import runner as book


def _chapter(tmp_path):
    src = tmp_path / "01_demo.py"
    src.write_text(
        '# %% [markdown]\n# # Demo chapter\n\n# %% tags=["parameters"]\nseeds = [0]\nsmoke = False\n'
        'steps = 10\nrate = 0.5\nname = "toy"\n\n# %%\nprint(seeds, smoke, steps, rate, name)\n'
    )
    return src


def test_declared_parameters_come_from_the_parameters_cell(tmp_path):
    nb = book.read_chapter(_chapter(tmp_path))
    assert book.declared_parameters(nb) == {"seeds": [0], "smoke": False, "steps": 10, "rate": 0.5, "name": "toy"}


@pytest.mark.parametrize(
    "params, message",
    [
        ({"seedz": [1]}, "unknown parameter 'seedz'"),
        ({"steps": "ten"}, "'steps' must be int"),
        ({"smoke": 1}, "'smoke' must be bool"),
        ({"seeds": 3}, "'seeds' must be list"),
    ],
)
def test_bad_parameters_fail_before_anything_runs(tmp_path, params, message):
    src = _chapter(tmp_path)
    out = tmp_path / "out.ipynb"
    with pytest.raises(book.BookError, match=message):
        book.execute_chapter(src, params, out)
    assert not out.exists()


def test_good_parameters_pass_validation(tmp_path):
    nb = book.read_chapter(_chapter(tmp_path))
    book.validate_parameters(nb, {"seeds": [1, 2], "rate": 1, "steps": 3, "smoke": True})


def test_execute_and_render_offline(tmp_path):
    src = _chapter(tmp_path)
    out = book.execute_chapter(src, {"steps": 3}, tmp_path / "01_demo.ipynb")
    text = out.read_text()
    assert "[0] False 3 0.5 toy" in text
    index = book.render_book([out], tmp_path / "html")
    page = (tmp_path / "html" / "01_demo.html").read_text()
    assert "Demo chapter" in index.read_text() and "[0] False 3 0.5 toy" in page
    assert 'src="http' not in page and "cdnjs" not in page


def test_unknown_chapter_lists_the_chapters():
    with pytest.raises(book.BookError, match="01_same_encoder"):
        book.find_chapter("99_nothing")


def test_cli_rejects_bad_parameter_without_running(capsys):
    with pytest.raises(book.BookError, match="unknown parameter 'bogus'"):
        book.main(["run", "--chapter", "01", "-p", "bogus", "1"])


def _chapter_with_choices(tmp_path):
    src = tmp_path / "02_demo.py"
    src.write_text(
        '# %% tags=["parameters"]\nscale = "toy"\ndevice = "cpu"\ndtype = "auto"\nfail = False\n\n'
        '# %%\nif fail:\n    raise ValueError("boom: the chapter cannot run")\nprint("ran at", scale)\n'
    )
    return src


def test_values_outside_the_allowed_ones_fail_before_anything_runs(tmp_path):
    src = _chapter_with_choices(tmp_path)
    out = tmp_path / "02_demo.ipynb"
    with pytest.raises(book.BookError) as info:
        book.execute_chapter(src, {"scale": "huge", "device": "gpu", "dtype": "float64"}, out)
    message = str(info.value)
    assert "parameter 'scale' must be one of 'toy', 'full', got 'huge'" in message
    assert "'device' must be one of 'cpu', 'cuda', 'auto'" in message and "'dtype' must be one of" in message
    assert not out.exists() and list(tmp_path.glob("*.ipynb")) == []
    book.validate_parameters(book.read_chapter(src), {"scale": "full", "device": "cuda", "dtype": "bfloat16"})


def test_failed_run_leaves_the_executed_notebook_alone(tmp_path):
    src = _chapter_with_choices(tmp_path)
    out = tmp_path / "02_demo.ipynb"
    out.write_text("the committed notebook")
    with pytest.raises(book.BookError) as info:
        book.execute_chapter(src, {"fail": True}, out)
    message = str(info.value)
    assert "\n" not in message and "ValueError: boom: the chapter cannot run" in message
    assert "02_demo.ipynb is unchanged" in message and "02_demo.failed.ipynb" in message
    assert out.read_text() == "the committed notebook"
    assert "boom" in (tmp_path / "02_demo.failed.ipynb").read_text()
    assert not list(tmp_path.glob(".*running*"))
    book.execute_chapter(src, {"scale": "full"}, out)  # a good run replaces it and clears the failed one
    assert "ran at full" in out.read_text() and not (tmp_path / "02_demo.failed.ipynb").exists()


def test_interrupted_run_leaves_the_executed_notebook_alone(tmp_path, monkeypatch):
    def interrupted(nb, output, **kwargs):
        Path(output).write_text("half executed")
        raise KeyboardInterrupt

    monkeypatch.setattr(book.papermill, "execute_notebook", interrupted)
    src, out = _chapter_with_choices(tmp_path), tmp_path / "02_demo.ipynb"
    out.write_text("the committed notebook")
    with pytest.raises(KeyboardInterrupt):
        book.execute_chapter(src, {}, out)
    assert out.read_text() == "the committed notebook"
    assert (tmp_path / "02_demo.failed.ipynb").read_text() == "half executed"


def test_cli_rejects_a_value_not_allowed_without_touching_the_chapter(monkeypatch):
    committed = book.find_chapter("01").with_suffix(".ipynb")
    before = committed.read_bytes()
    monkeypatch.setattr(book.papermill, "execute_notebook", lambda *a, **k: pytest.fail("must not execute"))
    with pytest.raises(book.BookError, match="parameter 'scale' must be one of 'toy', 'full', got 'huge'"):
        book.main(["run", "--chapter", "01", "-p", "scale", "huge"])
    assert committed.read_bytes() == before


def test_parameters_go_to_the_chapters_that_declare_them(tmp_path):
    first = _chapter_with_choices(tmp_path)
    second = tmp_path / "00_claims.py"
    second.write_text('# %% tags=["parameters"]\nscale = "toy"\nseeds = [0, 1, 2]\n\n# %%\nprint(scale)\n')
    shares = book.chapter_parameters([first, second], {"scale": "full", "device": "cuda", "seeds": [0]})
    assert shares[first] == {"scale": "full", "device": "cuda"}
    assert shares[second] == {"scale": "full", "seeds": [0]}
    with pytest.raises(book.BookError) as info:
        book.chapter_parameters([first, second], {"bogus": 1, "seeds": "0", "device": "gpu"})
    message = str(info.value)
    assert "unknown parameter 'bogus'" in message and "chapter 00_claims: parameter 'seeds' must be list" in message
    assert "chapter 02_demo: parameter 'device' must be one of" in message
    assert [p.stem for p in book.run_order([second, first])] == ["02_demo", "00_claims"]


def test_the_claims_page_is_the_books_index(tmp_path):
    pages = []
    for stem, heading in (("00_claims", "The claims at a glance"), ("01_demo", "Chapter 1")):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {heading}")])
        nbformat.write(nb, tmp_path / f"{stem}.ipynb")
        pages.append(tmp_path / f"{stem}.ipynb")
    index = book.render_book(pages, tmp_path / "book")
    assert "The claims at a glance" in index.read_text() and (tmp_path / "book" / "01_demo.html").is_file()
    book.render_book(pages[1:], tmp_path / "plain")
    assert '<a href="01_demo.html">Chapter 1</a>' in (tmp_path / "plain" / "index.html").read_text()


def test_progress_reaches_the_console_not_the_notebook(tmp_path, capfd):
    src = tmp_path / "03_progress.py"
    src.write_text(
        '# %% tags=["parameters"]\nseeds = [0, 1]\n\n'
        "# %%\nfrom analysis_lib.core.progress import progress_bar, seed_progress\n"
        'for seed in seed_progress(seeds, "03_progress"):\n    for _ in progress_bar(range(3), desc="steps"):\n'
        "        pass\nimport sys\nfrom analysis_lib.core.progress import console\n"
        "assert console() is not sys.__stderr__  # a kernel's own stderr can land in the notebook\n"
        "print('chapter output')\n"
    )
    out = book.execute_chapter(src, {}, tmp_path / "03_progress.ipynb")
    outputs = [o for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", [])]
    assert [o for o in outputs if o.get("name") == "stderr"] == []
    assert "chapter output" in "".join(o.get("text", "") for o in outputs)
    console = capfd.readouterr().err
    assert "03_progress: seed 0 done (1/2" in console and "03_progress: seed 1 done (2/2" in console
    assert "steps" in console


def test_a_multi_line_error_is_printed_whole_on_one_line(tmp_path):
    src = tmp_path / "04_demo.py"
    src.write_text(
        '# %% tags=["parameters"]\nfail = True\n\n# %%\nraise RuntimeError(\n'
        '    "the full-scale run is not ready:\\n\\n[CLIP weights] download them\\n\\n[benchmarks] fetch"\n)\n'
    )
    with pytest.raises(book.BookError) as info:
        book.execute_chapter(src, {}, tmp_path / "04_demo.ipynb")
    message = str(info.value)
    assert "\n" not in message
    assert "not ready: [CLIP weights] download them [benchmarks] fetch. 04_demo.ipynb is unchanged" in message


@pytest.mark.parametrize(
    "seeds, message",
    [
        ([], "got []"),
        ([0, 0], "got [0, 0] (0 repeated)"),
        ([-1], "got [-1]"),
        ([True], "got [True]"),
        (["a"], "got ['a']"),
        ([0.5], "got [0.5]"),
    ],
)
def test_seeds_must_be_distinct_whole_numbers_from_zero(tmp_path, seeds, message):
    rule = "parameter 'seeds' must be a non-empty list of distinct whole numbers from 0, like [0, 1, 2], "
    with pytest.raises(book.BookError) as info:
        book.execute_chapter(_chapter(tmp_path), {"seeds": seeds}, tmp_path / "out.ipynb")
    assert rule + message in str(info.value)
    assert not list(tmp_path.glob("*.ipynb"))


def test_smoke_is_refused_at_full_scale(tmp_path):
    src = tmp_path / "05_demo.py"
    src.write_text('# %% tags=["parameters"]\nscale = "toy"\nsmoke = False\n\n# %%\nprint(scale)\n')
    with pytest.raises(book.BookError, match="smoke=True is a toy-world plumbing check and cannot run at scale='full'"):
        book.chapter_parameters([src], {"smoke": True, "scale": "full"})
    book.chapter_parameters([src], {"smoke": True, "scale": "toy"})


def test_a_pilot_seed_that_the_chapter_reports_is_refused(tmp_path):
    src = tmp_path / "06_demo.py"
    src.write_text('# %% tags=["parameters"]\nseeds = [0, 1]\npilot_seeds = [5]\n\n# %%\nprint(seeds)\n')
    with pytest.raises(book.BookError, match=r"pilot_seeds \[1\] share seed\(s\) \[1\] with seeds \[0, 1\]"):
        book.chapter_parameters([src], {"pilot_seeds": [1]})
    with pytest.raises(book.BookError, match=r"share seed\(s\) \[5\]"):
        book.chapter_parameters([src], {"seeds": [4, 5]})
    assert book.chapter_parameters([src], {"seeds": [0, 1, 2], "pilot_seeds": [6]}) == {
        src: {"seeds": [0, 1, 2], "pilot_seeds": [6]}
    }


def _chapter_with_roots(tmp_path):
    src = tmp_path / "06_demo.py"
    src.write_text(
        '# %% tags=["parameters"]\nseeds = [0, 1, 2]\ntorch_threads = 1\nsmoke = False\nresults_root = ""\n'
        'figures_root = ""\nworkers = 0\n\n# %%\nfrom pathlib import Path\n'
        "for root in (results_root, figures_root):\n    Path(root).mkdir(parents=True, exist_ok=True)\n"
        '    Path(root, "written.txt").write_text(str(seeds))\n'
    )
    return src


def test_an_output_root_that_is_a_file_or_not_writable_is_refused_before_any_work(tmp_path, monkeypatch):
    src = _chapter_with_roots(tmp_path)
    monkeypatch.setattr(book.papermill, "execute_notebook", lambda *a, **k: pytest.fail("must not execute"))
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    with pytest.raises(book.BookError, match=f"parameter 'results_root' must be a folder, but {a_file} is a file"):
        book.plan_run([src], {"results_root": str(a_file / "below")}, runs_dir=tmp_path / "runs")
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(book.os, "access", lambda path, mode: Path(path) != locked)  # root may write anywhere
    with pytest.raises(book.BookError, match=f"parameter 'figures_root': this user cannot write to {locked}"):
        book.plan_run([src], {"figures_root": str(locked / "figures")}, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_the_books_parameters_write_the_book_and_any_others_their_own_folder(tmp_path):
    src, runs = _chapter_with_roots(tmp_path), tmp_path / "runs"
    speed_only = {"seeds": [0, 1, 2], "torch_threads": 0, "workers": 1}  # threads and processes: speed only
    book_run = book.plan_run([src], speed_only, runs_dir=runs)
    assert book_run.folder is None and book_run.outputs == {src: src.with_suffix(".ipynb")}
    assert book_run.shares[src] == speed_only
    own = book.plan_run([src], {"seeds": [5], "torch_threads": 2}, runs_dir=runs)
    folder = runs / "06_demo-seeds-5"
    assert own.folder == folder and own.outputs == {src: folder / "06_demo.ipynb"}
    assert own.shares[src] == {
        "results_root": str(folder / "results"),
        "figures_root": str(folder / "figures"),
        "seeds": [5],
        "torch_threads": 2,
    }
    book.execute_plan(own)
    assert (folder / "results" / "written.txt").read_text() == "[5]" and (folder / "06_demo.ipynb").is_file()
    assert not src.with_suffix(".ipynb").exists()
    assert book.plan_run([src], {"smoke": True}, runs_dir=runs).folder == runs / "06_demo-smoke-True"
    assert book.plan_run([src], {"seeds": [5]}, write_book=True, runs_dir=runs).folder is None
    with pytest.raises(book.BookError, match="a smoke run never writes the book"):
        book.plan_run([src], {"smoke": True}, write_book=True, runs_dir=runs)
    long = book.run_slug({"seeds": list(range(40))})
    assert len(long) == book.SLUG_LENGTH and long.startswith("seeds-0-1-2-")


def test_a_run_with_several_chapters_scores_its_own_results(tmp_path):
    front = tmp_path / f"{book.FRONT_PAGE}.py"
    front.write_text(
        '# %% tags=["parameters"]\nseeds = [0, 1, 2]\nsource_root = ""\nresults_root = ""\nfigures_root = ""\n'
    )
    chapter = _chapter_with_roots(tmp_path)
    plan = book.plan_run(book.run_order([front, chapter]), {"seeds": [0]}, runs_dir=tmp_path / "runs")
    folder = tmp_path / "runs" / "book-seeds-0"
    assert list(plan.outputs) == [chapter, front] and plan.folder == folder
    assert plan.shares[front]["source_root"] == plan.shares[chapter]["results_root"] == str(folder / "results")


def test_leftovers_of_killed_runs_are_removed_and_git_ignored(tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    dead = tmp_path / f".06_demo.{finished.pid}.running.ipynb"  # a run killed before it could clean up
    live = tmp_path / f".06_demo.{os.getppid()}.running.ipynb"  # a run still going on (this process's parent)
    for path in (dead, live):
        path.write_text("half executed")
    book.execute_chapter(_chapter_with_roots(tmp_path), {"results_root": str(tmp_path), "figures_root": str(tmp_path)})
    assert not dead.exists() and live.read_text() == "half executed"
    leftovers = [f"notebooks/.01_same_encoder.{finished.pid}.running.ipynb", "runs/01_same_encoder-seeds-5/x.ipynb"]
    ignored = subprocess.run(["git", "check-ignore", *leftovers], cwd=book.REPO_ROOT, capture_output=True, text=True)
    assert ignored.stdout.split() == leftovers


def test_a_negative_number_of_workers_is_refused_before_any_work(tmp_path):
    with pytest.raises(book.BookError, match="parameter 'workers' must be 0 .* or more, got -1"):
        book.plan_run([_chapter_with_roots(tmp_path)], {"workers": -1}, runs_dir=tmp_path / "runs")


def test_every_chapter_that_trains_takes_workers():
    declared = {p.stem: book.declared_parameters(book.read_chapter(p)) for p in book.chapters()}
    assert {name for name, d in declared.items() if "workers" in d} == set(declared) - {book.FRONT_PAGE}
    assert {d["workers"] for d in declared.values() if "workers" in d} == {0}


def test_the_chapters_default_to_one_torch_thread():
    threads = {p.stem: book.declared_parameters(book.read_chapter(p)).get("torch_threads") for p in book.chapters()}
    assert {t for t in threads.values() if t is not None} == {1}


def _book_outputs_status() -> str:
    """``git status`` of the book's own outputs: the executed notebooks, results/ and figures/."""
    paths = ["notebooks/*.ipynb", "notebooks/.*.ipynb", "results", "figures"]
    command = ["git", "status", "--porcelain", "--untracked-files=all", "--", *paths]
    return subprocess.run(command, cwd=book.REPO_ROOT, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("parameters", [["-p", "smoke", "True"], ["-p", "seeds", "[0, 1]"]], ids=["smoke", "seeds"])
def test_a_run_with_other_parameters_touches_nothing_of_the_book(tmp_path, monkeypatch, capsys, parameters):
    monkeypatch.setattr(book, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(book, "BOOK_DIR", tmp_path / "book")
    before = _book_outputs_status()
    book.main(["run", "--chapter", book.FRONT_PAGE, *parameters])
    assert _book_outputs_status() == before
    folder = next((tmp_path / "runs").iterdir())
    scale = "toy-smoke" if "smoke" in parameters else "toy"
    assert (folder / f"{book.FRONT_PAGE}.ipynb").is_file() and (folder / "book" / "index.html").is_file()
    assert (folder / "results" / book.FRONT_PAGE / scale / "scoreboard.csv").is_file()
    assert list((folder / "figures").glob("*.png")) and not (tmp_path / "book").exists()
    assert f"under {folder}" in capsys.readouterr().out
