"""The suite's forked ``python -c`` (``tests/helpers/fresh_interpreter.py``) gives what a real one gives."""

import os
import subprocess
import sys
import textwrap

import pytest
from tests.helpers import fresh_interpreter
from tests.helpers.fresh_interpreter import run_code

PROGRAM = textwrap.dedent(
    """
    import atexit, os, pickle, sys, threading, time
    print(sys.argv, __name__, os.getcwd() == os.environ["EXPECTED_CWD"], os.environ.get("ONLY_HERE"))
    print(sorted(m for m in ("ember", "pytorch_lightning", "lightning") if m in sys.modules))

    class Local:  # defined in __main__, pickled by reference as in any `python -c` program
        pass

    print(pickle.loads(pickle.dumps(Local())).__class__.__module__)
    atexit.register(print, "at exit")
    threading.Thread(target=lambda: (time.sleep(0.2), print("thread joined", flush=True))).start()
    sys.stderr.write("to stderr\\n")
    how = sys.argv[1]
    if how == "raise":
        raise ValueError("boom")
    if how == "exit-text":
        sys.exit("stopped by text")
    if how == "exit-code":
        sys.exit(3)
    """
)


@pytest.mark.parametrize("how", ["return", "raise", "exit-text", "exit-code"])
def test_a_forked_program_runs_as_a_fresh_python_c_does(tmp_path, how):
    env = {**os.environ, "EXPECTED_CWD": str(tmp_path), "ONLY_HERE": "yes"}
    real = subprocess.run(
        [sys.executable, "-c", PROGRAM, how], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    for _ in range(2):  # the first call of an environment starts a real interpreter, the second forks
        forked = run_code(PROGRAM, how, env=env, cwd=tmp_path, timeout=120)
    assert fresh_interpreter._servers, "the second call with these start-up variables should have forked"
    assert (forked.returncode, forked.stdout) == (real.returncode, real.stdout)
    assert forked.stderr == real.stderr
    assert real.stdout.splitlines()[-2:] == ["thread joined", "at exit"]


def test_a_forked_program_that_outlives_its_timeout_is_killed():
    env = dict(os.environ)
    run_code("pass", env=env, timeout=60)
    with pytest.raises(subprocess.TimeoutExpired):
        run_code("import time; time.sleep(60)", env=env, timeout=1)
    assert fresh_interpreter._servers
    assert run_code("print('after')", env=env, timeout=60).stdout == "after\n"  # the standing one still serves


def test_a_standing_interpreter_that_died_is_replaced():
    env = dict(os.environ)
    run_code("pass", env=env, timeout=60)
    run_code("pass", env=env, timeout=60)
    for server in fresh_interpreter._servers.values():
        server.process.kill()
        server.process.wait()
    assert run_code("print('served')", env=env, timeout=60).stdout == "served\n"
    assert all(server.alive() for server in fresh_interpreter._servers.values())
