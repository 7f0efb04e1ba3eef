"""``python -c CODE ARGS...`` for the suite, at a fraction of a fresh interpreter's start-up cost.

Most of the suite's time goes to starting interpreters: each one imports torch (seconds on a small
machine) and, at its first optimizer step, ``torch._dynamo`` (as long again). A check that needs a
fresh interpreter for Ember and Lightning (the alias changes how a process imports) does not need a
fresh torch, so ``run_code`` forks a child from a standing interpreter that has imported torch and
``torch._dynamo`` and nothing of Ember's or Lightning's, and runs the code there as ``python -c``
would: a new ``__main__``, ``sys.argv == ["-c", *args]``, the working folder and environment asked
for, the exit code of ``SystemExit`` or 1 with the traceback on stderr, non-daemon threads joined and
``atexit`` functions run at the end, stdout and stderr captured.

It returns what ``subprocess.run(..., capture_output=True, text=True)`` returns. The standing
interpreter is started with the variables an interpreter reads as it starts (``PYTHON*``, torch's,
OpenMP's, CUDA's) of the call; a call whose start-up variables no standing interpreter has runs a
real interpreter, and the second such call starts a standing one for them. A check about what
happens before torch is imported, about the interpreter's own start-up, or about which of torch's
modules are loaded (``torch._dynamo``, and what it loads: numpy, sympy, tqdm) runs a real
interpreter itself. What a fork shares with its siblings and a fresh interpreter would not: the
hash seed, numpy's unseeded global generator (Python's ``random`` is reseeded at fork).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

# variables an interpreter reads while it starts or while torch loads: a child cannot change them
_STARTUP_PREFIXES = ("PYTHON", "TORCH", "PYTORCH", "OMP_", "MKL_", "KMP_", "CUDA", "NCCL", "LD_", "MALLOC")


def _startup_part(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(_STARTUP_PREFIXES)}


# ------------------------------------------------------------------------------------------------
# the standing interpreter: reads one request a line on stdin, forks, answers the child's pid and
# then its exit code on stdout
# ------------------------------------------------------------------------------------------------
_SERVER = r"""
import atexit, builtins, json, os, sys, threading, types
import torch, torch._dynamo  # what every checked program pays for first

def child(request):
    out = os.open(request["stdout"], os.O_WRONLY)
    err = os.open(request["stderr"], os.O_WRONLY)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0), os.dup2(out, 1), os.dup2(err, 2)
    for fd in (out, err, null):
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    if "__mp_main__" in sys.modules:  # torch's import makes it another name of __main__
        sys.modules["__mp_main__"] = main
    sys.argv = ["-c", *request["args"]]
    try:
        exec(compile(request["code"], "<string>", "exec"), main.__dict__)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
        if not isinstance(stop.code, (int, type(None))):
            print(stop.code, file=sys.stderr)
    except BaseException:
        error = sys.exc_info()[1]
        error.__traceback__ = error.__traceback__.tb_next  # from the program's frame on, as python -c prints it
        sys.excepthook(type(error), error, error.__traceback__)
        code = 1
    try:
        threading._shutdown()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)

for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            child(request)
        finally:
            os._exit(70)
    os.write(1, f"{pid}\n".encode())
    _, status = os.waitpid(pid, 0)
    os.write(1, f"{os.waitstatus_to_exitcode(status)}\n".encode())
"""


class _Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=os.getcwd(),
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def _line(self, deadline: float | None) -> str:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        line = b""
        while not line.endswith(b"\n"):
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
            chunk = os.read(fd, 1)
            if not chunk:
                raise EOFError("the standing interpreter ended")
            line += chunk
        return line.decode().strip()

    def run(self, request: dict[str, Any], timeout: float | None) -> int:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        self.process.stdin.flush()
        deadline = None if timeout is None else time.monotonic() + timeout
        pid = int(self._line(None))
        try:
            return int(self._line(deadline))
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            self._line(None)
            raise

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


# one standing interpreter for each start-up environment asked for twice: a one-off environment (a
# test's own PYTHONPATH) gets a real interpreter rather than a standing one it would use once
_servers: dict[str, _Server] = {}
_seen: set[str] = set()


def _server_for(env: dict[str, str]) -> _Server | None:
    key = json.dumps(_startup_part(env), sort_keys=True)
    server = _servers.get(key)
    if server is not None and not server.alive():
        _servers.pop(key).close()
        server = None
    if server is None and key in _seen:
        server = _servers[key] = _Server(env)
        atexit.register(server.close)
    _seen.add(key)
    return server


def run_code(
    code: str,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, ...)``, forked."""
    env = dict(os.environ if env is None else env)
    command = [sys.executable, "-c", code, *args]
    server = _server_for(env) if hasattr(os, "fork") else None
    if server is None:
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="ember-fork-") as folder:
        stdout, stderr = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
        for path in (stdout, stderr):
            open(path, "wb").close()
        request = {
            "code": code,
            "args": list(args),
            "env": env,
            "cwd": os.fspath(cwd) if cwd is not None else os.getcwd(),
            "stdout": stdout,
            "stderr": stderr,
        }
        try:
            returncode = server.run(request, timeout)
        except TimeoutError:
            raise subprocess.TimeoutExpired(command, timeout or 0.0) from None
        with (
            open(stdout, encoding="utf-8", errors="replace") as out,
            open(stderr, encoding="utf-8", errors="replace") as err,
        ):
            return subprocess.CompletedProcess(command, returncode, out.read(), err.read())
