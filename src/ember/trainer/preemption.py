"""Preemption: SIGTERM/SIGUSR1 only raise a flag; the loop acts on it at a step boundary.

There the ranks agree on the flag, save a checkpoint, and every process exits with a message that
says where the state was saved and how to resume. Under SLURM with ``auto_requeue``, the requeue
signal saves ``hpc_ckpt_<n>.ckpt`` and requeues the job, which resumes from it by itself.

``validate``/``test``/``predict`` catch SIGTERM alone, as Lightning does in every call: an evaluation
stops before its next batch with ``SIGTERMException``, with nothing to save; a prediction finishes.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import TYPE_CHECKING, Any, NoReturn

from ember.trainer.states import TrainerFn
from ember.utilities.exceptions import PreemptionExit, SIGTERMException, SIGTERMPreemptionExit

if TYPE_CHECKING:
    from ember.trainer.run import Run
    from ember.trainer.trainer import Trainer

_SIGTERM = getattr(signal, "SIGTERM", None)
_SIGNALS = tuple(s for s in (_SIGTERM, getattr(signal, "SIGUSR1", None)) if s is not None)


class StopFlag:
    """Set by a signal handler, read by the loop after each batch (a plain attribute read)."""

    def __init__(self) -> None:
        self.flag = False
        self.signum: int | None = None
        self.agreed = False  # the ranks agreed to stop; the loop stops once an accumulation window has closed
        self._previous: dict[int, Any] = {}

    def install(self, extra: tuple[int, ...] = (), signals: tuple[int, ...] = _SIGNALS) -> None:
        """Catch the ``signals`` (SIGTERM and SIGUSR1) and the ``extra`` ones (e.g. a SLURM requeue signal)."""
        if threading.current_thread() is not threading.main_thread():
            return  # handlers can only be installed from the main thread
        for signum in dict.fromkeys(signals + tuple(extra)):
            try:
                self._previous[signum] = signal.signal(signum, self._handler)
            except (ValueError, OSError):
                pass

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            try:
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            except (ValueError, OSError):
                pass
        self._previous.clear()

    def _handler(self, signum: int, frame: Any) -> None:
        # only a flag: no I/O, no collectives, nothing that could deadlock inside a handler
        self.flag = True
        self.signum = signum
        previous = self._previous.get(signum)
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, frame)  # a handler the program installed runs too, as in Lightning

    def checker(self, strategy: Any, progress: Any) -> Any:
        """A no-argument function the loop calls after each batch (chosen once per epoch).

        In a multi-process run the ranks agree on the flag there, so that all of them stop together. Once
        it has said to stop it keeps saying so: under a sharded strategy, whose checkpoint holds none of an
        accumulation window's gradients, the loop stops at the end of the window.
        """
        agree = getattr(strategy, "agree_on_stop", None)
        if agree is None:
            return lambda: self.flag

        def agreed() -> bool:
            if self.agreed:
                return True  # (every rank agreed at the same batch, so every rank stops at the same one)
            # the ranks agree on the signal's number (0: none, 1: a flag without one), so a rank that
            # did not receive the signal can still name it
            mine = (self.signum or 1) if self.flag else 0
            code = int(agree(mine, progress.total_batches))
            if code:
                self.agreed = True
                if not self.flag:
                    self.flag = True
                    self.signum = code if code > 1 else None
            return bool(code)

        return agreed


def slurm_requeue(trainer: Trainer) -> Any:
    """The SLURM environment when this job requeues itself on its requeue signal (else None)."""
    from ember.distributed.environments import SLURMEnvironment, environment_in

    env = getattr(trainer.strategy, "cluster_environment", None)
    if env is None:  # one process: an environment passed in `plugins`, else the one detected
        env = environment_in(trainer.plugins)
    if env is None and SLURMEnvironment.detect():
        env = SLURMEnvironment()  # one task on one device: no process group, still a SLURM job
    signum = getattr(env, "requeue_signal", None)
    if not getattr(env, "auto_requeue", False) or signum is None:
        return None
    # a program's subclass of Lightning Fabric's SLURMEnvironment has the two settings; Ember's requeues the job
    return env if isinstance(env, SLURMEnvironment) else SLURMEnvironment(requeue_signal=signum)


def install_stop_flag(trainer: Trainer, run: Run) -> None:
    """Catch the preemption signals for the length of ``fit`` (and SLURM's requeue signal); SIGTERM alone for
    the length of ``validate``/``test``/``predict``."""
    if run.fn != TrainerFn.FITTING:
        run.stop_flag.install(signals=(_SIGTERM,) if _SIGTERM is not None else ())
        return
    requeue = slurm_requeue(trainer)
    run.stop_flag.install(extra=(requeue.requeue_signal,) if requeue is not None else ())


def on_stop_request(trainer: Trainer, run: Run) -> None:
    """A preemption signal arrived: save where training stands, then exit on every rank.

    Under SLURM with ``auto_requeue``, the requeue signal (SIGUSR1 by default) saves
    ``hpc_ckpt_<n>.ckpt`` in ``default_root_dir`` and requeues the job; the requeued job's
    ``fit`` resumes from it.
    """
    from ember.checkpoint.async_io import wait_for_pending_writes
    from ember.checkpoint.ckpt_path import hpc_save_path

    flag = run.stop_flag
    name = signal.Signals(flag.signum).name if flag.signum else "a stop signal"
    where = f"epoch {trainer.current_epoch}, step {trainer.global_step}"
    requeue = slurm_requeue(trainer)
    run.preempting = True  # the checkpoint keeps a stop already decided: the resumed run ends where this one would
    if requeue is not None and flag.signum == requeue.requeue_signal:
        # every rank must write the same name: rank 0's listing decides
        path = trainer.strategy.broadcast(hpc_save_path(trainer.default_root_dir))
        trainer.save_checkpoint(path, weights_only=False)
        if trainer.is_global_zero:
            wait_for_pending_writes(trainer.strategy)  # the requeued job must find the file
            requeue.requeue()
        raise PreemptionExit(
            f"Received {name}: training stopped at {where}, and the state was saved to {path}. SLURM job"
            f" {requeue.job_id()} was requeued: when it starts again, `trainer.fit` resumes from that checkpoint."
        )
    path = _last_checkpoint_path(trainer)
    trainer.save_checkpoint(path, weights_only=False)
    exit_type = SIGTERMPreemptionExit if flag.signum == getattr(signal, "SIGTERM", None) else PreemptionExit
    raise exit_type(  # the exit prints the message
        f"Received {name}: training stopped at {where}, and the state was saved to {path}. Resume with"
        f" `trainer.fit(model, ckpt_path='last')` (or ckpt_path={path!r})."
    )


def evaluation_stop_flag(trainer: Trainer, run: Run) -> StopFlag | None:
    """The flag an evaluation loop reads before each batch after its first, or None in ``fit``, whose
    validation runs to its end and leaves the stop to the training loop."""
    return None if trainer.state.fn == TrainerFn.FITTING else run.stop_flag


def stop_evaluation(trainer: Trainer) -> NoReturn:
    """SIGTERM arrived during ``validate``/``test``: stop after the batch it came in, as Lightning does.

    The message is the exit's code: a program that does not catch it ends with status 1 (Lightning's
    ``SIGTERMException()`` ends it with 0, as if the call had finished)."""
    fn = trainer.state.fn.value if trainer.state.fn is not None else "call"
    raise SIGTERMException(f"Received SIGTERM: `trainer.{fn}` stopped before its end; nothing was saved.")


def _last_checkpoint_path(trainer: Trainer) -> str:
    """Where a preempted run saves: OnExceptionCheckpoint's file, else ModelCheckpoint's last file.

    The ModelCheckpoint takes the file as its own ``last_model_path`` (recorded in the checkpoint's callback
    state too): its next ``last`` save, in this Trainer or in one resuming from the file, overwrites it
    instead of writing ``last-v1.ckpt`` beside it.
    """
    from ember.callbacks.model_checkpoint import ModelCheckpoint
    from ember.callbacks.on_exception_checkpoint import OnExceptionCheckpoint

    for cb in trainer.callbacks:
        if isinstance(cb, OnExceptionCheckpoint):
            return cb.ckpt_path
    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint):
            if not cb.last_model_path:
                dirpath = cb.dirpath or os.path.join(trainer.default_root_dir, "checkpoints")
                cb.last_model_path = os.path.join(dirpath, cb.CHECKPOINT_NAME_LAST + cb.FILE_EXTENSION)
            return cb.last_model_path
    return os.path.join(trainer.default_root_dir, "checkpoints", "last.ckpt")
