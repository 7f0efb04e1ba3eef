"""``FSDPStrategy`` on FSDP2 (``torch.distributed.fsdp.fully_shard``): parameters, gradients and
optimizer state sharded across ranks, gathered layer by layer when needed."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

import torch
from torch import nn

from ember.distributed.ddp import _StepForward
from ember.distributed.parallel import default_pg_timeout, ember_option
from ember.distributed.sharded import ShardedStrategy
from ember.distributed.strategy_names import FSDP_NAMES
from ember.distributed.wrap_policies import layers_chosen_by_rule, read_policy
from ember.utilities.rank_zero import rank_zero_deprecation, rank_zero_warn
from ember.utilities.signature_utils import lightning_style_annotations

# sharding_strategy -> (reshard the parameters after forward, the mesh's layout): "flat" shards over all
# ranks; "hybrid" shards within a node and replicates across nodes (HSDP, on a (replicate, shard) mesh);
# "replicate" keeps a full copy on every rank, as DDP
_SHARDING = {
    "FULL_SHARD": (True, "flat"),
    "SHARD_GRAD_OP": (False, "flat"),
    "HYBRID_SHARD": (True, "hybrid"),
    "_HYBRID_SHARD_ZERO2": (False, "hybrid"),
    "NO_SHARD": (False, "replicate"),
}
_MESH_DIMENSIONS = ("replicate", "shard")


def _check_mesh_argument(device_mesh: Any) -> None:
    """``device_mesh`` is None, a 2-D ``DeviceMesh`` or a ``(replicas, shards)`` tuple of positive ints."""
    if device_mesh is None or (hasattr(device_mesh, "mesh_dim_names") and device_mesh.ndim == 2):
        return
    pair = isinstance(device_mesh, (tuple, list)) and len(device_mesh) == 2
    if pair and all(type(size) is int and size > 0 for size in device_mesh):
        return
    raise ValueError(
        f"`FSDPStrategy(device_mesh={device_mesh!r})` is not supported: pass `(replicas, shards)`, two positive ints"
        " whose product is the number of processes (e.g. `(2, 8)` on 2 nodes of 8 devices), or a 2-D `DeviceMesh`."
    )


def _apply_activation_checkpointing(module: nn.Module, policy: Any) -> None:
    """Wrap the layers the policy names (or its rule chooses) so that backward re-computes their activations."""
    if policy is None:
        return
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

    if isinstance(policy, tuple):
        apply_activation_checkpointing(module, check_fn=lambda layer: isinstance(layer, policy))
    else:  # a rule, applied by torch as FSDP1 applies it, as Lightning passes it
        apply_activation_checkpointing(module, auto_wrap_policy=policy)


def _as_cpu_offload(cpu_offload: Any) -> Any:
    """FSDP1's ``CPUOffload``, as Lightning keeps it: given, or built from a bool (``None`` is no offload). Its
    ``offload_params`` decides, not its truth value (a ``CPUOffload(offload_params=False)`` is truthy)."""
    from torch.distributed.fsdp import CPUOffload

    return cpu_offload if isinstance(cpu_offload, CPUOffload) else CPUOffload(offload_params=bool(cpu_offload))


def _as_sharding_strategy(sharding_strategy: Any) -> Any:
    """The ``ShardingStrategy`` member for a name (any case) or a member, as Lightning keeps it."""
    from torch.distributed.fsdp import ShardingStrategy

    key = str(sharding_strategy).split(".")[-1]
    key = key if key == "_HYBRID_SHARD_ZERO2" else key.upper()
    if key not in _SHARDING:
        raise ValueError(
            f"`sharding_strategy={sharding_strategy!r}` is not supported: use one of {', '.join(map(repr, _SHARDING))}."
        )
    return ShardingStrategy[key]


# the precision plugins' dtypes: a "mixed" one has FSDP cast the parameters for compute (and reduce in float32);
# a "true" one converts the whole module itself, so FSDP casts nothing
_MIXED_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
_TRUE_DTYPES = {
    "32-true": torch.float32,
    "bf16-true": torch.bfloat16,
    "16-true": torch.float16,
    "64-true": torch.float64,
}


@dataclasses.dataclass(frozen=True)
class _PrecisionPlan:
    """How a run's mixed precision is applied with FSDP2, which sets it per ``fully_shard`` call."""

    layers: Any  # the MixedPrecisionPolicy of the layers the wrap policy names
    root: Any  # ... of the root (FSDP1 casts the root's inputs on a flag of its own)
    full_classes: tuple[type, ...] = ()  # layer classes kept in full precision (FSDP1's `_module_classes_to_ignore`)
    full: Any = None  # their policy
    buffer_dtype: torch.dtype | None = None  # floating-point buffers are cast to it for training


