"""Lightning's ``XLAProfiler`` (TPUs), by name only: Ember has no XLA support, so building one is an error.
Without ``torch_xla`` it is Lightning's own (a ``ModuleNotFoundError``), so ``Trainer(profiler="xla")`` and
a program that falls back to another profiler on that error behave as on Lightning.

Example::

    from lightning.pytorch.profilers import XLAProfiler   # imports; cannot be built
"""

from __future__ import annotations

from ember.profilers.profiler import Profiler
from ember.utilities.exceptions import xla_requested
from ember.utilities.signature_utils import lightning_style_annotations

_INSTEAD = 'Use `Trainer(profiler="pytorch")` (or `"simple"`) on CPUs and CUDA.'


class XLAProfiler(Profiler):
    """Lightning's TPU profiler: not supported on Ember."""

    def __init__(self, port: int = 9012) -> None:  # Lightning's argument, so that a config naming it parses
        raise xla_requested("XLAProfiler", _INSTEAD)

    def start(self, action_name: str) -> None:  # never reached: the class cannot be built
        raise NotImplementedError

    def stop(self, action_name: str) -> None:
        raise NotImplementedError

    def summary(self) -> str:
        raise NotImplementedError


lightning_style_annotations(XLAProfiler)  # Lightning's `typing` forms in the signature
