"""Helpers shared by the loggers: hyperparameter cleaning, optional-package checks, paths.

Nothing here imports a heavy package at module import; the loggers call these helpers lazily.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from argparse import Namespace
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ember.checkpoint.files import is_local, local_path
from ember.utilities.apply_func import is_dataclass_instance
from ember.utilities.imports import flag_or_importable
from ember.utilities.rank_zero import rank_zero_warn


# ---------------------------------------------------------------------------------------------
# optional packages
# ---------------------------------------------------------------------------------------------
def _require(package: str, owner: str, extra: str, flag: Any = None) -> None:
    """Raise ``ModuleNotFoundError`` naming the pip extra when ``package`` is missing (``flag``: the logger's
    Lightning-named availability flag, see ``flag_or_importable``)."""
    if not flag_or_importable(flag, package):
        raise ModuleNotFoundError(
            f"{owner} needs the `{package}` package, which is not installed."
            f" Install it with: pip install 'ember[{extra}]' (or pip install {package})."
        )


# ---------------------------------------------------------------------------------------------
# hyperparameters (same conversions as Lightning's ``fabric/utilities/logger.py``)
# ---------------------------------------------------------------------------------------------
def _convert_params(params: Mapping[str, Any] | Namespace | None) -> dict[str, Any]:
    """Turn a dict, ``Namespace``, ``AttributeDict`` or ``None`` into a plain ``dict``."""
    if params is None:
        return {}
    if isinstance(params, Namespace):
        return dict(vars(params))
    if isinstance(params, Mapping):
        return dict(params)
    raise TypeError(
        f"Hyperparameters must be a dict, an argparse.Namespace or an AttributeDict, got {type(params).__name__}."
        " Wrap them in a dict before logging."
    )


def _flatten_dict(params: Mapping[Any, Any], delimiter: str = "/", parent_key: str = "") -> dict[str, Any]:
    """Flatten nested mappings: ``{'a': {'b': 1}}`` -> ``{'a/b': 1}``; dataclasses and Namespaces too."""
    result: dict[str, Any] = {}
    for key, value in params.items():
        new_key = f"{parent_key}{delimiter}{key}" if parent_key else str(key)
        if is_dataclass_instance(value):
            value = asdict(value)
        elif isinstance(value, Namespace):
            value = vars(value)
        if isinstance(value, MutableMapping):
            result.update(_flatten_dict(value, delimiter=delimiter, parent_key=new_key))
        else:
            result[new_key] = value
    return result


def _sanitize_callable_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Replace classes by their name and call zero-argument callables once, as Lightning does."""

    def sanitize(value: Any) -> Any:
        if inspect.isclass(value):
            return getattr(value, "__name__", None)
        if callable(value) and not isinstance(value, torch.nn.Module):
            try:
                result = value()
            except Exception:
                return getattr(value, "__name__", None)
            return getattr(value, "__name__", None) if callable(result) else result
        return value

    return {key: sanitize(value) for key, value in params.items()}


def _convert_json_serializable(params: Mapping[str, Any]) -> dict[str, Any]:
    """Values ``json.dumps`` cannot write become their ``str()`` (a dataclass, a tensor, a set), as Lightning's."""

    def serializable(value: Any) -> bool:
        if value is None or isinstance(value, (bool, int, float, str, list, dict)):
            return True
        try:
            json.dumps(value)
        except (TypeError, OverflowError):
            return False
        return True

    return {key: value if serializable(value) else str(value) for key, value in params.items()}


