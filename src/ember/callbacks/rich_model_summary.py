"""``RichModelSummary``: the ``ModelSummary`` table drawn with rich (imported only when printing)."""

from __future__ import annotations

import importlib.util
from typing import Any

from ember.callbacks.model_summary import ModelSummary, get_formatted_model_size, get_human_readable_count
from ember.utilities.signature_utils import lightning_style_annotations


def _rich_available() -> bool:
    return importlib.util.find_spec("rich") is not None


class RichModelSummary(ModelSummary):
    """Print the layer summary as a rich table when fit starts.

    Args:
        max_depth: how deep in the module tree to list layers; ``-1`` lists all, ``0`` turns it off.
        **summarize_kwargs: ``header_style`` (default ``"bold magenta"``) styles the header row.

    Raises:
        ModuleNotFoundError: if rich is not installed.

    Example::

        trainer = Trainer(callbacks=[RichModelSummary(max_depth=2)])
    """

    def __init__(self, max_depth: int = 1, **summarize_kwargs: Any) -> None:
        if not _rich_available():
            raise ModuleNotFoundError(
                "`RichModelSummary` requires `rich` to be installed. Install it by running `pip install 'ember[rich]'`."
            )
        super().__init__(max_depth, **summarize_kwargs)

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
        from rich import get_console
        from rich.table import Table

        console = get_console()
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        table.add_column(" ", style="dim")
        table.add_column("Name", justify="left", no_wrap=True)
        table.add_column("Type")
        table.add_column("Params", justify="right")
        table.add_column("Mode")
        table.add_column("FLOPs", justify="right")
        column_names = [name for name, _ in summary_data]
        for column_name in ("In sizes", "Out sizes"):
            if column_name in column_names:
                table.add_column(column_name, justify="right", style="white")
        for row in zip(*(cells for _, cells in summary_data)):
            table.add_row(*row)
        console.print(table)

        grid = Table.grid(expand=True)
        grid.add_column()
        grid.add_column()
        lines = [
            ("Trainable params", get_human_readable_count(trainable_parameters)),
            ("Non-trainable params", get_human_readable_count(total_parameters - trainable_parameters)),
            ("Total params", get_human_readable_count(total_parameters)),
            ("Total estimated model params size (MB)", get_formatted_model_size(model_size)),
            ("Modules in train mode", total_training_modes["train"]),
            ("Modules in eval mode", total_training_modes["eval"]),
            ("Total FLOPs", get_human_readable_count(total_flops)),
        ]
        for label, value in lines:
            grid.add_row(f"[bold]{label}[/]: {value!s:<10}")
        console.print(grid)


lightning_style_annotations(RichModelSummary)  # Lightning's `typing` forms in the signature
