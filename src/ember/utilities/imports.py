"""Lightning's ``utilities.imports`` flags: which optional packages and versions are installed.

Libraries read them to choose a code path (``if _TORCHVISION_AVAILABLE: ...``). Each requirement
flag is true when the installed package meets it and says why when printed; the version flags
are booleans.

Example::

    from lightning.pytorch.utilities.imports import _TORCHVISION_AVAILABLE   # under the alias: this module

    if not _TORCHVISION_AVAILABLE:
        raise ModuleNotFoundError(str(_TORCHVISION_AVAILABLE))   # names the package and the pip command
"""

from __future__ import annotations

import functools
import importlib.util
import operator
import re
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Any

from ember.utilities.rank_zero import rank_zero_warn


def lightning_package() -> str | None:
    """The Lightning package a program on the alias imported, for the messages and names that carry it:
    ``"lightning.pytorch"`` when it imported only that one, else ``"pytorch_lightning"``; None for a
    program that imported neither (a program written for Ember)."""
    if "pytorch_lightning" in sys.modules:
        return "pytorch_lightning"
    return "lightning.pytorch" if "lightning.pytorch" in sys.modules else None


def _version_key(version: str) -> Any:
    """A sortable key for a version string: ``packaging``'s PEP 440 order where it is installed (a nightly
    ``2.9.0.dev`` sorts before ``2.9.0``), else the numeric release, a pre-release just before its release."""
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:
        pass
    else:
        try:
            return Version(version)
        except InvalidVersion:
            pass
    numbers = re.match(r"\d+(\.\d+)*", version)
    release = tuple(int(part) for part in numbers.group(0).split(".")) if numbers else ()
    rest = version[numbers.end() :] if numbers else version
    pre = bool(re.match(r"\.?(a|b|rc|dev|alpha|beta|pre)", rest))
    return _Release(release, pre)


class _Release(tuple):
    """``(release, is_pre_release)`` compared with trailing zeros ignored: ``2.9`` equals ``2.9.0``."""

    def __new__(cls, release: tuple[int, ...], pre: bool) -> _Release:
        while release and release[-1] == 0:
            release = release[:-1]
        return super().__new__(cls, (release, 0 if pre else 1))


def _installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


