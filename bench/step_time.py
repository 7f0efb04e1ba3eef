"""Per-step wall time of the ``tiny`` programs with the machine's noise taken out: ``make bench``'s other view.

``bench/run.py`` times whole processes, and on a shared machine their ratios move by more than the
framework's overhead. This script runs the hand-written loop and Ember in one process, alternating
their epochs so that a slow minute of the machine falls on both, clocks every step, and compares the
medians, which leave out the steps a neighbour slowed down. It measures the per-step part only; the
fixed costs (imports, set-up, sanity check, checkpoint writes) are in ``run.py``'s figures and in
``bench/instructions.py``'s fixed count.

The programs are ``bench/workloads.py``'s ``tiny`` (lean Trainer) and ``tiny_defaults`` (the
Trainer's defaults), one torch thread. A step is the time between two batches taken from the training
set, which the loader fetches with one ``__getitems__`` per batch: fetch, step, hooks, logging and
checks, the same span on both sides. The first steps of each epoch are left out as warm-up.

Example::

    python bench/step_time.py                      # 4 epochs of 1000 steps per program and side
    python bench/step_time.py --steps 300 --epochs 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WARMUP = 5
VAL_BATCHES = 20  # per epoch, as in make bench's tiny_defaults


def _timed_dataset(dataset: Any) -> Any:
    from torch.utils.data import TensorDataset

    class TimedDataset(TensorDataset):
        """Notes the clock each time the loader takes a batch from it."""

        def __init__(self) -> None:
            super().__init__(*dataset.tensors)
            self.clock: list[float] = []

        def __getitems__(self, indices: list[int]) -> list[Any]:
            self.clock.append(time.perf_counter())
            return [self[i] for i in indices]

    return TimedDataset()


def epoch_steps(impl: str, defaults: bool, steps: int) -> list[float]:
    """One epoch of ``steps`` batches by ``impl`` (``raw`` or ``ember``): the seconds of each step after warm-up."""
    import workloads

    train, _ = workloads.tiny_data(steps, VAL_BATCHES)
    timed = _timed_dataset(train)
    workloads.tiny_epoch(impl, defaults, steps, VAL_BATCHES, train=timed)
    clock = timed.clock
    return [b - a for a, b in zip(clock[WARMUP:], clock[WARMUP + 1 :])]


def measure(defaults: bool, steps: int, epochs: int) -> dict[str, list[float]]:
    """Alternate the raw loop's and Ember's epochs (one warm-up epoch each first); every timed step, by side."""
    for impl in ("raw", "ember"):
        epoch_steps(impl, defaults, min(steps, 50))
    times: dict[str, list[float]] = {"raw": [], "ember": []}
    for epoch in range(epochs):
        for impl in ("raw", "ember") if epoch % 2 == 0 else ("ember", "raw"):
            times[impl] += epoch_steps(impl, defaults, steps)
    return times


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="batches per epoch")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per program and side, alternating")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import workloads

    workloads.one_thread_process()

    lines = [
        f"per-step wall time, medians over {args.epochs} alternating epochs of {args.steps} steps, one process",
        "",
        "| program | raw loop | Ember | Ember's extra | ratio |",
        "|---|---|---|---|---|",
    ]
    stderr = sys.stderr
    for name, defaults in (("tiny", False), ("tiny_defaults", True)):
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (the progress bar's output)
        try:
            times = measure(defaults, args.steps, args.epochs)
        finally:
            sys.stderr.close()
            sys.stderr = stderr
        raw, ember = (statistics.median(times[impl]) for impl in ("raw", "ember"))
        lines.append(
            f"| {name} | {raw * 1e6:.1f} µs | {ember * 1e6:.1f} µs | {(ember - raw) * 1e6:+.1f} µs | {ember / raw:.3f}× |"
        )
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
