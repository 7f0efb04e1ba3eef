"""The docs cite tests as the evidence for what they say: every test they name exists, in the file they name."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = sorted([*ROOT.joinpath("docs").glob("*.md"), ROOT / "README.md"])
# `tests/path/test_file.py::test_name`, or `::test_name` (a test of the file cited before it)
CITATION = re.compile(r"(tests/[\w/]+\.py)?::(test_\w+)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_every_test_a_doc_cites_exists(doc):
    defined: dict[str, set[str]] = {}
    for path in ROOT.joinpath("tests").rglob("*.py"):
        names = set(re.findall(r"^(?:async )?def (test_\w+)\(", path.read_text(), flags=re.MULTILINE))
        defined[path.relative_to(ROOT).as_posix()] = names
    everywhere = set().union(*defined.values())
    missing = []
    for path, name in CITATION.findall(doc.read_text()):
        if path and name not in defined.get(path, set()):
            missing.append(f"{path}::{name}")
        elif not path and name not in everywhere:  # (a bare name: in any test file)
            missing.append(f"::{name}")
    assert not missing, f"{doc.name} cites tests that do not exist (renamed or removed?): {missing}"
