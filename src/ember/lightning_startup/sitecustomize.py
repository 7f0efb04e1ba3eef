"""Started Python processes inherit the Lightning alias (``ember.install_as_lightning()``).

``install_as_lightning()`` sets ``EMBER_AS_LIGHTNING=1`` and puts this folder on ``PYTHONPATH``, so a
Python process started from that one, by anything (Ray's workers, ``torchrun``, ``subprocess``, a
process pool), runs this file when it starts. Whatever imports Lightning there then gets Ember: a Ray
worker that unpickles a training function referring to ``lightning.pytorch``, a library that imports
``pytorch_lightning`` in a worker. A process that inherited ``EMBER_AS_LIGHTNING=1`` but already
imports ``ember`` gets the alias that way too; this file is for the ones that import Lightning first.

Nothing is imported at start-up: a finder waits for the first import of ``pytorch_lightning`` or
``lightning``, and only then imports Ember (and torch), so the many Python processes that never touch
Lightning pay nothing. Where the interpreter cannot import Ember (another Python started with this
environment), the import of Lightning proceeds as if this file were not there.

This file shadows any other ``sitecustomize`` on the path, so it runs that one afterwards.
Written for every Python version a child interpreter may be, without annotations.
"""

import importlib.machinery
import importlib.util
import os
import sys

_LIGHTNING_ROOTS = ("pytorch_lightning", "lightning")
# marks this file, so that another copy of it on the path (another Ember install, a symlinked folder) is
# recognised and passed over when looking for the sitecustomize this one hides
EMBER_STARTUP_HOOK = True


class _ImportEmberFirst:
    """Imports Ember (which installs the alias, as ``EMBER_AS_LIGHTNING=1`` asks) at the first import of
    a Lightning root, then lets the alias answer it."""

    ember_startup_hook = True  # one finder per process, whichever copy of this file ran

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _LIGHTNING_ROOTS:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        try:
            import ember.lightning_alias as alias  # `import ember` installs the alias, as the variable asks
        except ImportError:
            return None  # Ember is not importable here: Lightning's own import goes ahead
        if not alias.is_installed():
            return None
        return alias._FINDER.find_spec(fullname, path, target)

    def invalidate_caches(self):
        pass


def _wait_for_lightning():
    if os.environ.get("EMBER_AS_LIGHTNING") != "1":
        return
    if not any(getattr(finder, "ember_startup_hook", False) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ImportEmberFirst())


def _is_a_startup_hook(spec):
    """Whether the ``sitecustomize`` that ``spec`` finds is this hook or another copy of it."""
    try:
        with open(spec.origin, encoding="utf-8") as source:
            return "\nEMBER_STARTUP_HOOK = True\n" in source.read()
    except (OSError, TypeError, ValueError):
        return False


def _run_the_shadowed_sitecustomize():
    """The ``sitecustomize`` this one hides (a distribution's or a virtual environment's), run as it would
    have run; its errors are reported as ``site`` reports them, without stopping start-up. Copies of
    this hook further along the path (another Ember install, a symlinked folder) are passed over."""
    spec = None
    for entry in sys.path:
        found = importlib.machinery.PathFinder.find_spec("sitecustomize", [entry])
        if found is not None and found.loader is not None and not _is_a_startup_hook(found):
            spec = found
            break
    if spec is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules[__name__] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # as `site` treats a failing sitecustomize
        sys.stderr.write("Error in sitecustomize; set PYTHONVERBOSE for traceback:\n")
        sys.stderr.write(f"{type(error).__name__}: {error}\n")


_wait_for_lightning()
if __name__ == "sitecustomize":
    _run_the_shadowed_sitecustomize()
