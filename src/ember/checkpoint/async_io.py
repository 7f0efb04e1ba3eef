"""``AsyncCheckpointIO``: the training step pays for a copy of the state; a writer thread saves it.

``save_checkpoint`` copies the checkpoint into reused host buffers (``ember.checkpoint.snapshot``)
and queues it; one background thread serialises, fsyncs and renames each file in turn through the
wrapped plugin (``TorchCheckpointIO``: the same crash-safe write as a synchronous save). What a
synchronous save promises still holds:

- **Order.** Writes, removals and ``last`` links run one at a time, in the order asked for: a later
  save never lands before an earlier one, and ``ModelCheckpoint`` deletes an evicted file only
  after the file replacing it (and ``last.ckpt``) is on disk.
- **Nothing lost.** A failed write is raised by the next ``save_checkpoint``, ``remove_checkpoint``
  or ``load_checkpoint`` call, or at ``teardown`` (the end of ``fit``). Everything queued behind a
  failed write is skipped, so the files on disk stay those of the last checkpoint that was written.
- **Durable on return.** ``teardown``, which ends every trainer call (a failed one too), waits for
  every queued write: ``fit`` returns once the checkpoints are on disk.
- **Bounded memory.** At most ``max_pending`` snapshots (2) wait to be written. A save beyond that
  waits for the oldest write to finish: saving faster than the disk can write slows training down
  to the disk's pace rather than piling copies up.
- **Buffers ready ahead.** When the writer starts on a write and no free set of buffers is left, it
  allocates the next one (the same sizes) before writing, so that a save made while that write
  runs finds its memory ready (pinned memory is slow to allocate) instead of allocating it in the
  training step. So from the first save on, ``max_pending`` sets are held until the call ends.

Example::

    from ember.plugins import AsyncCheckpointIO

    trainer = Trainer(plugins=[AsyncCheckpointIO()],
                      callbacks=[ModelCheckpoint(every_n_train_steps=100, save_last=True)])
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ember.checkpoint.files import PathLike
from ember.checkpoint.io import CheckpointIO, _WrappingCheckpointIO
from ember.checkpoint.snapshot import HostBuffers, Snapshot, take_snapshot
from ember.utilities.signature_utils import lightning_style_annotations


class _Job:
    """One queued operation: a write (with its snapshot and buffers), a removal or a link."""

    def __init__(
        self, what: str, run: Callable[[], None], snapshot: Snapshot | None = None, buffers: HostBuffers | None = None
    ) -> None:
        self.what = what
        self.run = run
        self.snapshot = snapshot
        self.buffers = buffers
        self.path: str | None = None
        self.number = 0  # its place in the queue, from 1


def _add_note(error: BaseException, note: str) -> None:
    add_note = getattr(error, "add_note", None)  # Python 3.11+
    if add_note is not None:
        add_note(note)


class AsyncCheckpointIO(_WrappingCheckpointIO):
    """Save checkpoints on a background thread; the training step only pays for a host copy of the state.

    Args:
        checkpoint_io: the plugin that writes the files (``None``: the strategy's
            ``TorchCheckpointIO``). It is called from the writer thread, and must not keep the
            tensors it is given once its ``save_checkpoint`` returns (they live in reused buffers;
            a plugin that keeps them gets fresh buffers, where torch can tell).

    ``max_pending`` (class attribute, 2): how many snapshots may wait to be written; each holds a
    host copy of the checkpoint (pinned memory for CUDA tensors). From the first save on, that many
    sets of host buffers are held (the writer allocates the next one ahead) until the call ends;
    set it to 1 on an instance to hold one copy only, at the price of saves that wait for the write
    before them.

    Example::

        trainer = Trainer(plugins=[AsyncCheckpointIO()])
        trainer = Trainer(strategy=DDPStrategy(checkpoint_io=AsyncCheckpointIO(MyCheckpointIO())))
    """

    max_pending = 2

    def __init__(self, checkpoint_io: CheckpointIO | None = None) -> None:
        super().__init__(checkpoint_io)
        self._start_idle()

    def _start_idle(self) -> None:
        self._cond = threading.Condition()
        self._jobs: deque[_Job] = deque()  # the running one stays first until it is done
        self._thread: threading.Thread | None = None
        self._error: tuple[BaseException, str] | None = None  # a failure not yet raised
        self._submitted = 0
        self._skip_through = 0  # the jobs queued when a job failed are skipped: they may depend on it
        self._free: list[HostBuffers] = []
        self._buffer_sets = 0
        self._pending_paths: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        # a strategy is pickled to spawned processes: send the configuration, not the queue or the thread
        self.wait(raise_error=False)
        state = dict(self.__dict__)
        for key in (
            "_cond",
            "_jobs",
            "_thread",
            "_error",
            "_submitted",
            "_skip_through",
            "_free",
            "_buffer_sets",
            "_pending_paths",
        ):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._start_idle()

    # ---- the plugin interface --------------------------------------------------------------
    def save_checkpoint(self, checkpoint: dict[str, Any], path: PathLike, storage_options: Any | None = None) -> None:
        """Copy ``checkpoint`` to host memory and queue its write to ``path``; returns before the write.

        Raises:
            BaseException: the error of an earlier write that failed (it is raised once).
        """
        base = self._base()
        buffers = self._take_buffers()
        try:
            snapshot = take_snapshot(checkpoint, buffers)
        except BaseException:
            self._release(buffers)
            raise
        target = str(path)

        def write() -> None:
            snapshot.wait_copied()
            base.save_checkpoint(snapshot.checkpoint, path, storage_options=storage_options)

        job = _Job(f"the checkpoint {target}", write, snapshot, buffers)
        job.path = target
        try:
            self._submit(job)
        except BaseException:
            self._release(buffers)
            raise

    def remove_checkpoint(self, path: PathLike) -> None:
        """Remove ``path`` once every write queued before has landed (at once when none is queued)."""
        self.run_after_writes(self._base().remove_checkpoint, path, what=f"the removal of {path}")

    def load_checkpoint(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Load through the wrapped plugin, after the queued writes have landed."""
        self.wait()
        return self._base().load_checkpoint(*args, **kwargs)

    def teardown(self) -> None:
        """Wait for every queued write and release the buffers; raise a write error not yet raised."""
        try:
            self.wait(raise_error=False)
        finally:
            with self._cond:
                self._free, self._buffer_sets = [], 0
        super().teardown()
        self._raise_error()

    # ---- ordering --------------------------------------------------------------------------
    def run_after_writes(self, fn: Callable[..., Any], *args: Any, what: str = "a checkpoint operation") -> None:
        """Call ``fn(*args)`` now if nothing is queued, else on the writer thread after the queued writes."""
        with self._cond:
            failure = self._pop_error()
            queued = bool(self._jobs)
        if failure is not None:
            raise failure
        if not queued:  # only the training thread submits: the queue cannot fill in between
            fn(*args)
            return
        self._submit(_Job(what, lambda: fn(*args)))

    def is_pending(self, path: PathLike) -> bool:
        """Whether a write to ``path`` is queued and not yet on disk."""
        with self._cond:
            return self._pending_paths.get(str(path), 0) > 0

    def wait(self, raise_error: bool = True) -> None:
        """Block until every queued operation is done; then raise a write error not yet raised."""
        with self._cond:
            while self._jobs:
                self._cond.wait()
        if raise_error:
            self._raise_error()

    # ---- the writer thread -----------------------------------------------------------------
    def _submit(self, job: _Job) -> None:
        with self._cond:
            # checked under the lock: nothing joins the queue behind a failed write before its error is raised
            failure = self._pop_error()
            if failure is None:
                self._submitted += 1
                job.number = self._submitted
                self._jobs.append(job)
                if job.path is not None:
                    self._pending_paths[job.path] = self._pending_paths.get(job.path, 0) + 1
                if self._thread is None:
                    # not a daemon: an interpreter that exits still finishes the queued writes
                    self._thread = threading.Thread(target=self._drain, name="ember-checkpoint-writer")
                    self._thread.start()
        if failure is not None:
            raise failure

    def _drain(self) -> None:
        """Run the queued jobs in order; the thread ends when the queue is empty."""
        while True:
            with self._cond:
                if not self._jobs:
                    self._thread = None
                    self._cond.notify_all()
                    return
                job = self._jobs[0]
                skipped = job.number <= self._skip_through
            error: BaseException | None = None
            if not skipped:
                if job.buffers is not None:
                    self._allocate_ahead(job.buffers)
                try:
                    job.run()
                except BaseException as caught:
                    error = caught
            self._finish(job, error)

    def _finish(self, job: _Job, error: BaseException | None) -> None:
        buffers = job.buffers
        job.snapshot = job.buffers = None
        job.run = _nothing  # drops the snapshot the closure holds, so the buffers can be reused
        with self._cond:
            self._jobs.popleft()
            if job.path is not None:
                count = self._pending_paths.pop(job.path) - 1
                if count:
                    self._pending_paths[job.path] = count
            if error is not None:
                self._skip_through = self._submitted  # everything queued now may depend on the failed job
                if self._error is None:
                    self._error = (error, job.what)
            if buffers is not None:
                self._free.append(buffers)
            self._cond.notify_all()

    # ---- buffers and errors ----------------------------------------------------------------
    def _take_buffers(self) -> HostBuffers:
        """A free set of host buffers; waits for the oldest write when ``max_pending`` are queued."""
        with self._cond:
            while self._error is None and not self._free and self._buffer_sets >= max(1, self.max_pending):
                self._cond.wait()
            failure = self._pop_error()
            if failure is None:
                if self._free:
                    return self._free.pop()
                self._buffer_sets += 1
                return HostBuffers()
        raise failure

    def _allocate_ahead(self, like: HostBuffers) -> None:
        """On the writer thread: allocate the next snapshot's buffers if none is free and the limit allows."""
        with self._cond:
            if self._free or self._buffer_sets >= self.max_pending:
                return
            self._buffer_sets += 1  # reserved, so a save meanwhile waits for this set instead of allocating one
        try:
            ready = HostBuffers.allocate_like(like)
        except Exception:
            # not this write's failure: give the reservation back; a save allocates for itself, as without this
            with self._cond:
                self._buffer_sets -= 1
                self._cond.notify_all()
            return
        self._release(ready)

    def _release(self, buffers: HostBuffers) -> None:
        with self._cond:
            self._free.append(buffers)
            self._cond.notify_all()

    def _raise_error(self) -> None:
        with self._cond:
            failure = self._pop_error()
        if failure is not None:
            raise failure

    def _pop_error(self) -> BaseException | None:
        """The first write error not yet raised (each is raised once), with a note on what it cost."""
        pending, self._error = self._error, None
        if pending is None:
            return None
        error, what = pending
        _add_note(
            error,
            f"Raised by the background write of {what}: it was not saved, and the checkpoint writes and removals"
            " queued after it were skipped, so the files on disk are those written before it.",
        )
        return error


