"""``install_as_lightning()``: unmodified Lightning programs and Lightning-based libraries import Ember.

From the call on, ``import pytorch_lightning`` and ``import lightning.pytorch`` give Ember. Every
module path under them is Ember's module at the same relative path (``pytorch_lightning.callbacks``
*is* ``ember.callbacks``), or at the path in ``_MOVED`` where Ember keeps the same thing elsewhere, so
``isinstance`` checks and monkeypatching agree whichever name a library uses. The two top-level
packages are small modules of their own: they re-export Ember's public names and sub-packages and
report the Lightning version Ember follows (``pytorch_lightning.__version__ == "2.6.6"``), so a
library's version check passes while ``ember.__version__`` stays Ember's.

``import lightning`` gives the real package when it is installed (then only ``lightning.pytorch`` is
Ember, and ``lightning.fabric`` stays Lightning's), else a small package with Lightning's top-level
names (``L.Trainer``, ``L.LightningModule``, ...; ``L.fabric`` is ``lightning_fabric`` if that is
installed). A path Ember does not have raises ``ModuleNotFoundError`` naming it. The logger names
``lightning.pytorch`` and ``pytorch_lightning`` give Ember's logger, so configuring them configures
Ember's messages (from the program's first import of one, only the names it imported).

Ember's classes take the Lightning names they are imported by: once a program imports
``pytorch_lightning`` (or ``lightning.pytorch``), every class of an Ember module reports the
Lightning path the alias serves it under (``EarlyStopping.__module__ ==
"pytorch_lightning.callbacks.early_stopping"``), so what is pickled, printed as a class path or
checked against an allowlist of Lightning's packages (darts' safe model loading) names Lightning, as
it would on Lightning. The first root imported gives the prefix for the whole process.

Child processes get it too: ``install_as_lightning`` sets ``EMBER_AS_LIGHTNING=1``, which
``import ember`` honours, and puts ``lightning_startup`` on ``PYTHONPATH``, whose ``sitecustomize``
imports Ember at the first import of Lightning in any Python process started from this one (Ray's
workers, ``torchrun``, ``subprocess``); the processes ``strategy="ddp"`` starts run the program again
under ``ember run``; and a process started with the "spawn" method (``ddp_spawn``, DataLoader workers
on macOS) imports Ember before it imports the program's main script.

Example::

    import ember

    ember.install_as_lightning()  # before anything imports Lightning

    import lightning as L
    from pytorch_lightning.callbacks import ModelCheckpoint

    assert L.Trainer is ember.Trainer and ModelCheckpoint is ember.callbacks.ModelCheckpoint
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import types
import warnings
from typing import Any

from ember._version import LIGHTNING_VERSION
from ember.utilities.rank_zero import _settle_log_handler

ENV_VAR = "EMBER_AS_LIGHTNING"
_ORIGIN = "Ember, through ember.install_as_lightning()"

# the names Lightning's trainer package is imported by
_ROOTS = ("pytorch_lightning", "lightning.pytorch")

# Lightning module paths (below the root) whose Ember home has another path
_MOVED = {
    "callbacks.progress.progress_bar": "callbacks.progress_bar",
    "callbacks.progress.tqdm_progress": "callbacks.tqdm_progress",
    "callbacks.progress.rich_progress": "callbacks.rich_progress",
    "core.mixins.hparams_mixin": "core.hparams",
    "profilers.base": "profilers.profiler",
    "plugins.io.async_plugin": "checkpoint.async_io",
    "plugins.io.checkpoint_plugin": "checkpoint.io",
    "plugins.io.torch_plugin": "checkpoint.io",
    "plugins.io.wrapper": "checkpoint.io",
    "plugins.precision": "precision",
    "plugins.precision.precision": "precision.precision",
    # Lightning 1.x's path, which Lightning 2.x keeps (lbster imports `PrecisionPlugin` from it)
    "plugins.precision.precision_plugin": "precision.precision",
    "plugins.precision.amp": "precision.amp",
    "plugins.precision.half": "precision.half",
    "plugins.precision.double": "precision.double",
    "plugins.precision.bitsandbytes": "precision.bitsandbytes",
    "plugins.precision.deepspeed": "precision.deepspeed",
    "plugins.precision.fsdp": "precision.fsdp",
    # by name only: no Transformer Engine or XLA
    "plugins.precision.transformer_engine": "precision.unsupported",
    "plugins.precision.xla": "precision.unsupported",
    "strategies.strategy": "distributed.strategy",
    "strategies.single_device": "distributed.strategy",
    "strategies.parallel": "distributed.parallel",
    "strategies.ddp": "distributed.ddp",
    "strategies.fsdp": "distributed.fsdp",
    "strategies.model_parallel": "distributed.model_parallel",
    "strategies.deepspeed": "distributed.deepspeed",
    # by name only, for libraries that import it (nequip's XPU support): never available on Ember
    "strategies.single_xla": "distributed.xla",
    "strategies.xla": "distributed.xla",
    # Lightning 1.x's TPU names and modules, which Lightning 2.x keeps (deprecated): by name only too
    "accelerators.tpu": "accelerators.xla",
    "strategies.single_tpu": "distributed.xla",
    "plugins.precision.tpu": "precision.unsupported",
    "plugins.precision.tpu_bf16": "precision.unsupported",
    "plugins.precision.xlabf16": "precision.unsupported",
    # Lightning's removed HPU classes, by name only, in one module as Lightning keeps them
    "strategies.single_hpu": "accelerators.hpu",
    "strategies.hpu_parallel": "accelerators.hpu",
    "plugins.io.hpu_plugin": "accelerators.hpu",
    "plugins.precision.hpu": "accelerators.hpu",
    # Lightning's connectors are private; scvi-tools builds an `_AcceleratorConnector` to parse devices
    "trainer.connectors.accelerator_connector": "distributed.factory",
    # torch-uncertainty subclasses `_EvaluationLoop` to print its own results table, and annotates with `_OUT_DICT`
    "loops.evaluation_loop": "trainer.evaluation_loop",
    "trainer.connectors.logger_connector.result": "trainer.logging",
    # finetuning-scheduler imports `_CheckpointConnector` (a type in annotations) and calls its restore steps
    "trainer.connectors.checkpoint_connector": "trainer.views",
    # the samplers that share a loader among the ranks (tsl and others check the sampler's class)
    "overrides.distributed": "distributed.samplers",
    # cluster environments and layer syncs: a config names them by these paths (`trainer.plugins`)
    "plugins.environments": "distributed.environments",
    "plugins.layer_sync": "distributed.layer_sync",
}
# Lightning 1.x's module paths that Lightning 2.x keeps only as other names of its own modules: a class is
# reported under one of them only where no 2.x module fits its name
_OLD_PATHS = frozenset(
    (
        "plugins.precision.precision_plugin",
        "accelerators.tpu",
        "strategies.single_tpu",
        "plugins.precision.tpu",
        "plugins.precision.tpu_bf16",
        "plugins.precision.xlabf16",
    )
)
# Ember modules Lightning has no module for, whose public classes Lightning's package exports: their
# classes report that package (`LightningCLI.__module__` is `<root>.cli`), so that a config or a pickle
# written with Ember names a path Lightning has too
_REPORTED_AS = {"cli.lightning_cli": "cli", "cli.types": "cli", "cli.parser": "cli"}
# Lightning packages that Ember has no module for, served as empty packages so that the modules
# `_MOVED` places below them import; their other submodules are not provided
_EMPTY_PACKAGES = ("trainer.connectors", "trainer.connectors.logger_connector", "loops", "overrides")
# the names such a package exports from its submodules, as Lightning's does: name -> submodule
_PACKAGE_NAMES = {"loops": {"_EvaluationLoop": "evaluation_loop"}}

# what to use instead of Lightning paths that Ember does not provide
_INSTEAD = {
    "loops": "Ember has one loop and no loop classes to replace: change what it does with hooks and callbacks",
}
# Ember modules (and their submodules) that Lightning has no namesake for: the digits demo is Ember's own,
# beside Lightning's demo models in `ember.demos`
_NOT_ALIASED = ("demos.digits",)


def install_as_lightning() -> None:
    """Make ``pytorch_lightning``, ``lightning.pytorch`` and ``lightning`` import Ember in this process.

    Call it before anything imports Lightning (or run the program with ``ember run script.py``).
    Calling it again does nothing. The Python processes this one starts inherit it: it sets
    ``EMBER_AS_LIGHTNING=1``, which ``import ember`` honours, and puts a start-up hook on ``PYTHONPATH``
    that imports Ember when such a process first imports Lightning.

    Raises:
        RuntimeError: Lightning's own ``pytorch_lightning`` or ``lightning.pytorch`` was imported
            already: the program would hold two different ``Trainer`` classes.

    Example::

        import ember

        ember.install_as_lightning()
        import pytorch_lightning as pl  # Ember, reporting pl.__version__ == "2.6.6"
    """
    if _FINDER not in sys.meta_path:
        imported = _real_lightning_imported()
        if imported is not None:
            raise RuntimeError(
                f"`ember.install_as_lightning()` must run before Lightning is imported, but {imported} is imported"
                " already. Call it before any import of pytorch_lightning, lightning or a library built on them, or"
                " start the program with `ember run script.py`."
            )
        sys.meta_path.insert(0, _FINDER)
        for name in list(sys.modules):  # Fabric imported before: from now on its module gives Ember's class
            if _fabric_relative(name) in _FABRIC_CLASSES:
                _use_embers_class(sys.modules[name])
        _spawned_children_import_ember_first()
        _lightning_logger_names_give_embers_logger()
    os.environ[ENV_VAR] = "1"
    _started_pythons_import_ember_for_lightning()


def is_installed() -> bool:
    """Whether ``install_as_lightning()`` is active in this process."""
    return _FINDER in sys.meta_path


def install_from_environment() -> None:
    """``import ember`` with ``EMBER_AS_LIGHTNING=1``: install the alias, or warn if Lightning came first."""
    if is_installed():
        return
    imported = _real_lightning_imported()
    if imported is not None:
        warnings.warn(
            f"{ENV_VAR}=1 asks Ember to stand in for Lightning, but {imported} was imported before Ember:"
            " Lightning's own classes stay in use in this process.",
            stacklevel=3,
        )
        return
    install_as_lightning()


def _real_lightning_imported() -> str | None:
    """The first of Lightning's trainer packages already imported (not through this alias), as a phrase."""
    for name in _ROOTS:
        module = sys.modules.get(name)
        if module is not None and not getattr(module, "__ember_alias__", False):
            where = getattr(module, "__file__", None)
            return f"{name!r} (from {where})" if where else repr(name)
    return None


