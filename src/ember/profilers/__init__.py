"""Profilers for ``Trainer(profiler=...)``: ``"simple"``, ``"advanced"``, ``"pytorch"``, or an instance.

Each profiler loads when first named, so the default trainer imports none of cProfile, pstats or
``torch.profiler``.
"""

from __future__ import annotations

from typing import Any

from ember.profilers.profiler import PassThroughProfiler, Profiler
from ember.utilities.lazy import lazy_attribute

_LAZY = {
    "SimpleProfiler": "ember.profilers.simple",
    "AdvancedProfiler": "ember.profilers.advanced",
    "PyTorchProfiler": "ember.profilers.pytorch",
    "XLAProfiler": "ember.profilers.xla",  # by name only
}
# the names `Trainer(profiler=...)` accepts, in Lightning's order ("xla" builds `XLAProfiler`, which refuses)
PROFILERS = {
    "simple": "SimpleProfiler",
    "advanced": "AdvancedProfiler",
    "pytorch": "PyTorchProfiler",
    "xla": "XLAProfiler",
}

__all__ = ["AdvancedProfiler", "PassThroughProfiler", "Profiler", "PyTorchProfiler", "SimpleProfiler", "XLAProfiler"]


def __getattr__(name: str) -> Any:
    return lazy_attribute(globals(), _LAZY, name)


def create_profiler(profiler: Profiler | str | None) -> Profiler:
    """What ``Trainer(profiler=...)`` holds: the instance given, a new one for a name, a pass-through for none.

    As in Lightning, ``False`` (any false value but ``""``) means no profiler, like ``None``.
    """
    if isinstance(profiler, Profiler):
        return profiler
    from ember.utilities.exceptions import MisconfigurationException

    if isinstance(profiler, str):
        name = PROFILERS.get(profiler.lower())
        if name is None:
            raise MisconfigurationException(
                "When passing string value for the `profiler` parameter of `Trainer`, it can only be one of"
                f" {list(PROFILERS)}, got {profiler!r}; or pass a `Profiler` instance."
            )
        return __getattr__(name)()
    if not profiler:
        return PassThroughProfiler()
    raise MisconfigurationException(
        f"`Trainer(profiler=...)` got {profiler!r} ({type(profiler).__name__}): pass one of {list(PROFILERS)} or an instance of"
        " `ember.profilers.Profiler`."
    )
