"""When one rank fails: show its traceback once and let the other ranks end quietly and promptly.

The launcher gives every process it starts a shared folder (``EMBER_FAILURE_DIR``). The first rank
whose run raises creates a marker file there (atomically: only one can). A rank whose run fails
afterwards failed because of that one (a collective lost its peer), so instead of a second,
misleading traceback it prints one line that points at the first.

Each rank whose run fails with an error of its own (not a lost peer) also leaves a record saying so:
the launching rank reads these to tell ranks that failed by themselves (out of their collectives and
back in the user's code, where the program may catch the error and go on) from ranks stuck waiting
for a failed one. The records belong to one Trainer call: every rank counts its calls
(``begin_call``; all ranks make the same calls in the same order), so a later call starts clean.

A rank that the system kills (``SIGKILL`` from the out-of-memory killer, a preemption of one
node) raises nothing and leaves no traceback; its peers only see their collective fail
("Connection reset by peer"). The process that started it (the launcher) sees how it ended and
records it as the first failure, so the others say which rank was killed, by which signal.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from datetime import timedelta
from typing import Any

import torch

ENV_DIR = "EMBER_FAILURE_DIR"
_MARKER = "first_failure"
# secondary: (error, rank, summary); call: how many distributed Trainer calls this process has begun
_state: dict[str, Any] = {"rank": 0, "secondary": None, "hook_installed": False, "call": 0}


class CollectiveError(RuntimeError):
    """A collective (barrier, broadcast, all-reduce, ...) did not complete on this rank."""


def collective_error(
    name: str, rank: int, world_size: int, timeout: timedelta, error: BaseException
) -> CollectiveError:
    """The error to raise when collective ``name`` fails: it names the collective and the likely cause."""
    first = first_failure()
    if first is not None and first[0] != rank and first[1].startswith(KILLED):
        cause = f"rank {first[0]} {first[1]} (the out-of-memory killer or a preemption, usually)"
    elif first is not None and first[0] != rank:
        cause = f"rank {first[0]} failed first (see its traceback)"
    else:
        cause = (
            f"another rank stopped answering for longer than the strategy's timeout ({timeout}), failed, or took"
            " another code path (every rank must reach the same collectives in the same order)"
        )
    return CollectiveError(f"Rank {rank}/{world_size}: the collective `{name}` did not complete: {cause}. ({error})")


def install(rank: int) -> None:
    """Remember this process's rank and print secondary failures as one line."""
    _state["rank"] = rank
    if _state["hook_installed"]:
        return
    _state["hook_installed"] = True
    previous = sys.excepthook

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        secondary = _state["secondary"]
        if secondary is not None and value is secondary[0]:
            sys.stderr.write(f"[rank {_state['rank']}] {secondary_line(secondary[1], secondary[2])}\n")
            sys.stderr.flush()
            return
        previous(kind, value, tb)

    sys.excepthook = excepthook


KILLED = "was killed by signal"


def secondary_line(rank: int, summary: str) -> str:
    """What a rank that failed because of rank ``rank`` (whose failure is ``summary``) says."""
    if summary.startswith(KILLED):
        return (
            f"stopped because rank {rank} {summary}: the system ended that process (the out-of-memory killer, or a"
            " preemption of it or its node, are the usual causes), so it raised no error and left no traceback."
            " This rank's collective lost its peer; the other ranks were stopped because of it."
        )
    return f"stopped because rank {rank} failed (its traceback is shown above)."


def signal_name(code: int) -> str:
    """``"SIGKILL"`` for the exit code ``-9`` of a process a signal ended."""
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def describe_exit(code: int) -> str:
    """How a process ended, from its exit code (negative: the signal that killed it)."""
    if code < 0:
        return f"{KILLED} {signal_name(code)} ({-code})"
    return f"exited with code {code}"


def record_killed(rank: int, code: int) -> bool:
    """Record that ``rank`` was ended by a signal, as the call's first failure (if none is recorded yet)."""
    return _write_marker(rank, describe_exit(code))


