"""``ParallelStrategy``: one process per device, joined in a ``torch.distributed`` process group.

It holds what DDP and FSDP share: the rank layout (from the cluster environment), creating the
process group, the collectives users and callbacks call, the preemption-flag agreement, and what
happens when a rank fails.
"""

from __future__ import annotations

import atexit
import os
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from ember.checkpoint.async_io import find_async_io
from ember.distributed import failure
from ember.distributed.environments import (
    ClusterEnvironment,
    LightningEnvironment,
    detect_environment,
    own_environment,
)
from ember.distributed.strategy import Strategy
from ember.utilities.rank_zero import _set_rank, log, rank_zero_info
from ember.utilities.signature_utils import lightning_style_annotations

default_pg_timeout = timedelta(minutes=30)


def ember_option(kwargs: dict[str, Any], name: str, default: Any) -> Any:
    """An option of Ember's own, taken out of a strategy's ``**kwargs``: kept out of the signature, a
    command-line config that Ember saves holds only Lightning's arguments and reads back on Lightning.
    (A function, because jsonargparse reads a ``kwargs.pop(name, default)`` in ``__init__`` as one more
    argument of the signature.)"""
    return kwargs.pop(name, default)


class ParallelStrategy(Strategy):
    """Base of the multi-process strategies; use :class:`DDPStrategy` or :class:`FSDPStrategy`.

    Example::

        value = trainer.strategy.reduce(torch.tensor(1.0), reduce_op="sum")  # == world size
    """

    strategy_name = "parallel"

    def __init__(
        self,
        accelerator: Any = None,
        parallel_devices: list[torch.device] | None = None,
        cluster_environment: ClusterEnvironment | None = None,
        checkpoint_io: Any = None,
        precision_plugin: Any = None,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
        start_method: str = "popen",
        preemption_check_interval: int = 10,
    ) -> None:
        super().__init__(accelerator, checkpoint_io, precision_plugin)
        self._device_type: str | None = None
        self.parallel_devices = parallel_devices
        self.cluster_environment = (
            own_environment(cluster_environment) if cluster_environment is not None else detect_environment()
        )
        self._process_group_backend = process_group_backend
        self._timeout = timeout if timeout is not None else default_pg_timeout
        self._start_method = start_method
        self._num_nodes = 1
        self._layer_sync: Any = None  # a LayerSync (``TorchSyncBatchNorm`` for ``sync_batchnorm=True``)
        if not isinstance(preemption_check_interval, int) or preemption_check_interval < 1:
            raise ValueError(f"`preemption_check_interval` must be an int >= 1, got {preemption_check_interval!r}.")
        self._stop_every = preemption_check_interval
        self._stop_last_seen = -1
        self._launcher: Any = None
        self._configured = False
        self._failed = False  # this rank's run raised: collectives stay local from then on

    # ---- configuration (filled in by create_distributed_strategy) ----------------------------
    def _configure(self, accelerator: str, devices: list[int], num_nodes: int, layer_sync: Any = None) -> None:
        from ember.distributed.launch import make_launcher

        _check_start_method(self._start_method)
        self._device_type = accelerator
        if self.parallel_devices is None:
            if self._device_type == "cuda":
                self.parallel_devices = [torch.device("cuda", i) for i in devices]
            else:
                self.parallel_devices = [torch.device("cpu")] * len(devices)
        self._num_nodes = num_nodes
        from ember.distributed.layer_sync import TorchSyncBatchNorm

        if isinstance(layer_sync, TorchSyncBatchNorm) and self._device_type != "cuda":
            from ember.utilities.exceptions import MisconfigurationException

            raise MisconfigurationException(
                "`Trainer(sync_batchnorm=True)` needs CUDA devices: torch's SyncBatchNorm runs on GPUs only. Remove"
                " `sync_batchnorm` to train on CPUs (each rank then keeps its own BatchNorm statistics)."
            )
        self._layer_sync = layer_sync
        self.cluster_environment.validate_settings(len(self.parallel_devices), num_nodes)
        self.set_world_ranks()
        self._launcher = make_launcher(self)
        self._configured = True

    @property
    def launcher(self) -> Any:
        return self._launcher

    @property
    def process_group_backend(self) -> str | None:
        """The backend given, else, once the process group is set up, the one chosen; None before."""
        return self._process_group_backend

    def _get_process_group_backend(self) -> str:
        """The backend given, else NCCL on CUDA devices, gloo on the others."""
        if self._process_group_backend is not None:
            return self._process_group_backend
        return "nccl" if self._device_type == "cuda" and dist.is_nccl_available() else "gloo"

    @property
    def timeout(self) -> timedelta:
        return self._timeout

    @property
    def sync_batchnorm(self) -> bool:
        from ember.distributed.layer_sync import TorchSyncBatchNorm

        return isinstance(self._layer_sync, TorchSyncBatchNorm)

    @sync_batchnorm.setter
    def sync_batchnorm(self, value: bool) -> None:
        from ember.distributed.layer_sync import TorchSyncBatchNorm

        self._layer_sync = TorchSyncBatchNorm() if value else None

    @property
    def layer_sync(self) -> Any:
        """The ``LayerSync`` plugin a multi-process ``fit`` applies to the module, or None."""
        return self._layer_sync

    # ---- topology ------------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        return self._num_nodes

    @num_nodes.setter
    def num_nodes(self, value: int) -> None:
        self._num_nodes = value

    @property
    def num_processes(self) -> int:
        return len(self.parallel_devices) if self.parallel_devices else 1

    @property
    def parallel_devices_ids(self) -> list[int]:
        return [d.index or 0 for d in self.parallel_devices or []]

    @property
    def global_rank(self) -> int:
        env = self.cluster_environment
        if _not_launched_yet(env):  # the Trainer's numbers, whatever RANK an earlier job left, as in Lightning
            return self._rank_from_arguments()
        return env.global_rank()

    def _rank_from_arguments(self) -> int:
        return self.node_rank * self.num_processes + self.local_rank

    @property
    def local_rank(self) -> int:
        return self.cluster_environment.local_rank()

    @property
    def node_rank(self) -> int:
        return self.cluster_environment.node_rank()

    @property
    def world_size(self) -> int:
        env = self.cluster_environment
        if _not_launched_yet(env):
            return self.num_nodes * self.num_processes
        return env.world_size()

    @property
    def root_device(self) -> torch.device:
        devices = self.parallel_devices or [torch.device("cpu")]
        return devices[self.local_rank % len(devices)]

    _in_processes = True

    @property
    def distributed_sampler_kwargs(self) -> dict[str, int]:
        return {"num_replicas": self.world_size, "rank": self.global_rank}

    @property
    def supports_inference_mode(self) -> bool:
        # gloo collectives on inference tensors fail ("Inplace update to inference tensor outside InferenceMode")
        return self._get_process_group_backend() != "gloo"

    # ---- lifecycle -----------------------------------------------------------------------
    def setup_environment(self) -> None:
        """Join (or create) the process group; every rank must reach this."""
        if self.root_device.type == "cuda":
            torch.cuda.set_device(self.root_device)
        self.setup_distributed()

    def set_world_ranks(self) -> None:
        """Tell the cluster environment this process's rank and the world size, as Lightning's strategies
        do (environments that read them from their launcher ignore it), and ``rank_zero_only`` this
        process's rank. Only these strategies set it: a one-device Trainer built in a rank's process
        leaves it at the rank the process started with."""
        self.cluster_environment.set_global_rank(self._rank_from_arguments())
        self.cluster_environment.set_world_size(self.num_nodes * self.num_processes)
        _set_rank(self.global_rank)

    def setup_distributed(self) -> None:
        """Join (or create) the process group at the cluster environment's address (Lightning's name).

        First, as Lightning's multi-process strategies do, every rank seeds again from ``PL_GLOBAL_SEED``
        (set by ``seed_everything``), so training starts from the seeded random state on every rank
        whatever the program drew before ``fit``; without a seed nothing changes."""
        from ember.utilities.seed import reset_seed

        reset_seed()
        self.set_world_ranks()
        self._process_group_backend = self._get_process_group_backend()
        env = self.cluster_environment
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        failure.install(self.global_rank)
        self._failed = False
        if dist.is_available() and not dist.is_initialized():
            # all ranks: rendezvous at MASTER_ADDR:MASTER_PORT
            log.info(
                f"Initializing distributed: GLOBAL_RANK: {self.global_rank},"
                f" MEMBER: {self.global_rank + 1}/{self.world_size}"
            )
            # on a GPU the group is bound to this rank's device, as Lightning binds it: NCCL sets up at once, and
            # collectives and barriers know their device rather than guessing it from the current one
            dist.init_process_group(
                self.process_group_backend,
                rank=self.global_rank,
                world_size=self.world_size,
                timeout=self._timeout,
                device_id=self.root_device if self.root_device.type == "cuda" else None,
            )
            rank_zero_info(
                f"{'-' * 100}\ndistributed_backend={self.process_group_backend}\n"
                f"All distributed processes registered. Starting with {self.world_size} processes\n{'-' * 100}\n"
            )
            # The group is kept for later fit/validate/test calls, and destroyed before the
            # interpreter shuts down (see `_destroy_process_group`).
            atexit.register(_destroy_process_group)

    def on_exception(self, exception: BaseException) -> None:
        """The first rank to fail is the one whose traceback the user sees; the others end quietly.

        From here on this rank's collectives return its own values: the other ranks are failing or
        being stopped, and an `on_exception` checkpoint must not wait for them.
        """
        self._failed = True
        if self._launcher is not None:
            # a rank that the system killed failed first, though this rank noticed it only now
            self._launcher.record_killed_ranks(exception)
        failure.on_exception(exception, self.global_rank)
        if self._launcher is not None:
            self._launcher.on_exception(exception)

    # ---- collectives -----------------------------------------------------------------------
    def _active(self) -> bool:
        return dist.is_initialized() and not self._failed

    def _collective(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (RuntimeError, dist.DistError) as error:
            raise failure.collective_error(name, self.global_rank, self.world_size, self._timeout, error) from error

    def barrier(self, name: str | None = None) -> None:
        """All ranks wait here for each other."""
        if not self._active():
            return
        label = f"barrier({name!r})" if name else "barrier()"
        if self._get_process_group_backend() == "nccl":
            self._collective(label, dist.barrier, device_ids=[self.root_device.index])
        else:
            self._collective(label, dist.barrier)

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """``obj`` from rank ``src`` on every rank (any picklable object)."""
        if not self._active():
            return obj
        box = [obj]
        self._collective(f"broadcast(src={src})", dist.broadcast_object_list, box, src=src)
        return box[0]

    def reduce(self, tensor: Tensor | Any, group: Any | None = None, reduce_op: Any = "mean") -> Tensor | Any:
        """Reduce ``tensor`` over all ranks, in place, and return it: ``"mean"`` (``"avg"``, the default),
        ``"sum"``, ``"max"``, ``"min"``, ``"product"`` or a ``torch.distributed.ReduceOp``.

        As in Lightning, the mean of an integer tensor stays an integer (truncated), and only ``"mean"`` is
        taken in lower case (the other names are ``ReduceOp``'s, in any case).
        """
        if not isinstance(tensor, Tensor) or not self._active():
            return tensor
        op, divide = _reduce_op(reduce_op if reduce_op is not None else "mean", dist.get_backend(group))
        self._collective("all_reduce", dist.all_reduce, tensor, op=op, group=group)
        if not divide:
            return tensor
        world_size = dist.get_world_size(group)
        if tensor.is_floating_point():
            return tensor.div_(world_size)
        return tensor.copy_(tensor / world_size)  # truncated back into the integer dtype

    def accumulated_gradients(self, all_ranks: bool) -> dict[str, Tensor] | None:
        """The window's gradients averaged over the ranks, as the all-reduce that ends the window averages them
        (the gradients of a window under ``no_sync`` are each rank's own until then). Every rank resumes with the
        average, so the step that ends the window averages the same sum: the uninterrupted run's step, up to the
        order in which floating-point numbers are added. ``None`` if only this rank calls it, or if the ranks'
        parameters with a gradient differ."""
        if not self._active():
            return super().accumulated_gradients(all_ranks)
        if not all_ranks:
            return None
        named = [(name, p.grad) for name, p in self.lightning_module.named_parameters() if p.requires_grad]
        present = torch.tensor([grad is not None for _, grad in named], dtype=torch.int32, device=self.root_device)
        fewest = self.reduce(present.clone(), reduce_op="min")
        if not torch.equal(fewest, present):  # (a parameter unused on some rank only)
            return None
        return self._averaged([(name, grad.detach()) for name, grad in named if grad is not None])

    def _averaged(self, gradients: list[tuple[str, Tensor]]) -> dict[str, Tensor]:
        """Each gradient averaged over the ranks, on the CPU, in few all-reduces: the dense ones of a dtype and
        device packed into buckets of up to 64 MB (a model of thousands of parameter tensors would otherwise
        wait on thousands of collectives), a sparse one alone."""
        averaged: dict[str, Tensor] = {}
        groups: dict[tuple[torch.dtype, torch.device], list[tuple[str, Tensor]]] = {}
        for name, grad in gradients:
            if grad.is_sparse:
                averaged[name] = self.reduce(grad.clone(), reduce_op="mean").cpu()
            else:
                groups.setdefault((grad.dtype, grad.device), []).append((name, grad))
        for group in groups.values():
            for bucket in _buckets(group, _GRADIENT_BUCKET_BYTES):
                flat = self.reduce(torch.cat([grad.reshape(-1) for _, grad in bucket]), reduce_op="mean").cpu()
                parts = flat.split([grad.numel() for _, grad in bucket])
                for (name, grad), part in zip(bucket, parts):
                    averaged[name] = part.view(grad.shape).clone()  # its own storage: a checkpoint entry alone
        return {name: averaged[name] for name, _ in gradients}  # in the parameters' order

    def all_gather(self, tensor: Tensor, group: Any | None = None, sync_grads: bool = False) -> Tensor:
        """Stack ``tensor`` from every rank along a new first dimension (same shape on every rank)."""
        if not self._active():
            return tensor
        tensor = tensor.contiguous()
        if sync_grads:
            from torch.distributed.nn.functional import all_gather

            parts = self._collective("all_gather", all_gather, tensor, group=group or dist.group.WORLD)
        else:
            parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
            self._collective("all_gather", dist.all_gather, parts, tensor, group=group)
        return torch.stack(parts)

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self._active():
            return [obj]
        out: list[Any] = [None] * dist.get_world_size()
        self._collective("all_gather_object", dist.all_gather_object, out, obj)
        return out

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        """True on every rank if all ranks (or, with ``all=False``, any rank) decided True."""
        if not self._active():
            return decision
        votes = torch.tensor(int(bool(decision)), device=self.root_device)
        self._collective("all_reduce(reduce_boolean_decision)", dist.all_reduce, votes, op=dist.ReduceOp.SUM)
        # host sync: the decision steers Python control flow on every rank
        count = int(votes.item())
        return count == self.world_size if all else count > 0

    @property
    def sync_fn(self) -> Callable[[Tensor, str, Any], Tensor]:
        return lambda tensor, reduce_op, group: self.reduce(tensor, group=group, reduce_op=reduce_op)

    def agree_on_stop(self, flag: bool | int, total_batches: int) -> int:
        """Whether any rank received a preemption signal, agreed every ``preemption_check_interval`` batches.

        ``flag`` may be the signal's number: the result is the largest value any rank passed
        (truthy when some rank wants to stop).

        The loop asks after every batch and once more at the end of each epoch (with the same batch
        count): only those calls run a collective, so a step costs nothing extra. Every rank sees
        the same counts, so all of them take part in the same collectives.
        """
        epoch_end = total_batches == self._stop_last_seen
        self._stop_last_seen = total_batches
        if not epoch_end and total_batches % self._stop_every != 0:
            return 0
        if not self._active():
            return flag
        raised = torch.tensor(int(flag), device=self.root_device)
        self._collective("all_reduce(preemption flag)", dist.all_reduce, raised, op=dist.ReduceOp.MAX)
        # host sync: once every `preemption_check_interval` batches, not every step
        return int(raised.item())

    def teardown(self) -> None:
        """Tear the cluster environment down, then wait for the checkpoint writes (rank 0), then for every rank:
        ``fit`` returns once the files are there."""
        self._model = self._lightning_module
        try:
            environment_teardown = getattr(self.cluster_environment, "teardown", None)
            if environment_teardown is not None:  # (one written against Fabric's interface may have none)
                environment_teardown()
            super().teardown()
        finally:
            if find_async_io(self._checkpoint_io) is not None:
                self.barrier("teardown: checkpoint writes")  # all ranks: barrier (local once a rank failed)


_EXIT_GRACE_SECONDS = 0.1


def _check_start_method(start_method: str) -> None:
    """``"popen"`` (re-run the script) or a start method ``torch.multiprocessing`` has on this platform."""
    import torch.multiprocessing as mp

    methods = mp.get_all_start_methods()
    if start_method != "popen" and start_method not in methods:
        raise ValueError(  # Lightning's words, said when the Trainer takes the strategy
            f"The start method '{start_method}' is not available on this platform. Available methods are:"
            f" {', '.join(methods)}. A strategy also takes 'popen', its default (it re-runs the script)."
        )


def _reduce_op(reduce_op: Any, backend: str) -> tuple[Any, bool]:
    """The ``ReduceOp`` for ``reduce_op`` and whether the sum is then divided by the world size (a mean
    over gloo, which has no ``AVG``), read as Lightning reads it."""
    if not isinstance(reduce_op, str):
        return reduce_op, False
    name = "avg" if reduce_op == "mean" else reduce_op
    if name.lower() == "avg" and backend == "gloo":
        return dist.ReduceOp.SUM, True
    try:
        return getattr(dist.ReduceOp, name.upper()), False
    except AttributeError as error:
        raise AttributeError(
            f"{error}: `reduce_op={reduce_op!r}` names no reduction. Use 'mean' (lower case) or 'avg', 'sum',"
            " 'max', 'min', 'product', or a `torch.distributed.ReduceOp`."
        ) from None


def _destroy_process_group() -> None:
    """At exit: destroy the default group, then give the backend's threads a moment with the GIL.

    A gloo worker thread that has just finished a collective drops the last reference to the
    collective's tensors itself. They are Python tensors, so that needs the GIL. If the
    interpreter has begun finalizing by then, Python ends the thread in the middle of a C++
    destructor and the process aborts with "terminate called without an active exception"
    (SIGABRT), although all its work was done. Sleeping releases the GIL, so such a thread
    finishes first.
    """
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # shutting down: nothing useful left to report
            pass
        time.sleep(_EXIT_GRACE_SECONDS)


lightning_style_annotations(ParallelStrategy)  # Lightning's `typing` forms in the signature


_GRADIENT_BUCKET_BYTES = 64 * 2**20


def _buckets(tensors: list[tuple[str, Tensor]], limit: int) -> Iterator[list[tuple[str, Tensor]]]:
    """``tensors`` in order, in runs of at most ``limit`` bytes (a larger tensor alone)."""
    bucket: list[tuple[str, Tensor]] = []
    size = 0
    for item in tensors:
        nbytes = item[1].numel() * item[1].element_size()
        if bucket and size + nbytes > limit:
            yield bucket
            bucket, size = [], 0
        bucket.append(item)
        size += nbytes
    if bucket:
        yield bucket


def _not_launched_yet(env: Any) -> bool:
    """A process of Ember's own launching that has not started its job (no LOCAL_RANK yet): its rank and world
    size are the Trainer's, which the launch then hands to every process."""
    return isinstance(env, LightningEnvironment) and not env.creates_processes_externally
