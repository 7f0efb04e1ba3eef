"""Run a Python snippet on a tiny disk of its own: a size-limited (or read-only) tmpfs, mounted in a
private mount namespace so that it disappears with the process, whatever happens to the test.

Mounting needs ``unshare`` and the right to mount (root in most containers, CAP_SYS_ADMIN); where
the machine refuses, the test is skipped with the reason.

Example::

    proc = run_on_small_disk("open('x', 'wb').write(b'0' * 10**6)", size_kib=64, tmp_path=tmp_path)
    assert "No space left" in proc.stderr
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_MOUNT_AND_RUN = 'mount -t tmpfs -o "$1" ember-test-disk "$2" && cd "$2" && shift 2 && exec "$@"'


@functools.lru_cache(maxsize=1)
def _why_not() -> str | None:
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return "needs Linux and the unshare command"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs -o size=64k none /mnt"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"this machine does not allow mounting a tmpfs in a private namespace: {probe.stderr.strip()}"
    return None


def run_on_small_disk(
    script: str, *, size_kib: int, tmp_path: Path, read_only: bool = False, timeout: float = 90
) -> subprocess.CompletedProcess:
    """Run ``python -c script`` with a fresh tmpfs of ``size_kib`` as its working directory."""
    reason = _why_not()
    if reason is not None:
        pytest.skip(reason)
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    options = f"size={size_kib}k" + (",ro" if read_only else "")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    env["PYTHONWARNINGS"] = "ignore"
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _MOUNT_AND_RUN, "sh"]
    command += [options, str(mount_point), sys.executable, "-c", script]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
