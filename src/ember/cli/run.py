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
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))  # as `python script.py` does
    runpy.run_path(script, run_name="__main__")
    return 0
