"""``ModelSummary``: prints a table of the module's layers when fit starts.

The table logic (:func:`summarize`, :class:`Summary`, :class:`LayerSummary`) lives here too, so
``RichModelSummary`` and users can build the same data without a trainer::

      | Name | Type       | Params | Mode  | FLOPs | In sizes  | Out sizes
    ----------------------------------------------------------------------------
    0 | net  | Sequential | 132 K  | train | 2.6 M | [10, 256] | [10, 512]
    ----------------------------------------------------------------------------
    132 K     Trainable params
    0         Non-trainable params
    132 K     Total params
    0.530     Total estimated model params size (MB)
    3         Modules in train mode
    0         Modules in eval mode
    2.6 M     Total Flops
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ember.callbacks.callback import Callback
from ember.utilities.rank_zero import rank_zero_warn
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from ember.core.module import LightningModule
    from ember.trainer.trainer import Trainer

log = logging.getLogger(__name__)

PARAMETER_NUM_UNITS = [" ", "K", "M", "B", "T"]
UNKNOWN_SIZE = "?"
LEFTOVER_PARAMS_NAME = "other params"
NOT_APPLICABLE = "n/a"
_PRECISION_TO_BITS = {
    "64": 64, "32": 32, "16": 16, "bf16": 16,
    "16-true": 16, "bf16-true": 16, "32-true": 32, "64-true": 64,
}  # fmt: skip


class LayerSummary:
    """Type, parameter count, mode, and (after a forward pass) input/output shapes of one layer.

    Example::

        >>> layer = LayerSummary(torch.nn.Conv2d(3, 8, 3))
        >>> layer.num_parameters, layer.layer_type
        (224, 'Conv2d')
    """

    def __init__(self, module: nn.Module) -> None:
        self._module = module
        self._in_size: str | list | None = None
        self._out_size: str | list | None = None
        self._hook_handle = None
        if not isinstance(module, torch.jit.ScriptModule):
            self._hook_handle = module.register_forward_hook(self._record_shapes, with_kwargs=True)

    def _record_shapes(self, _: nn.Module, args: Any, kwargs: Any, out: Any) -> None:
        inp = (*args, *kwargs.values()) if kwargs else args
        if len(inp) == 1:
            inp = inp[0]
        self._in_size = parse_batch_shape(inp)
        self._out_size = parse_batch_shape(out)
        # a module reused in one forward reports its first call only
        self.detach_hook()

    def __del__(self) -> None:
        self.detach_hook()

    def detach_hook(self) -> None:
        """Remove the shape-recording hook (once the example forward pass is done)."""
        if self._hook_handle is not None:
            self._hook_handle.remove()
            self._hook_handle = None

    @property
    def in_size(self) -> str | list:
        return self._in_size or UNKNOWN_SIZE

    @property
    def out_size(self) -> str | list:
        return self._out_size or UNKNOWN_SIZE

    @property
    def layer_type(self) -> str:
        return self._module.__class__.__name__

    @property
    def num_parameters(self) -> int:
        return _count(self._module.parameters())

    @property
    def training(self) -> bool:
        return self._module.training


class Summary:
    """The layers of ``model`` down to ``max_depth`` (``-1``: all, ``0``: none), with totals.

    When the model has an ``example_input_array``, it is run once (in eval mode, without grad) to
    record input/output shapes and FLOPs. ``str(summary)`` is the table ``ModelSummary`` prints.

    Example::

        print(Summary(model, max_depth=2))
    """

    def __init__(self, model: nn.Module, max_depth: int = 1) -> None:
        if not isinstance(max_depth, int) or max_depth < -1:
            raise ValueError(f"`max_depth` can be -1, 0 or > 0, got {max_depth}.")
        self._model = model
        self._max_depth = max_depth
        self._flop_counts: dict[str, dict[Any, int]] = {}
        self._total_flops = 0
        self._layer_summary = self.summarize()
        trainer = getattr(model, "_trainer", None)
        precision = str(trainer.precision) if trainer is not None else "32-true"
        if trainer is not None and precision not in _PRECISION_TO_BITS:
            rank_zero_warn(
                f"Precision {precision} is not supported by the model summary. "
                " Estimated model size in MB will not be accurate. Using 32 bits instead.",
                category=UserWarning,
            )
        self._precision_megabytes = (_PRECISION_TO_BITS.get(precision, 32) / 8.0) * 1e-6

    @property
    def named_modules(self) -> list[tuple[str, nn.Module]]:
        if self._max_depth == 0:
            return []
        if self._max_depth == 1:
            return list(self._model.named_children())
        return list(self._model.named_modules())[1:]  # the root is the model itself

    @property
    def layer_names(self) -> list[str]:
        return list(self._layer_summary)

    @property
    def layer_types(self) -> list[str]:
        return [layer.layer_type for layer in self._layer_summary.values()]

    @property
    def in_sizes(self) -> list:
        return [layer.in_size for layer in self._layer_summary.values()]

    @property
    def out_sizes(self) -> list:
        return [layer.out_size for layer in self._layer_summary.values()]

    @property
    def param_nums(self) -> list[int]:
        return [layer.num_parameters for layer in self._layer_summary.values()]

    @property
    def training_modes(self) -> list[bool]:
        return [layer.training for layer in self._layer_summary.values()]

    @property
    def total_training_modes(self) -> dict[str, int]:
        modes = [module.training for module in self._model.modules()][1:]  # without the root
        return {"train": modes.count(True), "eval": modes.count(False)}

    @property
    def total_parameters(self) -> int:
        return _count(self._model.parameters())

    @property
    def trainable_parameters(self) -> int:
        return _count(p for p in self._model.parameters() if p.requires_grad)

    @property
    def total_layer_params(self) -> int:
        return sum(self.param_nums)

    @property
    def model_size(self) -> float:
        return self.total_parameters * self._precision_megabytes

    @property
    def total_flops(self) -> int:
        return self._total_flops

    @property
    def flop_counts(self) -> dict[str, dict[Any, int]]:
        prefix = type(self._model).__name__
        return {name: self._flop_counts.get(f"{prefix}.{name}", {}) for name in self.layer_names}

    def summarize(self) -> OrderedDict[str, LayerSummary]:
        """Each layer's ``LayerSummary`` by name, down to ``max_depth``; runs the example input again if there is one."""
        summary = OrderedDict((name, LayerSummary(module)) for name, module in self.named_modules)
        if getattr(self._model, "example_input_array", None) is not None:
            self._forward_example_input()
        for layer in summary.values():
            layer.detach_hook()
        if self._max_depth >= 1:
            for name in [name for name in summary if name.count(".") >= self._max_depth]:
                del summary[name]
        return summary

    def _forward_example_input(self) -> None:
        # lazy: only a summary with an example input counts FLOPs
        from torch.utils.flop_counter import FlopCounterMode

        model = self._model
        input_ = _prepare_example_input(model)
        modes = {module: module.training for module in model.modules()}
        model.eval()
        counter = FlopCounterMode(display=False, depth=self._max_depth + 1)
        with torch.no_grad(), _forward_context(model), counter:
            if isinstance(input_, (list, tuple)):
                model(*input_)
            elif isinstance(input_, dict):
                model(**input_)
            else:
                model(input_)
        for module, training in modes.items():
            module.training = training
        self._flop_counts = counter.get_flop_counts()
        self._total_flops = counter.get_total_flops()

    def _get_summary_data(self) -> list[tuple[str, list[str]]]:
        """The table's columns as ``(header, cells)`` pairs."""
        arrays: list[tuple[str, list[str]]] = [
            (" ", [str(i) for i in range(len(self._layer_summary))]),
            ("Name", self.layer_names),
            ("Type", self.layer_types),
            ("Params", [get_human_readable_count(n) for n in self.param_nums]),
            ("Mode", ["train" if mode else "eval" for mode in self.training_modes]),
            ("FLOPs", [get_human_readable_count(sum(c.values())) for c in self.flop_counts.values()]),
        ]
        if getattr(self._model, "example_input_array", None) is not None:
            arrays.append(("In sizes", [str(x) for x in self.in_sizes]))
            arrays.append(("Out sizes", [str(x) for x in self.out_sizes]))
        leftover = self.total_parameters - self.total_layer_params
        if leftover > 0:
            # parameters registered on the root module itself, not in any listed layer
            columns = dict(arrays)
            columns[" "].append(" ")
            columns["Name"].append(LEFTOVER_PARAMS_NAME)
            columns["Params"].append(get_human_readable_count(leftover))
            for header in ("Type", "Mode", "FLOPs", "In sizes", "Out sizes"):
                if header in columns:
                    columns[header].append(NOT_APPLICABLE)
        return arrays

    def __str__(self) -> str:
        return _format_summary_table(
            self.total_parameters,
            self.trainable_parameters,
            self.model_size,
            self.total_training_modes,
            self.total_flops,
            *self._get_summary_data(),
        )

    def __repr__(self) -> str:
        return str(self)


