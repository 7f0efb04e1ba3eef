"""The ``Strategy`` for the Trainer's ``accelerator``, ``devices``, ``strategy`` and ``num_nodes`` arguments.

Example::

    strategy = create_strategy("ddp", "cpu", parse_devices(2, "cpu"), num_nodes=1)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from ember.distributed.environments import environment_in
from ember.distributed.processes import runs_distributed
from ember.distributed.strategy import SingleDeviceStrategy, Strategy, StrategyRegistry
from ember.distributed.strategy_names import DDP_START_METHODS, DEEPSPEED_NAMES, FSDP_NAMES
from ember.utilities.exceptions import MisconfigurationException, xla_requested
from ember.utilities.imports import lightning_package

_IS_INTERACTIVE = hasattr(sys, "ps1") or bool(sys.flags.interactive)


def _available_gpu() -> str | None:
    """``"cuda"``, else ``"mps"``, else None: the GPU ``accelerator="auto"`` and ``"gpu"`` pick."""
    from ember.accelerators import CUDAAccelerator, MPSAccelerator

    if CUDAAccelerator.is_available():
        return "cuda"
    return "mps" if MPSAccelerator.is_available() else None


def resolve_accelerator(accelerator: Any) -> str:
    """``"cpu"``, ``"cuda"`` or ``"mps"`` for the Trainer's ``accelerator`` argument (availability is
    checked by ``create_accelerator``)."""
    if not isinstance(accelerator, str):
        raise ValueError(_INVALID_ACCELERATOR.format(accelerator))  # Lightning's type
    name = accelerator.lower()
    if name == "tpu":
        raise xla_requested(
            f"`Trainer(accelerator={accelerator!r})`",
            'Use `accelerator="cpu"`, `"cuda"` or `"mps"`, or Lightning itself on TPUs.',
        )
    if name == "auto":
        return _available_gpu() or "cpu"
    if name == "gpu":
        gpu = _available_gpu()
        if gpu is not None:
            return gpu
        raise MisconfigurationException(
            "No supported gpu backend found! `Trainer(accelerator='gpu')` needs CUDA or MPS, and this machine has"
            " neither: use `accelerator='cpu'` or 'auto'."
        )
    if name in _DEVICE_TYPES:
        return name
    raise ValueError(_INVALID_ACCELERATOR.format(accelerator))  # Lightning's type


# Lightning's message, with its list of names ("gpu" is accepted too, as in Lightning)
_INVALID_ACCELERATOR = (
    "You selected an invalid accelerator name: `accelerator={!r}`. Available names are: auto, cpu, cuda, mps, tpu."
)


_DEVICE_TYPES = ("cpu", "cuda", "mps")


def create_accelerator(accelerator: Any, devices: Any = "auto", strategy: Any = None) -> Any:
    """The ``Accelerator`` for the Trainer's ``accelerator`` argument: a name, a registered name or an instance.

    Like Lightning, ``devices`` of ``0``, ``"0"`` or ``[]`` are refused first, and a strategy given with
    ``parallel_devices`` decides an ``"auto"`` accelerator (and must agree with any other).
    """
    from ember.accelerators import Accelerator, AcceleratorRegistry, CPUAccelerator, CUDAAccelerator, MPSAccelerator

    if isinstance(devices, (int, str, list)) and devices in ([], 0, "0"):  # (False too: it equals 0, as in Lightning)
        name = type(accelerator).__qualname__ if isinstance(accelerator, Accelerator) else accelerator
        if isinstance(name, str) and name.lower() in ("auto", "gpu"):
            name = _available_gpu() or "cpu"  # as Lightning names it: the device type "auto" or "gpu" stands for
        raise MisconfigurationException(
            f"`Trainer(devices={devices!r})` value is not a valid input using {name} accelerator."
            " Pass a positive number of devices, a list of device indices, -1 (all) or 'auto'."
        )
    given = getattr(strategy, "_given_accelerator", None) if isinstance(strategy, Strategy) else None
    if given is not None:  # as Lightning: the strategy object's accelerator is the Trainer's
        if accelerator not in ("auto", None):
            raise MisconfigurationException(
                "accelerator set through both strategy class and accelerator flag, choose one: pass it to the"
                " strategy only, or leave `Trainer(accelerator=...)` at 'auto'."
            )
        accelerator = given
    accelerator = _accelerator_of_parallel_devices(accelerator, strategy)
    if isinstance(accelerator, Accelerator):
        instance = accelerator
    elif (
        isinstance(accelerator, str)
        and accelerator not in ("auto", "gpu", "tpu", *_DEVICE_TYPES)  # Lightning's names: resolved below
        and accelerator in AcceleratorRegistry
    ):
        instance = AcceleratorRegistry.get(accelerator)  # one the user registered
    else:
        instance = AcceleratorRegistry.get(resolve_accelerator(accelerator))
    if instance.name() not in _DEVICE_TYPES:
        raise MisconfigurationException(
            f"`Trainer(accelerator={accelerator!r})` names the device type {instance.name()!r}, but Ember runs on"
            " 'cpu', 'cuda' and 'mps' only: subclass `CPUAccelerator`, `CUDAAccelerator` or `MPSAccelerator`."
        )
    if not instance.is_available():
        available = [cls.name() for cls in (CPUAccelerator, CUDAAccelerator, MPSAccelerator) if cls.is_available()]
        raise MisconfigurationException(
            f"`{type(instance).__name__}` can not run on your system since the accelerator is not available. The"
            f" following accelerator(s) is available and can be passed into `accelerator` argument of `Trainer`:"
            f" {available}."
        )
    return instance


def _accelerator_of_parallel_devices(accelerator: Any, strategy: Any) -> Any:
    """A strategy's ``parallel_devices`` pick the accelerator for ``"auto"``, and must match any other."""
    devices = getattr(strategy, "parallel_devices", None)
    if not devices or not isinstance(accelerator, str):
        return accelerator
    kind = {"cpu": "CPU", "cuda": "GPU"}.get(devices[0].type)
    if kind is None:
        return accelerator
    wanted = accelerator.lower()
    if wanted in ("auto", devices[0].type) or (wanted == "gpu" and kind == "GPU"):
        return devices[0].type
    raise MisconfigurationException(
        f"{kind} parallel_devices set through {type(strategy).__name__} class, but accelerator set to {accelerator},"
        " please choose one device type"
    )


