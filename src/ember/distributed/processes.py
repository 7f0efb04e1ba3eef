"""``runs_distributed``: whether a strategy runs the module in several processes."""

from __future__ import annotations

from typing import Any


def runs_distributed(strategy: Any) -> bool:
    """Whether ``strategy`` runs the module in several processes, read as Lightning's accelerator connector reads
    it: Ember's parallel strategies are (without ``DDPStrategy.is_distributed``'s deprecation warning); a strategy
    of the program's own that defines ``is_distributed`` is asked."""
    for cls in type(strategy).__mro__:
        if "is_distributed" in cls.__dict__:
            # where it is defined: the class's module reads Lightning's name under the alias, its getter's does not
            getter = getattr(cls.__dict__["is_distributed"], "fget", None)
            if getattr(getter, "__module__", "").startswith("ember."):
                return bool(getattr(strategy, "_in_processes", False))
            return bool(strategy.is_distributed)
    return False
