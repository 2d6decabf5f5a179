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
