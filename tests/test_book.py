from pathlib import Path

import nbformat
import pytest

from analysis_lib import book


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
        "# %%\nfrom analysis_lib.progress import progress_bar, seed_progress\n"
        'for seed in seed_progress(seeds, "03_progress"):\n    for _ in progress_bar(range(3), desc="steps"):\n'
        "        pass\nimport sys\nfrom analysis_lib.progress import console\n"
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