def _plain_list(devices: Any) -> Any:
    """A list from a config (OmegaConf's ``ListConfig``) as a list, as Lightning accepts it; anything else as is."""
    if isinstance(devices, Sequence) and not isinstance(devices, (str, list, tuple)):
        return list(devices)
    return devices


def parse_devices(devices: Any, accelerator: str) -> list[int]:
    """Device indices (for cpu: one entry per process) from the ``devices`` argument."""
    given = devices  # as the program wrote it, for the messages
    devices = _plain_list(devices)
    if devices == "auto" or devices is None:
        count = _cuda_count() if accelerator == "cuda" else 1
        return list(range(max(count, 1)))
    if isinstance(devices, str):
        devices = _devices_from_text(devices.strip(), accelerator)
    if accelerator == "cpu" and devices is True:
        devices = 1  # Lightning's CPU parsing takes True as the int 1: one process
    if isinstance(devices, bool):
        if accelerator != "cpu":  # Lightning's type check of device IDs refuses a bool
            raise TypeError(f"{_DEVICE_IDS_TYPE} {devices!r}. Pass a number of devices, e.g. `devices=1`.")
        raise MisconfigurationException(f"`devices={devices!r}` is not a valid value: pass an int, a list or 'auto'.")
    if accelerator == "cpu" and not (isinstance(devices, int) and devices > 0):
        # CPU "devices" are processes: Lightning accepts only their number
        raise TypeError(
            "`devices` selected with `CPUAccelerator` should be an int > 0. Pass the number of processes,"
            f" e.g. `devices=2`, instead of {given!r}."
        )
    if isinstance(devices, int):
        if devices == -1:
            return list(range(max(_cuda_count(), 1)))
        if devices <= 0:
            raise MisconfigurationException(
                f"`devices={devices}` is not a valid value: it must be a positive number of devices, a list of"
                " device indices, -1 (all) or 'auto'."
            )
        if accelerator == "cuda" and devices > _cuda_count():
            raise MisconfigurationException(
                f"You requested {devices} CUDA devices but only {_cuda_count()} are available."
            )
        return list(range(devices))
    if isinstance(devices, (list, tuple)):
        return _listed_indices(devices, accelerator)
    # Lightning's type check of device IDs
    raise TypeError(f"{_DEVICE_IDS_TYPE} {devices!r}. Pass an int, a list of ints, a string of them or 'auto'.")


