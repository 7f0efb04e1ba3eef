"""When one rank fails: show its traceback once and let the other ranks end quietly and promptly.

The launcher gives every process it starts a shared folder (``EMBER_FAILURE_DIR``). The first rank
whose run raises creates a marker file there (atomically: only one can). A rank whose run fails
afterwards failed because of that one (a collective lost its peer), so instead of a second,
misleading traceback it prints one line that points at the first.
"""

from __future__ import annotations

import os
import sys
import traceback
from datetime import timedelta
from typing import Any

ENV_DIR = "EMBER_FAILURE_DIR"
_MARKER = "first_failure"
_state: dict[str, Any] = {"rank": 0, "secondary": None, "hook_installed": False}


class CollectiveError(RuntimeError):
    """A collective (barrier, broadcast, all-reduce, ...) did not complete on this rank."""


def collective_error(
    name: str, rank: int, world_size: int, timeout: timedelta, error: BaseException
) -> CollectiveError:
    """The error to raise when collective ``name`` fails: it names the collective and the likely cause."""
    first = first_failure()
    if first is not None and first[0] != rank:
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
            sys.stderr.write(
                f"[rank {_state['rank']}] stopped because rank {secondary[1]} failed (its traceback is shown above).\n"
            )
            sys.stderr.flush()
            return
        previous(kind, value, tb)

    sys.excepthook = excepthook


def first_failure() -> tuple[int, str] | None:
    """``(rank, error summary)`` of the first rank that failed in this job, if any did."""
    folder = os.environ.get(ENV_DIR)
    if not folder:
        return None
    try:
        with open(os.path.join(folder, _MARKER)) as f:
            rank, _, summary = f.read().partition("\n")
        return int(rank), summary
    except (OSError, ValueError):
        return None


def on_exception(exception: BaseException, rank: int) -> bool:
    """Record this rank's failure; True if it is the first in the job (its traceback is the one to show)."""
    if isinstance(exception, (KeyboardInterrupt, SystemExit)):
        return False
    folder = os.environ.get(ENV_DIR)
    if not folder:
        return True
    path = os.path.join(folder, _MARKER)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        first = first_failure()
        if first is not None and first[0] != rank:
            _state["secondary"] = (exception, first[0])
        return False
    except OSError:
        return True
    summary = "".join(traceback.format_exception_only(type(exception), exception)).strip().replace("\n", " ")
    with os.fdopen(fd, "w") as f:
        f.write(f"{rank}\n{summary}")
    return True
