"""``PyTorchProfiler``: ``torch.profiler`` over the run, with the trainer's actions as labelled ranges."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from ember.profilers.profiler import Profiler
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.signature_utils import lightning_style_annotations


class PyTorchProfiler(Profiler):
    """Record the operators of the run with ``torch.profiler`` (CPU, and CUDA when available); each
    trainer action is a ``record_function`` range named ``[pl][profile]<action>``, and so is each
    submodule's forward when ``record_module_names``. The report is the operator table; the Chrome
    trace goes to ``<dirpath>/<stage>-<filename>.pt.trace.json`` (open it in Perfetto).

    Without a ``schedule`` the whole run is recorded, so keep it short (``max_steps``,
    ``limit_train_batches``) or pass ``schedule=torch.profiler.schedule(...)``.

    Args:
        dirpath: folder for the report file and the trace (default: the trainer's ``log_dir``).
        filename: write the report to ``<stage>-<filename>.txt`` there instead of logging it.
        group_by_input_shapes: one table row per operator and input shapes (records shapes).
        emit_nvtx: emit NVTX ranges for ``nsys``/``nvprof`` instead of recording (no report).
        export_to_chrome: write the Chrome trace.
        row_limit: rows of the table.
        sort_by_key: the table's sort column (default ``cuda_time_total`` with CUDA, else ``cpu_time_total``).
        record_module_names: a range per submodule forward, named ``[pl][module]<class>: <name>``.
        table_kwargs: more arguments for ``key_averages().table``.
        \\**profiler_kwargs: passed to ``torch.profiler.profile`` (``activities``, ``profile_memory``,
            ``with_stack``, ``schedule``...). With a ``schedule``, the profiler steps at the end of each
            training, validation, test and predict step, and the schedule counts each kind apart, as
            Lightning's does.

    Example::

        trainer = Trainer(profiler=PyTorchProfiler(filename="ops", row_limit=30), max_steps=20)
    """

    # the steps at whose end a `schedule` moves on (Lightning's attribute; a subclass may change it)
    STEP_FUNCTIONS = {"training_step", "validation_step", "test_step", "predict_step"}
    # the table's sort columns Lightning allows
    AVAILABLE_SORT_KEYS = {
        "cpu_time",
        "cuda_time",
        "cpu_time_total",
        "cuda_time_total",
        "cpu_memory_usage",
        "cuda_memory_usage",
        "self_cpu_memory_usage",
        "self_cuda_memory_usage",
        "count",
    }

    def __init__(
        self,
        dirpath: str | Path | None = None,
        filename: str | None = None,
        group_by_input_shapes: bool = False,
        emit_nvtx: bool = False,
        export_to_chrome: bool = True,
        row_limit: int = 20,
        sort_by_key: str | None = None,
        record_module_names: bool = True,
        table_kwargs: dict[str, Any] | None = None,
        **profiler_kwargs: Any,
    ) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        self._group_by_input_shapes = group_by_input_shapes
        self._emit_nvtx = emit_nvtx
        self._export_to_chrome = export_to_chrome
        self._row_limit = row_limit
        self._sort_by_key = sort_by_key
        self._record_module_names = record_module_names
        self._table_kwargs = table_kwargs or {}
        # taken out here, where Lightning reads it too, so that a config parser lists `record_shapes` as an
        # argument; unset, it follows `group_by_input_shapes`, which needs the shapes recorded
        self._record_shapes: bool | None = profiler_kwargs.pop("record_shapes", None)
        self._profiler_kwargs = profiler_kwargs
        # as Lightning: `enabled=False` records nothing (the calls still run, with no profiler around them)
        # (read from the attribute: a config parser lists what is read from `profiler_kwargs` as an argument)
        self._enabled = bool(self._profiler_kwargs.get("enabled", True))
        _check_table_kwargs(self._table_kwargs)
        if sort_by_key is not None and sort_by_key not in self.AVAILABLE_SORT_KEYS:
            raise MisconfigurationException(
                f"Found sort_by_key: {sort_by_key}. Should be within {self.AVAILABLE_SORT_KEYS}. "
            )
        _check_schedule(self._profiler_kwargs.get("schedule"))
        self.function_events: Any = None  # torch's EventList of the last run, once it is summarized
        self._profiler: Any = None
        self._contexts: list[Any] = []  # what is entered for the whole run, to exit in reverse
        self._ranges: dict[str, list[Any]] = {}
        self._hooks: list[RegisterRecordFunction] = []
        self._modules_registered = False
        self._lightning_module: Any = None  # set by the trainer
        self._stage_schedule: _StageSchedule | None = None  # the `schedule` of the running profiler

    def start(self, action_name: str) -> None:
        if not self._enabled:
            return
        if self._profiler is None and not self._contexts:
            self._start_run()
        if self._record_module_names and not self._modules_registered and self._lightning_module is not None:
            self._register_module_ranges(self._lightning_module)  # the trainer sets the module after its first hook
        record = torch.autograd.profiler.record_function("[pl][profile]" + action_name)
        record.__enter__()
        self._ranges.setdefault(action_name, []).append(record)

    def stop(self, action_name: str) -> None:
        records = self._ranges.get(action_name)
        if not records:
            return  # never started (or profiling disabled): nothing to close, as in Lightning
        records.pop().__exit__(None, None, None)
        schedule = self._stage_schedule
        if schedule is not None and self._profiler is not None:
            kind = next((step for step in self.STEP_FUNCTIONS if action_name.endswith(step)), None)
            if kind is not None:  # the end of a step: the schedule moves on that kind of step's count
                schedule.kind = kind
                self._profiler.step()

    def _start_run(self) -> None:
        contexts: list[Any]
        if self._emit_nvtx:
            contexts = [
                torch.cuda.profiler.profile(),
                torch.autograd.profiler.emit_nvtx(record_shapes=self._records_shapes()),
            ]
        else:
            kwargs = dict(self._profiler_kwargs)
            if kwargs.get("schedule") is not None:
                self._stage_schedule = kwargs["schedule"] = _StageSchedule(kwargs["schedule"])
            if "activities" not in kwargs:
                kwargs["activities"] = [torch.profiler.ProfilerActivity.CPU]
                if torch.cuda.is_available():
                    kwargs["activities"].append(torch.profiler.ProfilerActivity.CUDA)
            kwargs["record_shapes"] = self._records_shapes()
            # only what `torch.profiler.profile` takes, as Lightning passes them (`metric`, `enabled` and
            # `export_to_flame_graph` are Lightning's own)
            accepted = inspect.signature(torch.profiler.profile.__init__).parameters
            self._profiler = torch.profiler.profile(**{k: v for k, v in kwargs.items() if k in accepted})
            contexts = [self._profiler]
        for context in contexts:
            context.__enter__()
            self._contexts.append(context)

    def _records_shapes(self) -> bool:
        return self._group_by_input_shapes if self._record_shapes is None else self._record_shapes

    def _register_module_ranges(self, module: torch.nn.Module) -> None:
        self._modules_registered = True
        self._hooks.append(RegisterRecordFunction(module).__enter__())

    def _stop_run(self) -> None:
        for register in self._hooks:
            register.__exit__(None, None, None)
        self._hooks.clear()
        self._modules_registered = False
        for records in self._ranges.values():
            while records:
                records.pop().__exit__(None, None, None)
        while self._contexts:
            self._contexts.pop().__exit__(None, None, None)

    def summary(self) -> str:
        self._stop_run()
        profiler, self._profiler = self._profiler, None
        self._stage_schedule = None
        if profiler is not None:
            self.function_events = profiler.events()  # kept: the report can be asked for again
            if self._export_to_chrome and self.dirpath:
                self._save_output(profiler.export_chrome_trace, ".pt.trace.json")
        if not self.function_events:  # nothing recorded, or NVTX ranges for an outside tool
            return ""
        sort_by = self._sort_by_key or ("cuda_time_total" if torch.cuda.is_available() else "cpu_time_total")
        events = self.function_events.key_averages(group_by_input_shapes=self._group_by_input_shapes)
        table = events.table(sort_by=sort_by, row_limit=self._row_limit, **self._table_kwargs)
        return self._stats_to_str({"records": table})

    def teardown(self, stage: str | None) -> None:
        self._stop_run()
        self._profiler = self._stage_schedule = None
        super().teardown(stage=stage)

    def __getstate__(self) -> dict[str, Any]:
        # a running torch profiler cannot be pickled: a copy starts afresh
        return {
            **self.__dict__,
            "_profiler": None,
            "_stage_schedule": None,
            "_contexts": [],
            "_ranges": {},
            "_hooks": [],
            "_modules_registered": False,
            "_lightning_module": None,
            "_output_file": None,
            "_write_stream": None,
        }


class _StageSchedule:
    """A ``torch.profiler.schedule`` run as Lightning runs it: the profiler steps at the end of every training,
    validation, test and predict step, and the schedule sees that kind of step's own count (so a ``test`` or a
    ``predict`` call records by its steps, and validation inside ``fit`` does not move training's schedule).

    As in Lightning: each kind stops at its first ``RECORD_AND_SAVE``, and a ``WARMUP`` right after ``RECORD``
    (validation began recording before training) stays ``RECORD``, which torch would refuse.
    """

    def __init__(self, schedule: Any) -> None:
        self._schedule = schedule
        self.kind: str | None = None  # the step function that just ended (`"training_step"`, ...)
        self._counts: dict[str, int] = {}
        self._finished: set[str] = set()
        self._previous: Any = None

    def __call__(self, step_num: int) -> Any:
        from torch.profiler import ProfilerAction

        kind = self.kind
        if kind is None or kind in self._finished:
            return ProfilerAction.NONE
        self._counts[kind] = count = self._counts.get(kind, 0) + 1
        action = self._schedule(count)
        if self._previous == ProfilerAction.RECORD and action == ProfilerAction.WARMUP:
            action = ProfilerAction.RECORD
        if action == ProfilerAction.RECORD_AND_SAVE:
            self._finished.add(kind)
        self._previous = action
        return action


class RegisterRecordFunction:
    """While entered, each submodule's forward of ``model`` is a ``record_function`` range named
    ``[pl][module]<module path>.<class>: <name>`` in the PyTorch profiler's trace.

    Example::

        with profiler.profile("forward"), RegisterRecordFunction(model):
            model(batch)
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self._model = model
        self._handles: list[Any] = []

    def __enter__(self) -> RegisterRecordFunction:
        for name, submodule in self._model.named_modules():
            if not name:
                continue
            label = f"[pl][module]{type(submodule).__module__}.{type(submodule).__name__}: {name}"
            records: list[Any] = []

            def pre(_module: Any, _args: Any, label: str = label, records: list[Any] = records) -> None:
                record = torch.autograd.profiler.record_function(label)
                record.__enter__()
                records.append(record)

            def post(_module: Any, _args: Any, _output: Any, records: list[Any] = records) -> None:
                if records:
                    records.pop().__exit__(None, None, None)

            self._handles.append(submodule.register_forward_pre_hook(pre))
            self._handles.append(submodule.register_forward_hook(post))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def _check_schedule(schedule: Any) -> None:
    """A ``schedule`` is a callable returning a ``torch.profiler.ProfilerAction``, checked when the profiler is
    made, as Lightning checks it."""
    if schedule is None:
        return
    if not callable(schedule):
        raise MisconfigurationException(f"Schedule should be a callable. Found: {schedule}")
    action = schedule(0)
    if not isinstance(action, torch.profiler.ProfilerAction):
        raise MisconfigurationException(f"Schedule should return a `torch.profiler.ProfilerAction`. Found: {action}")


def _check_table_kwargs(table_kwargs: dict[str, Any]) -> None:
    """``table_kwargs`` are arguments of torch's ``EventList.table`` other than the two the profiler sets."""
    import inspect

    from torch.autograd.profiler_util import EventList

    valid = set(inspect.signature(EventList.table).parameters) - {"self", "sort_by", "row_limit"}
    for key in table_kwargs:
        if key in {"sort_by", "row_limit"}:
            raise KeyError(
                f"Found invalid table_kwargs key: {key}. This is already a positional argument of the Profiler."
            )
        if key not in valid:
            raise KeyError(f"Found invalid table_kwargs key: {key}. Should be within {valid}.")


lightning_style_annotations(PyTorchProfiler)  # Lightning's `typing` forms in the signature