def _plan_from_fsdp1(config: Any) -> _PrecisionPlan:
    """FSDP1's ``MixedPrecision`` as FSDP2 policies. ``param_dtype`` and ``reduce_dtype`` mean the same in both.
    FSDP1 casts the root's inputs when ``cast_root_forward_inputs`` (default True) and the other wrapped layers'
    when ``cast_forward_inputs`` (default False); FSDP2 has one ``cast_forward_inputs`` per call, so each call
    gets its own. FSDP1 runs the ``_module_classes_to_ignore`` layers (batch norm) in float32, casting their
    output back, when an auto-wrap policy is set: they get a float32 policy with ``output_dtype``.
    ``buffer_dtype`` has no FSDP2 counterpart: the strategy casts the buffers itself (``_cast_buffers``)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    low, reduce = config.param_dtype, config.reduce_dtype
    return _PrecisionPlan(
        layers=MixedPrecisionPolicy(
            param_dtype=low, reduce_dtype=reduce, cast_forward_inputs=config.cast_forward_inputs
        ),
        root=MixedPrecisionPolicy(
            param_dtype=low,
            reduce_dtype=reduce,
            cast_forward_inputs=config.cast_forward_inputs or config.cast_root_forward_inputs,
        ),
        full_classes=tuple(config._module_classes_to_ignore or ()),
        full=MixedPrecisionPolicy(param_dtype=None if low is None else torch.float32, output_dtype=low),
        buffer_dtype=config.buffer_dtype,
    )


def _check_mixed_precision(mixed_precision: Any) -> None:
    """``mixed_precision`` is None, FSDP1's ``MixedPrecision`` (Lightning's) or FSDP2's ``MixedPrecisionPolicy``;
    FSDP1's ``keep_low_precision_grads`` has no FSDP2 counterpart (a warning)."""
    if mixed_precision is None:
        return
    from torch.distributed.fsdp import MixedPrecision, MixedPrecisionPolicy

    if not isinstance(mixed_precision, (MixedPrecision, MixedPrecisionPolicy)):
        raise TypeError(
            f"`FSDPStrategy(mixed_precision={mixed_precision!r})` is not supported: pass"
            " `torch.distributed.fsdp.MixedPrecision(param_dtype=..., reduce_dtype=..., buffer_dtype=...)` or"
            " FSDP2's `MixedPrecisionPolicy(...)`, or leave it out and choose `Trainer(precision=...)`."
        )
    if isinstance(mixed_precision, MixedPrecision) and mixed_precision.keep_low_precision_grads:
        rank_zero_warn(
            "`MixedPrecision(keep_low_precision_grads=True)` is ignored: FSDP2 keeps the gradients in the"
            " parameters' own dtype (it reduces them in `reduce_dtype`)."
        )


def _cast_buffers(module: nn.Module, dtype: torch.dtype, skip: tuple[type, ...]) -> None:
    """Cast ``module``'s floating-point buffers to ``dtype`` for training, as FSDP1's ``buffer_dtype`` does,
    except in layers of the ``skip`` classes (kept in full precision). As in FSDP1, a state dict (so a
    checkpoint) holds them in their original dtype: each layer whose buffers changed gets a state-dict hook."""
    for layer in module.modules():
        if skip and isinstance(layer, skip):
            continue
        for name, buffer in layer.named_buffers(recurse=False):
            if buffer is None or not buffer.is_floating_point() or buffer.dtype == dtype:
                continue
            if "_ember_buffer_dtypes" not in layer.__dict__:  # a second fit finds the first's record and hook
                layer.__dict__["_ember_buffer_dtypes"] = {}
                layer.register_state_dict_post_hook(_restore_buffer_dtypes)
            layer.__dict__["_ember_buffer_dtypes"].setdefault(name, buffer.dtype)
            buffer.data = buffer.data.to(dtype)