_STARTUP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lightning_startup")


def _started_pythons_import_ember_for_lightning() -> None:
    """Put ``lightning_startup`` first on ``PYTHONPATH``: a Python process started from this one, by
    anything (Ray's workers, ``torchrun``, ``subprocess``), runs its ``sitecustomize``, which imports
    Ember at the first import of Lightning there. A process that never imports Lightning loads nothing."""
    current = os.environ.get("PYTHONPATH")
    if not current:
        os.environ["PYTHONPATH"] = _STARTUP
        return
    # every other entry stays, an empty one too: it stands for the working directory
    entries = current.split(os.pathsep)
    if entries[0] != _STARTUP:
        os.environ["PYTHONPATH"] = os.pathsep.join([_STARTUP, *(entry for entry in entries if entry != _STARTUP)])


def _spawned_children_import_ember_first() -> None:
    """A process started with the "spawn" method (``ddp_spawn`` workers, DataLoader workers on macOS)
    imports the program's main script before anything else, and its ``import lightning`` would find
    Lightning, or nothing. The child reads its preparation data first: an entry that imports ``ember``
    when unpickled installs the alias there (``EMBER_AS_LIGHTNING=1`` is inherited)."""
    import multiprocessing.spawn as spawn

    original = spawn.get_preparation_data

    def get_preparation_data(name: str) -> dict[str, Any]:
        return {"ember": _ImportEmber(), **original(name)}

    spawn.get_preparation_data = get_preparation_data


