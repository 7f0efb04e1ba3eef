"""``Trainer(fast_dev_run=...)`` reads its value as Lightning 2.6.6 does: off when falsy, else ``int(value)``
batches per loop, so ``"2"``, ``2.0`` and ``1.5`` run, and a value that is no number is ``int()``'s error."""

from __future__ import annotations

import numpy as np
import pytest
from tests.helpers.core_models import CoreModel, loader, quiet_trainer

from ember.utilities import MisconfigurationException


@pytest.mark.parametrize(
    ("value", "stored", "batches"),
    [("2", "2", 2), (2.0, 2.0, 2), (1.5, 1.5, 1), (1.0, True, 1), (np.int64(2), 2, 2), ("0", "0", 0)],
)
def test_a_value_that_int_reads_runs_that_many_batches(value, stored, batches):
    trainer = quiet_trainer(fast_dev_run=value, max_epochs=5)
    assert trainer.fast_dev_run == stored  # kept as given (1 as True), as in Lightning
    assert (trainer.max_steps, trainer.max_epochs, trainer.limit_train_batches) == (batches, 1, batches)
    trainer.fit(CoreModel(), loader(16))
    assert trainer.global_step == batches


@pytest.mark.parametrize("value", ["", 0.0, None, False])
def test_a_falsy_value_turns_it_off(value):
    trainer = quiet_trainer(fast_dev_run=value, max_epochs=1)
    assert (trainer.max_steps, trainer.limit_train_batches) == (-1, 1.0)
    trainer.fit(CoreModel(), loader(16))
    assert trainer.global_step == 4


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("abc", ValueError, r"^invalid literal for int\(\) with base 10: 'abc'"),
        ("2.5", ValueError, r"^invalid literal for int\(\) with base 10: '2.5'"),
        ([1], TypeError, r"^int\(\) argument must be a string, a bytes-like object or a real number, not 'list'"),
        (-1, MisconfigurationException, r"^fast_dev_run=-1 is not a valid configuration. It should be >= 0"),
        # Lightning takes these and fails in `fit` ("__len__() should return >= 0"): refused here
        (-1.5, MisconfigurationException, r"^fast_dev_run=-1.5 is not a valid configuration"),
        ("-1", MisconfigurationException, r"^fast_dev_run='-1' is not a valid configuration"),
    ],
)
def test_a_value_that_is_no_count_is_refused_at_construction(value, error, message):
    with pytest.raises(error, match=message):
        quiet_trainer(fast_dev_run=value)
