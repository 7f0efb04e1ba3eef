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
import re
import sys
from importlib import metadata

from ember.utilities.rank_zero import rank_zero_warn


def _release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: ``"2.13.0+cpu"`` -> ``(2, 13, 0)``, ``"2.6.0rc1"`` -> ``(2, 6, 0)``."""
    numbers = re.match(r"\d+(\.\d+)*", version)
    return tuple(int(part) for part in numbers.group(0).split(".")) if numbers else ()


def _installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


_COMPARE = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


class RequirementCache:
    """Whether a requirement such as ``"torchmetrics>=1.0.0"`` or ``"torch>=2.8.0,<2.9.0"`` is met by the
    installed package, decided on first use. Versions compare by their numeric release.

    Example::

        >>> bool(RequirementCache("torch>=2.0"))
        True
    """

    def __init__(self, requirement: str) -> None:
        self.requirement = requirement
        found = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", requirement)
        if found is None:
            raise ValueError(f"Not a requirement: {requirement!r}")
        self.package = found.group(1)
        self.specifiers = [
            (operator, _release(version))
            for operator, version in re.findall(r"(>=|<=|==|!=|>|<)\s*([^,\s]+)", found.group(2))
        ]

    @functools.cached_property
    def _met(self) -> bool:
        version = _installed(self.package)
        if version is None:
            return False
        release = _release(version)
        return all(_COMPARE[operator](release, wanted) for operator, wanted in self.specifiers)

    def __bool__(self) -> bool:
        return self._met

    def __str__(self) -> str:
        if self._met:
            return f"Requirement {self.requirement!r} met"
        return f"Requirement {self.requirement!r} not met. HINT: Try running `pip install -U {self.requirement!r}`"

    def __repr__(self) -> str:
        return self.__str__()


def compare_version(package: str, op: str, version: str) -> bool:
    """Whether the installed ``package``'s version satisfies ``op`` (``">="``, ``"<"``, ...) ``version``;
    False when it is not installed."""
    installed = _installed(package)
    return installed is not None and _COMPARE[op](_release(installed), _release(version))


_PYTHON_GREATER_EQUAL_3_11_0 = sys.version_info >= (3, 11)
_TORCH_GREATER_EQUAL_2_6 = compare_version("torch", ">=", "2.6.0")
_TORCH_GREATER_EQUAL_2_8 = compare_version("torch", ">=", "2.8.0")
_TORCH_GREATER_EQUAL_2_11 = compare_version("torch", ">=", "2.11.0")
_TORCH_EQUAL_2_8 = RequirementCache("torch>=2.8.0,<2.9.0")
_TORCH_EQUAL_2_9 = RequirementCache("torch>=2.9.0,<2.10.0")
_TORCHMETRICS_GREATER_EQUAL_0_8_0 = RequirementCache("torchmetrics>=0.8.0")
_TORCHMETRICS_GREATER_EQUAL_0_9_1 = RequirementCache("torchmetrics>=0.9.1")
_TORCHMETRICS_GREATER_EQUAL_0_11 = RequirementCache("torchmetrics>=0.11.0")
_TORCHMETRICS_GREATER_EQUAL_1_0_0 = RequirementCache("torchmetrics>=1.0.0")
_OMEGACONF_AVAILABLE = importlib.util.find_spec("omegaconf") is not None
_TORCHVISION_AVAILABLE = RequirementCache("torchvision")
_RICH_AVAILABLE = RequirementCache("rich>=10.2.2")


@functools.lru_cache(maxsize=128)
def _try_import_module(module_name: str) -> bool:
    """Whether ``module_name`` imports; a failure warns with the error, as Lightning's does."""
    try:
        __import__(module_name)
        return True
    except (ImportError, AttributeError) as error:  # AttributeError: a package half-broken by its dependencies
        rank_zero_warn(f"Import of {module_name} package failed for some compatibility issues:\n{error}")
        return False