def _nothing() -> None:
    pass


def find_async_io(checkpoint_io: Any) -> AsyncCheckpointIO | None:
    """The ``AsyncCheckpointIO`` in a chain of wrapping plugins, if there is one."""
    seen = 0
    while checkpoint_io is not None and seen < 16:
        if isinstance(checkpoint_io, AsyncCheckpointIO):
            return checkpoint_io
        checkpoint_io = getattr(checkpoint_io, "checkpoint_io", None)
        seen += 1
    return None


def after_pending_writes(
    strategy: Any, fn: Callable[..., Any], *args: Any, what: str = "a checkpoint operation"
) -> None:
    """Call ``fn(*args)`` once the strategy's queued checkpoint writes have landed (at once when none are)."""
    async_io = find_async_io(getattr(strategy, "checkpoint_io", None))
    if async_io is None:
        fn(*args)
    else:
        async_io.run_after_writes(fn, *args, what=what)


def write_pending(strategy: Any, path: PathLike) -> bool:
    """Whether the strategy has a write to ``path`` queued that is not yet on disk."""
    async_io = find_async_io(getattr(strategy, "checkpoint_io", None))
    return async_io is not None and async_io.is_pending(path)


def wait_for_pending_writes(strategy: Any) -> None:
    """Block until the strategy's queued checkpoint writes are on disk; raise a write error not yet raised."""
    async_io = find_async_io(getattr(strategy, "checkpoint_io", None))
    if async_io is not None:
        async_io.wait()


lightning_style_annotations(AsyncCheckpointIO)  # Lightning's `typing` forms in the signature
