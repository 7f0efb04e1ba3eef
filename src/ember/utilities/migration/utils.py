"""Bringing a checkpoint of an older Lightning release up to date: ``migrate_checkpoint`` applies the layout
changes (``migration.py`` holds them), ``migrate_loaded`` is what the trainer and ``load_from_checkpoint`` do
with a file they read, and ``pl_legacy_patch`` serves the names old checkpoints pickled. Lightning's
``utilities.migration.utils``, whose private helpers programs import too (``_pl_migrate_checkpoint``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import types
from typing import Any

from ember._version import LIGHTNING_VERSION
from ember.utilities.imports import _version_key
from ember.utilities.migration.migration import _MIGRATIONS
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn
from ember.utilities.warnings import PossibleUserWarning

_VERSION_KEY = "pytorch-lightning_version"
_LEGACY_VERSION_KEY = "legacy_pytorch-lightning_version"


def migrate_checkpoint(
    checkpoint: dict[str, Any], target_version: str | None = None
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Apply the layout changes of every Lightning release after the one that wrote ``checkpoint`` (up to
    ``target_version``, inclusive, when given), in place.

    Returns the checkpoint and the changes applied, by the release that made them. The checkpoint's
    ``"pytorch-lightning_version"`` becomes the version Ember follows; the one it was written with is kept
    under ``"legacy_pytorch-lightning_version"``. A checkpoint from a newer release is left as it is,
    with a warning.
    """
    written_with = checkpoint[_VERSION_KEY]
    if _version_key(written_with) > _version_key(LIGHTNING_VERSION):
        rank_zero_warn(
            f"The loaded checkpoint was produced with Lightning v{written_with}, which is newer than your current"
            f" Lightning version: v{LIGHTNING_VERSION}",
            category=PossibleUserWarning,
        )
        return checkpoint, {}
    applied: dict[str, list[str]] = {}
    for release, steps in _MIGRATIONS.items():
        if _version_key(written_with) >= _version_key(release):
            continue
        if target_version is not None and _version_key(release) > _version_key(target_version):
            continue
        for step in steps:
            checkpoint = step(checkpoint)
        applied[release] = [step.__name__ for step in steps]
    if written_with != LIGHTNING_VERSION:
        checkpoint.setdefault(_LEGACY_VERSION_KEY, written_with)
    checkpoint[_VERSION_KEY] = LIGHTNING_VERSION
    return checkpoint, applied


class pl_legacy_patch:
    """For the length of a ``with`` block, the names that checkpoints of old Lightning releases pickled and that
    Lightning has since removed, so that a full load (``weights_only=False``) of such a file finds them, as in
    Lightning: ``pytorch_lightning.utilities.argparse_utils._gpus_arg_default`` and
    ``pytorch_lightning.utilities.argparse._gpus_arg_default`` (releases before 1.2.8, whose hyperparameters held
    the Trainer's command-line arguments), and ``pytorch_lightning.utilities.enums._FaultTolerantMode``
    (before 2.0). The trainer and ``load_from_checkpoint`` read checkpoints inside it.

    Under ``install_as_lightning()`` (or with Lightning's own package imported) the names are added to those
    packages' modules, and a module they do not have is served for the block; where no package of that name
    is installed, the block serves them all. An installed Lightning that is not imported stays so: a load
    never imports it.

    Example::

        with pl_legacy_patch():
            checkpoint = torch.load("lightning-1.2.ckpt", weights_only=False)
    """

    _lock = threading.Lock()

    def __enter__(self) -> pl_legacy_patch:
        self._lock.acquire()
        self._added_modules: list[str] = []
        self._added_names: list[tuple[types.ModuleType, str]] = []
        try:
            fault_tolerant_mode = _fault_tolerant_mode()
            for root in ("pytorch_lightning", "lightning.pytorch"):
                if not _patchable(root):
                    continue
                self._provide(f"{root}.utilities.argparse_utils", "_gpus_arg_default", _gpus_arg_default)
                self._provide(f"{root}.utilities.argparse", "_gpus_arg_default", _gpus_arg_default)
                self._provide(f"{root}.utilities.enums", "_FaultTolerantMode", fault_tolerant_mode)
        except BaseException:
            self.__exit__()  # what was added goes, and the next load is not locked out
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            for module, name in self._added_names:
                if hasattr(module, name):
                    delattr(module, name)
            for module_name in reversed(self._added_modules):
                sys.modules.pop(module_name, None)
        finally:
            self._lock.release()

    def _provide(self, module_name: str, name: str, value: Any) -> None:
        module = self._module(module_name)
        if not hasattr(module, name):
            setattr(module, name, value)
            self._added_names.append((module, name))

    def _module(self, module_name: str) -> types.ModuleType:
        """The module of that name: imported where there is one, else served for the block (with its packages,
        which unpickling imports too)."""
        module = sys.modules.get(module_name)
        if module is not None:
            return module
        try:
            return importlib.import_module(module_name)
        except ImportError:
            package = module_name.rpartition(".")[0]
            if package:
                self._module(package)
            module = sys.modules[module_name] = types.ModuleType(module_name)
            self._added_modules.append(module_name)
            return module


