"""``SimpleProfiler``: how long each action took, in a table at the end of the run."""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from pathlib import Path

from ember.profilers.profiler import Profiler
from ember.utilities.signature_utils import lightning_style_annotations


class SimpleProfiler(Profiler):
    """Record the duration of every action; report the mean, the number of calls, the total and
    the share of the run's wall time of each.

    Args:
        dirpath: folder for ``filename`` (default: the trainer's ``log_dir``).
        filename: write the report to ``<stage>-<filename>.txt`` there instead of logging it.
        extended: add the number of calls and the percentage columns, and the total row.

    Example::

        trainer = Trainer(profiler="simple")              # or profiler=SimpleProfiler(filename="perf")
        trainer.fit(model)                                # the "FIT Profiler Report" table at the end
    """

    def __init__(self, dirpath: str | Path | None = None, filename: str | None = None, extended: bool = True) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        self.current_actions: dict[str, float] = {}
        self.recorded_durations: dict[str, list[float]] = defaultdict(list)
        self.extended = extended
        self.start_time = time.perf_counter()

    def start(self, action_name: str) -> None:
        if action_name in self.current_actions:
            raise ValueError(f"Attempted to start {action_name} which has already started.")
        self.current_actions[action_name] = time.perf_counter()

    def stop(self, action_name: str) -> None:
        end = time.perf_counter()
        start = self.current_actions.pop(action_name, None)
        if start is None:
            raise ValueError(f"Attempting to stop recording an action ({action_name}) which was never started.")
        self.recorded_durations[action_name].append(end - start)

    def summary(self) -> str:
        sep = os.linesep
        title = (f"{self._stage.upper()} " if self._stage is not None else "") + f"Profiler Report{sep}"
        if not self.recorded_durations:
            # Lightning's empty extended report: the title, then the line that ends every report
            # (its short report fails on `max()` of nothing; Ember gives the same text)
            return title + sep
        width = max(len(k) for k in self.recorded_durations)
        if self.extended:
            total_time = time.perf_counter() - self.start_time
            rows = []
            for action, durations in self.recorded_durations.items():
                total = math.fsum(durations)
                rows.append((action, total / len(durations), len(durations), total, 100.0 * total / total_time))
            rows.sort(key=lambda row: row[4], reverse=True)

            def row(*cells: str) -> str:
                action, *rest = cells
                return f"{sep}|  {action:<{width}s}\t|" + "".join(f"  {cell:<15}\t|" for cell in rest)

            header = row("Action", "Mean duration (s)", "Num calls", "Total time (s)", "Percentage %")
            line = f"{sep}{'-' * len(header.expandtabs())}"
            out = title + line + header + line
            out += row("Total", "-", f"{sum(r[2] for r in rows)}", f"{total_time:.5}", "100 %") + line
            for action, mean, calls, total, share in rows:
                out += row(action, f"{mean:.5}", f"{calls}", f"{total:.5}", f"{share:.5}")
            return out + line + sep
        means = sorted(
            ((a, math.fsum(d) / len(d), math.fsum(d)) for a, d in self.recorded_durations.items()),
            key=lambda r: r[1],
            reverse=True,
        )

        def short_row(action: str, mean: str, total: str) -> str:
            return f"{sep}|  {action:<{width}s}\t|  {mean:<15}\t|  {total:<15}\t|"

        header = short_row("Action", "Mean duration (s)", "Total time (s)")
        line = f"{sep}{'-' * len(header.expandtabs())}"
        out = title + line + header + line
        for action, mean, total in means:
            out += short_row(action, f"{mean:.5}", f"{total:.5}")
        return out + line + sep


lightning_style_annotations(SimpleProfiler)  # Lightning's `typing` forms in the signature
