"""Starting the processes of a distributed run, and building the strategy the Trainer asked for.

Three ways to get one process per device:

* ``strategy="ddp"`` (``start_method="popen"``): Ember re-runs the user's command once per extra
  local rank, with the variables torchrun would set; the current process is local rank 0.
* ``torchrun`` or ``srun`` started every process already: Ember joins (nothing is launched).
* ``"ddp_spawn"`` / ``"ddp_fork"`` / ``"ddp_notebook"``: ``torch.multiprocessing`` starts one
  worker per device; rank 0's results, weights and callback states return to the main process.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import io
import itertools
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ember.distributed import failure
from ember.distributed.environments import LightningEnvironment
from ember.utilities.apply_func import apply_to_tensors
from ember.utilities.data import _num_cpus_available
from ember.utilities.exceptions import MisconfigurationException, PreemptionExit
from ember.utilities.seed import collect_rng_states, set_rng_states

_ACTIVE: list[SubprocessLauncher] = []  # the launcher that started this job's processes, if this process did


def make_launcher(strategy: Any) -> Any:
    if strategy._start_method == "popen":
        if _ACTIVE:
            return _ACTIVE[0]  # a later Trainer in the same job: same processes, same failure handling
        if strategy.cluster_environment.creates_processes_externally:
            return _JoinedLauncher(strategy.num_processes)
        return SubprocessLauncher(strategy)
    return MultiProcessingLauncher(strategy)


class _JoinedLauncher:
    """torchrun, SLURM, or a process Ember started: every process exists already. Each call still goes
    through ``launch``, as in Lightning, so that every rank shares the node's CPUs, not only rank 0."""

    is_launched = False
    is_interactive_compatible = False

    def __init__(self, num_processes: int = 1) -> None:
        self._num_processes = num_processes

    def launch(self, fn: Callable, *args: Any, trainer: Any = None, **kwargs: Any) -> Any:
        failure.begin_call()
        share_the_cpus(self._num_processes)
        return fn(*args, **kwargs)

    def record_killed_ranks(self, exception: BaseException) -> None:
        pass  # torchrun and srun report how the other processes ended

    def on_exception(self, exception: BaseException) -> None:
        pass


