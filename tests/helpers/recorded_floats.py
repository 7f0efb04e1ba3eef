"""How closely a float recorded on Lightning must match Ember's, given the CPU it was recorded on.

A short seeded training run gives the same float32 numbers on every run of one machine, but not across
CPUs: torch picks its kernels by instruction set (AVX2, AVX-512, ...), and they round a matrix product's
partial sums differently, in the last bit; training carries that bit forward. Between an AVX2 and an
AVX-512 machine the demos' losses moved by about 1e-5 relative, and the sums of a diverging 4-layer
LSTM's weights by up to 3.5e-3. A reference records ``torch.backends.cpu.get_cpu_capability()`` with
its numbers (``cpu_capability``): on a CPU of the same kind the match must be to 1e-6 relative, which
catches a last-bit difference in the arithmetic; on another, to 1e-2, which still catches a run that
took another step, skipped a hook or saw its batches in another order.

Example::

    rel, abs_ = tolerance(reference["versions"].get("cpu_capability"))
    assert math.isclose(ours, theirs, rel_tol=rel, abs_tol=abs_)
"""

from __future__ import annotations

import torch

SAME_CPU = (1e-6, 1e-7)
OTHER_CPU = (1e-2, 1e-5)


def cpu_capability() -> str:
    """The instruction set torch's CPU kernels use here, as a reference records it."""
    return str(torch.backends.cpu.get_cpu_capability())


def tolerance(recorded_on: str | None) -> tuple[float, float]:
    """``(rel_tol, abs_tol)`` for numbers recorded on a CPU of kind ``recorded_on`` (None: not recorded)."""
    return SAME_CPU if recorded_on == cpu_capability() else OTHER_CPU