def _lightning_logger_names_give_embers_logger() -> None:
    """``logging.getLogger("lightning.pytorch")`` and ``logging.getLogger("pytorch_lightning")`` return
    the ``ember`` logger, which Ember's messages go through: a program that quiets Lightning's messages
    (``logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)``, as Lightning's docs show) or
    sends them to a file quiets or sends Ember's. A name the program configured before the alias was
    installed keeps its own logger. Once the program imports one of the two packages, the name of the
    other is a logger of its own again (``_logger_name_follows_import``)."""
    for name in _ROOTS:
        _give_embers_logger_the_name(name)


def _give_embers_logger_the_name(name: str) -> None:
    ember_logger = logging.getLogger("ember")
    registry = logging.Logger.manager.loggerDict
    existing = registry.get(name)
    if name in _set_apart and existing is _set_apart[name]:  # the name's own logger since the other package's import
        del _set_apart[name]
        registry[name] = ember_logger
        _move_children(name, existing, ember_logger)
        return
    if isinstance(existing, logging.Logger):
        return
    registry[name] = ember_logger
    if isinstance(existing, logging.PlaceHolder):  # loggers below the name exist: they now sit below Ember's
        for child in existing.loggerMap:
            parent = child.parent
            if isinstance(child, logging.Logger) and not (parent and parent.name.startswith(name + ".")):
                child.parent = ember_logger