def share_the_cpus(num_processes: int, forked: bool = False) -> None:
    """Each of a node's ``num_processes`` ranks runs ``cpus // num_processes`` intra-op threads (at least
    one), as Lightning's launchers set them, and exports the number in ``OMP_NUM_THREADS`` for what the
    rank starts; where ``OMP_NUM_THREADS`` is set already, it is left as it is.

    A forked rank runs one thread, whatever ``OMP_NUM_THREADS`` says (as torch's forked DataLoader
    workers do): GNU OpenMP's thread pool does not survive ``fork``, so once the launching process has
    used it (any sizable CPU operation before ``fit``, as in a notebook), a forked rank that starts a
    parallel region of two or more threads waits forever (Lightning's ``ddp_fork`` hangs there when a
    node has more cores than ranks).
    """
    if not forked and "OMP_NUM_THREADS" in os.environ:
        return
    threads = 1 if forked else max(1, _num_cpus_available() // max(1, num_processes))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


def _script_command(base: str | None = None) -> list[str]:
    """The command that started this program, to run it again for the other local ranks.

    A program that runs on Ember in place of Lightning (``ember run``, ``install_as_lightning()``)
    runs again under ``ember run``, so that its first ``import lightning`` gives Ember there too.
    ``base`` is the folder a relative script path is taken from (the current one when None).
    """
    command = _program_command(base)
    if _lightning_alias_installed() and command[1:3] != ["-m", "ember"]:
        return [command[0], "-m", "ember", "run", *command[1:]]
    return command


def _lightning_alias_installed() -> bool:
    # the alias is active only if its module was loaded: no need to load it to ask
    alias = sys.modules.get("ember.lightning_alias")
    return alias is not None and alias.is_installed()


def _hydra_run() -> tuple[str, str] | None:
    """``(original cwd, run dir)`` when this is a Hydra app (``@hydra.main``), else None.

    Hydra moves the process into its run folder (``hydra.job.chdir``) and composes the run folder
    from the command line and the time: the other ranks must start from the original folder and be
    told rank 0's run folder, as Lightning's launcher does (``_hydra_subprocess_cmd``).
    """
    if "hydra" not in sys.modules:
        return None
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    from hydra.utils import get_original_cwd

    return get_original_cwd(), str(HydraConfig.get().run.dir)


def _program_command(base: str | None = None) -> list[str]:
    import __main__

    spec = getattr(__main__, "__spec__", None)
    main_file = getattr(__main__, "__file__", None)
    # pytest's own command, or one of pytest-xdist's workers (started with `python -c`, pytest loaded)
    in_pytest = spec is not None and spec.name.split(".")[0] in ("pytest", "_pytest", "py")
    if in_pytest or (main_file is None and "_pytest" in sys.modules):
        raise MisconfigurationException(
            "`strategy='ddp'` re-runs the program's command for every extra process, and this program is pytest:"
            " run DDP from a script (started by the test in a subprocess), or use `strategy='ddp_spawn'`."
        )
    if spec is not None and spec.name != "__main__":
        module = spec.name[: -len(".__main__")] if spec.name.endswith(".__main__") else spec.name
        return [sys.executable, "-m", module, *sys.argv[1:]]
    if main_file is None or not sys.argv or sys.argv[0] in ("", "-c"):
        raise MisconfigurationException(
            "`strategy='ddp'` starts the other processes by running your script again, but this program was not"
            " started from a script file (an interactive session or `python -c`): use `strategy='ddp_notebook'`"
            " (or 'ddp_spawn'), or start it with `torchrun`."
        )
    return [sys.executable, os.path.abspath(os.path.join(base or os.getcwd(), sys.argv[0])), *sys.argv[1:]]


def _die_with_parent() -> None:
    # Linux: the child gets SIGKILL if the process that started it dies, so none is left behind
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# when this rank fails first, how long the ranks it started get to end by themselves before they are stopped
_PEER_GRACE = 3.0
# when a rank this one started fails first, how long it gets to print its traceback and exit
_FIRST_FAILURE_GRACE = 5.0


class SubprocessLauncher:
    """Re-run the user's command for local ranks 1..n-1; this process becomes local rank 0.

    Example (what Ember runs for ``devices=2``)::

        LOCAL_RANK=1 RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=<free> python train.py
    """

    is_launched = False  # every run of this process passes through `launch`, to track failures
    is_interactive_compatible = False  # it re-runs the script, which a notebook does not have

    def __init__(self, strategy: Any) -> None:
        self._strategy = strategy
        self.procs: list[subprocess.Popen] = []
        self._started = False
        self._in_run = 0
        self._stopping = False
        self._failed_here = False
        self._child_failure: tuple[int, int] | None = None
        self._failure_dir: str | None = None

    def __deepcopy__(self, memo: dict) -> SubprocessLauncher:
        # the job's processes, one set for every Trainer in the job: a copied Trainer (some libraries copy
        # theirs for each model they fit) runs on them too, as a new one would
        return self

    def launch(self, fn: Callable, *args: Any, trainer: Any = None, **kwargs: Any) -> Any:
        if not self._started:
            self._start_children()
        failure.begin_call()
        share_the_cpus(self._strategy.num_processes)
        self._in_run += 1
        try:
            return fn(*args, **kwargs)
        finally:
            self._in_run -= 1

    def _start_children(self) -> None:
        strategy = self._strategy
        env = strategy.cluster_environment
        if env.local_rank() != 0:
            # a process Ember started (or one its environment calls a rank > 0) would start the job's ranks
            # again, each of which would start them again: refused before any process starts
            raise RuntimeError(
                "Lightning attempted to launch new distributed processes with `local_rank > 0`. This should not"
                " happen. Possible reasons: 1) LOCAL_RANK environment variable was incorrectly modified by the"
                " user, 2) `ClusterEnvironment.creates_processes_externally` incorrectly implemented."
                f" (`{type(env).__name__}.local_rank()` is {env.local_rank()} while its"
                " `creates_processes_externally` is False, so this process would start the job's other ranks"
                " again: make `creates_processes_externally` True where the processes already exist, or unset"
                " LOCAL_RANK.)"
            )
        n, node_rank = strategy.num_processes, strategy.node_rank
        world_size = n * strategy.num_nodes
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        os.environ["NODE_RANK"] = str(node_rank)
        os.environ["WORLD_SIZE"] = str(world_size)
        if n > 1:  # what the children share; a lone process leaves nothing more behind, as in Lightning
            os.environ["LOCAL_WORLD_SIZE"] = str(n)
            if failure.ENV_DIR not in os.environ:
                self._failure_dir = tempfile.mkdtemp(prefix="ember-ranks-")
                os.environ[failure.ENV_DIR] = self._failure_dir
        hydra = _hydra_run() if n > 1 else None
        command = _script_command(hydra[0] if hydra else None) if n > 1 else []
        for local_rank in range(1, n):
            child_env = os.environ.copy()
            child_env["LOCAL_RANK"] = str(local_rank)
            child_env["RANK"] = str(node_rank * n + local_rank)
            preexec = _die_with_parent if sys.platform.startswith("linux") else None
            rank_command, cwd = command, None
            if hydra is not None:  # Lightning's overrides: rank 0's run folder, no config.yaml written again
                cwd = hydra[0]
                rank_command = [
                    *command,
                    f'hydra.run.dir="{hydra[1]}"',
                    f"hydra.job.name=train_ddp_process_{local_rank}",
                    "hydra.output_subdir=null",
                ]
            self.procs.append(subprocess.Popen(rank_command, env=child_env, preexec_fn=preexec, cwd=cwd))
        os.environ["LOCAL_RANK"] = "0"
        os.environ["RANK"] = str(node_rank * n)
        self._started = True
        _ACTIVE.append(self)
        atexit.register(self._at_exit)
        if self.procs:
            threading.Thread(target=self._watch, name="ember-rank-watch", daemon=True).start()

    def _watch(self) -> None:
        """Notice a child rank that died; if this rank is stuck in a run, end the job."""
        while not self._stopping:
            for index, proc in enumerate(self.procs):
                code = proc.poll()
                if code is not None and code != 0 and self._child_failure is None:
                    self._child_failure = (index + 1, code)
                    self._end_if_stuck(index + 1, code)
                    return
            time.sleep(0.2)

    def _end_if_stuck(self, local_rank: int, code: int) -> None:
        # most of the time this rank's next collective fails at once and the run ends by itself;
        # a rank blocked where no error reaches it (e.g. NCCL) is ended after a grace period
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self._stopping or not self._in_run:
                return
            time.sleep(0.2)
        if self._stopping or not self._in_run:
            return
        self.kill()
        rank = self._global_rank(local_rank)
        sys.stderr.write(f"[rank 0] rank {rank} {failure.describe_exit(code)}; ending the job.\n")
        sys.stderr.flush()
        self._remove_failure_dir()  # os._exit skips the exit hooks
        os._exit(1)

    def _global_rank(self, local_rank: int) -> int:
        strategy = self._strategy
        return strategy.node_rank * strategy.num_processes + local_rank

    def record_killed_ranks(self, exception: BaseException) -> None:
        """A rank this process started was killed by a signal: record it as the job's first failure.

        Called when this rank fails, before its own failure is recorded. When the error says that a peer
        went away, the dying rank is given a moment to be reaped.
        """
        deadline = time.monotonic() + (2.0 if failure.lost_a_peer(exception) else 0.0)
        while True:
            for index, proc in enumerate(self.procs):
                code = proc.poll()
                if code is not None and code < 0:
                    self._child_failure = self._child_failure or (index + 1, code)
                    failure.record_killed(self._global_rank(index + 1), code)
                    return
            if not self.procs or time.monotonic() >= deadline:
                return
            time.sleep(0.02)

    def on_exception(self, exception: BaseException) -> None:
        """This rank failed (or was interrupted): stop the other local ranks, unless each failed by itself.

        A rank that failed with an error of its own in the same call has left its collectives and its
        error goes back to the user's code, as this rank's does: where every other rank did, none is
        stopped (as in Lightning), so a program that catches the error on every rank can make another
        Trainer call, and the call's failure records are removed.

        Otherwise they are given a moment first, so that what they print on the way out is not lost: a
        rank that failed first is failing by itself and gets up to 5 s to print its traceback and exit;
        when this rank's error is the first, the others get ``_PEER_GRACE`` seconds, in which a rank that
        hits an error of its own (often the same one, a moment later) shows it. A rank waiting in a
        collective for this one is stopped when the time is up. An interrupt (Ctrl+C) stops them at once.
        """
        first = failure.first_failure()
        if first is not None and not first[1].startswith(failure.KILLED):
            this_rank_first = first[0] == self._global_rank(0)
            deadline = time.monotonic() + (_PEER_GRACE if this_rank_first else _FIRST_FAILURE_GRACE)
            if failure.is_own_failure(exception) and self._others_failed_by_themselves(deadline):
                failure.forget_call()
                return
            if this_rank_first:
                self._wait_for(self.procs, deadline - time.monotonic())
            else:
                failed = [p for i, p in enumerate(self.procs) if self._global_rank(i + 1) == first[0]]
                self._wait_for(failed, deadline - time.monotonic())
        self._failed_here = True
        self.kill()

    def _others_failed_by_themselves(self, deadline: float) -> bool:
        """Wait until every rank this process started has failed by itself in this call (or ended), until
        ``deadline`` at most; False if one is still running without an error of its own (it waits in a
        collective, or lost a peer)."""

        def settled(index: int, proc: subprocess.Popen) -> bool:
            return proc.poll() is not None or failure.failed_by_itself(self._global_rank(index + 1))

        while not all(settled(index, proc) for index, proc in enumerate(self.procs)):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    @staticmethod
    def _wait_for(procs: list[subprocess.Popen], seconds: float) -> None:
        """Wait until every one of ``procs`` has exited, for ``seconds`` at most."""
        deadline = time.monotonic() + seconds
        while any(proc.poll() is None for proc in procs) and time.monotonic() < deadline:
            time.sleep(0.02)

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def _remove_failure_dir(self) -> None:
        if self._failure_dir is not None:
            shutil.rmtree(self._failure_dir, ignore_errors=True)

    def _at_exit(self) -> None:
        error = getattr(sys, "last_value", None)  # what the program ended with, uncaught
        if self._failed_here or error is not None or failure.first_failure() is not None:
            if not self._failed_here and error is not None and not isinstance(error, KeyboardInterrupt):
                # this rank's program failed outside a run: the others may be failing the same way
                self._wait_for(self.procs, _PEER_GRACE)
            self.kill()
        else:
            for proc in self.procs:
                proc.wait()  # the other ranks finish their copy of the program
        self._stopping = True
        self._remove_failure_dir()
        codes = [proc.returncode for proc in self.procs if proc.returncode]
        if codes and not self._failed_here:
            for index, proc in enumerate(self.procs):
                if proc.returncode is not None and proc.returncode < 0:
                    rank = self._global_rank(index + 1)
                    sys.stderr.write(f"[rank 0] rank {rank} {failure.describe_exit(proc.returncode)}.\n")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)  # a rank failed: so did the job