def begin_call() -> None:
    """A distributed Trainer call begins on this rank: failures from here on are recorded as this call's."""
    _state["call"] += 1


def _call_path(folder: str, name: str) -> str:
    return os.path.join(folder, f"call{_state['call']}-{name}")


def forget_call() -> None:
    """Remove the failure records of the running call: every rank failed by itself and is back in the
    user's code, so the call's failure is over (the program may catch it and make another call)."""
    folder = os.environ.get(ENV_DIR)
    if not folder:
        return
    prefix = os.path.basename(_call_path(folder, ""))
    for name in os.listdir(folder):
        if name.startswith(prefix):
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass


def first_failure() -> tuple[int, str] | None:
    """``(rank, error summary)`` of the first rank that failed in this Trainer call of the job, if any did."""
    folder = os.environ.get(ENV_DIR)
    if not folder:
        return None
    try:
        with open(_call_path(folder, _MARKER)) as f:
            rank, _, summary = f.read().partition("\n")
        return int(rank), summary
    except (OSError, ValueError):
        return None


def on_exception(exception: BaseException, rank: int) -> bool:
    """Record this rank's failure; True if it is the first in the call (its traceback is the one to show).

    A failure of this rank's own is recorded last, once nothing more is read: the launching rank, which
    waits for it, may then remove the call's records.
    """
    if isinstance(exception, (KeyboardInterrupt, SystemExit)):
        return False
    summary = "".join(traceback.format_exception_only(type(exception), exception)).strip().replace("\n", " ")
    is_first = _write_marker(rank, summary)
    first = None if is_first else first_failure()
    # an error of this rank's own, not a peer lost, keeps its traceback: both ranks can fail at once
    if first is not None and first[0] != rank and lost_a_peer(exception):
        _state["secondary"] = (exception, first[0], first[1])
        if first[1].startswith(KILLED) and hasattr(exception, "add_note"):
            exception.add_note(f"[rank {rank}] {secondary_line(first[0], first[1])}")
    if is_own_failure(exception):
        _write_record(f"failed-rank{rank}")
    return is_first


def failed_by_itself(rank: int) -> bool:
    """Whether ``rank`` failed in this call with an error of its own: it left its collectives (they are
    local from then on) and its error goes back to the user's code, as a lost peer's does not."""
    folder = os.environ.get(ENV_DIR)
    return folder is not None and os.path.exists(_call_path(folder, f"failed-rank{rank}"))


def is_own_failure(exception: BaseException) -> bool:
    """Whether ``exception`` is a rank's own error: not an interrupt or exit, and not a lost peer."""
    return not isinstance(exception, (KeyboardInterrupt, SystemExit)) and not lost_a_peer(exception)


def lost_a_peer(exception: BaseException) -> bool:
    """Whether ``exception`` says that another process of the job went away (gloo, NCCL, a collective)."""
    dist_error = getattr(torch.distributed, "DistError", ())
    if isinstance(exception, (CollectiveError, dist_error)):
        return True
    text = str(exception).lower()
    return any(words in text for words in ("connection reset", "connection closed", "broken pipe", "peer", "nccl"))


def _write_marker(rank: int, summary: str) -> bool:
    """Create the call's first-failure marker for ``rank``; False if another rank's is there already.

    Without a shared folder (a single process, or a launcher that gives none) every failure is the first.
    """
    folder = os.environ.get(ENV_DIR)
    if not folder:
        return True
    try:
        fd = os.open(_call_path(folder, _MARKER), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    except OSError:
        return True
    with os.fdopen(fd, "w") as f:
        f.write(f"{rank}\n{summary}")
    return True


def _write_record(name: str) -> None:
    """Create this call's (empty) record ``name`` in the shared folder, if there is one."""
    folder = os.environ.get(ENV_DIR)
    if not folder:
        return
    try:
        with open(_call_path(folder, name), "w"):
            pass
    except OSError:
        pass
