"""How closely a float recorded on Lightning must match Ember's, given the CPU it was recorded on.

A short seeded training run gives the same float32 numbers on every run of one machine, but not across
CPUs: torch picks its kernels by instruction set (AVX2, AVX-512, ...), and they round a matrix product's
partial sums differently, in the last bit; training carries that bit forward. Between an AVX2 and an
AVX-512 machine the demos' losses moved by about 1e-5 relative, and the sums of a diverging 4-layer
LSTM's weights by up to 3.5e-3. The instruction set alone does not tell the kind apart: two AVX-512
machines (one with the bf16 and VNNI extensions) gave the demos' predictions 1.4e-6 apart, the BLAS
library choosing other kernels on each, and the thread count splits a product's sums too. So a reference
records ``cpu_kind()`` with its numbers: the instruction set and a digest of a few float32 results (matrix
products of three shapes, a 2-layer LSTM under a Transformer encoder layer, forward and backward) in a
process with torch's default thread count. On a CPU of the same kind the match must be to 1e-6 relative,
which catches a last-bit difference in the arithmetic; on another, to 1e-2, which still catches a run
that took another step, skipped a hook or saw its batches in another order.

Example::

    rel, abs_ = tolerance(reference["versions"].get("cpu_kind"))
    assert math.isclose(ours, theirs, rel_tol=rel, abs_tol=abs_)
"""

from __future__ import annotations

import functools
import hashlib

import torch

SAME_CPU = (1e-6, 1e-7)
OTHER_CPU = (1e-2, 1e-5)


@functools.cache
def cpu_kind() -> str:
    """The kind of CPU as torch's float32 arithmetic sees it here, as a reference records it (``AVX512 71ff9ba756b3``)."""
    digest = hashlib.sha256()
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(0)
        for rows, inner, columns in ((64, 32, 2), (35, 200, 1000), (128, 64, 64)):
            a = torch.randn(rows, inner, requires_grad=True)
            b = torch.randn(columns, inner, requires_grad=True)
            product = torch.nn.functional.linear(a, b)
            product.square().sum().backward()
            for result in (product, a.grad, b.grad):
                digest.update(result.detach().numpy().tobytes())
        lstm = torch.nn.LSTM(16, 32, num_layers=2)
        layer = torch.nn.TransformerEncoderLayer(32, 2, 64, dropout=0.0)
        output = layer(lstm(torch.randn(10, 4, 16))[0])
        output.sum().backward()
        digest.update(output.detach().numpy().tobytes())
        for parameter in [*lstm.parameters(), *layer.parameters()]:
            digest.update(parameter.grad.numpy().tobytes())
    return f"{torch.backends.cpu.get_cpu_capability()} {digest.hexdigest()[:12]}"


def tolerance(recorded_on: str | None) -> tuple[float, float]:
    """``(rel_tol, abs_tol)`` for numbers recorded on a CPU of kind ``recorded_on`` (``cpu_kind()``; None: not
    recorded)."""
    return SAME_CPU if recorded_on == cpu_kind() else OTHER_CPU