def _rank_env(strategy: Any, local_rank: int) -> dict[str, str]:
    n = strategy.num_processes
    node_rank = strategy.node_rank
    return {
        "LOCAL_RANK": str(local_rank),
        "RANK": str(node_rank * n + local_rank),
        "WORLD_SIZE": str(n * strategy.num_nodes),
        "LOCAL_WORLD_SIZE": str(n),
        "NODE_RANK": str(node_rank),
    }


def _keeps_a_process_group() -> bool:
    """Whether this process holds a process group, as after a one-process run (kept until exit)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


@contextlib.contextmanager
def _inherited_objects_frozen(fork: bool) -> Iterator[None]:
    """While ranks are forked: the objects they inherit are never collected in them.

    Garbage that holds a gloo group (the DDP reducer of an earlier run in this process, in a reference
    cycle) would otherwise be destroyed by a rank's garbage collector, and a gloo group's destructor waits
    forever for its threads, which the fork did not copy. Frozen, the inherited objects are also never
    written to by the rank's collector, so their pages stay shared. This process collects them as before
    once the ranks are started; a program that froze objects itself (``gc.freeze``) keeps its freeze as it
    is, and each rank freezes what it inherited as it starts.
    """
    if not fork or gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# the process groups a forked worker inherited, referenced until it exits so that they are never destroyed
_INHERITED_GROUPS: list[Any] = []


def _leave_inherited_groups() -> None:
    """Take the launching process's groups out of this forked worker's world without destroying them.

    A gloo group's destructor stops and joins its worker threads through a condition variable those
    threads were waiting on in the launching process; the fork copied that state but not the threads, so
    destroying the group here would wait forever. Kept referenced, the groups are never destroyed: a
    forked worker ends by ``os._exit``, which runs no destructors.
    """
    from torch.distributed import distributed_c10d

    world = getattr(distributed_c10d, "_world", None)
    groups = getattr(world, "pg_map", None) or {torch.distributed.group.WORLD: None}
    _INHERITED_GROUPS.extend(groups.items())
    torch.distributed.destroy_process_group()


def _global_state() -> dict[str, Any]:
    """What a 'spawn' process starts from, so that it trains as a forked one would (Lightning's spawn
    workers do the same): the deterministic-algorithm flags, cuDNN's benchmark flag and every RNG state."""
    return {
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "rng": collect_rng_states(),
    }


