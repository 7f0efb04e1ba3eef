"""``ckpt_path`` values that are no path (a list, a number, a dict) are Lightning 2.6.6's ``FileNotFoundError``,
whether passed to a call or set with ``trainer.ckpt_path = ...``."""

from __future__ import annotations

import re

import pytest
from tests.helpers.core_models import CoreModel, loader, quiet_trainer

NOT_PATHS = [["a.ckpt"], 5, {"x": 1}]


@pytest.mark.parametrize("value", NOT_PATHS)
def test_a_ckpt_path_that_is_no_path_is_not_found_in_a_call(value):
    with pytest.raises(FileNotFoundError, match=r"^Checkpoint file not found: "):
        quiet_trainer(max_epochs=1).fit(CoreModel(), loader(8), ckpt_path=value)


@pytest.mark.parametrize("value", NOT_PATHS)
def test_a_ckpt_path_that_is_no_path_is_not_found_when_set_on_the_trainer(value):
    trainer = quiet_trainer(max_epochs=1)
    trainer.ckpt_path = value
    assert trainer.ckpt_path is value  # kept as set, as in Lightning
    with pytest.raises(FileNotFoundError, match="^Checkpoint file not found: " + re.escape(str(value))):
        trainer.validate(CoreModel(), loader(8))
