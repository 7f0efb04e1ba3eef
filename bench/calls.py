"""Python calls and bytecodes per training step of the ``tiny`` programs: counts that do not move with the machine.

In the ``tiny`` loop a step's torch work evicts the interpreter's code and data between two of
Ember's calls, so each layer Ember adds costs far more there (0.5-1 µs on a 2-core EPYC) than the
same call in a tight loop, and the wall clock of a shared machine moves by more than a few layers.
This script counts instead, between two batch fetches of the training set, over ``--steps``
steady-state steps, for the hand-written loop and for Ember, lean and with the Trainer's defaults
(``bench/workloads.py``):

- calls: every Python function call and every call into C made from Python (``sys.setprofile``);
- bytecodes: every bytecode instruction the interpreter executes (``sys.settrace`` with opcode
  events), which also weighs what a function does, not only that it was called. Of the two it is
  the one that follows the wall clock: the per-step gap in time is about the share of bytecodes
  that Ember adds.

``--diff`` lists the functions whose counts differ from the raw loop's.

Example::

    python bench/calls.py                # per-step calls and bytecodes, raw loop against Ember
    python bench/calls.py --diff         # and which functions make the difference
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
WARMUP = 60  # steps before counting: the first steps (and the logger's first write, at step 50) set things up


class Counts:
    """Calls and bytecodes by function (``file:function``, ``C:name`` for calls into C)."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.bytecodes: collections.Counter[str] = collections.Counter()

    def profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            self.calls[_name(frame)] += 1
        elif event == "c_call":
            self.calls[f"C:{getattr(arg, '__qualname__', arg)}"] += 1

    def trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            self.bytecodes[_name(frame)] += 1
        elif event == "call":
            frame.f_trace_opcodes = True
        return self.trace

    def start(self, frame: FrameType | None) -> None:
        _trace_frames(frame, self.trace)  # the frames already running (the loop's own) count too
        sys.settrace(self.trace)
        sys.setprofile(self.profile)

    def stop(self, frame: FrameType | None) -> None:
        sys.setprofile(None)
        sys.settrace(None)
        _trace_frames(frame, None)


def _name(frame: FrameType) -> str:
    code = frame.f_code
    return f"{Path(code.co_filename).name}:{code.co_name}"


def _trace_frames(frame: FrameType | None, trace: Any) -> None:
    while frame is not None:
        frame.f_trace, frame.f_trace_opcodes = trace, trace is not None
        frame = frame.f_back


def _counting_dataset(dataset: Any, start: int, stop: int, counts: Counts) -> Any:
    """``dataset`` whose ``start``-th batch fetch starts counting into ``counts`` and ``stop``-th ends it."""
    from torch.utils.data import TensorDataset

    class CountingDataset(TensorDataset):
        def __init__(self) -> None:
            super().__init__(*dataset.tensors)
            self.fetches = 0

        def __getitems__(self, indices: list[int]) -> list[Any]:
            self.fetches += 1
            if self.fetches == start:
                counts.start(sys._getframe(1))
            elif self.fetches == stop:
                counts.stop(sys._getframe(1))
            return [self[i] for i in indices]

    return CountingDataset()


def count(impl: str, defaults: bool, steps: int) -> tuple[dict[str, float], dict[str, float]]:
    """Calls and bytecodes per step of one epoch of ``tiny`` (``defaults``: ``tiny_defaults``) by ``impl``, by
    function."""
    import workloads

    batches = WARMUP + steps + 2
    train, _ = workloads.tiny_data(batches, 4)
    counts = Counts()
    dataset = _counting_dataset(train, WARMUP + 1, WARMUP + 1 + steps, counts)
    workloads.tiny_epoch(impl, defaults, batches, 4, train=dataset)
    return (
        {name: n / steps for name, n in counts.calls.items()},
        {name: n / steps for name, n in counts.bytecodes.items()},
    )


def _quiet_count(impl: str, defaults: bool, steps: int) -> tuple[dict[str, float], dict[str, float]]:
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


def _differences(what: str, name: str, raw: dict[str, float], ember: dict[str, float], least: float) -> list[str]:
    lines = ["", f"{name}: {what} per step that differ (Ember - raw loop)"]
    for function in sorted(set(raw) | set(ember)):
        extra = ember.get(function, 0.0) - raw.get(function, 0.0)
        if abs(extra) >= least:
            lines.append(f"  {extra:+7.2f}  {function}")
    return lines


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="steady-state steps to count")
    parser.add_argument(
        "--diff", action="store_true", help="list the functions whose counts differ (by 0.1 call or 1 bytecode a step)"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import workloads

    workloads.one_thread_process()

    lines = [
        f"Python calls (function calls and calls into C) and bytecodes per step, {args.steps} steps after {WARMUP}",
        "",
        "| program | calls: raw loop | Ember | Ember's extra | bytecodes: raw loop | Ember | Ember's extra |",
        "|---|---|---|---|---|---|---|",
    ]
    details: list[str] = []
    for name, defaults in (("tiny", False), ("tiny_defaults", True)):
        (raw_calls, raw_codes), (ember_calls, ember_codes) = (
            _quiet_count(impl, defaults, args.steps) for impl in ("raw", "ember")
        )
        calls = [sum(raw_calls.values()), sum(ember_calls.values())]
        codes = [sum(raw_codes.values()), sum(ember_codes.values())]
        lines.append(
            f"| {name} | {calls[0]:.1f} | {calls[1]:.1f} | {calls[1] - calls[0]:+.1f} |"
            f" {codes[0]:.0f} | {codes[1]:.0f} | {codes[1] - codes[0]:+.0f} ({codes[1] / codes[0] - 1:+.1%}) |"
        )
        if args.diff:
            details += _differences("calls", name, raw_calls, ember_calls, 0.1)
            details += _differences("bytecodes", name, raw_codes, ember_codes, 1.0)
    print("\n".join(lines + details))
    return lines + details


if __name__ == "__main__":
    main()