def _move_children(name: str, old: Any, new: logging.Logger) -> None:
    """The loggers below ``name`` whose parent was ``old`` get ``new`` as their parent."""
    for child in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(child, logging.Logger) and child.parent is old and child.name.startswith(name + "."):
            child.parent = new


_roots_imported: list[str] = []
_set_apart: dict[str, logging.Logger] = {}  # the root names given a logger of their own again


def _logger_name_follows_import(root: str) -> None:
    """At the first import of ``root``, as Lightning's package does at its import: its logger says
    ``INFO`` again (a level set before the import does not hold on Lightning either), and the name
    of the root not imported (yet) becomes a logger of its own, as it is on Lightning, where the
    other package prints nothing. TorchEEG, which imports ``pytorch_lightning``, quiets the
    ``lightning.pytorch`` logger as it loads: that must not quiet Lightning's messages. A root
    imported later gets Ember's logger again: both packages then serve the one Trainer."""
    if root in _roots_imported:
        return
    _roots_imported.append(root)
    ember_logger = logging.getLogger("ember")
    if len(_roots_imported) > 1:
        _give_embers_logger_the_name(root)
        return
    if logging.Logger.manager.loggerDict.get(root) is ember_logger:
        ember_logger.setLevel(logging.INFO)
    registry = logging.Logger.manager.loggerDict
    for other in _ROOTS:
        if other == root or registry.get(other) is not ember_logger:
            continue
        del registry[other]
        _set_apart[other] = logging.getLogger(other)
        _move_children(other, ember_logger, _set_apart[other])


class _ImportEmber:
    """Imports ``ember`` in the process that unpickles it."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (importlib.import_module, ("ember",))


# =====================================================================================
# the finder: Lightning's names -> Ember's modules
# =====================================================================================
class _Finder(importlib.abc.MetaPathFinder):
    """A ``sys.meta_path`` finder for Lightning's module names. Every name under the two roots is
    answered here (an Ember module, or an error), so no copy of Lightning or of Ember's files is
    ever loaded under a Lightning name. Once the classes carry Lightning's names, an Ember module
    loaded later gets them too, right after it runs."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname.startswith("ember.") and _class_root is not None:
            return _naming_spec(fullname, path)
        if fullname in _ROOTS or fullname == "lightning":
            _settle_log_handler()  # where Lightning's messages go is decided at its first import
        if fullname in _ROOTS:
            _logger_name_follows_import(fullname)
        for root in _ROOTS:
            if fullname == root:
                return _root_spec(fullname)
            if fullname.startswith(root + "."):
                return _ember_module_spec(fullname, fullname[len(root) + 1 :])
        if fullname == "lightning":
            if _spec_elsewhere(fullname, None) is not None:
                return None  # the real package; its `pytorch` part still comes from here
            return _root_spec(fullname)
        if fullname.startswith("lightning.") and getattr(sys.modules.get("lightning"), "__ember_alias__", False):
            return _fabric_spec(fullname)
        if _fabric_relative(fullname) in _FABRIC_CLASSES:
            return _adopting_spec(fullname, path)
        return None

    def invalidate_caches(self) -> None:
        pass