_DEVICE_IDS_TYPE = "Device IDs (GPU/TPU) must be an int, a string, a sequence of ints, but you passed"


def _devices_from_text(devices: str, accelerator: str) -> Any:
    """``devices="2"``, ``"-1"`` or ``"0,1"`` as the int or list it stands for; other text is refused (on CPU
    by the CPU check, with Lightning's ``TypeError``; on a GPU with the ``ValueError`` Lightning's ``int()`` raises)."""
    if devices == "-1":
        return -1
    try:
        if "," in devices:
            return [int(x) for x in devices.split(",") if x.strip()]
        return int(devices)
    except ValueError as error:
        if accelerator == "cpu":
            return devices
        raise ValueError(
            f"{error}. `devices={devices!r}` is not a valid value: pass an int, a list or 'auto'."
        ) from None


def _listed_indices(devices: list | tuple, accelerator: str) -> list[int]:
    """``devices=[0, 1]``: the indices, each an int, naming devices that exist."""
    if not devices:
        raise MisconfigurationException("`devices=[]` selects no device: pass at least one index.")
    for device in devices:
        if type(device) is not int:  # not bool either: `devices=[False]` would select device 0
            raise TypeError(
                f"Device IDs (GPU/TPU) must be an int, a string, a sequence of ints, but you passed a sequence of"
                f" {type(device).__name__}: `devices={devices!r}`. Pass indices as ints, e.g. `devices=[0, 1]`,"
                ' or as one string, e.g. `devices="0,1"`.'
            )
    indices = list(devices)
    if accelerator == "cuda":
        _check_cuda_indices(indices)
    return indices


def _cuda_count() -> int:
    from ember.accelerators import cuda

    return cuda.num_cuda_devices()


def _check_cuda_indices(indices: list[int]) -> None:
    """Every index names a CUDA device that exists, once (Lightning's checks and messages)."""
    available = list(range(_cuda_count()))
    for index in indices:
        if index not in available:
            raise MisconfigurationException(
                f"You requested gpu: {indices}\n But your machine only has: {available}"
                f" (device {index} does not exist; pass indices of devices this machine has, or `devices=-1` for all)"
            )
    if len(set(indices)) != len(indices):
        raise MisconfigurationException(
            f"Device ID's (GPU) must be unique. (`devices={indices}` names a device more than once: one process runs"
            " on each device listed.)"
        )


def create_strategy(strategy: Any, accelerator: str, devices: list[int], num_nodes: int, **options: Any) -> Strategy:
    """The strategy object for the Trainer's ``strategy``/``devices``/``num_nodes`` arguments and ``plugins``."""
    checkpoint_io = _checkpoint_io_in(options.get("plugins"))
    options["layer_sync"] = _layer_sync_in(options.get("plugins"), options.get("sync_batchnorm", False))
    if checkpoint_io is not None and isinstance(strategy, Strategy) and strategy._checkpoint_io is not None:
        raise MisconfigurationException("checkpoint_io set through both strategy class and plugins, choose one")
    chosen = _create_strategy(strategy, accelerator, devices, num_nodes, **options)
    if checkpoint_io is not None:
        chosen.checkpoint_io = checkpoint_io
    return chosen


def create_hardware(
    accelerator: Any,
    devices: Any,
    strategy: Any,
    num_nodes: Any,
    precision: Any = None,
    plugins: Any = None,
    sync_batchnorm: bool = False,
) -> tuple[Any, list[int], Strategy]:
    """The accelerator, the device indices and the strategy (holding its precision plugin) for the
    Trainer's ``accelerator``/``devices``/``strategy``/``num_nodes``/``precision``/``plugins`` arguments."""
    from ember.precision import choose_precision

    chosen_accelerator = create_accelerator(accelerator, devices, strategy)
    device_ids = parse_devices(devices, name := chosen_accelerator.name())
    if not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"`num_nodes` must be a positive integer, but got {num_nodes!r}.")  # Lightning's type
    chosen = create_strategy(strategy, name, device_ids, num_nodes, sync_batchnorm=sync_batchnorm, plugins=plugins)
    chosen.precision_plugin = choose_precision(precision, plugins, chosen, name)
    chosen.accelerator = chosen_accelerator  # as Lightning's connector gives it to the strategy
    return chosen_accelerator, device_ids, chosen