def _restore_global_state(state: dict[str, Any]) -> None:
    torch.use_deterministic_algorithms(state["deterministic"], warn_only=state["warn_only"])
    torch.backends.cudnn.benchmark = state["cudnn_benchmark"]
    set_rng_states(state["rng"])


@torch.no_grad()
def _own_copies_of_shared_weights(modules: list[Any]) -> None:
    """Give this worker its own copy of every weight (parameter or buffer) of ``modules`` (the modules among
    them: the call's arguments, the trainer's module) held in shared memory.

    torch.multiprocessing moves the CPU tensors it hands to a 'spawn' process into shared memory, so the
    ranks (and the launching process) would all hold one set of weights, and each rank's optimizer
    would step it again. A forked process meets the same once an earlier 'spawn' job moved them there.
    """
    for module in modules:
        if not isinstance(module, torch.nn.Module):
            continue
        for tensor in itertools.chain(module.parameters(), module.buffers()):
            if tensor.device.type == "cpu" and tensor.is_shared():  # once copied, no longer shared
                tensor.data = tensor.data.clone()


def _check_missing_main_guard() -> None:
    """A spawned process re-imports the program: without a main guard it would launch processes itself. Say so
    in Lightning's words, where Python's own message speaks of its bootstrapping phase."""
    import multiprocessing

    if not getattr(multiprocessing.current_process(), "_inheriting", False):
        return
    raise RuntimeError(
        "\nLaunching multiple processes with the 'spawn' start method requires that your script guards the main\n"
        'function with an `if __name__ == "__main__"` clause. For example:\n\n'
        "def main():\n    # Put your code here\n    ...\n\n"
        'if __name__ == "__main__":\n    main()\n\n'
        'Alternatively, you can run with `strategy="ddp"` to avoid this error.\n'
    )