# =====================================================================================
# Lightning's names on Ember's classes, Lightning's submodules as attributes
# =====================================================================================
_class_root: str | None = None  # the root whose names Ember's classes carry, once a program imports one


def _take_lightning_names(root: str) -> None:
    """Give every Ember module, loaded now or later, Lightning's names under ``root`` (the first root
    imported): see ``_give_lightning_names``."""
    global _class_root
    if _class_root is not None:
        return
    _class_root = root
    for name, module in list(sys.modules.items()):
        if name.startswith("ember.") and module is not None:
            _give_lightning_names(module)


def _give_lightning_names(module: types.ModuleType) -> None:
    """The classes and public functions ``module`` defines report the Lightning module that serves them
    (``__module__``), which ``sys.modules`` holds under that name too (``typing.get_type_hints`` and
    ``inspect`` look a class's module up there; a config names a function such as
    ``callbacks.finetuning.multiplicative`` by it); and a name the module lacks is looked up as a Lightning
    submodule, since Lightning's packages import their submodules (``pl.callbacks.early_stopping.EarlyStopping``
    works there without an import)."""
    assert _class_root is not None
    reported = _REPORTED_AS.get(module.__name__[len("ember.") :])
    for value in list(vars(module).values()):
        if _named_here(value, module):
            if reported is not None and not value.__name__.startswith("_"):
                value.__module__ = f"{_class_root}.{reported}"  # that package is served by an Ember module of its own
                continue
            lightning_module = _lightning_module_name(value)
            if lightning_module is not None:
                value.__module__ = lightning_module
                sys.modules.setdefault(lightning_module, module)
    own = vars(module).get("__getattr__")
    if _served(module.__name__[len("ember.") :]) and not isinstance(own, _LightningSubmodules):
        module.__getattr__ = _LightningSubmodules(module.__name__, own)  # type: ignore[method-assign]


def _named_here(value: Any, module: types.ModuleType) -> bool:
    """Whether ``value`` is a class, or a public function, that ``module`` defines."""
    if isinstance(value, types.FunctionType) and value.__name__.startswith("_"):
        return False
    return isinstance(value, (type, types.FunctionType)) and value.__module__ == module.__name__


class _LightningSubmodules:
    """The module ``__getattr__`` of an Ember module under the alias: the module's own ``__getattr__``
    first, then the Lightning submodule of that name (``pl.strategies.ddp`` is ``ember.distributed.ddp``)."""

    def __init__(self, module: str, own: Any) -> None:
        self.module, self.own = module, own

    def __call__(self, name: str) -> Any:
        if self.own is not None:
            try:
                return self.own(name)
            except AttributeError:
                pass
        missing = f"module {self.module!r} has no attribute {name!r}"
        if not name.startswith("_"):
            relative = self.module[len("ember.") :]
            for path in [relative, *(path for path, home in _MOVED.items() if home == relative)]:
                fullname = f"{_class_root}.{path}.{name}"
                try:
                    return importlib.import_module(fullname)
                except ModuleNotFoundError as error:
                    if error.name != fullname:
                        raise
                    if path == relative:
                        missing += f" ({error})"  # what the alias says of Lightning's path
        raise AttributeError(missing)


