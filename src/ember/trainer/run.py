"""``Run``: the state of one call of ``fit``, ``validate``, ``test`` or ``predict``.

Every call starts a new ``Run``, so nothing from an earlier call leaks into the next one, and the
trainer keeps the last ``Run`` so that its results stay readable after the call returns. The
loop, checkpointing, the metric dicts and the tuner receive the run; ``Trainer`` only holds it.

``Progress`` (the counters a resumed run needs) is the one part a run hands on: ``validate``,
``test`` and ``predict`` keep the counters of the ``fit`` before them, as Lightning does.
"""

from __future__ import annotations

from dataclasses import InitVar, asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from ember.trainer.logging import LoggedResults
from ember.trainer.metrics import MetricStore
from ember.trainer.preemption import StopFlag
from ember.trainer.states import TrainerFn
from ember.utilities.rank_zero import WarningCache

if TYPE_CHECKING:
    from ember.profilers.profiler import Profiler
    from ember.trainer.dispatch import HookDispatcher
    from ember.trainer.step import TrainingStep


@dataclass
class Progress:
    """The fit loop's counters; everything here goes into a checkpoint.

    ``epoch`` is the epoch being run (``trainer.current_epoch``); ``global_step`` counts optimizer
    steps; ``batches_that_stepped`` counts training batches that closed an accumulation window
    (the step that loggers see); ``epoch_batches`` counts the batches consumed in the current epoch,
    so a mid-epoch resume knows how many to skip; ``epoch_done`` marks a checkpoint written at the
    end of an epoch, after its last batch and validation; ``epoch_unfinished`` an epoch that ended
    before its data ran out (``max_steps``, a stop), which a resumed run goes on with, as in Lightning.
    """

    epoch: int = 0
    global_step: int = 0
    batches_that_stepped: int = 0
    epoch_batches: int = 0
    epoch_done: bool = False
    epoch_unfinished: bool = False
    # the epoch's data (of unknown length) ran out before `limit_train_batches`: Lightning counts such an epoch
    # unfinished too (`is_last_batch` false), but nothing of it is left for a resumed run to go on with
    epoch_data_ran_out: bool = False
    total_batches: int = 0
    # for Lightning's per-epoch counters in the checkpoint's `loops` entry: optimizer steps and scheduler
    # steps when the current epoch started, and scheduler steps the trainer made in all
    epoch_start_step: int = 0
    scheduler_steps: int = 0
    epoch_start_scheduler_steps: int = 0
    # and, from an epoch's end until the next epoch's first batch, where Lightning's batch counters still
    # hold the finished epoch: its batches, and whether its data ran out
    last_epoch_batches: int = 0
    last_epoch_ran_out: bool = False
    # batches fetched and not trained on, their `on_train_batch_start` having returned -1 (which ends the
    # epoch): in all, and whether the current (or just finished) epoch ended so. Lightning counts them ready
    # and processed, neither started nor completed
    cut_batches: int = 0
    epoch_cut: bool = False
    # accumulation windows whose zero_grad ran and that no optimizer step closed (their epoch ended inside them:
    # `on_train_batch_start` returned -1, a stop): in all the finished epochs, and in the one just finished,
    # which Lightning's per-epoch counters hold till the next epoch's start hooks have run
    unstepped_windows: int = 0
    epoch_unstepped_windows: int = 0
    # the batch just trained closed an accumulation window, and the loggers' step has not moved on yet (it does
    # after the batch's end hooks and validation): a checkpoint written in between resumes with it moved on
    step_pending: bool = False
    # the epoch's batches trained on when a validation inside fit last ran all its batches (0 at an epoch's
    # start): a checkpoint written after a batch whose validation had not run resumes with that validation
    validated_through: int = 0

    def window_open(self, accumulate: int) -> int:
        """1 while the current epoch's last accumulation window has had its zero_grad and no optimizer step yet."""
        return int(-(-self.epoch_batches // accumulate) > self.global_step - self.epoch_start_step)

    def close_window(self, accumulate: int) -> None:
        """The epoch ends: a window still open stays without its step, and counts among the unstepped ones."""
        self.epoch_unstepped_windows = self.window_open(accumulate)
        self.unstepped_windows += self.epoch_unstepped_windows

    def reopen_window(self) -> None:
        """A resumed run goes on inside the finished epoch: the window it ended in is open again."""
        self.unstepped_windows -= self.epoch_unstepped_windows
        self.epoch_unstepped_windows = 0

    @property
    def epochs_processed(self) -> int:
        """Epochs whose batches are all done: the current one counts once its end is reached (``epoch_done``)."""
        return self.epoch + (1 if self.epoch_done else 0)

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        names = {f.name for f in fields(self)}
        for key, value in state.items():
            if key in names:
                setattr(self, key, value)


@dataclass
class Resume:
    """How the first training epoch after loading a checkpoint continues.

    ``mid_epoch``: the checkpoint was written inside an epoch, so the epoch goes on after the
    batches already trained on, without its start hooks. ``rng``: this rank's RNG states when the
    checkpoint was written (None when the checkpoint holds none, e.g. one written by Lightning).
    ``epoch_rng``: the RNG states the interrupted epoch drew its data order from (with those before
    a loader started again mid-epoch, when several are combined); with them the same order is
    replayed and the resume is exact. ``gradients``: what the batches of an unfinished gradient
    accumulation window had added up (the strategy's ``accumulated_gradients``), which the window's
    remaining batches add to. ``end_due``: written inside an epoch before its end ran (not at the end of
    an epoch a limit cut short, which a higher limit resumes): the epoch finishes, its validation still due
    and its end included, even when the checkpoint's step is already the run's last. ``callback_metrics``:
    the checkpoint's, which the run reads again once a sanity check has emptied the dict (the uninterrupted
    run's epoch-end values stay there until replaced). ``held_rng``: the RNG states the interrupted run read
    its held batch with (data of unknown length read one batch ahead in the process), which the resumed run
    reads that batch with. ``reload_epochs``: the epochs the training and validation loaders were last loaded at
    in the run that wrote it (with ``reload_dataloaders_every_n_epochs``), which the resumed run's reloads count
    from, as the uninterrupted run's did. ``same_step_limit``: the run that wrote the checkpoint had this run's
    ``max_steps``, so a checkpoint whose step is past it (a batch of manual optimization stepping several
    optimizers) was written at the batch that limit ended the epoch on, not under a higher limit.
    """

    mid_epoch: bool
    rng: Any = None
    epoch_rng: Any = None
    gradients: Any = None
    end_due: bool = False
    held_rng: Any = None
    same_step_limit: bool = False
    reload_epochs: tuple[int | None, int | None] | None = None
    callback_metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        """The interrupted epoch's data order can be replayed, so the run continues bit for bit."""
        return self.mid_epoch and self.rng is not None and self.epoch_rng is not None


@dataclass(eq=False)
class Run:
    """Everything that lives as long as one call of ``fit``/``validate``/``test``/``predict``.

    Example::

        run = trainer._run                # the current (or last) call's state
        run.progress.global_step          # what trainer.global_step reads
        run.train_results                 # what self.log in training_step writes to
    """

    trainer: InitVar[Any]
    fn: TrainerFn | None = None
    progress: Progress = field(default_factory=Progress)

    # ---- what the call was given -------------------------------------------------------------
    train_source: Any = None
    # the datamodule passed to this call: its hooks give the data, as Lightning's hook selector picks them (one
    # from an earlier call stays `trainer.datamodule`, for `setup`/`teardown`, but gives no data)
    datamodule: Any = None
    eval_sources: dict[str, Any] = field(default_factory=dict)  # "val", "test", "predict" -> loaders
    return_predictions: bool = True

    # ---- decided when the run starts (see ``lifecycle.start``) ---------------------------------
    hooks: HookDispatcher | None = None
    profiler: Profiler | None = None  # None: the loops are built without profiling spans
    resume: Resume | None = None  # set by loading a checkpoint in fit, consumed by the first epoch
    # Lightning's `fit_loop.restarting`: from a mid-epoch (or a step-limited run's) checkpoint until the
    # resumed epoch ends; `epoch_loop.restarting` until the first batch after the resume completes
    restarting: bool = False
    # in `on_train_epoch_start`: Lightning's epoch counter is "ready" and its per-epoch counters hold the last epoch
    epoch_starting: bool = False
    restarted_at_batch: int = 0
    # resumed after a batch that stepped and before the validation due after it: the loggers' step moves on
    # once that validation has run again (`loop._finish_resumed_batch`)
    step_moves_after_validation: bool = False
    # resumed inside an epoch from a checkpoint that holds none of the values the training step logged
    # (Lightning's): till a batch trains, the validation and the epoch end that checkpoint had not reached cannot
    # give the callbacks a key only training logs, so `EarlyStopping` and a monitored `ModelCheckpoint` make no
    # decision there
    step_metrics_missing: bool = False
    # Lightning's `fit_loop.is_resuming`: fit loaded a checkpoint and no training epoch has run since (it
    # outlives a call that trained nothing, so the next `fit` on this trainer carries it on)
    fit_resuming: bool = False
    # `progress.total_batches` when the step-interval ReduceLROnPlateau schedulers last had their turn (after a
    # batch's validation), and those a checkpoint was written before, which the resumed run steps once its first
    # batch's due validation has run (see `checkpoint.contents.plateau_due`)
    plateau_stepped_at: int = 0
    plateau_pending: list[int] = field(default_factory=list)
    # the RNG states as the validation under way inside `fit` began (`trainer.data.data_rng_states`): a checkpoint
    # written inside it holds these, since the resumed run runs that validation again from its start
    rng_before_validation: dict[str, Any] | None = None
    datamodule_restored: bool = False  # the datamodule's `load_state_dict` took its state from the checkpoint
    stop_flag: StopFlag = field(default_factory=StopFlag)
    step: TrainingStep | None = None  # the current epoch's training step

    # ---- the dataloaders in use and their sizes ------------------------------------------------
    train_dataloader: Any = None  # the loader, or the collection of them (``trainer.train_dataloader``)
    train_combined_loader: Any = None  # the CombinedLoader of the prepared training loaders, one too
    val_dataloaders: Any = None
    test_dataloaders: Any = None
    predict_dataloaders: Any = None
    loaded_eval: dict[str, list[Any]] = field(default_factory=dict)  # prepared evaluation loaders by key
    eval_batches: dict[str, list[int | float]] = field(default_factory=dict)  # batches to run per loader
    eval_loop_batches: dict[str, list[int | float]] = field(default_factory=dict)  # per loaded item of a loop
    num_training_batches: int | float = float("inf")
    num_sanity_val_batches: list[int | float] = field(default_factory=list)
    val_check_batch: int | float = float("inf")
    last_train_reload_epoch: int | None = None
    val_reload_epoch: int | None = None
    resumed_val_reload_epoch: int | None = None  # when the run a checkpoint resumes last loaded them

    # ---- the training data position --------------------------------------------------------------
    train_iterator: Any = None  # the iterator the next epoch starts from, when created ahead of it
    epoch_iterator: Any = None  # the running epoch's iterator, whose workers teardown stops after a failure
    epoch_plan: Any = None  # the running (or last) training epoch's `_EpochPlan`
    batch_idx: int = -1  # the training batch being run (set at each fetch)
    # the epoch ends at `batch_idx`: `on_train_batch_start` returned -1, or data of unknown length ran out
    last_batch_seen: bool = False
    # from an epoch's end until the next epoch's data is drawn (its start hooks included): Lightning's batch
    # counters still describe the finished epoch then
    between_epochs: bool = False
    epoch_rng: Any = None  # the RNG states the current epoch's data order was drawn from
    # the RNG states a learning-rate sweep in `on_fit_start` left: Lightning makes the first epoch's iterator
    # then, before it puts the RNG back, so that epoch draws its order from them
    sweep_rng: Any = None
    # stateful training loaders (`state_dict`/`load_state_dict`, e.g. torchdata's StatefulDataLoader):
    # the states a checkpoint brought, given to the loaders once they are set up; then whether they were
    loader_states_to_load: list[Any] = field(default_factory=list)
    loaders_restored: bool = False
    # the seed of the DistributedSampler given to the training loaders: `PL_GLOBAL_SEED` when they were
    # prepared, or the checkpoint's on resume, so that the interrupted epoch's order is the same
    sampler_seed: int | None = None
    # a loader of unknown length is read one batch ahead: its state from before that read, which is the
    # position a checkpoint must record (None: the loader's own state is the position)
    held_loader_state: Any = None
    # and, read in this process, the RNG states from before that read (`data.ReadAheadRng`)
    held_rng: Any = None
    # a preemption signal is being acted on: its checkpoint records a stop already decided (`should_stop`)
    preempting: bool = False

    # ---- logged values ---------------------------------------------------------------------------
    train_results: LoggedResults = field(default_factory=lambda: LoggedResults(training=True))
    val_results: LoggedResults = field(default_factory=lambda: LoggedResults(training=False))
    test_results: LoggedResults = field(default_factory=lambda: LoggedResults(training=False))
    results: LoggedResults | None = None  # the collection ``self.log`` writes to now
    metrics: MetricStore = field(init=False)

    # ---- evaluation bookkeeping --------------------------------------------------------------------
    eval_steps_seen: dict[Any, int] = field(default_factory=dict)  # logged evaluation steps per loader
    # batches run by each evaluation loop in this call: [in its last (or current) epoch, in all]
    eval_progress: dict[str, list[int]] = field(
        default_factory=lambda: {"val": [0, 0], "test": [0, 0], "predict": [0, 0]}
    )
    # whether the evaluation batch last fetched by the "val" or "test" loop is its run's last (Lightning's
    # `is_last_batch` of that loop, which a checkpoint records)
    eval_last_fetched: dict[str, bool] = field(default_factory=dict)
    warnings: WarningCache = field(default_factory=WarningCache)  # warnings given once per call
    evaluation_batches_run: bool = False  # a validation batch inside this fit has run
    last_val_time: float = 0.0  # for a time-based ``val_check_interval``
    # `progress.total_batches` when the training step values were last merged into the metric dicts
    step_values_merged_at: int = -1
    warned_min_not_reached: bool = False
    warned_none_batch: bool = False

    # ---- predictions ---------------------------------------------------------------------------
    predictions: Any = None
    predict_batch_indices: Any = None

    @property
    def is_last_batch(self) -> bool:
        """Whether the training batch being run (or last run) is its epoch's last."""
        if self.between_epochs:
            return self.progress.last_epoch_ran_out
        return self.last_batch_seen or self.batch_idx + 1 >= self.num_training_batches

    @property
    def train_combined(self) -> Any:
        """The ``CombinedLoader`` that several training loaders are drawn through; ``None`` for one loader,
        which is iterated directly, with no per-batch work added."""
        combined = self.train_combined_loader
        if combined is None or combined.iterables is combined.flattened[0]:
            return None
        return combined

    def __post_init__(self, trainer: Any) -> None:
        self.metrics = MetricStore(trainer, self.progress)

    def __getstate__(self) -> dict[str, Any]:
        # the hook callers, the training step and the epoch's plan (which holds them) are closures, built anew at
        # the start of every call (and epoch): a trainer (or a callback holding it, like the progress bar) can be
        # pickled and copied without them
        return {**self.__dict__, "hooks": None, "step": None, "epoch_plan": None}

    def set_sync(self, sync: Any) -> None:
        """The reduction ``self.log(..., sync_dist=True)`` uses (None on one process)."""
        for results in (self.train_results, self.val_results, self.test_results):
            results.sync = sync

    def forget_data(self, trainer: Any) -> None:
        """Drop loaded dataloaders, iterators and the loops' results, so the next loop asks for fresh ones.

        The tuner's trials use this: a trial may have changed ``batch_size``, so the dataloader
        hooks must run again. The entry point, what it was given, the counters, the hooks, the
        profiler, a pending resume and the stop flag are kept, and so are the values logged so far
        (``trainer.callback_metrics`` after a tuner call holds its last trial's, as in Lightning).
        """
        fresh = Run(trainer, **{name: getattr(self, name) for name in _KEPT_BY_TRIALS})
        fresh.set_sync(self.train_results.sync)
        fresh.metrics.carry_over(self.metrics)
        for name in (f.name for f in fields(self)):
            setattr(self, name, getattr(fresh, name))


_KEPT_BY_TRIALS = (
    "fn",
    "progress",
    "train_source",
    "datamodule",
    "eval_sources",
    "return_predictions",
    "hooks",
    "profiler",
    "resume",
    "stop_flag",
    "step",
)
