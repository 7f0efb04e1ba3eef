"""``NeptuneLogger`` imports, and building one raises as in Lightning 2.6 (the service has shut down)."""

from __future__ import annotations

import pytest

from ember.loggers.neptune import NeptuneLogger


def test_building_a_neptune_logger_says_the_service_is_gone_and_names_the_loggers_to_use():
    with pytest.raises(RuntimeError, match="NeptuneLogger is no longer supported. Neptune has been sunset.") as info:
        NeptuneLogger(project="team/project", api_key="ANONYMOUS", log_model_checkpoints=False)
    assert "CSVLogger" in str(info.value) and "TensorBoardLogger" in str(info.value)