def _sanitize_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Keep bool/int/float/str/Tensor values; numpy's bool, integer and floating scalars become python ones (not a
    0-d array, as in Lightning); the rest ``str()``.

    A 0-dim tensor becomes its python number too: TensorBoard's ``hparams`` takes a tensor's first element, which
    a 0-dim tensor has none of (Lightning raises ``IndexError`` there)."""
    numpy = sys.modules.get("numpy")  # not imported: no value is numpy's
    scalars = () if numpy is None else (numpy.bool_, numpy.integer, numpy.floating)
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, scalars) or (isinstance(value, torch.Tensor) and value.ndim == 0):
            value = value.item()
        if (isinstance(value, torch.Tensor) and value.ndim > 1) or type(value) not in (
            bool,
            int,
            float,
            str,
            torch.Tensor,
        ):
            value = str(value)
        out[key] = value
    return out


def _add_prefix(metrics: Mapping[str, Any], prefix: str, separator: str) -> Mapping[str, Any]:
    """``{'loss': 1}`` with prefix ``'train'`` and separator ``'-'`` -> ``{'train-loss': 1}``."""
    if not prefix:
        return metrics
    return {f"{prefix}{separator}{key}": value for key, value in metrics.items()}


def _to_python(value: Any) -> Any:
    """A logged value as a python scalar."""
    if isinstance(value, torch.Tensor):
        # host sync: loggers write only every `log_every_n_steps`, so this is off the per-step path
        return value.item()
    return value


def _save_hparams_to_yaml(path: str, hparams: Mapping[str, Any] | Namespace) -> None:
    """Write ``hparams.yaml`` as Lightning's loggers do, with ``save_hparams_to_yaml`` (keys sorted).

    Values that are not plain data are written as strings, so the file always loads with
    ``yaml.safe_load`` (Lightning writes ``!!python/object`` tags that only an unsafe loader reads).
    """
    from ember.core.saving import save_hparams_to_yaml

    save_hparams_to_yaml(path, _convert_params(hparams))


# ---------------------------------------------------------------------------------------------
# paths
# ---------------------------------------------------------------------------------------------
def _check_writable(path: str | os.PathLike | None, owner: str) -> None:
    """Raise ``PermissionError``/``NotADirectoryError`` if ``path`` cannot be created or written.

    Only local paths are checked (remote file systems report their own errors). Nothing is created.
    """
    if path is None:
        return
    if not is_local(path):
        return
    target = Path(local_path(os.path.expandvars(os.fspath(path)))).absolute()
    existing = target
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise NotADirectoryError(
            f"{owner} cannot write logs to '{target}': '{existing}' is a file, not a directory."
            " Pass a `save_dir` that is a directory (or does not exist yet)."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{owner} cannot write logs to '{target}': the directory '{existing}' is not writable."
            " Pass a writable `save_dir` (or `default_root_dir`) or fix the folder's permissions."
        )


def _next_version(root: str) -> int:
    """The next free ``version_N`` number under ``root`` (0 when ``root`` is missing)."""
    try:
        if is_local(root):
            # the standard library lists it without loading fsspec before the first step; `~` is the
            # home folder, as for fsspec, which writes the files
            with os.scandir(local_path(root)) as entries:
                folders = [e.name for e in entries if e.is_dir()]
        else:
            import fsspec

            fs, local_root = fsspec.core.url_to_fs(root)
            folders = [
                os.path.basename(e["name"].rstrip("/"))
                for e in fs.listdir(local_root, detail=True)
                if e.get("type") == "directory"
            ]
    except (FileNotFoundError, NotADirectoryError, OSError):
        return 0
    # the number is what follows the first "_", as Lightning reads it: `version_2_old` counts as 2
    versions = [
        int(name.split("_")[1]) for name in folders if name.startswith("version_") and name.split("_")[1].isdigit()
    ]
    return max(versions) + 1 if versions else 0


def _scan_checkpoints(
    checkpoint_callback: Any, logged_model_time: dict[str, float]
) -> list[tuple[float, str, Any, str]]:
    """Checkpoint files of ``checkpoint_callback`` not logged yet (or rewritten since): (mtime, path, score, tag)."""
    found: dict[str, tuple[Any, str]] = {}
    last = getattr(checkpoint_callback, "last_model_path", "")
    if last:
        found[last] = (getattr(checkpoint_callback, "current_score", None), "latest")
    best = getattr(checkpoint_callback, "best_model_path", "")
    if best:
        found[best] = (getattr(checkpoint_callback, "best_model_score", None), "best")
    for path, score in (getattr(checkpoint_callback, "best_k_models", None) or {}).items():
        found[path] = (score, "best_k")
    entries = sorted(
        (Path(path).stat().st_mtime, path, score, tag) for path, (score, tag) in found.items() if Path(path).is_file()
    )
    return [e for e in entries if e[1] not in logged_model_time or logged_model_time[e[1]] < e[0]]


def _version(loggers: list[Any], separator: str = "_") -> int | str | None:
    """The version of a run's loggers (the progress bar's ``v_num``): one logger's own, several loggers' distinct
    versions joined by ``separator``, in order. Lightning's helper."""
    if len(loggers) == 1:
        return loggers[0].version
    return separator.join(dict.fromkeys(str(logger.version) for logger in loggers))


def _warn_once(cache: set[str], message: str, category: type[Warning] = UserWarning) -> None:
    if message not in cache:
        cache.add(message)
        rank_zero_warn(message, category=category)
