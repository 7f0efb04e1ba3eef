"""A scheduler dict's ``"frequency"`` may be any whole number of 1 or more, as in Lightning 2.6.6: ``True``
steps at every interval, a numpy or 0-d tensor integer by its value."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.core.test_schedulers import LrRecorder, _halving, _run


@pytest.mark.parametrize(
    ("frequency", "lrs"),
    [
        (True, [0.5**i for i in range(8)]),
        (np.int64(3), [1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25]),
        (torch.tensor(3), [1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25]),
    ],
)
def test_a_whole_number_frequency_steps_by_its_value(frequency, lrs):
    model = _run(LrRecorder(_halving(interval="step", frequency=frequency)))
    assert model.train_lrs == lrs
    stored = model.trainer.lr_scheduler_configs[0].frequency
    assert stored == int(frequency) and type(stored) is (bool if frequency is True else int)