class _AcceleratorConnector:
    """Lightning's private ``trainer.connectors.accelerator_connector._AcceleratorConnector``, for the
    libraries that build one to read the Trainer's hardware arguments the Trainer's way (scvi-tools
    turns ``accelerator``/``devices`` into a device with it). It holds what a ``Trainer`` given the same
    arguments gets (``accelerator``, ``strategy``, ``precision_plugin``) and Lightning's resolved flags:
    ``_accelerator_flag`` is the device type (``"cpu"``, ``"cuda"``, ``"mps"``), ``_devices_flag`` the
    number of processes on CPU and the device indices on a GPU.

    Example::

        connector = _AcceleratorConnector(accelerator="auto", devices="auto")
        connector._accelerator_flag, connector._devices_flag   # ('cpu', 1) on a machine without a GPU
    """

    def __init__(
        self,
        devices: Any = "auto",
        num_nodes: int = 1,
        accelerator: Any = "auto",
        strategy: Any = "auto",
        plugins: Any = None,
        precision: Any = None,
        sync_batchnorm: bool = False,
        benchmark: bool | None = None,
        use_distributed_sampler: bool = True,
        deterministic: Any = None,
    ) -> None:
        self.accelerator, device_ids, self.strategy = create_hardware(
            accelerator, devices, strategy, num_nodes, precision, plugins, sync_batchnorm
        )
        self.precision_plugin = self.strategy.precision_plugin
        self.checkpoint_io = self.strategy.checkpoint_io
        self.cluster_environment = getattr(self.strategy, "cluster_environment", None)
        self.use_distributed_sampler = use_distributed_sampler
        name = self.accelerator.name()
        self._accelerator_flag = accelerator if not isinstance(accelerator, str) else name
        self._devices_flag: int | list[int] = len(device_ids) if name == "cpu" else device_ids
        self._num_nodes_flag = num_nodes
        self._strategy_flag = strategy if isinstance(strategy, Strategy) or strategy != "auto" else self.strategy
        self._precision_flag = self.precision_plugin.precision
        self._parallel_devices = getattr(self.strategy, "parallel_devices", None) or [self.strategy.root_device]

    # Lightning's resolution steps, which libraries wrap (nequip's XPU support reads them when it is
    # imported); Ember resolved everything in `__init__`, and its Trainer does not call them
    def _choose_strategy(self) -> Any:
        return self.strategy

    def _check_and_init_precision(self) -> Any:
        return self.precision_plugin

    def _validate_precision_choice(self) -> None:
        pass

    @property
    def is_distributed(self) -> bool:
        """Whether the run uses several processes (DDP, FSDP)."""
        return runs_distributed(self.strategy)


def _checkpoint_io_in(plugins: Any) -> Any:
    """The ``CheckpointIO`` passed in ``Trainer(plugins=...)``, if any. As in Lightning, every plugin must be a
    precision plugin, a ``CheckpointIO``, a cluster environment or a ``LayerSync``, one of a kind at most."""
    from ember.checkpoint.io import CheckpointIO
    from ember.distributed.environments import is_cluster_environment
    from ember.distributed.layer_sync import LayerSync
    from ember.precision.precision import Precision

    if plugins is None or (isinstance(plugins, Iterable) and not plugins):  # `[]`, `""`: none, as in Lightning
        return None
    kinds: dict[str, list[Any]] = {"Precision": [], "CheckpointIO": [], "ClusterEnvironment": [], "LayerSync": []}
    for plugin in plugins if isinstance(plugins, (list, tuple)) else [plugins]:
        if isinstance(plugin, Precision):
            kinds["Precision"].append(plugin)
        elif isinstance(plugin, CheckpointIO) and not isinstance(plugin, type):
            kinds["CheckpointIO"].append(plugin)
        elif is_cluster_environment(plugin):
            kinds["ClusterEnvironment"].append(plugin)
        elif isinstance(plugin, LayerSync):
            kinds["LayerSync"].append(plugin)
        else:
            hint = f" Pass a precision as `Trainer(precision={plugin!r})`." if isinstance(plugin, str) else ""
            raise MisconfigurationException(
                f"Found invalid type for plugin {plugin}. Expected one of: Precision, CheckpointIO, ClusterEnvironment,"
                f" or LayerSync.{hint}"
            )
    duplicated = [kind for kind, found in kinds.items() if len(found) > 1]
    if duplicated:
        raise MisconfigurationException(
            f"Received multiple values for {', '.join(duplicated)} flags in `plugins`."
            " Expected one value for each type at most."
        )
    found = kinds["CheckpointIO"]
    return found[0] if found else None