def _lightning_module_name(cls: type | types.FunctionType) -> str | None:
    """``ember.callbacks.early_stopping`` -> ``<root>.callbacks.early_stopping``; a module kept elsewhere
    than in Lightning gets Lightning's path from ``_MOVED`` (when several Lightning modules are one Ember
    module, the one whose name starts the class's: ``SingleDeviceStrategy`` -> ``strategies.single_device``)."""
    relative = cls.__module__[len("ember.") :]
    if not _served(relative):
        return None  # not served under Lightning's names: the class keeps its own
    paths = [path for path, home in _MOVED.items() if home == relative]
    if paths:
        # the module whose name starts the class's: `torch_plugin` for `TorchCheckpointIO`, `single_device` for
        # `SingleDeviceStrategy`, `strategy` for `Strategy`
        # of two such modules, Lightning 2.x's own before a 1.x path it keeps for imports (`Precision` is
        # `plugins.precision.precision`'s, not `precision_plugin`'s)
        class_name = cls.__name__.lower()
        relative = max(
            paths,
            key=lambda path: (
                class_name.startswith(path.rsplit(".", 1)[-1].split("_")[0]),
                path not in _OLD_PATHS,
                len(path),
            ),
        )
    return f"{_class_root}.{relative}"


def _spec_elsewhere(fullname: str, path: Any) -> importlib.machinery.ModuleSpec | None:
    """The spec the finders after this one give ``fullname`` (None: nobody else has it)."""
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if finder is not _FINDER and find_spec is not None:
            spec = find_spec(fullname, path)
            if spec is not None:
                return spec
    return None


def _naming_spec(fullname: str, path: Any) -> importlib.machinery.ModuleSpec | None:
    """The spec the other finders give an Ember module, its loader set to name the classes once it ran."""
    spec = _spec_elsewhere(fullname, path)
    if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
        spec.loader.exec_module = _then_lightning_names(spec.loader.exec_module)  # type: ignore[method-assign]
    return spec


def _then_lightning_names(exec_module: Any) -> Any:
    """``exec_module``, then the module takes its Lightning names (this loader only: the loader stays
    the file loader it was, for tracebacks and ``inspect``)."""

    def run_then_name(module: types.ModuleType) -> None:
        exec_module(module)
        _give_lightning_names(module)

    return run_then_name


# =====================================================================================
# Fabric's exception and warning classes
# =====================================================================================
# Lightning's `MisconfigurationException`, `PossibleUserWarning`, ... *are* Fabric's classes, so a program that
# catches or filters by Fabric's class (`from lightning_fabric.utilities.exceptions import ...`) meets the trainer's
# too. Fabric stays the real package under the alias, and these modules of it hold Ember's class in place of their
# own from the moment they have run: Fabric's other modules, and the program, import Ember's. Fabric's module ->
# (Ember's module, the class).
_FABRIC_CLASSES = {
    "utilities.exceptions": ("ember.utilities.exceptions", "MisconfigurationException"),
    "utilities.warnings": ("ember.utilities.warnings", "PossibleUserWarning"),
    "utilities.rank_zero": ("ember.utilities.rank_zero", "LightningDeprecationWarning"),
    "utilities.spike": ("ember.callbacks.spike", "TrainingSpikeException"),
}


def _fabric_relative(fullname: str) -> str | None:
    """``utilities.exceptions`` for Fabric's ``lightning_fabric.utilities.exceptions`` (or the real ``lightning``
    package's ``lightning.fabric.utilities.exceptions``); None for any other module."""
    if fullname.startswith("lightning_fabric."):
        return fullname[len("lightning_fabric.") :]
    if fullname.startswith("lightning.fabric.") and not getattr(sys.modules.get("lightning"), "__ember_alias__", False):
        return fullname[len("lightning.fabric.") :]
    return None


def _adopting_spec(fullname: str, path: Any) -> importlib.machinery.ModuleSpec | None:
    """Fabric's own spec for ``fullname``, its loader set to put Ember's class in the module once it ran."""
    spec = _spec_elsewhere(fullname, path)
    if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
        exec_module = spec.loader.exec_module

        def run_then_adopt(module: types.ModuleType) -> None:
            exec_module(module)
            _use_embers_class(module)

        spec.loader.exec_module = run_then_adopt  # type: ignore[method-assign]
    return spec