def _worker(
    process_idx: int,
    launcher: MultiProcessingLauncher,
    fn: Callable,
    args: tuple,
    kwargs: dict,
    trainer: Any,
    queue: Any,
) -> None:
    launcher._in_worker = True
    if launcher._strategy._start_method == "fork":
        gc.freeze()  # what was allocated since the fork, too (see `_inherited_objects_frozen`)
    if sys.platform.startswith("linux"):
        _die_with_parent()  # no worker outlives the process that started it
    if _keeps_a_process_group():
        # forked from a process that kept the group of an earlier run (a world of its own): this worker
        # joins the new job's group instead
        _leave_inherited_groups()
    os.environ.update(_rank_env(launcher._strategy, process_idx))
    # the launcher's rendezvous, whatever the environment holds now: a 'spawn' process imported the main
    # module again, and a script that trains unguarded ran a launch of its own there, which changed them
    os.environ.update(launcher._rendezvous)
    if launcher._spawn_state is not None:
        _restore_global_state(launcher._spawn_state)
    share_the_cpus(launcher._strategy.num_processes, forked=launcher._strategy._start_method == "fork")
    if launcher._strategy.root_device.type == "cpu":  # on an accelerator, moving the module copies it anyway
        _own_copies_of_shared_weights([*args, *kwargs.values(), trainer.lightning_module])
    try:
        # through the trainer's guard, so a failing worker runs the exception hooks and tears down
        results = trainer._run_guarded(fn, *args, **kwargs)
    except PreemptionExit as stop:
        # a clean stop (the checkpoint is written): the main process raises it again
        if trainer.strategy.global_rank == 0:
            queue.put(pickle.dumps({"preempted": str(stop)}))
        return
    # all ranks: a sharded model (FSDP) gathers its full weights together
    weights = trainer.strategy.full_module_state_dict()
    if trainer.strategy.global_rank == 0:
        # as bytes: tensors sent through the queue as shared memory would vanish when this worker exits
        buffer = io.BytesIO()
        torch.save(_collect(trainer, results, weights), buffer)
        queue.put(pickle.dumps({"output": buffer.getvalue()}))