def _patchable(root: str) -> bool:
    """Whether the legacy names go under ``root``: its package is imported (Ember's, under the alias, or
    Lightning's), the alias gives ``pytorch_lightning`` on import (Ember's own package, at no cost), or nothing
    of that name is installed. (``lightning.pytorch`` is not imported for it: an installed ``lightning``
    package loads all of its parts.)"""
    if root in sys.modules:
        return True
    top = root.partition(".")[0]
    if top == "pytorch_lightning" and os.environ.get("EMBER_AS_LIGHTNING") == "1":
        return True
    return top not in sys.modules and importlib.util.find_spec(top) is None


def _gpus_arg_default(value: Any) -> Any:
    """Lightning's old parser of ``--gpus``, as the legacy patch gives it: the value as it is."""
    return value


def _fault_tolerant_mode() -> type:
    from ember.utilities.enums import LightningEnum

    class _FaultTolerantMode(LightningEnum):
        DISABLED = "disabled"
        AUTOMATIC = "automatic"
        MANUAL = "manual"

    return _FaultTolerantMode


def migrate_loaded(checkpoint: Any, path: Any) -> Any:
    """What the trainer and ``load_from_checkpoint`` do with a checkpoint they read from ``path``: bring one
    written by Lightning up to date, and say how to upgrade the file when that changed anything. A dict
    without Lightning's version string (a hand-made one) is returned as it is."""
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get(_VERSION_KEY), str):
        return checkpoint
    written_with = checkpoint[_VERSION_KEY]
    checkpoint, applied = migrate_checkpoint(checkpoint)
    if applied and path is not None:
        local = isinstance(path, (str, os.PathLike)) and "://" not in os.fspath(path)
        shown = os.path.relpath(path, os.getcwd()) if local else path  # a URL as it was given
        rank_zero_info(
            f"Ember upgraded the loaded checkpoint from Lightning v{written_with}'s layout to v{LIGHTNING_VERSION}'s"
            " (in memory). To apply the upgrade to your files permanently, run"
            f" `python -m ember.utilities.upgrade_checkpoint {shown}`"
        )
    return checkpoint


def _pl_migrate_checkpoint(checkpoint: dict[str, Any], checkpoint_path: Any = None) -> dict[str, Any]:
    """Lightning's private name of :func:`migrate_loaded`: ``checkpoint`` brought up to date, with the command that
    upgrades the file at ``checkpoint_path`` (when given) logged where anything changed."""
    result: dict[str, Any] = migrate_loaded(checkpoint, checkpoint_path)
    return result


def _get_version(checkpoint: dict[str, Any]) -> str:
    """The Lightning version that wrote ``checkpoint`` (the one its layout is now in, after a migration)."""
    return str(checkpoint[_VERSION_KEY])


def _set_version(checkpoint: dict[str, Any], version: str) -> None:
    checkpoint[_VERSION_KEY] = version


def _should_upgrade(checkpoint: dict[str, Any], target: str, max_version: str | None = None) -> bool:
    """Whether ``checkpoint`` was written before ``target`` (and ``target`` is not past ``max_version``)."""
    if max_version is not None and _version_key(max_version) < _version_key(target):
        return False
    return _version_key(_get_version(checkpoint)) < _version_key(target)
