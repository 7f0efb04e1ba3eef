"""The Trainer and its loops; ``from ember.trainer import Trainer`` as in Lightning."""

from __future__ import annotations

from typing import Any

__all__ = ["Trainer", "seed_everything"]


def __getattr__(name: str) -> Any:
    # the modules of this package import each other: the Trainer loads when asked for, not with the package
    if name == "Trainer":
        from ember.trainer.trainer import Trainer

        return Trainer
    if name == "seed_everything":
        from ember.utilities.seed import seed_everything

        return seed_everything
    raise AttributeError(f"module 'ember.trainer' has no attribute {name!r}")