def package_available(package_name: str) -> bool:
    """Whether the package (or module) ``package_name`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(package_name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False
    except ValueError:  # imported already, without a spec (a mock a test put in `sys.modules`): it is there
        return sys.modules.get(package_name) is not None


def flag_or_importable(flag: Any, package: str) -> bool:
    """Whether ``package`` can be used, by a Lightning-named availability flag (``_MLFLOW_AVAILABLE``,
    ``_PSUTIL_AVAILABLE``...): the flag where a program set it to a bool (Lightning's tests set one to ``True``
    beside a stand-in module, or ``False`` to act as if the package were missing), else whether ``package``
    imports."""
    return flag if isinstance(flag, bool) else package_available(package)


class RequirementCache:
    """Whether a requirement such as ``"torchmetrics>=1.0.0"`` or ``"torch>=2.8.0,<2.9.0"`` is met by the
    installed package, and, with ``module``, whether that module can be imported; decided on first use.

    Example::

        >>> bool(RequirementCache("torch>=2.0"))
        True
        >>> bool(RequirementCache(module="json"))
        True
    """

    def __init__(self, requirement: str = "", module: str | None = None) -> None:
        if not requirement and not module:
            raise ValueError("At least one arguments need to be set.")
        self.requirement = requirement
        self.module = module
        self.package = ""
        self.specifiers: list[tuple[str, str]] = []
        if requirement:
            found = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", requirement)
            if found is None:
                raise ValueError(f"Not a requirement: {requirement!r}")
            self.package = found.group(1)
            self.specifiers = re.findall(r"(>=|<=|==|!=|>|<)\s*([^,\s]+)", found.group(2))

    @functools.cached_property
    def _outcome(self) -> tuple[bool, str | None]:
        """``(met, module)``: ``module`` is the one found importable where the requirement itself was not met
        (as Lightning's: a package installed under another distribution's name, e.g. ``mlflow-skinny`` for
        ``mlflow``, where the requirement names no version or a ``module`` is given)."""
        if self.requirement:
            version = _installed(self.package)
            installed = _version_key(version) if version is not None else None
            if installed is None or not all(
                _COMPARE[op](installed, _version_key(wanted)) for op, wanted in self.specifiers
            ):
                if self.specifiers and self.module is None:
                    return False, None
                module = self.module or self.package
                return (True, module) if package_available(module) else (False, None)
        return self.module is None or package_available(self.module), None

    def __bool__(self) -> bool:
        return self._outcome[0]

    def __str__(self) -> str:
        what = self.requirement or f"module {self.module!r}"
        met, found = self._outcome
        if met and found is not None:
            return f"Module {found!r} available"
        if met:
            return f"Requirement {what!r} met" if self.requirement else f"Module {self.module!r} available"
        if not self.requirement:
            return f"Module not found: {self.module!r}. HINT: Try running `pip install -U {self.module}`"
        return f"Requirement {what!r} not met. HINT: Try running `pip install -U {what!r}`"

    def __repr__(self) -> str:
        return self.__str__()


def compare_version(package: str, op: Callable[[Any, Any], bool] | str, version: str) -> bool:
    """Whether the installed ``package``'s version satisfies ``op`` (``operator.ge``, as Lightning passes it,
    or ``">="``) against ``version``; False when it is not installed."""
    installed = _installed(package)
    if installed is None:
        return False
    compare = op if callable(op) else _COMPARE[op]
    return bool(compare(_version_key(installed), _version_key(version)))


_PYTHON_GREATER_EQUAL_3_11_0 = sys.version_info >= (3, 11)
_TORCH_EQUAL_2_8 = RequirementCache("torch>=2.8.0,<2.9.0")
_TORCH_EQUAL_2_9 = RequirementCache("torch>=2.9.0,<2.10.0")
_TORCHMETRICS_GREATER_EQUAL_0_8_0 = RequirementCache("torchmetrics>=0.8.0")
_TORCHMETRICS_GREATER_EQUAL_0_9_1 = RequirementCache("torchmetrics>=0.9.1")
_TORCHMETRICS_GREATER_EQUAL_0_11 = RequirementCache("torchmetrics>=0.11.0")
_TORCHMETRICS_GREATER_EQUAL_1_0_0 = RequirementCache("torchmetrics>=1.0.0")
_TORCHVISION_AVAILABLE = RequirementCache("torchvision")
_RICH_AVAILABLE = RequirementCache("rich>=10.2.2")

# Booleans decided on first read, not at import: each reads installed metadata or searches the path, which
# every `import ember` would pay for flags only some libraries read (`from ... import _TORCH_GREATER_EQUAL_2_6`
# reads them the same way)
_LAZY_FLAGS: dict[str, Callable[[], bool]] = {
    "_TORCH_GREATER_EQUAL_2_6": lambda: compare_version("torch", operator.ge, "2.6.0"),
    "_TORCH_GREATER_EQUAL_2_8": lambda: compare_version("torch", operator.ge, "2.8.0"),
    "_TORCH_GREATER_EQUAL_2_11": lambda: compare_version("torch", operator.ge, "2.11.0"),
    "_OMEGACONF_AVAILABLE": lambda: package_available("omegaconf"),
}


def __getattr__(name: str) -> bool:
    decide = _LAZY_FLAGS.get(name)
    if decide is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = decide()  # from now on a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_FLAGS})


@functools.lru_cache(maxsize=128)
def _try_import_module(module_name: str) -> bool:
    """Whether ``module_name`` imports; a failure warns with the error, as Lightning's does."""
    try:
        __import__(module_name)
        return True
    except (ImportError, AttributeError) as error:  # AttributeError: a package half-broken by its dependencies
        rank_zero_warn(f"Import of {module_name} package failed for some compatibility issues:\n{error}")
        return False