def _use_embers_class(module: types.ModuleType) -> None:
    ember_module, name = _FABRIC_CLASSES[_fabric_relative(module.__name__) or ""]
    if isinstance(getattr(module, name, None), type):
        setattr(module, name, getattr(importlib.import_module(ember_module), name))


def _root_spec(fullname: str) -> importlib.machinery.ModuleSpec:
    # a package with no folder: every name below it comes from this finder (`repr` shows the origin)
    return importlib.machinery.ModuleSpec(fullname, _ROOT_LOADER, origin=_ORIGIN, is_package=True)


def _not_provided(fullname: str, relative: str) -> ModuleNotFoundError:
    hint = next((text for path, text in _INSTEAD.items() if relative == path or relative.startswith(path + ".")), None)
    message = (
        f"No module named {fullname!r}: this program runs on Ember in place of Lightning"
        f" (`ember.install_as_lightning()`), and Ember does not provide {fullname!r}."
    )
    return ModuleNotFoundError(f"{message} {hint}." if hint else message, name=fullname)


def _served(relative: str) -> bool:
    """Whether the alias serves Ember's module ``ember.<relative>`` under Lightning's name ``<root>.<relative>``."""
    parts = relative.split(".")
    hidden = any(relative == path or relative.startswith(path + ".") for path in _NOT_ALIASED)
    return not hidden and not any(part.startswith("_") for part in parts)


def _ember_module_spec(fullname: str, relative: str) -> importlib.machinery.ModuleSpec:
    if not _served(relative):
        raise _not_provided(fullname, relative)
    if relative in _EMPTY_PACKAGES:
        return importlib.machinery.ModuleSpec(fullname, _EMPTY_PACKAGE_LOADER, origin=_ORIGIN, is_package=True)
    spec = _same_module_spec(fullname, "ember." + _MOVED.get(relative, relative))
    if spec is None:
        raise _not_provided(fullname, relative)
    return spec


def _same_module_spec(fullname: str, target: str) -> importlib.machinery.ModuleSpec | None:
    """A spec that loads ``fullname`` as the module ``target``, or None if there is no such module."""
    already = fullname in sys.modules
    try:
        found = importlib.util.find_spec(target)
    except ModuleNotFoundError:  # a parent of `target` is missing
        found = None
    if not already:
        # importing `target`'s parent may have imported `target` too, and `_give_lightning_names` then put it
        # in `sys.modules` under `fullname`: the import system would take that module's own spec and run
        # the Ember file a second time (two `_AcceleratorConnector` classes). Load it through our spec.
        sys.modules.pop(fullname, None)
    if found is None:
        return None
    spec = importlib.machinery.ModuleSpec(fullname, _SAME_MODULE_LOADER)
    spec.loader_state = {"target": target}
    return spec


def _fabric_spec(fullname: str) -> importlib.machinery.ModuleSpec:
    """``lightning.fabric[.x]`` of the stand-in ``lightning`` package: ``lightning_fabric[.x]`` if installed."""
    relative = fullname[len("lightning.") :]
    if relative == "fabric" or relative.startswith("fabric."):
        spec = _same_module_spec(fullname, "lightning_fabric" + relative[len("fabric") :])
        if spec is not None:
            return spec
        raise ModuleNotFoundError(
            f"No module named {fullname!r}: this program runs on Ember in place of Lightning, and Ember has no"
            " Fabric. Install `lightning-fabric` (pip install lightning-fabric) to use Lightning's Fabric beside it.",
            name=fullname,
        )
    raise _not_provided(fullname, relative)


