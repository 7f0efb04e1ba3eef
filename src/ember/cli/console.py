"""The ``ember`` command: ``fit|validate|test|predict`` (LightningCLI), ``run``, ``demo``, ``plot``, ``--version``.

Example::

    ember fit --config config.yaml --trainer.max_epochs 5
    ember run train.py --max_epochs 5       # an unmodified Lightning script
    python -m ember demo
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ember.cli.lightning_cli import LightningCLI

_USAGE = """usage: ember [-h] [--version] {fit,validate,test,predict,run,demo,plot} ...

Ember: PyTorch Lightning's API without the overhead.

commands:
  fit        train a LightningModule (any importable class: --model pkg.Model, or a YAML config)
  validate   run one validation epoch
  test       run one test epoch
  predict    run predict_step over the predict data
  run        run an unmodified Lightning script on Ember: ember run train.py [args] (or -m package.module)
  demo       train the built-in digits demo end to end
  plot       draw the training curves of a run (metrics.csv or TensorBoard events) into a PNG

options:
  -h, --help  show this message and exit
  --version   show Ember's version and exit

Run `ember <command> --help` for the options of a command, e.g. `ember fit --help`.
Example: ember fit --config config.yaml --trainer.max_epochs 5
"""


def main(argv: Sequence[str] | None = None) -> int:
    """The ``ember`` console script: ``fit|validate|test|predict``, ``run``, ``demo``, ``plot``, ``--version``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE, end="")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command in ("--version", "-V"):
        from ember._version import __version__

        print(f"ember {__version__}")
        return 0
    if command == "run":
        from ember.cli.run import main as run_main

        return run_main(rest)
    if command == "demo":
        from ember.demos.digits import main as demo_main

        demo_main(rest, prog="ember demo")
        return 0
    if command == "plot":
        from ember.plot import main as plot_main

        return int(plot_main(rest) or 0)
    if command in LightningCLI.subcommands() or command.startswith("-"):
        # a subcommand, or options before it (`ember --config run.yaml fit`): the CLI parses them.
        # Class paths name the user's modules: the folder the command runs in is importable, as it is
        # for `python main.py`.
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        # (from the command line, the CLI reads `sys.argv` itself: given them as `args` too, it warns that both
        # were given)
        LightningCLI(args=None if argv is None else args, parser_kwargs={"prog": "ember"})
        return 0
    import difflib

    known = [*LightningCLI.subcommands(), "run", "demo", "plot"]
    nearest = difflib.get_close_matches(command, known, n=1)
    hint = f" Did you mean `ember {nearest[0]}`?" if nearest else ""
    sys.stderr.write(f"ember: '{command}' is not a command; choose one of {', '.join(known)}.{hint}\n")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
