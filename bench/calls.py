"""Python calls per training step of the ``tiny`` programs: a count that does not move with the machine.

In the ``tiny`` loop a step's torch work evicts the interpreter's code and data between two of
Ember's calls, so each layer Ember adds costs far more there (0.5-1 µs on a 2-core EPYC) than the
same call in a tight loop, and the wall clock of a shared machine moves by more than a few layers.
This script counts instead: every Python function call and every call into C made from Python
(``sys.setprofile``) between two batch fetches of the training set, over ``--steps`` steady-state
steps, for the hand-written loop and for Ember, lean and with the Trainer's defaults
(``bench/workloads.py``). ``--diff`` lists the functions whose count differs from the raw loop's.

Example::

    python bench/calls.py                # per-step calls, raw loop against Ember
    python bench/calls.py --diff         # and which functions make the difference
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WARMUP = 60  # steps before counting: the first steps (and the logger's first write, at step 50) set things up


def _counting_dataset(dataset: Any, start: int, stop: int, counts: collections.Counter[str]) -> Any:
    """``dataset`` whose ``start``-th batch fetch starts counting calls into ``counts`` and ``stop``-th ends it."""
    from torch.utils.data import TensorDataset

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            counts[f"{Path(code.co_filename).name}:{code.co_name}"] += 1
        elif event == "c_call":
            counts[f"C:{getattr(arg, '__qualname__', arg)}"] += 1

    class CountingDataset(TensorDataset):
        def __init__(self) -> None:
            super().__init__(*dataset.tensors)
            self.fetches = 0

        def __getitems__(self, indices: list[int]) -> list[Any]:
            self.fetches += 1
            if self.fetches == start:
                sys.setprofile(profile)
            elif self.fetches == stop:
                sys.setprofile(None)
            return [self[i] for i in indices]

    return CountingDataset()


def count(impl: str, defaults: bool, steps: int) -> dict[str, float]:
    """Calls per step of one epoch of ``tiny`` (``defaults``: ``tiny_defaults``) by ``impl``, by function."""
    import workloads

    batches = WARMUP + steps + 2
    train, _ = workloads.tiny_data(batches, 4)
    counts: collections.Counter[str] = collections.Counter()
    dataset = _counting_dataset(train, WARMUP + 1, WARMUP + 1 + steps, counts)
    workloads.tiny_epoch(impl, defaults, batches, 4, train=dataset)
    return {name: n / steps for name, n in counts.items()}


def _quiet_count(impl: str, defaults: bool, steps: int) -> dict[str, float]:
    """``count``, without the model summary's and the progress bar's output, and with the bar's clock-driven
    redraws (at most ten a second) turned off, so that every step makes the same calls."""
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (before Ember's logging takes its stream)
    from ember.callbacks.tqdm_progress import TQDMProgressBar

    interval = TQDMProgressBar.min_refresh_interval
    TQDMProgressBar.min_refresh_interval = float("inf")
    try:
        return count(impl, defaults, steps)
    finally:
        sys.stdout.close()
        sys.stdout, sys.stderr, TQDMProgressBar.min_refresh_interval = stdout, stderr, interval


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="steady-state steps to count")
    parser.add_argument(
        "--diff", action="store_true", help="list the functions whose count differs (once in ten steps or more)"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import workloads

    workloads.one_thread_process()

    lines = [
        f"Python calls per step (function calls and calls into C), {args.steps} steps after {WARMUP}",
        "",
        "| program | raw loop | Ember | Ember's extra |",
        "|---|---|---|---|",
    ]
    details: list[str] = []
    for name, defaults in (("tiny", False), ("tiny_defaults", True)):
        raw, ember = (_quiet_count(impl, defaults, args.steps) for impl in ("raw", "ember"))
        total_raw, total_ember = sum(raw.values()), sum(ember.values())
        lines.append(f"| {name} | {total_raw:.1f} | {total_ember:.1f} | {total_ember - total_raw:+.1f} |")
        if args.diff:
            details += ["", f"{name}: calls per step that differ (Ember - raw loop)"]
            for function in sorted(set(raw) | set(ember)):
                extra = ember.get(function, 0.0) - raw.get(function, 0.0)
                if abs(extra) >= 0.1:
                    details.append(f"  {extra:+6.2f}  {function}")
    print("\n".join(lines + details))
    return lines + details


if __name__ == "__main__":
    main()