def _restore_buffer_dtypes(layer: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    for name, dtype in layer.__dict__["_ember_buffer_dtypes"].items():
        if isinstance(state_dict.get(prefix + name), torch.Tensor):
            state_dict[prefix + name] = state_dict[prefix + name].to(dtype)


# FSDP1's keyword arguments (Lightning passes `**kwargs` on to `FullyShardedDataParallel`) that FSDP2 has no
# counterpart for: the value FSDP2 already behaves as (silent), and why any other value is ignored (a warning)
_NO_COUNTERPART: dict[str, tuple[Any, str]] = {
    "use_orig_params": (True, "FSDP2 always trains the module's own parameters, as `use_orig_params=True`"),
    "limit_all_gathers": (True, "FSDP2 always limits the all-gathers in flight"),
    "forward_prefetch": (False, "FSDP2 overlaps each layer's all-gather with the forward before it by itself"),
    "backward_prefetch": (
        "BACKWARD_PRE",
        "FSDP2 prefetches the next layer's all-gather in backward by itself, as `BackwardPrefetch.BACKWARD_PRE`",
    ),
    "sync_module_states": (
        False,
        "FSDP2 does not broadcast rank 0's weights; the ranks Ember starts all get the same module, and ranks an"
        " outside launcher starts (torchrun, SLURM) should build it after `seed_everything`",
    ),
    "param_init_fn": (
        None,
        "Ember makes the layers built on the meta device real with their own `reset_parameters()` (as Lightning's"
        " FSDP2 strategies do) and calls no `param_init_fn`; give each such layer a `reset_parameters()`",
    ),
    "device_id": (None, "Ember puts each rank on its device itself (`Trainer(devices=...)`)"),
    "process_group": (
        None,
        "FSDP2 shards over a device mesh: pass `device_mesh=(replicas, shards)` or a 2-D `DeviceMesh` instead",
    ),
}
# honoured: the parameters they hold are given to `fully_shard(ignored_params=...)`
_IGNORED_STATES = ("ignored_modules", "ignored_states")


def _check_fsdp_kwargs(kwargs: dict[str, Any]) -> None:
    """Warn for each FSDP1 argument whose value FSDP2 cannot honour; refuse names FSDP1 does not take either."""
    for name, value in kwargs.items():
        if name in _IGNORED_STATES:
            continue
        if name not in _NO_COUNTERPART:
            known = ", ".join(f"`{key}`" for key in (*_IGNORED_STATES, *_NO_COUNTERPART))
            raise TypeError(f"`FSDPStrategy({name}=...)` is not an FSDP argument; the keyword arguments are {known}.")
        same, reason = _NO_COUNTERPART[name]
        if value is same or value == same or (isinstance(same, str) and getattr(value, "name", None) == same):
            continue
        rank_zero_warn(f"`FSDPStrategy({name}={value!r})` is ignored: {reason}.")


def _ignored_parameters(kwargs: dict[str, Any]) -> set[nn.Parameter] | None:
    """The parameters of FSDP1's ``ignored_modules`` and ``ignored_states`` (modules or parameters), which FSDP2
    takes as ``ignored_params``: not sharded, their gradients not reduced across ranks (as in FSDP1)."""
    found: set[nn.Parameter] = set()
    for name in _IGNORED_STATES:
        for state in kwargs.get(name) or ():
            found.update(state.parameters() if isinstance(state, nn.Module) else (state,))
    return found or None


class _ShardedRoot(_StepForward):
    """The root layer ``fully_shard`` wraps around the LightningModule: ``trainer.model`` during ``fit``. It has
    FSDP1's ``clip_grad_norm_`` too, which Lightning's FSDP recipe calls from ``configure_gradient_clipping``
    (``self.trainer.model.clip_grad_norm_(1.0)``)."""

    def clip_grad_norm_(self, max_norm: float, norm_type: float = 2.0) -> torch.Tensor:
        """Scale the gradients so that their norm, over every rank's shards together, is at most ``max_norm``;
        returns that norm before clipping (the same on every rank), as FSDP1's does."""
        gradients = [parameter for parameter in self.parameters() if parameter.grad is not None]
        total = torch.nn.utils.clip_grad_norm_(gradients, max_norm, norm_type=norm_type)
        full_tensor = getattr(total, "full_tensor", None)  # a DTensor when the gradients are shards
        return full_tensor() if full_tensor is not None else total


class FSDPStrategy(ShardedStrategy):
    """Fully sharded data parallel training.

    ``auto_wrap_policy`` and ``activation_checkpointing_policy`` choose the layers sharded (and re-computed
    in backward) on their own, in any form Lightning takes: a set of layer classes, FSDP1's
    ``ModuleWrapPolicy({...})``, ``functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={...})``,
    ``CustomPolicy(lambda_fn)``, or a callable FSDP1 calls as ``policy(module, recurse, nonwrapped_numel)``
    (``size_based_auto_wrap_policy``, a ``lambda_auto_wrap_policy`` partial): FSDP2 shards the layers FSDP1
    would wrap (``ember.distributed.wrap_policies``).

    ``mixed_precision``: FSDP1's ``MixedPrecision`` (Lightning's) is applied with FSDP2's policies
    (``param_dtype``, ``reduce_dtype``, the input casts; ``buffer_dtype`` by casting the buffers for
    training while checkpoints keep their dtype), or pass FSDP2's ``MixedPrecisionPolicy``. Without it,
    Lightning's ``FSDPPrecision`` plugin (``plugins=[...]`` or ``precision_plugin=``) gives its FSDP1 config,
    applied the same way, and ``Trainer(precision="bf16-mixed")`` computes in bfloat16 and reduces in
    float32. ``strategy.mixed_precision_config`` tells which, in FSDP1's terms. ``cpu_offload`` is a bool or FSDP1's
    ``CPUOffload``, kept as ``strategy.cpu_offload`` (a ``CPUOffload``); ``strategy.sharding_strategy`` is
    the ``ShardingStrategy`` member.

    ``**kwargs`` are FSDP1's other arguments, kept in ``strategy.kwargs``: ``ignored_modules`` and
    ``ignored_states`` leave those parameters unsharded (``fully_shard(ignored_params=...)``); the rest
    (``limit_all_gathers``, ``forward_prefetch``, ``process_group``, ...) have no FSDP2 counterpart, and a
    value that asks for something FSDP2 does not do is ignored with a warning saying why.

    ``sharding_strategy``: ``"FULL_SHARD"`` (default) and ``"SHARD_GRAD_OP"`` (parameters stay gathered
    from forward to backward) shard over every rank; ``"HYBRID_SHARD"`` and ``"_HYBRID_SHARD_ZERO2"``
    shard within a node and replicate across nodes; ``"NO_SHARD"`` replicates everything, as DDP.
    ``device_mesh=(replicas, shards)`` (or a 2-D ``DeviceMesh``) sets the hybrid layout itself: the
    sizes multiply to the number of processes, e.g. ``(2, 8)`` for two copies, each sharded over 8.

    ``state_dict_type`` chooses the checkpoint format:

    * ``"full"`` (default): the weights and optimizer states are gathered on rank 0 into one
      ordinary ``.ckpt`` file that loads anywhere.
    * ``"sharded"``: every rank writes its own shards, with ``torch.distributed.checkpoint``, into a
      folder named like the file would be (``epoch=0-step=8.ckpt/``: ``__0_0.distcp``,
      ``__1_0.distcp``, ..., ``.metadata``), and rank 0 adds ``meta.pt`` with everything else
      (epoch, step, loops, callbacks, hyperparameters, schedulers). No rank ever holds the full
      state, and the folder appears in one atomic step once complete. ``fit(ckpt_path=<folder>)``,
      ``"last"`` and ``"best"`` resume from it on any number of ranks, and
      ``LightningModule.load_from_checkpoint(<folder>)`` loads it in a single process.

    Either format is read whatever ``state_dict_type`` is set to.

    Example::

        strategy = FSDPStrategy(auto_wrap_policy={nn.TransformerEncoderLayer},
                                activation_checkpointing_policy={nn.TransformerEncoderLayer},
                                state_dict_type="sharded")
        trainer = Trainer(accelerator="cuda", devices=8, strategy=strategy, precision="bf16-mixed",
                          callbacks=[ModelCheckpoint(save_last=True)])
        trainer.fit(model)                     # writes checkpoints/epoch=0-step=100.ckpt/, last.ckpt/
        trainer.fit(model, ckpt_path="last")   # resumes from the folder
    """

    strategy_name = "fsdp"
    setup_optimizers_after_module = True  # FSDP2 replaces the parameters with sharded ones

    @classmethod
    def register_strategies(cls, strategy_registry: Any) -> None:
        """Lightning's FSDP names: ``"fsdp"`` and ``"fsdp_cpu_offload"``."""
        for name, arguments in FSDP_NAMES.items():
            description = f"Fully Sharded Data Parallel {arguments or 'with its defaults'}"
            strategy_registry.register(name, cls, description=description, **arguments)

    def __init__(
        self,
        accelerator: Any = None,
        parallel_devices: list[torch.device] | None = None,
        cluster_environment: Any = None,
        checkpoint_io: Any = None,
        precision_plugin: Any = None,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
        cpu_offload: bool | None = None,
        mixed_precision: Any = None,
        auto_wrap_policy: Any = None,
        activation_checkpointing: Any = None,
        activation_checkpointing_policy: Any = None,
        sharding_strategy: str = "FULL_SHARD",
        state_dict_type: str = "full",
        device_mesh: Any = None,
        **kwargs: Any,
    ) -> None:
        # Ember's own options come through `kwargs`, so that a config saved by the command line reads back on
        # Lightning (every signature argument is written to it)
        preemption_check_interval = ember_option(kwargs, "preemption_check_interval", 10)
        start_method = ember_option(kwargs, "start_method", "popen")
        super().__init__(
            accelerator=accelerator,
            parallel_devices=parallel_devices,
            cluster_environment=cluster_environment,
            checkpoint_io=checkpoint_io,
            precision_plugin=precision_plugin,
            process_group_backend=process_group_backend,
            timeout=timeout,
            start_method=start_method,
            preemption_check_interval=preemption_check_interval,
        )
        sharding = _as_sharding_strategy(sharding_strategy)
        if activation_checkpointing is not None:
            if activation_checkpointing_policy is not None:
                raise ValueError(
                    "You cannot set both `activation_checkpointing` and `activation_checkpointing_policy`. Use the"
                    " latter."
                )
            classes = read_policy(activation_checkpointing, "activation_checkpointing")
            if not isinstance(classes, tuple):  # Lightning's deprecated argument takes layer classes only
                raise TypeError(
                    f"`FSDPStrategy(activation_checkpointing={activation_checkpointing!r})` takes layer classes:"
                    " pass a policy as `activation_checkpointing_policy` instead."
                )
            activation_checkpointing_policy = set(classes)
            rank_zero_deprecation(
                f"`FSDPStrategy(activation_checkpointing={activation_checkpointing})` is deprecated, use"
                f" `FSDPStrategy(activation_checkpointing_policy={activation_checkpointing_policy})` instead."
            )
        _check_mesh_argument(device_mesh)
        if state_dict_type not in ("full", "sharded"):
            raise ValueError(
                f"`FSDPStrategy(state_dict_type={state_dict_type!r})` is not supported: use 'full' (one file, gathered"
                " on rank 0) or 'sharded' (a folder of every rank's shards)."
            )
        _check_mixed_precision(mixed_precision)
        _check_fsdp_kwargs(kwargs)
        self.cpu_offload = _as_cpu_offload(cpu_offload)
        self.mixed_precision = mixed_precision
        # a policy is layer classes (a tuple) or a rule FSDP1 applies while it walks the model (a callable)
        self._wrap_policy = read_policy(auto_wrap_policy, "auto_wrap_policy")
        self._checkpoint_policy = read_policy(activation_checkpointing_policy, "activation_checkpointing_policy")
        self.sharding_strategy = sharding
        self._reshard_after_forward, self._layout = _SHARDING[sharding.name]
        # a shape until `setup_environment` builds the mesh (a config file gives a list)
        self.device_mesh = tuple(device_mesh) if isinstance(device_mesh, list) else device_mesh
        self.state_dict_type = state_dict_type
        # FSDP1's keyword arguments, as Lightning keeps them (with its default `use_orig_params=True`, which is
        # how FSDP2 always works); `ignored_modules` and `ignored_states` are read from here when sharding
        self.kwargs = kwargs
        self.kwargs.setdefault("use_orig_params", True)
        self._wrapper: nn.Module | None = None

    @property
    def mixed_precision_config(self) -> Any:
        """The mixed precision the module trains in, as FSDP1's ``MixedPrecision`` (Lightning's type): the
        ``mixed_precision`` argument when one was given (as it was given), else an ``FSDPPrecision`` plugin's
        config (Lightning's dtypes), else what Ember's precision plugin does. For ``"*-true"`` precisions that
        is the plugin's dtype for parameters, reductions and buffers, as in Lightning. For ``"bf16-mixed"`` and
        ``"16-mixed"`` (``MixedPrecision``) it differs from Lightning's all-low-precision answer: parameters in
        the low dtype, gradients reduced in float32, buffers left as they are (``buffer_dtype=None``). ``None``
        for a plugin of another kind."""
        from ember.precision import FSDPPrecision

        if self.mixed_precision is not None:
            return self.mixed_precision
        if isinstance(self.precision_plugin, FSDPPrecision):
            return self.precision_plugin.mixed_precision_config
        from torch.distributed.fsdp import MixedPrecision

        precision = self._plugin_precision()
        if precision in _MIXED_DTYPES:
            return MixedPrecision(param_dtype=_MIXED_DTYPES[precision], reduce_dtype=torch.float32)
        if precision in _TRUE_DTYPES:
            dtype = _TRUE_DTYPES[precision]
            return MixedPrecision(param_dtype=dtype, reduce_dtype=dtype, buffer_dtype=dtype)
        return None

    def _plugin_precision(self) -> str:
        """The precision plugin's name, e.g. ``"bf16-mixed"``; ``"32-true"`` until the Trainer gives one."""
        plugin = self.precision_plugin
        if plugin is None:
            return "32-true"
        return str(getattr(plugin, "precision", None) or getattr(plugin, "name", None))

    def _precision_plan(self) -> _PrecisionPlan:
        """The FSDP2 mixed-precision policies: FSDP2's ``MixedPrecisionPolicy`` given as ``mixed_precision`` is
        taken as it is; an FSDP1 ``MixedPrecision`` config, the argument's or an ``FSDPPrecision`` plugin's
        (``mixed_precision_config``), is mapped by ``_plan_from_fsdp1``; else a ``"*-mixed"`` plugin of Ember's
        computes in its low dtype and reduces in float32, and any other precision casts nothing."""
        from torch.distributed.fsdp import MixedPrecisionPolicy

        from ember.precision import FSDPPrecision

        if self.mixed_precision is None and not isinstance(self.precision_plugin, FSDPPrecision):
            dtype = _MIXED_DTYPES.get(self._plugin_precision())
            policy = MixedPrecisionPolicy(dtype, torch.float32) if dtype else MixedPrecisionPolicy()
            return _PrecisionPlan(policy, policy)
        config = self.mixed_precision_config
        if isinstance(config, MixedPrecisionPolicy):
            return _PrecisionPlan(config, config)
        return _plan_from_fsdp1(config)

    def _shard_options(self) -> dict[str, Any]:
        """The ``fully_shard`` arguments every sharded layer shares (all but the mixed-precision policy)."""
        from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy

        return {
            "reshard_after_forward": self._reshard_after_forward,
            "offload_policy": CPUOffloadPolicy() if self.cpu_offload.offload_params else OffloadPolicy(),
            "mesh": self.device_mesh,
            "ignored_params": _ignored_parameters(self.kwargs),
        }

    def _configure(self, accelerator: str, devices: list[int], num_nodes: int, layer_sync: Any = None) -> None:
        super()._configure(accelerator, devices, num_nodes, layer_sync)
        self._mesh_shape()  # a mesh that does not fit fails at `Trainer(...)`, before any process starts

    def _mesh_shape(self) -> tuple[int, int] | None:
        """The (replicate, shard) sizes to build; None: fully_shard's flat mesh, or a ``DeviceMesh`` given."""
        mesh = self.device_mesh
        if mesh is not None and not isinstance(mesh, tuple):
            return None  # a DeviceMesh, built by the user
        if mesh is None and self._layout == "flat":
            return None
        if mesh is None:
            per_node = self.world_size // self.num_nodes if self._layout == "hybrid" else 1
            return (self.world_size // per_node, per_node)
        if mesh[0] * mesh[1] != self.world_size:
            raise ValueError(
                f"`FSDPStrategy(device_mesh={mesh})` holds {mesh[0] * mesh[1]} devices, but the run has"
                f" {self.world_size} processes: the sizes must multiply to the number of processes, e.g."
                f" `device_mesh=({self.num_nodes}, {self.world_size // self.num_nodes})` to shard within each node."
            )
        return mesh

    def setup_environment(self) -> None:
        """Join the process group, then build the (replicate, shard) mesh a hybrid layout shards over."""
        super().setup_environment()
        shape = self._mesh_shape()
        if shape is not None:
            from torch.distributed.device_mesh import init_device_mesh

            # all ranks: the mesh creates one process group per row and per column
            self.device_mesh = init_device_mesh(self.root_device.type, shape, mesh_dim_names=_MESH_DIMENSIONS)

    def setup_module(self, module: nn.Module) -> nn.Module:
        """Shard the chosen layers, then the rest; wrap ``training_step`` so the root gathers its parameters."""
        from torch.distributed.fsdp import fully_shard

        module = module.to(self.root_device)
        trainer = getattr(module, "_trainer", None)
        if trainer is None or trainer.state.fn != "fit":
            return module if self._wrapper is None else self._wrapper
        wraps = self._layers_to_shard(module)  # chosen on the layers as given, before any checkpoint wrapper
        _apply_activation_checkpointing(module, self._checkpoint_policy)
        plan = self._precision_plan()
        # FSDP1 keeps the `_module_classes_to_ignore` layers in full precision only under an auto-wrap policy
        full_classes = plan.full_classes if self._wrap_policy is not None else ()
        if plan.buffer_dtype is not None:
            _cast_buffers(module, plan.buffer_dtype, skip=full_classes)
        if full_classes and plan.full.param_dtype is not None:
            # they compute in float32: so do their running statistics, which a "-true" precision (FSDPPrecision's
            # "bf16-true") has converted with the module; checkpoints keep them in that dtype
            for layer in module.modules():
                if isinstance(layer, full_classes):
                    _cast_buffers(layer, plan.full.param_dtype, skip=())
        options = self._shard_options()
        # children before their parents: a layer inside another wrapped layer must be sharded first
        for layer in reversed(list(module.modules())):
            if full_classes and isinstance(layer, full_classes):
                fully_shard(layer, mp_policy=plan.full, **options)
            elif wraps(layer):
                fully_shard(layer, mp_policy=plan.layers, **options)
        root = _ShardedRoot(module)
        wrapper = cast(nn.Module, fully_shard(root, mp_policy=plan.root, **options))  # an nn.Module, sharded
        self._wrapper = wrapper
        return wrapper

    def _layers_to_shard(self, module: nn.Module) -> Callable[[nn.Module], bool]:
        """Whether a layer is sharded on its own: one of the policy's classes, or one its rule chose."""
        policy = self._wrap_policy
        if policy is None:
            return lambda layer: False
        if isinstance(policy, tuple):
            return lambda layer: isinstance(layer, policy)
        ignored = [item for name in _IGNORED_STATES for item in self.kwargs.get(name) or ()]
        chosen = layers_chosen_by_rule(module, policy, ignored)
        return lambda layer: layer in chosen

    def training_step_fn(self, module: Any) -> Callable[..., Any]:
        return functools.partial(self._wrapper, "training_step") if self._wrapper is not None else module.training_step

    def eval_step_fn(self, module: Any, name: str) -> Callable[..., Any]:
        # the parameters stay sharded after fit: calls must pass through the root to gather them
        return functools.partial(self._wrapper, name) if self._wrapper is not None else getattr(module, name)

    # ---- checkpoints (ShardedStrategy): full (gathered on rank 0) or sharded (every rank its own part) --
    def _module_is_sharded(self) -> bool:
        return self._wrapper is not None

    def _saves_shards(self) -> bool:
        return self.state_dict_type == "sharded"

    def _full_checkpoint_option(self) -> str:
        return "state_dict_type='full'"


lightning_style_annotations(FSDPStrategy)  # Lightning's `typing` forms in the signature