def summarize(lightning_module: nn.Module, max_depth: int = 1) -> Summary:
    """Summarize ``lightning_module`` down to ``max_depth`` levels of nesting (``0`` turns the table off).

    Example::

        print(summarize(model, max_depth=-1))
    """
    return Summary(lightning_module, max_depth=max_depth)


def _prepare_example_input(model: Any) -> Any:
    input_ = model.example_input_array
    if not hasattr(model, "_apply_batch_transfer_handler"):
        return input_
    # the same path a batch takes (the datamodule's batch hooks where it overrides them), so the example reaches
    # the model's device in the model's format
    return model._apply_batch_transfer_handler(model._on_before_batch_transfer(input_))


def _forward_context(model: nn.Module) -> Any:
    """The context the example input goes through the model in: the precision plugin's, as a step runs in it
    (autocast, or the default dtype of a ``*-true`` precision), as Lightning's summary does."""
    trainer = getattr(model, "_trainer", None)
    plugin = getattr(getattr(trainer, "strategy", None), "precision_plugin", None)
    return plugin.forward_context() if plugin is not None else contextlib.nullcontext()


def parse_batch_shape(batch: Any) -> str | list:
    """The shape of a tensor as a list, nested for lists/tuples of tensors, ``"?"`` for anything else."""
    if hasattr(batch, "shape"):
        return list(batch.shape)
    if isinstance(batch, (list, tuple)):
        return [parse_batch_shape(el) for el in batch]
    return UNKNOWN_SIZE


