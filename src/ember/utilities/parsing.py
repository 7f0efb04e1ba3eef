"""Hyperparameter containers."""

from __future__ import annotations

from typing import Any


class AttributeDict(dict):
    """A dict whose keys are also attributes.

    Example::

        >>> h = AttributeDict(lr=0.1)
        >>> h.lr
        0.1
    """

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as exc:
            raise AttributeError(f"'AttributeDict' object has no attribute '{key}'") from exc

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        del self[key]

    def __repr__(self) -> str:
        if not self:
            return ""
        width = max(len(str(k)) for k in self)
        return "\n".join(
            f'"{k}":'.ljust(width + 3) + f" {v}" for k, v in sorted(self.items(), key=lambda kv: str(kv[0]))
        )
