"""Lightning's ``trainer.setup`` module, for libraries that replace its ``_log_device_info`` (nequip's XPU
support does). Ember prints no "GPU available: ..." lines (docs/compat.md), so the function does nothing
and the Trainer does not call it.
"""

from __future__ import annotations

from typing import Any


def _log_device_info(trainer: Any) -> None:
    """Lightning logs the available and used devices here; Ember does not."""