_warned_uninitialized = False  # the warning below is given once per process, as in Lightning


def _count(parameters: Any) -> int:
    global _warned_uninitialized
    total = 0
    for p in parameters:
        if isinstance(p, nn.parameter.UninitializedParameter):
            if not _warned_uninitialized:
                _warned_uninitialized = True
                rank_zero_warn(
                    "The total number of parameters detected may be inaccurate because the model contains an"
                    " instance of `UninitializedParameter`. To get an accurate number, set `self.example_input_array`"
                    " in your LightningModule."
                )
            continue
        total += p.numel()
    return total


def _format_summary_table(
    total_parameters: int,
    trainable_parameters: int,
    model_size: float,
    total_training_modes: dict[str, int],
    total_flops: int,
    *cols: tuple[str, list[str]],
) -> str:
    """Lay the columns out as a text table followed by the totals lines."""
    n_rows = len(cols[0][1])
    widths = [max([len(header), *(len(str(cell)) for cell in cells)]) for header, cells in cols]
    total_width = sum(widths) + 3 * (1 + len(cols))
    divider = "-" * total_width
    lines = [" | ".join(f"{header:<{w}}" for (header, _), w in zip(cols, widths)), divider]
    for i in range(n_rows):
        lines.append(" | ".join(f"{cells[i]!s:<{w}}" for (_, cells), w in zip(cols, widths)))
    lines.append(divider)
    totals = [
        (get_human_readable_count(trainable_parameters), "Trainable params"),
        (get_human_readable_count(total_parameters - trainable_parameters), "Non-trainable params"),
        (get_human_readable_count(total_parameters), "Total params"),
        (get_formatted_model_size(model_size), "Total estimated model params size (MB)"),
        (total_training_modes["train"], "Modules in train mode"),
        (total_training_modes["eval"], "Modules in eval mode"),
        (get_human_readable_count(total_flops), "Total Flops"),
    ]
    lines.extend(f"{value:<10}{label}" for value, label in totals)
    return "\n".join(lines)


def get_formatted_model_size(total_model_size: float) -> str:
    return f"{total_model_size:,.3f}"


def get_human_readable_count(number: int | float) -> str:
    """Abbreviate a count with K, M, B, T: ``123 -> '123  '``, ``1234 -> '1.2 K'``, ``4e14 -> '400 T'``."""
    assert number >= 0
    num_digits = int(math.floor(math.log10(number)) + 1 if number > 0 else 1)
    num_groups = min(int(math.ceil(num_digits / 3)), len(PARAMETER_NUM_UNITS))
    number = number * (10 ** (-3 * (num_groups - 1)))
    index = num_groups - 1
    if index < 1 or number >= 100:
        return f"{int(number):,d} {PARAMETER_NUM_UNITS[index]}"
    return f"{number:,.1f} {PARAMETER_NUM_UNITS[index]}"


class ModelSummary(Callback):
    """Print a summary of the module's layers when fit starts (on global rank 0).

    Args:
        max_depth: how deep in the module tree to list layers; ``-1`` lists all, ``0`` turns it off.
        **summarize_kwargs: passed on to :meth:`summarize` (used by subclasses such as ``RichModelSummary``).

    Example::

        trainer = Trainer(callbacks=[ModelSummary(max_depth=2)])
    """

    def __init__(self, max_depth: int = 1, **summarize_kwargs: Any) -> None:
        self._max_depth = max_depth
        self._summarize_kwargs = summarize_kwargs

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._max_depth:
            return
        # built on every rank: an example forward pass must run everywhere the model is sharded
        model_summary = summarize(pl_module, max_depth=self._max_depth)
        if trainer.is_global_zero:
            self.summarize(
                model_summary._get_summary_data(),
                model_summary.total_parameters,
                model_summary.trainable_parameters,
                model_summary.model_size,
                model_summary.total_training_modes,
                total_flops=model_summary.total_flops,  # by keyword, as Lightning passes it
                **self._summarize_kwargs,
            )

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        """Log the table at INFO level (override to print it elsewhere)."""
        table = _format_summary_table(
            total_parameters, trainable_parameters, model_size, total_training_modes, total_flops, *summary_data
        )
        log.info("\n" + table)


lightning_style_annotations(ModelSummary)  # Lightning's `typing` forms in the signature
