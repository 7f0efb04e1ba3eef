"""``ember run script.py [args...]``: an unmodified Lightning program, on Ember.

The program runs as ``python script.py args`` would run it (as ``__main__``, with its own
``sys.argv``, its folder first on ``sys.path``), after ``ember.install_as_lightning()``: its
``import lightning`` / ``import pytorch_lightning`` and those of the libraries it uses give Ember.
``ember run -m package.module args`` runs a module, as ``python -m`` does.

Example::

    ember run train.py --max_epochs 3
    python -m ember run -m my_project.train --max_epochs 3
"""

from __future__ import annotations

import os
import runpy
import sys
import types
from collections.abc import Sequence

USAGE = """usage: ember run script.py [args ...]
       ember run -m package.module [args ...]

Run a PyTorch Lightning program on Ember, unmodified: `import lightning`, `import pytorch_lightning`
and every module path under them give Ember's modules (see `ember.install_as_lightning`). The
arguments after the script or module go to the program, as with `python script.py args`.
"""


def main(args: Sequence[str]) -> int:
    """Run the script (or ``-m`` module) named first in ``args`` with the rest as its arguments."""
    args = list(args)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if args else 2
    from ember.lightning_alias import install_as_lightning

    if args[0] == "-m":
        if len(args) < 2:
            sys.stderr.write("ember run: -m needs a module name, e.g. `ember run -m my_project.train`.\n")
            return 2
        install_as_lightning()
        sys.argv = [args[1], *args[2:]]  # argv[0] becomes the module's file while it runs
        sys.path.insert(0, os.getcwd())  # as `python -m` does
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        return 0
    script = args[0]
    if not os.path.isfile(script):
        sys.stderr.write(f"ember run: can't open file {os.path.abspath(script)!r}: no such file.\n")
        return 2
    install_as_lightning()
    sys.argv = [script, *args[1:]]
    path = os.path.abspath(script)
    sys.path.insert(0, os.path.dirname(path))  # as `python script.py` does
    _run_script(path)
    return 0


def _run_script(path: str) -> None:
    """Run the file at the absolute ``path`` as ``__main__``, as ``python script.py`` does: ``__file__`` is
    absolute (``Path(__file__).parent`` holds after a ``chdir``) and ``sys.argv[0]`` stays as typed, where
    ``runpy.run_path`` would make it the path it was given."""
    with open(path, "rb") as file:
        source = file.read()
    try:
        code = compile(source, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        # not Python source (a compiled file, a zip), or a syntax error: runpy runs it, or raises as python does
        runpy.run_path(path, run_name="__main__")
        return
    main = types.ModuleType("__main__")
    main.__dict__.update(__file__=path, __cached__=None, __loader__=None, __package__=None, __spec__=None)
    previous = sys.modules.get("__main__")
    sys.modules["__main__"] = main  # what pickle and multiprocessing find the program's classes in
    try:
        exec(code, main.__dict__)
    finally:
        if previous is not None:
            sys.modules["__main__"] = previous
