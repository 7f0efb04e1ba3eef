"""``ShardedStrategy``: checkpoints of a module whose parameters are DTensors spread over the ranks.

FSDP2 (``fully_shard``) and tensor parallelism (``parallelize_module``) both leave each rank with
slices of the weights. Saving and loading such a module is the same whichever of them sliced it:

* a full checkpoint gathers the weights and optimizer states on rank 0 into one ordinary file
  (every rank takes part in the gathering; rank 0 writes);
* a sharded checkpoint is a folder in which every rank writes its own slices with
  ``torch.distributed.checkpoint`` (see ``ember.checkpoint.sharded``);
* loading either one copies each rank's slice out of the full weights, and reads the optimizer
  state into the existing (sliced) optimizer.

``FSDPStrategy`` and ``ModelParallelStrategy`` derive from it; each says whether its module is
sliced right now and which format the user chose.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ember.distributed.parallel import ParallelStrategy
from ember.utilities.rank_zero import rank_zero_warn


def to_device_materialized(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` on ``device``, with the parameters and buffers it was built with on the meta device (built
    ``with torch.device("meta")``, then sharded, so that no rank ever held the whole model) made real: each
    layer that owns such tensors gets fresh memory and its ``reset_parameters()`` initialises it, as Lightning's
    sharded strategies do. A layer with no ``reset_parameters()`` keeps uninitialised memory, and a warning names
    it. Layers built on a real device keep their values (Lightning empties the whole module)."""
    on_meta = [
        layer
        for layer in module.modules()
        if any(tensor.is_meta for tensor in (*layer.parameters(recurse=False), *layer.buffers(recurse=False)))
    ]
    for layer in on_meta:  # all of them first: a layer's `reset_parameters` may read or set its children's
        layer.to_empty(device=device, recurse=False)
    uninitialised = set()
    with torch.no_grad():
        for layer in on_meta:  # then, parents before children, as `modules()` lists them
            reset = getattr(layer, "reset_parameters", None)
            if callable(reset):
                reset()
            else:
                uninitialised.add(type(layer).__name__)
    if uninitialised:
        rank_zero_warn(
            "Parameter initialization incomplete. The following modules have parameters or buffers with uninitialized"
            " memory because they don't define a `reset_parameters()` method for re-initialization:"
            f" {', '.join(sorted(uninitialised))}. Give each a `reset_parameters()` that fills its tensors, or build"
            " them on a real device."
        )
    return module.to(device)


class ShardedStrategy(ParallelStrategy):
    """Full and sharded checkpoints of a module with DTensor parameters (the base of FSDP and model parallel)."""

    # the DCP key of the model's shards in a sharded folder (Lightning's: "model" for FSDP, "state_dict" for
    # model parallel); either one is read back
    sharded_model_key = "model"

    def model_to_device(self) -> None:
        """The module on this rank's device, its tensors built on the meta device made real (after
        ``configure_model`` sharded them, each rank makes its own slices only)."""
        to_device_materialized(self._lightning_module, self.root_device)

    def _module_is_sharded(self) -> bool:
        """Whether the module's parameters are sliced over the ranks right now."""
        raise NotImplementedError

    def _saves_shards(self) -> bool:
        """Whether checkpoints are written as sharded folders (else one full file)."""
        raise NotImplementedError

    def _full_checkpoint_option(self) -> str:
        """The constructor argument that selects full checkpoints, for error messages."""
        raise NotImplementedError

    # ---- saving --------------------------------------------------------------------------------
    def _options(self, full: bool) -> Any:
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=full, cpu_offload=full)

    def _module_state_dict(self, full: bool) -> dict[str, Any]:
        if not self._module_is_sharded():
            return self._lightning_module.state_dict()
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(self._lightning_module, options=self._options(full))  # all ranks

    def lightning_module_state_dict(self) -> dict[str, Any]:
        """The weights for a checkpoint: gathered on rank 0 (full) or this rank's slices (sharded)."""
        return self._module_state_dict(full=not self._saves_shards())

    def full_module_state_dict(self) -> dict[str, Any]:
        return self._module_state_dict(full=True)

    @property
    def keeps_window_gradients(self) -> bool:
        return False

    def accumulated_gradients(self, all_ranks: bool) -> dict[str, Tensor] | None:
        """``None``: sharded gradients are not kept (a checkpoint written inside an accumulation window warns
        when it is resumed)."""
        return None

    def optimizer_state(self, optimizer: Optimizer) -> dict[str, Any]:
        """The optimizer's state for a checkpoint: gathered on rank 0 (full) or this rank's slices (sharded)."""
        if not self._module_is_sharded():
            return optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        # all ranks
        return get_optimizer_state_dict(
            self._lightning_module, optimizer, options=self._options(not self._saves_shards())
        )

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any = None) -> None:
        """Full: rank 0 writes one file. Sharded: every rank writes its slices into the folder ``filepath``."""
        if not self._saves_shards():
            return super().save_checkpoint(checkpoint, filepath, storage_options=storage_options)
        name = type(self).__name__
        if storage_options is not None:
            raise TypeError(
                f"`{name}.save_checkpoint(..., storage_options=...)` is not supported for sharded checkpoints: they"
                f" are written to local folders. Drop `storage_options`, or use `{name}({self._full_checkpoint_option()})`."
            )
        if self.world_size > 1 and not self._active():
            # a rank failed: the others are stopping, and a sharded save needs every rank's part
            rank_zero_warn(
                f"The sharded checkpoint {filepath} was not saved: a rank failed, and every rank must write its shards."
                " The previous checkpoints are kept."
            )
            return None
        from ember.checkpoint import sharded as sharded_checkpoint

        sharded_checkpoint.save(self, checkpoint, filepath, model_key=self.sharded_model_key)

    # ---- loading -------------------------------------------------------------------------------
    def _load_module_weights(self, state_dict: dict[str, Any], strict: bool = True) -> Any:
        """Full weights into the module; once it is sliced, each rank keeps its own slice."""
        if not self._module_is_sharded():
            return super()._load_module_weights(state_dict, strict=strict)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        # all ranks: every rank holds the full weights and copies its own slice out of them
        options = StateDictOptions(full_state_dict=True, strict=strict)
        return set_model_state_dict(self._lightning_module, state_dict, options=options)

    def _load_optimizer_state(self, optimizer: Optimizer, state: dict[str, Any]) -> None:
        if not self._module_is_sharded() or not isinstance(state, dict):
            # not sliced, or a sharded checkpoint's state (read straight into each rank's slices)
            return super()._load_optimizer_state(optimizer, state)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        if not state.get("state"):
            # a stateless optimizer (plain SGD): only the hyperparameters to restore; torch's loader
            # cannot place an empty state on a device
            for group, saved in zip(optimizer.param_groups, state.get("param_groups", [])):
                group.update({k: v for k, v in saved.items() if k != "params"})
            return None
        set_optimizer_state_dict(
            self._lightning_module, optimizer, state, options=StateDictOptions(full_state_dict=True)
        )
