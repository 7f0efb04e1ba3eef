"""Throughput: batches, samples, items and FLOPs per second over a window of recent updates.

What ``lightning.fabric.utilities.throughput`` provides, for ``ThroughputMonitor`` and for user
loops: ``Throughput``, ``measure_flops`` (``torch.utils.flop_counter``) and ``get_available_flops``
(the peak of the device, for the model FLOPs utilization ``mfu``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import torch

from ember.utilities.rank_zero import rank_zero_warn

_THROUGHPUT_METRICS = dict[str, float]


class Throughput:
    """Rates over the last ``window_size`` updates, and the running totals.

    ``compute()`` returns ``time``, ``batches``, ``samples`` (and ``lengths``) as the totals of the
    last update; once ``window_size`` updates have been seen, also ``device/batches_per_sec`` and
    ``device/samples_per_sec`` (``device/items_per_sec`` when lengths are given), and with
    ``world_size > 1`` the totals over all devices without the ``device/`` prefix. Once
    ``window_size`` FLOP counts have been seen: ``device/flops_per_sec``, ``flops_per_sec`` (all
    devices, with ``world_size > 1``) and, when the device's peak is known, ``device/mfu``.

    Args:
        available_flops: the peak FLOPs per second of one device (for ``device/mfu``).
        world_size: how many devices work together (the rates are assumed equal on each).
        window_size: how many updates the rates are computed over (at least 2).
        separator: what joins ``device`` and the metric name.

    Example::

        throughput = Throughput(window_size=10)
        start = time.perf_counter()
        for i in range(1, 101):
            train_one_batch()
            torch.cuda.synchronize()  # without it the clock reads when work was queued, not done
            throughput.update(time=time.perf_counter() - start, batches=i, samples=i * 32)
            if i % 10 == 0:
                print(throughput.compute()["device/samples_per_sec"])
    """

    def __init__(
        self, available_flops: float | None = None, world_size: int = 1, window_size: int = 100, separator: str = "/"
    ) -> None:
        if world_size < 1:
            raise ValueError(f"`world_size` must be at least 1, got {world_size}.")
        if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 2:
            # (text failed with "'<' not supported", a float with the window's "an integer is required")
            raise ValueError(
                f"`window_size` must be an int of at least 2 (rates need two updates), got {window_size!r}."
            )
        self.available_flops = available_flops
        self.world_size = world_size
        self.separator = separator
        self._time = _MonotonicWindow(window_size, "time")
        self._batches = _MonotonicWindow(window_size, "batches")
        self._samples = _MonotonicWindow(window_size, "samples")
        self._lengths = _MonotonicWindow(window_size, "lengths")
        self._flops: deque[float] = deque(maxlen=window_size)

    def update(
        self, *, time: float, batches: int, samples: int, lengths: int | None = None, flops: int | None = None
    ) -> None:
        """Record the totals so far.

        Args:
            time: seconds since the start; must grow with every call.
            batches: batches seen by this device so far; must grow with every call.
            samples: samples seen by this device so far (at least ``batches``); must grow.
            lengths: items (e.g. tokens) seen by this device so far (at least ``samples``); must grow.
            flops: FLOPs this device spent since the previous update (e.g. ``measure_flops`` of one batch).
        """
        self._time.append(time)
        if samples < batches:
            raise ValueError(f"Expected samples ({samples}) to be greater or equal than batches ({batches})")
        self._batches.append(batches)
        self._samples.append(samples)
        if lengths is not None:
            if lengths < samples:
                raise ValueError(f"Expected lengths ({lengths}) to be greater or equal than samples ({samples})")
            self._lengths.append(lengths)
            if len(self._samples) != len(self._lengths):
                raise RuntimeError(
                    f"If lengths are passed ({len(self._lengths)}), there needs to be the same number of samples"
                    f" ({len(self._samples)})"
                )
        if flops is not None:
            self._flops.append(flops * self.world_size)  # all devices together

    def compute(self) -> _THROUGHPUT_METRICS:
        """The totals of the last update and, once the window is full, the rates over it."""
        sep, world = self.separator, self.world_size
        metrics: _THROUGHPUT_METRICS = {
            "time": self._time[-1],
            "batches": self._batches[-1],
            "samples": self._samples[-1],
        }
        if self._lengths:
            metrics["lengths"] = self._lengths[-1]
        elapsed = self._time[-1] - self._time[0] if self._time else 0.0
        if self._time.full:
            batches_per_sec = (self._batches[-1] - self._batches[0]) / elapsed
            samples_per_sec = (self._samples[-1] - self._samples[0]) / elapsed
            metrics[f"device{sep}batches_per_sec"] = batches_per_sec
            metrics[f"device{sep}samples_per_sec"] = samples_per_sec
            if world > 1:
                metrics["batches_per_sec"] = batches_per_sec * world
                metrics["samples_per_sec"] = samples_per_sec * world
            if self._lengths.full:
                items_per_sec = (self._lengths[-1] - self._lengths[0]) / elapsed
                metrics[f"device{sep}items_per_sec"] = items_per_sec
                if world > 1:
                    metrics["items_per_sec"] = items_per_sec * world
        if len(self._flops) == self._flops.maxlen:
            # the first entry was spent before the window's first time stamp
            flops_per_sec = (sum(self._flops) - self._flops[0]) / elapsed
            if world > 1:
                metrics["flops_per_sec"] = flops_per_sec
            metrics[f"device{sep}flops_per_sec"] = flops_per_sec / world
            if self.available_flops:
                metrics[f"device{sep}mfu"] = flops_per_sec / world / self.available_flops
        return metrics

    def reset(self) -> None:
        """Forget every update."""
        for window in (self._time, self._batches, self._samples, self._lengths):
            window.clear()
        self._flops.clear()


class _MonotonicWindow(list):
    """The last ``maxlen`` values appended, which must grow strictly (a counter that goes back is a bug)."""

    def __init__(self, maxlen: int, name: str) -> None:
        super().__init__()
        self.maxlen = maxlen
        self.name = name

    @property
    def full(self) -> bool:
        return len(self) == self.maxlen

    def append(self, value: Any) -> None:
        if self and self[-1] >= value:
            raise ValueError(f"Expected the value to increase, last: {self[-1]}, current: {value}")
        super().append(value)
        if len(self) > self.maxlen:
            del self[0]


def measure_flops(
    model: torch.nn.Module,
    forward_fn: Callable[[], torch.Tensor],
    loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> int:
    """The FLOPs of one call of ``forward_fn`` (and of ``loss_fn`` and its backward, when given).

    Counted by ``torch.utils.flop_counter.FlopCounterMode``; a model built on the ``meta`` device
    is counted without memory or compute.

    Example::

        with torch.device("meta"):
            model = MyModel()
            x = torch.randn(2, 32)
        forward_flops = measure_flops(model, lambda: model(x))
        training_flops = measure_flops(model, lambda: model(x), lambda y: y.sum())
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        if loss_fn is None:
            forward_fn()
        else:
            loss_fn(forward_fn()).backward()
    return counter.get_total_flops()


