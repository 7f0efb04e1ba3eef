"""The ``loops`` entry of Ember's checkpoints holds the counts Lightning's loops hold at the same point:
Lightning resumes from that entry (which batch comes next, whether validation or the epoch end still has
to run), so an Ember checkpoint resumes on Lightning as Lightning's own would.

The programs are in ``tests/helpers/loops_entry_cases.py``; Lightning's answers in
``tests/fixtures/lightning_loops_reference.json`` (``tests/fixtures/make_lightning_loops_reference.py``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from tests.helpers import loops_entry_cases

import ember

REFERENCE = json.loads((Path(__file__).parents[1] / "fixtures" / "lightning_loops_reference.json").read_text())


@pytest.fixture(scope="module")
def ember_answers(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return loops_entry_cases.run_cases(ember, str(tmp_path_factory.mktemp("loops")))


def _flat(entry, prefix=""):
    for key, value in entry.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("case", sorted(loops_entry_cases.CASES))
def test_every_checkpoint_holds_lightnings_loop_counts(ember_answers, case):
    expected = {name: entry for name, entry in REFERENCE["checkpoints"].items() if name.startswith(f"{case}/")}
    got = {name: entry for name, entry in ember_answers.items() if name.startswith(f"{case}/")}
    assert sorted(got) == sorted(expected)  # the same files
    for name, entry in expected.items():
        want, have = dict(_flat(entry)), dict(_flat(got[name]))
        differences = {key: (value, have.get(key)) for key, value in want.items() if have.get(key) != value}
        assert not differences, f"{name}: (Lightning, Ember) {differences}"
        assert set(have) == set(want), name