def _to_cpu(value: Any) -> Any:
    return apply_to_tensors(value, lambda t: t.detach().cpu())


def _collect(trainer: Any, results: Any, weights: dict[str, Any]) -> dict[str, Any]:
    """What the main process needs from rank 0: results, weights, progress, metrics, callback states."""
    return {
        "results": _to_cpu(results),
        "weights": _to_cpu(weights),
        "fn": trainer.state.fn,
        "status": trainer.state.status,
        "progress": trainer._run.progress.state_dict(),
        "callback_metrics": _to_cpu(dict(trainer.callback_metrics)),
        "logged_metrics": _to_cpu(dict(trainer.logged_metrics)),
        "callbacks": [cb.state_dict() for cb in trainer.callbacks],
    }


def _join(processes: Any, queue: Any) -> bytes | None:
    """Wait for the workers, reading rank 0's message; a worker killed by a signal is named as the cause.

    Rank 0's message is read while joining: a large one fills the pipe and rank 0 cannot exit before
    it is read.
    """
    from multiprocessing.connection import wait

    from torch.multiprocessing import ProcessExitedException

    raw = None
    killed: tuple[int, int, int] | None = None  # (rank, pid, exit code) of the first worker a signal ended
    try:
        while True:
            if raw is None and not queue.empty():
                raw = queue.get()
            # wake as soon as a worker ends, and see how the workers ended before torch's join stops
            # the others (it may report a peer that failed because of the killed one)
            wait(list(processes.sentinels), timeout=0.1)
            if killed is None:
                killed = _first_killed(processes.processes)
            if processes.join(timeout=0, grace_period=2):
                break
    except Exception as error:
        if killed is None and isinstance(error, ProcessExitedException) and error.exit_code < 0:
            killed = (error.error_index, error.error_pid, error.exit_code)
        if killed is None:
            raise
        rank, pid, code = killed
        raise ProcessExitedException(
            f"Rank {rank} (pid {pid}) {failure.describe_exit(code)}: the system ended that process (the"
            " out-of-memory killer, or a preemption of it or its node, are the usual causes), so it raised no"
            " error and left no traceback. The other ranks were stopped because of it.",
            error_index=rank,
            error_pid=pid,
            exit_code=code,
            signal_name=failure.signal_name(code),
        ) from error
    if raw is None and not queue.empty():
        raw = queue.get()
    return raw  # None: every worker ended cleanly and rank 0 sent nothing (see `_no_result`)


def _no_result(method: str, nprocs: int) -> RuntimeError:
    """The error for workers that all exited with status 0 without rank 0 sending the job's result."""
    spawn = ""
    if method == "spawn":
        main = getattr(sys.modules.get("__main__"), "__file__", None) or "the main script"
        spawn = (
            f" With 'spawn', each process first imports the main module again ({main}): an exit there ends"
            ' the process before the job starts; put the script\'s code under `if __name__ == "__main__":`.'
        )
    return RuntimeError(
        f"The {nprocs} processes started with the {method!r} start method all exited with status 0, and rank 0"
        " sent no result: a process ended before the job finished, as `sys.exit(0)` or `os._exit(0)` in the"
        f" code the job runs (hooks, callbacks, data loading) would end it.{spawn}"
    )


def _remove_error_files(processes: Any) -> None:
    """Delete the files in which torch's workers left their tracebacks (one in the temporary folder per
    failed rank); their text is in the exception by now, and torch never removes them."""
    for path in getattr(processes, "error_files", ()):
        if path:
            try:
                os.remove(path)
            except OSError:
                pass


def _first_killed(workers: list[Any]) -> tuple[int, int, int] | None:
    for rank, worker in enumerate(workers):
        code = worker.exitcode
        if code is not None and code < 0:
            return rank, worker.pid, code
    return None


