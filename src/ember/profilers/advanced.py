"""``AdvancedProfiler``: a cProfile report for every action."""

from __future__ import annotations

import cProfile
import io
import pstats
from pathlib import Path
from typing import Any

from ember.profilers.profiler import Profiler
from ember.utilities.signature_utils import lightning_style_annotations


class AdvancedProfiler(Profiler):
    """Run Python's ``cProfile`` during each action and report, per action, the functions sorted by
    cumulative time. Verbose: use it to find what inside a slow action is slow.

    Args:
        dirpath: folder for ``filename`` and the ``.prof`` dumps (default: the trainer's ``log_dir``).
        filename: write the report to ``<stage>-<filename>.txt`` there instead of logging it.
        line_count_restriction: functions listed per action: an int (a count) or a float in
            [0, 1] (a fraction).
        dump_stats: also write each action's raw statistics to ``<stage>-<filename>-<action>.prof``
            (open them with ``pstats`` or snakeviz).

    Nested actions (``run_training_batch`` holds ``training_step``) are attributed to the
    innermost one; the outer one's recording resumes when the inner one ends.

    Example::

        trainer = Trainer(profiler=AdvancedProfiler(filename="perf", line_count_restriction=20))
    """

    def __init__(
        self,
        dirpath: str | Path | None = None,
        filename: str | None = None,
        line_count_restriction: float = 1.0,
        dump_stats: bool = False,
    ) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        self.profiled_actions: dict[str, cProfile.Profile] = {}
        self.line_count_restriction = line_count_restriction
        self.dump_stats = dump_stats
        self._running: list[str] = []  # open actions, innermost last; only that one records

    def start(self, action_name: str) -> None:
        if self._running:
            self.profiled_actions[self._running[-1]].disable()
        profile = self.profiled_actions.get(action_name)
        if profile is None:
            profile = self.profiled_actions[action_name] = cProfile.Profile()
        self._running.append(action_name)
        profile.enable()

    def stop(self, action_name: str) -> None:
        profile = self.profiled_actions.get(action_name)
        if profile is None:
            raise ValueError(f"Attempting to stop recording an action ({action_name}) which was never started.")
        if action_name not in self._running:
            return  # stopped already: nothing more to do, as in Lightning
        profile.disable()
        # the last occurrence: the innermost open span of that name
        del self._running[len(self._running) - 1 - self._running[::-1].index(action_name)]
        if self._running:
            self.profiled_actions[self._running[-1]].enable()

    def summary(self) -> str:
        stats = {}
        for action, profile in self.profiled_actions.items():
            if self.dump_stats:
                self._dump_stats(action, profile)
            stream = io.StringIO()
            pstats.Stats(profile, stream=stream).strip_dirs().sort_stats("cumulative").print_stats(
                self.line_count_restriction
            )
            stats[action] = stream.getvalue()
        return self._stats_to_str(stats)

    def _dump_stats(self, action: str, profile: cProfile.Profile) -> None:
        if not self.dirpath:
            raise ValueError("`AdvancedProfiler(dump_stats=True)` needs a folder: pass `dirpath=...`.")
        self._save_output(profile.dump_stats, ".prof", action_name=action)

    def teardown(self, stage: str | None) -> None:
        super().teardown(stage=stage)
        for profile in self.profiled_actions.values():
            profile.disable()
        self.profiled_actions.clear()
        self._running.clear()

    def __getstate__(self) -> dict[str, Any]:
        # cProfile.Profile objects cannot be pickled: a copy starts empty
        return {**self.__dict__, "profiled_actions": {}, "_running": [], "_output_file": None, "_write_stream": None}


lightning_style_annotations(AdvancedProfiler)  # Lightning's `typing` forms in the signature
