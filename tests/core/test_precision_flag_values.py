"""The number types ``Trainer(precision=...)`` takes: NumPy integers as Lightning does, and floats such as
``16.0``, which Lightning validates and then fails on ("No precision set"): Ember takes them for the integer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ember

HISTORICAL = "is supported for historical reasons but its usage is discouraged. Please set your precision to"
CPU_FALLBACK = "AMP with fp16 is not supported on CPU. Using `precision='bf16-mixed'` instead."


def _precision_and_warnings(precision: object) -> tuple[str, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = ember.Trainer(precision=precision, accelerator="cpu", logger=False, enable_progress_bar=False)
    return trainer.precision, [
        str(warning.message) for warning in caught if "GPU available" not in str(warning.message)
    ]


@pytest.mark.parametrize("sixteen", [16, "16", np.int64(16), np.int32(16), 16.0, np.float64(16.0)])
def test_every_spelling_of_16_warns_that_it_is_historical_then_falls_back_to_bf16_on_cpu(sixteen):
    precision, said = _precision_and_warnings(sixteen)

    assert precision == "bf16-mixed"
    assert len(said) == 2, said
    assert said[0] == f"`precision={sixteen}` {HISTORICAL} 16-mixed instead!"
    assert CPU_FALLBACK in said[1]


@pytest.mark.parametrize(("given", "expected"), [(32.0, "32-true"), (64.0, "64-true"), (np.int64(32), "32-true")])
def test_floats_and_numpy_integers_of_32_and_64_are_taken_without_a_warning(given, expected):
    """Lightning takes ``numpy.int64(32)`` too, and fails on ``32.0`` and ``64.0`` with "No precision set"."""
    assert _precision_and_warnings(given) == (expected, [])


def test_the_full_names_do_not_warn():
    assert _precision_and_warnings("bf16-mixed") == ("bf16-mixed", [])
    precision, said = _precision_and_warnings("16-mixed")
    assert precision == "bf16-mixed" and len(said) == 1 and CPU_FALLBACK in said[0]