class MultiProcessingLauncher:
    """``ddp_spawn`` / ``ddp_fork``: one worker per local device through ``torch.multiprocessing``.

    Example::

        trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn")
        trainer.fit(model)  # weights and callback states come back to this process
    """

    def __init__(self, strategy: Any) -> None:
        self._strategy = strategy
        self._in_worker = False
        self._rendezvous: dict[str, str] = {}  # MASTER_ADDR/MASTER_PORT of the job being launched
        self._spawn_state: dict[str, Any] | None = None

    @property
    def is_launched(self) -> bool:
        return self._in_worker

    @property
    def is_interactive_compatible(self) -> bool:
        """Whether it works in a notebook: forked workers do, spawned ones must import the program."""
        return self._strategy._start_method == "fork"

    def launch(self, fn: Callable, *args: Any, trainer: Any = None, **kwargs: Any) -> Any:
        import torch.multiprocessing as mp

        strategy = self._strategy
        env = strategy.cluster_environment
        if isinstance(env, LightningEnvironment) and _keeps_a_process_group():
            # MASTER_PORT is the port of the store this process still serves for its kept group: workers
            # meeting there would read that world's keys (rank 0's old address) and could wait forever
            os.environ.pop("MASTER_PORT", None)
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        self._rendezvous = {"MASTER_ADDR": os.environ["MASTER_ADDR"], "MASTER_PORT": os.environ["MASTER_PORT"]}
        method = strategy._start_method
        # a forked process inherits this process's globals; a spawned one is handed them
        self._spawn_state = _global_state() if method == "spawn" else None
        if method == "fork" and torch.cuda.is_available() and torch.cuda.is_initialized():
            raise MisconfigurationException(
                "`strategy='ddp_fork'` (or 'ddp_notebook') cannot start processes once CUDA is initialized in this"
                " process: a forked child cannot use it. Restart and avoid touching CUDA before `fit`, or use"
                " `strategy='ddp_spawn'`."
            )
        if method == "spawn":
            _check_missing_main_guard()
        elif method == "fork":
            # DistributedDataParallel's constructor imports torch._dynamo (some 800 modules, about a second):
            # imported here once, every forked rank of this job and the next ones has it already
            importlib.import_module("torch._dynamo")
        context = mp.get_context(method)
        queue = context.SimpleQueue()
        failure_dir = tempfile.mkdtemp(prefix="ember-ranks-")
        previous_dir = os.environ.get(failure.ENV_DIR)
        os.environ[failure.ENV_DIR] = failure_dir
        processes = None
        try:
            with _inherited_objects_frozen(method == "fork"):
                processes = mp.start_processes(
                    _worker,
                    args=(self, fn, args, kwargs, trainer, queue),
                    nprocs=strategy.num_processes,
                    start_method=method,
                    join=False,
                )
            raw = _join(processes, queue)
            if raw is None:
                raise _no_result(method, strategy.num_processes)
            message = pickle.loads(raw)
        finally:
            if processes is not None:
                _remove_error_files(processes)
            shutil.rmtree(failure_dir, ignore_errors=True)
            if previous_dir is None:
                os.environ.pop(failure.ENV_DIR, None)
            else:
                os.environ[failure.ENV_DIR] = previous_dir
            if isinstance(env, LightningEnvironment):
                os.environ.pop("MASTER_PORT", None)  # the next launch picks a fresh free port
        if "preempted" in message:
            raise PreemptionExit(message["preempted"])
        # our own worker's data (not a user file): full unpickling is safe here
        output = torch.load(io.BytesIO(message["output"]), weights_only=False)
        self._recover(trainer, args[0] if args else None, output)
        return output["results"]

    def _recover(self, trainer: Any, model: Any, output: dict[str, Any]) -> None:
        if model is None:
            model = trainer.lightning_module
        if model is not None:
            # a model built on the meta device (its ranks made it real) takes the weights as they are: copying into
            # meta tensors would keep nothing
            on_meta = any(tensor.is_meta for tensor in (*model.parameters(), *model.buffers()))
            model.load_state_dict(output["weights"], assign=on_meta)
            trainer.strategy.connect(model)
        trainer.state.fn = output["fn"]
        trainer.state.status = output["status"]
        trainer.state.stage = None
        trainer._run.progress.load_state_dict(output["progress"])
        trainer._run.metrics.callback = dict(output["callback_metrics"])  # read-only properties on the trainer
        trainer._run.metrics.logged = dict(output["logged_metrics"])
        for cb, state in zip(trainer.callbacks, output["callbacks"]):
            if state:
                if getattr(cb, "dirpath", "") is None and "dirpath" in state:
                    cb.dirpath = state["dirpath"]  # resolved in the workers: this process's copy never was
                cb.load_state_dict(state)

    def record_killed_ranks(self, exception: BaseException) -> None:
        pass  # the main process, which started the workers, names a killed one (see `_join`)

    def on_exception(self, exception: BaseException) -> None:
        pass
