"""The README's layout table is the library's map: one row per package, naming exactly the modules it holds."""

import re
from pathlib import Path

import analysis_lib

PACKAGE = Path(analysis_lib.__file__).parent
README = PACKAGE.parent / "README.md"


def package_rows() -> dict[str, set[str]]:
    """Package -> the module names its README layout row shows in backticks (the first word of each item)."""
    rows = {}
    for line in README.read_text().splitlines():
        found = re.match(r"\| `analysis_lib/(\w+)/` \| (.*) \|$", line)
        if found:
            rows[found[1]] = set(re.findall(r"`(\w+)`", found[2]))
    return rows


def test_every_package_has_a_readme_row_naming_its_modules():
    rows = package_rows()
    packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")} - {"chapters"}
    assert packages and set(rows) == packages
    for package, named in rows.items():
        modules = {path.stem for path in (PACKAGE / package).glob("*.py")} - {"__init__", "__main__"}
        assert modules <= named, f"{package}: README layout lacks {sorted(modules - named)}"