class _SameModuleLoader(importlib.abc.Loader):
    """Loads a Lightning name as the existing module it stands for: the same object, not a copy."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(spec.loader_state["target"])
        spec.loader_state["own_spec"] = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        # the import system has just set `module.__spec__` to the alias's spec: give the module its own back
        alias_spec = module.__spec__
        assert alias_spec is not None
        module.__spec__ = alias_spec.loader_state["own_spec"]


class _RootLoader(importlib.abc.Loader):
    """Builds ``pytorch_lightning``, ``lightning.pytorch`` (and ``lightning`` when it is not installed)."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a new, empty module

    def exec_module(self, module: types.ModuleType) -> None:
        from ember.callbacks.callback import Callback
        from ember.core.datamodule import LightningDataModule
        from ember.core.module import LightningModule
        from ember.trainer.trainer import Trainer
        from ember.utilities.seed import seed_everything
        from ember.utilities.warnings import _disable_from_environment, disable_possible_user_warnings

        _disable_from_environment()  # `POSSIBLE_USER_WARNINGS=0`, read again when the package is reloaded
        _take_richs_random_draw()
        _take_lightning_names("pytorch_lightning" if module.__name__ == "pytorch_lightning" else "lightning.pytorch")
        module.__ember_alias__ = True  # type: ignore[attr-defined]
        module.__version__ = LIGHTNING_VERSION  # type: ignore[attr-defined]
        module.__getattr__ = _SubmoduleAttributes(module.__name__)  # type: ignore[method-assign]
        public = {
            "Callback": Callback,
            "LightningDataModule": LightningDataModule,
            "LightningModule": LightningModule,
            "Trainer": Trainer,
            "seed_everything": seed_everything,
        }
        names = list(public)
        for name, value in public.items():
            setattr(module, name, value)
        if module.__name__ != "lightning":
            # imported by Lightning's package, outside its `__all__`; libraries call it at their import (neuralforecast 1.7)
            module.disable_possible_user_warnings = disable_possible_user_warnings  # type: ignore[attr-defined]
        if module.__name__ == "lightning" and importlib.util.find_spec("lightning_fabric") is not None:
            names.append("Fabric")  # from lightning.fabric, on first use
        module.__all__ = [*names, "__version__"]  # type: ignore[attr-defined]


def _take_richs_random_draw() -> None:
    """Lightning imports rich with its package when rich is installed, and rich draws from Python's ``random``
    as it loads (``rich.style``'s id counter). Ember loads rich only when a feature needs it, so the draw is
    taken here: a program that seeds ``random`` after importing Lightning, and loads rich later (a library's
    progress bar, a logger), then draws the numbers it draws on Lightning."""
    if importlib.util.find_spec("rich") is not None:
        importlib.import_module("rich.style")


class _EmptyPackageLoader(importlib.abc.Loader):
    """Builds a package of ``_EMPTY_PACKAGES``: nothing in it but its submodules, found on first use."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a new, empty module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__getattr__ = _SubmoduleAttributes(module.__name__)  # type: ignore[method-assign]


class _SubmoduleAttributes:
    """The module ``__getattr__`` of the alias packages: ``pl.loggers`` imports ``pytorch_lightning.loggers``."""

    def __init__(self, package: str) -> None:
        self.package = package

    def __call__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {self.package!r} has no attribute {name!r}")
        if name == "cli_lightning_logo" and self.package in _ROOTS:
            from ember.cli.logo import cli_lightning_logo

            return cli_lightning_logo
        if name == "Fabric" and self.package == "lightning":
            try:
                return importlib.import_module("lightning.fabric").Fabric
            except ModuleNotFoundError as error:
                raise AttributeError(str(error)) from None
        for root in _ROOTS:
            if self.package.startswith(root + "."):
                submodule = _PACKAGE_NAMES.get(self.package[len(root) + 1 :], {}).get(name)
                if submodule is not None:
                    return getattr(importlib.import_module(f"{self.package}.{submodule}"), name)
        try:
            return importlib.import_module(f"{self.package}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{self.package}.{name}":
                raise
            raise AttributeError(f"module {self.package!r} has no attribute {name!r}") from None


_FINDER = _Finder()
_ROOT_LOADER = _RootLoader()
_EMPTY_PACKAGE_LOADER = _EmptyPackageLoader()
_SAME_MODULE_LOADER = _SameModuleLoader()
