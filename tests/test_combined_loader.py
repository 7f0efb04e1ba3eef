"""``CombinedLoader``, against what Lightning 2.6.6 answered.

The programs are in ``tests/helpers/combined_loader_cases.py``; Lightning's answers in
``tests/fixtures/lightning_combined_loader.json`` (``make_lightning_combined_loader.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers import combined_loader_cases as cases
from torch.utils.data import DataLoader

import ember
from ember.utilities import CombinedLoader

FIXTURE = Path(__file__).parent / "fixtures" / "lightning_combined_loader.json"


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(FIXTURE.read_text())


def _as_json(value):
    return json.loads(json.dumps(value))


def test_the_reference_is_small_and_from_lightning_2_6_6(reference):
    assert FIXTURE.stat().st_size < 100_000
    assert reference["versions"]["pytorch_lightning"] == "2.6.6"
    assert {"combined_loader", "training"} <= set(reference)


def test_every_mode_and_property_matches_lightning(reference):
    expected = reference["combined_loader"]
    got = _as_json(cases.combined_loader_cases(ember))
    assert set(got) == set(expected)
    for key in expected:
        assert got[key] == expected[key], key
    # what the recorded values say, spelled out for the reader
    assert expected["modes"]["max_size_cycle/dict"]["len"] == 3
    # each item is [batch, batch_idx, dataloader_idx]
    assert expected["modes"]["max_size/list"]["items"][2] == {
        "list": [{"list": [None, [20, 21, 22, 23, 24], None]}, 2, 0]
    }
    assert expected["modes"]["sequential/dict"]["items"][2] == {"list": [[10, 11, 12, 13, 14], 0, 1]}
    assert "tuple" in expected["modes"]["max_size_cycle/tuple"]["items"][0]["list"][0]  # a tuple stays a tuple


def test_next_before_iter_names_the_fix():
    loader = CombinedLoader([DataLoader(range(4))], "max_size_cycle")
    with pytest.raises(RuntimeError, match=r"Please call `iter\(combined_loader\)` first"):
        next(loader)  # Lightning fails an assertion here
