"""Importing this module makes the process behave as if Lightning were not installed.

The dev environment installs Lightning (the Lightning-based libraries of ``tests/test_lightning_libraries.py``
depend on it), but the alias must also be checked where it is absent. From the import on, the packages
``lightning``, ``pytorch_lightning`` and ``lightning_fabric`` are not found in the site-packages folders;
the same names on ``sys.path`` elsewhere (a test's stand-in distribution) are still found. Import it
first, in a fresh interpreter: ``python -c "import tests.helpers.without_lightning; ..."``.
"""

from __future__ import annotations

import importlib.machinery
import site
import sys
from typing import Any

HIDDEN = ("lightning", "pytorch_lightning", "lightning_fabric")
_SITE_FOLDERS = {*site.getsitepackages(), site.getusersitepackages()}


class _PathFinderWithoutInstalledLightning:
    """Python's ``PathFinder``, except that it looks for the hidden packages outside the site-packages folders."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if path is None and name in HIDDEN:
            path = [entry for entry in sys.path if entry not in _SITE_FOLDERS]
        return importlib.machinery.PathFinder.find_spec(name, path, target)

    @staticmethod
    def invalidate_caches() -> None:
        importlib.machinery.PathFinder.invalidate_caches()


if any(name in sys.modules for name in HIDDEN):
    raise RuntimeError(f"import {__name__} before anything imports Lightning")
sys.meta_path[:] = [
    _PathFinderWithoutInstalledLightning() if finder is importlib.machinery.PathFinder else finder
    for finder in sys.meta_path
]