# Peak dense (no sparsity) FLOPs per second from NVIDIA's datasheets. "tfloat32" is float32
# matmuls on tensor cores, used on Ampere and later unless float32 matmul precision is "highest".
_CUDA_FLOPS: dict[str, dict[Any, float]] = {
    # Hopper: H200 has the H100 SXM's compute (more and faster memory)
    "h100 sxm": {
        torch.float64: 33.5e12,
        torch.float32: 66.9e12,
        "tfloat32": 494.7e12,
        torch.bfloat16: 989.4e12,
        torch.float16: 989.4e12,
        torch.int8: 1978.9e12,
    },
    "h100 pcie": {
        torch.float64: 25.6e12,
        torch.float32: 51.2e12,
        "tfloat32": 378e12,
        torch.bfloat16: 756e12,
        torch.float16: 756e12,
        torch.int8: 1513e12,
    },
    # Ampere and Ada
    "a100": {
        torch.float64: 9.7e12,
        torch.float32: 19.5e12,
        "tfloat32": 156e12,
        torch.bfloat16: 312e12,
        torch.float16: 312e12,
        torch.int8: 624e12,
    },
    "a10g": {torch.float32: 31.2e12, "tfloat32": 62.5e12, torch.bfloat16: 125e12, torch.float16: 125e12},
    "l4": {torch.float32: 30.3e12, "tfloat32": 60e12, torch.bfloat16: 121e12, torch.float16: 121e12},
    # Turing and Volta (no bfloat16 tensor cores)
    "t4": {torch.float32: 8.1e12, torch.float16: 65e12, torch.int8: 130e12},
    "v100": {torch.float64: 7.8e12, torch.float32: 15.7e12, torch.float16: 125e12},
}


def _cuda_chip(device_name: str) -> str | None:
    name = device_name.lower()
    if "h100" in name:
        return "h100 pcie" if ("pcie" in name or "hbm2e" in name) else "h100 sxm"
    if "h200" in name or "gh200" in name:
        return "h100 sxm"
    for chip in ("a100", "a10g", "t4", "v100"):
        if chip in name:
            return chip
    if name.endswith(" l4") or name == "l4":
        return "l4"
    return None


def get_available_flops(device: torch.device, dtype: torch.dtype | str) -> int | None:
    """The device's peak FLOPs per second for ``dtype``, or ``None`` (with a warning) when unknown.

    A theoretical upper bound (dense matmuls only), used as the denominator of ``device/mfu``.
    Known: NVIDIA H200, H100, A100, A10G, L4, T4 and V100. The CPU and other devices give ``None``
    without a warning.

    Example::

        get_available_flops(torch.device("cuda"), torch.bfloat16)  # 989400000000000 on an H100 SXM
    """
    if device.type != "cuda":
        return None
    device_name = torch.cuda.get_device_name(device)
    chip = _cuda_chip(device_name)
    if chip is None:
        rank_zero_warn(f"FLOPs not found for {device_name!r}")
        return None
    if dtype is torch.float32:
        ampere_or_later = torch.cuda.get_device_capability(device)[0] >= 8
        if ampere_or_later and torch.get_float32_matmul_precision() != "highest":
            dtype = "tfloat32"
    flops = _CUDA_FLOPS[chip].get(dtype)
    if flops is None:
        rank_zero_warn(f"{device_name!r} does not support {dtype}")
        return None
    return int(flops)


def precision_to_dtype(precision: str) -> torch.dtype:
    """The dtype the matmuls of a ``Trainer(precision=...)`` string run in (float32 for ``"32-true"``)."""
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    if precision.startswith("64"):
        return torch.float64
    return torch.float32