def _layer_sync_in(plugins: Any, sync_batchnorm: bool) -> Any:
    """The ``LayerSync`` passed in ``plugins``, else ``TorchSyncBatchNorm`` for ``sync_batchnorm=True``, else None."""
    from ember.distributed.layer_sync import LayerSync, TorchSyncBatchNorm

    given = plugins if isinstance(plugins, (list, tuple)) else [plugins]
    found = next((p for p in given if isinstance(p, LayerSync)), None)
    if found is None:
        return TorchSyncBatchNorm() if sync_batchnorm else None
    if sync_batchnorm and not isinstance(found, TorchSyncBatchNorm):
        raise MisconfigurationException(
            f"You set `Trainer(sync_batchnorm=True)` and provided a `{found.__class__.__name__}` plugin, but this is not"
            " allowed. Choose one or the other: the plugin decides which layers synchronize."
        )
    return found


def _create_strategy(strategy: Any, accelerator: str, devices: list[int], num_nodes: int, **options: Any) -> Strategy:
    if isinstance(strategy, str) and strategy in StrategyRegistry and not _built_here(strategy):
        # a name a program or library registered: its strategy, configured as one passed in
        strategy = StrategyRegistry.get(strategy)
    if isinstance(strategy, Strategy):
        if getattr(strategy, "_configured", True):
            return strategy
        return create_distributed_strategy(strategy, accelerator, devices, num_nodes, **options)
    name = strategy.lower() if isinstance(strategy, str) else strategy
    multi = len(devices) > 1 or num_nodes > 1
    # as Lightning, "single_device" trains in one process on the first device whatever `devices` asks for
    if name == "single_device" or (name == "auto" and not multi):
        device = torch.device(accelerator, devices[0]) if accelerator == "cuda" else torch.device(accelerator)
        return SingleDeviceStrategy(device)
    return create_distributed_strategy(name, accelerator, devices, num_nodes, **options)


_STRATEGY_NAMES = (*DDP_START_METHODS, *FSDP_NAMES, *DEEPSPEED_NAMES)


# Lightning's words for a strategy name it does not know; Ember's list of names follows them
def _invalid_strategy(name: Any) -> ValueError:
    """Lightning's error for a strategy name it does not know (its type and text, naming the package the
    program imported), then the names Ember knows."""
    package = lightning_package() or "ember"
    return ValueError(
        f"You selected an invalid strategy name: `strategy={name!r}`. It must be either a string or an instance of"
        f" `{package}.strategies.Strategy`. Example choices: auto, ddp, ddp_spawn, deepspeed, ..."
        f" The names Ember knows: auto, single_device, {', '.join(_STRATEGY_NAMES)} (the DDP ones also with"
        " _find_unused_parameters_true/false)."
    )


def register_built_in_strategies() -> None:
    """Lightning's names in ``StrategyRegistry``, each with the class and arguments it stands for, for the
    programs and libraries that look names up (``"ddp" in StrategyRegistry``, ``available_strategies()``).
    ``Trainer(strategy=name)`` builds these itself, unless a program registers a strategy of its own under
    one of them (``override=True``)."""
    from ember.distributed.ddp import DDPStrategy
    from ember.distributed.deepspeed import DeepSpeedStrategy
    from ember.distributed.fsdp import FSDPStrategy
    from ember.distributed.xla import SingleDeviceXLAStrategy, XLAStrategy
    from ember.utilities.registry import _StrategyRegistry

    built_in = _StrategyRegistry()
    for cls in (
        DDPStrategy,
        DeepSpeedStrategy,
        FSDPStrategy,
        SingleDeviceStrategy,
        SingleDeviceXLAStrategy,
        XLAStrategy,
    ):
        cls.register_strategies(built_in)
    for name, entry in built_in.items():
        if name not in StrategyRegistry:
            dict.__setitem__(StrategyRegistry, name, entry)
            _OWN_ENTRIES[name] = entry


_OWN_ENTRIES: dict[str, dict[str, Any]] = {}  # what `register_built_in_strategies` registered, by name


def _built_here(name: str) -> bool:
    """Whether ``Trainer(strategy=name)`` builds the strategy here rather than from ``StrategyRegistry``: a name
    Ember builds itself, unless a program registered its own strategy under it."""
    registered = dict.get(StrategyRegistry, name)  # the entry (the registry's own `get` builds a strategy)
    return _is_built_in(name) and (registered is None or registered is _OWN_ENTRIES.get(name))


def _is_built_in(name: str) -> bool:
    """Whether Ember builds the strategy ``name`` itself (``"ddp_spawn_find_unused_parameters_true"``, ...)."""
    key, _ = _split_find_unused(name.lower())
    return key in ("auto", "single_device", *_STRATEGY_NAMES)


def _split_find_unused(key: str) -> tuple[str, bool | None]:
    """``"ddp_find_unused_parameters_true"`` -> ``("ddp", True)``; a name without the suffix -> ``(name, None)``."""
    for suffix, value in (("_find_unused_parameters_true", True), ("_find_unused_parameters_false", False)):
        if key.endswith(suffix):
            return key[: -len(suffix)], value
    return key, None


def create_distributed_strategy(
    name: Any,
    accelerator: str,
    devices: list[int],
    num_nodes: int,
    plugins: Any = None,
    layer_sync: Any = None,
    **options: Any,
) -> Any:
    """The strategy object for a strategy name (or a ``ParallelStrategy`` to finish configuring).

    ``layer_sync``: the ``LayerSync`` its fit applies (``TorchSyncBatchNorm`` for ``sync_batchnorm=True``).
    """
    from ember.distributed.ddp import DDPStrategy
    from ember.distributed.parallel import ParallelStrategy

    if isinstance(name, ParallelStrategy):
        strategy = name
    elif not isinstance(name, str):
        raise _invalid_strategy(name)
    else:
        key, find_unused = _split_find_unused(name.lower())
        if key == "auto":
            key = "ddp_fork" if _IS_INTERACTIVE and accelerator != "cuda" else "ddp"
        kwargs: dict[str, Any] = {}
        if find_unused is not None:
            kwargs["find_unused_parameters"] = find_unused
        if key in DDP_START_METHODS:
            strategy = DDPStrategy(start_method=DDP_START_METHODS[key], **kwargs)
        elif key in DEEPSPEED_NAMES:
            from ember.distributed.deepspeed import DeepSpeedStrategy

            strategy = DeepSpeedStrategy(**DEEPSPEED_NAMES[key])  # without deepspeed: says how to install it
        elif key in FSDP_NAMES:
            from ember.distributed.fsdp import FSDPStrategy

            if accelerator != "cuda":
                # as Lightning: the name means GPUs. An `FSDPStrategy(...)` object also runs on CPU
                # processes over gloo (Ember's tests of sharding use that).
                raise ValueError(
                    f"The strategy `fsdp` requires a GPU accelerator, but received `accelerator={accelerator!r}`."
                    " Please set `accelerator='cuda'`, `accelerator='gpu'`, or pass a `CUDAAccelerator()` instance"
                    " to use FSDP."
                )

            strategy = FSDPStrategy(**FSDP_NAMES[key])
        else:
            raise _invalid_strategy(name)
    if getattr(strategy, "_start_method", None) == "fork" and not hasattr(os, "fork"):
        raise MisconfigurationException(
            "`strategy='ddp_fork'` needs `os.fork`, which this platform lacks: use 'ddp_spawn'."
        )
    environment = environment_in(plugins)
    if environment is not None:
        strategy.cluster_environment = environment
    strategy._configure(accelerator, devices, num_nodes, layer_sync=layer_sync)
    if _IS_INTERACTIVE and not strategy.launcher.is_interactive_compatible:
        # as Lightning: a notebook can fork workers, but neither re-run nor import the program
        raise MisconfigurationException(
            f"`Trainer(strategy={name!r})` is not compatible with an interactive environment. Run your code as a"
            " script, or choose a notebook-compatible strategy: `Trainer(strategy='ddp_notebook')`. In case you are"
            " spawning processes yourself, make sure to include the Trainer creation inside the worker function."
        )
    return strategy
