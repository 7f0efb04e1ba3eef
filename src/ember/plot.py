"""``ember plot``: one PNG with the training curves of a run.

Reads a CSVLogger ``metrics.csv`` (or TensorBoard event files when there is no CSV), pairs the
train and validation forms of each metric on one panel (``train_loss``/``val_loss``,
``train/loss``/``val/loss``, ``loss_step``/``loss_epoch``), puts learning rates (``lr-*``) on
their own panel, and marks the best checkpoint's epoch or step when it is known.

Example::

    from ember.plot import plot_metrics

    png = plot_metrics("lightning_logs/version_0")            # -> lightning_logs/version_0/metrics.png
    png = plot_metrics("logs/metrics.csv", "curves.png", x="epoch")

or from a shell: ``ember plot lightning_logs/version_0 -o curves.png --x epoch``.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Each panel is PANEL_WIDTH x PANEL_HEIGHT inches at DPI dots per inch, so a figure with R rows and
# C columns of panels is exactly (C * PANEL_WIDTH * DPI) x (R * PANEL_HEIGHT * DPI) pixels.
PANEL_WIDTH = 5.0
PANEL_HEIGHT = 3.5
DPI = 100
MAX_COLUMNS = 3

_TRAIN_PREFIXES = ("train_", "train/", "training_", "training/")
_VAL_PREFIXES = ("val_", "val/", "valid_", "valid/", "validation_", "validation/")
_TEST_PREFIXES = ("test_", "test/")
_SUFFIX_ROLES = {"_train": "train", "/train": "train", "_val": "val", "/val": "val", "_test": "test", "/test": "test"}
_NON_METRICS = {"step", "epoch", "hp_metric"}

Row = dict[str, float]


# ---------------------------------------------------------------------------------------------
# reading a run
# ---------------------------------------------------------------------------------------------
def _find_source(path: Path) -> Path:
    """The metrics.csv (or TensorBoard folder) to read for ``path``."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(
            f"'{path}' does not exist. Pass a run folder (e.g. lightning_logs/version_0) or a metrics.csv file."
        )
    if (path / "metrics.csv").is_file():
        return path / "metrics.csv"
    if any(p.name.startswith("events.out.tfevents") for p in path.iterdir()):
        return path
    versions = sorted(
        (int(p.name.split("_", 1)[1]), p) for p in path.iterdir() if p.is_dir() and re.fullmatch(r"version_\d+", p.name)
    )
    for _, candidate in reversed(versions):
        try:
            return _find_source(candidate)
        except FileNotFoundError:
            continue
    raise FileNotFoundError(
        f"No metrics.csv or TensorBoard event file in '{path}'. Pass a run folder written by CSVLogger or"
        " TensorBoardLogger (e.g. lightning_logs/version_0) or the metrics.csv file itself."
    )


def _read_csv(path: Path, skipped: dict[str, list[Any]] | None = None) -> list[Row]:
    """The rows of a metrics.csv as numbers; a cell that is not a number is left out and, when
    ``skipped`` is given, counted there per column as ``[count, first value, its line]``."""
    rows: list[Row] = []
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        for raw in reader:
            row: Row = {}
            for key, value in raw.items():
                if key is None or value in (None, ""):
                    continue
                try:
                    row[key] = float(value)
                except (TypeError, ValueError):
                    if skipped is not None:
                        entry = skipped.setdefault(key, [0, value, reader.line_num])
                        entry[0] += 1
            rows.append(row)
    return rows


def _skipped_message(source: Path, skipped: dict[str, list[Any]]) -> str:
    total = sum(count for count, _, _ in skipped.values())
    columns = "; ".join(
        f"column '{key}': {count} cell{'s' if count > 1 else ''}, e.g. {value!r} on line {line}"
        for key, (count, value, line) in skipped.items()
    )
    values = f"{total} non-numeric value{'s' if total > 1 else ''}"
    return f"Skipped {values} in '{source}' ({columns}): only numbers are plotted."


def _read_tensorboard(folder: Path) -> list[Row]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    by_step: dict[int, Row] = {}
    for tag in accumulator.Tags().get("scalars", []):
        for event in accumulator.Scalars(tag):
            by_step.setdefault(event.step, {"step": float(event.step)})[tag] = event.value
    return [by_step[step] for step in sorted(by_step)]


def _load_rows(source: Path, skipped: dict[str, list[Any]] | None = None) -> list[Row]:
    return _read_tensorboard(source) if source.is_dir() else _read_csv(source, skipped)


# ---------------------------------------------------------------------------------------------
# grouping metric names into panels
# ---------------------------------------------------------------------------------------------
def _split_name(name: str) -> tuple[str, str, str]:
    """``name`` -> (base, role, form): role is train/val/test/"", form is step/epoch/""."""
    form = ""
    for suffix in ("_step", "_epoch"):
        if name.endswith(suffix) and len(name) > len(suffix):
            form, name = suffix[1:], name[: -len(suffix)]
            break
    role = ""
    for prefixes, prefix_role in ((_TRAIN_PREFIXES, "train"), (_VAL_PREFIXES, "val"), (_TEST_PREFIXES, "test")):
        match = next((p for p in prefixes if name.startswith(p) and len(name) > len(p)), None)
        if match:
            role, name = prefix_role, name[len(match) :]
            break
    if not role:
        for suffix, suffix_role in _SUFFIX_ROLES.items():
            if name.endswith(suffix) and len(name) > len(suffix):
                role, name = suffix_role, name[: -len(suffix)]
                break
    return name, role, form


def _group_metrics(keys: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Panels: base name -> its metric keys (in column order), and the learning-rate keys."""
    panels: dict[str, list[str]] = {}
    lr_keys: list[str] = []
    for key in keys:
        if key in _NON_METRICS:
            continue
        if key.startswith("lr-") or key == "lr" or key.startswith("lr/"):
            lr_keys.append(key)
            continue
        base, _, _ = _split_name(key)
        panels.setdefault(base, []).append(key)
    return panels, lr_keys


def _label(key: str) -> str:
    _, role, form = _split_name(key)
    words = [w for w in (role, form) if w]
    return f"{key} ({' '.join(words)})" if words else key


# ---------------------------------------------------------------------------------------------
# x axis
# ---------------------------------------------------------------------------------------------
def _epoch_of_step(rows: Sequence[Row]) -> list[tuple[float, float]]:
    return sorted({(row["step"], row["epoch"]) for row in rows if "step" in row and "epoch" in row})


def _epoch_for(row: Row, mapping: Sequence[tuple[float, float]]) -> float | None:
    if "epoch" in row:
        return row["epoch"]
    if "step" not in row or not mapping:
        return None
    step = row["step"]
    # rows without an epoch column (e.g. learning rates logged by a callback): use the epoch of
    # the closest logged step at or before it, else the first one after it
    before = [epoch for s, epoch in mapping if s <= step]
    return before[-1] if before else mapping[0][1]


def _choose_x(rows: Sequence[Row], keys: Sequence[str]) -> str:
    """``"step"`` when some metric was logged more than once in an epoch, else ``"epoch"``."""
    if not any("epoch" in row for row in rows):
        return "step"
    for key in keys:
        epochs = [row.get("epoch") for row in rows if key in row]
        if len(epochs) != len(set(epochs)):
            return "step"
    return "epoch"


def _series(
    rows: Sequence[Row], key: str, x: str, mapping: Sequence[tuple[float, float]]
) -> tuple[list[float], list[float]]:
    # A run resumed from a checkpoint logs again the steps that came after that checkpoint, so a
    # step may appear twice in an appended metrics.csv: the later row (the resumed run) wins.
    latest: dict[tuple[float, float | None], Row] = {}
    for row in rows:
        if key in row and "step" in row:
            latest[(row["step"], row.get("epoch"))] = row
    kept = sorted(latest.values(), key=lambda row: row["step"])
    if x == "step":
        return [row["step"] for row in kept], [row[key] for row in kept]
    # epoch axis: one point per epoch (the mean when a metric was logged several times in it)
    values: dict[float, list[float]] = {}
    for row in kept:
        epoch = _epoch_for(row, mapping)
        if epoch is not None:
            values.setdefault(epoch, []).append(row[key])
    epochs = sorted(values)
    return epochs, [sum(values[e]) / len(values[e]) for e in epochs]


# ---------------------------------------------------------------------------------------------
# best checkpoint
# ---------------------------------------------------------------------------------------------
def _parse_checkpoint_name(path: str) -> dict[str, float]:
    found = {}
    for field in ("epoch", "step"):
        match = re.search(rf"(?:^|[^a-zA-Z_]){field}=(\d+)", os.path.basename(str(path)))
        if match:
            found[field] = float(match.group(1))
    return found


def _best_from_state(state: Any) -> str | None:
    """The best checkpoint path recorded in a ModelCheckpoint state (or object, or best_k_models dict)."""
    best = state.get("best_model_path") if isinstance(state, dict) else getattr(state, "best_model_path", None)
    if best:
        return str(best)
    best_k = state.get("best_k_models") if isinstance(state, dict) else getattr(state, "best_k_models", None)
    if (
        isinstance(state, dict)
        and best_k is None
        and state
        and all(isinstance(v, (int, float)) for v in state.values())
    ):
        best_k = state  # a bare {path: score} mapping
    if best_k:
        mode = state.get("mode", "min") if isinstance(state, dict) else getattr(state, "mode", "min")
        chooser = max if mode == "max" else min
        return str(chooser(best_k, key=lambda p: float(best_k[p])))
    return None


def _checkpoint_position(path: Path) -> dict[str, float]:
    """epoch/step of a checkpoint file: from its name, else from the file itself."""
    position = _parse_checkpoint_name(str(path))
    if position or not path.is_file():
        return position
    checkpoint = _load_checkpoint(path)
    if checkpoint is None:
        return {}
    for field, key in (("epoch", "epoch"), ("step", "global_step")):
        if isinstance(checkpoint.get(key), int):
            position[field] = float(checkpoint[key])
    return position


def _load_checkpoint(path: Path) -> dict | None:
    import torch

    try:
        # mmap: only the small metadata is read, not the weights
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    return checkpoint if isinstance(checkpoint, dict) else None


def _auto_best(run_dir: Path) -> str | None:
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return None
    files = sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for file in files:
        checkpoint = _load_checkpoint(file)
        for name, state in ((checkpoint or {}).get("callbacks") or {}).items():
            if str(name).startswith("ModelCheckpoint"):
                best = _best_from_state(state)
                if best:
                    return best
    return None


def _best_position(best_checkpoint: Any, run_dir: Path) -> dict[str, float]:
    if best_checkpoint is None:
        best = _auto_best(run_dir)
        if best is None:
            return {}
        local = Path(best) if Path(best).exists() else run_dir / "checkpoints" / Path(best).name
        return _checkpoint_position(local)
    if isinstance(best_checkpoint, (str, os.PathLike)):
        return _checkpoint_position(Path(best_checkpoint))
    best = _best_from_state(best_checkpoint)
    return _checkpoint_position(Path(best)) if best else {}


def _best_x(position: dict[str, float], x: str, rows: Sequence[Row]) -> float | None:
    """Where on the x axis the best checkpoint goes.

    A checkpoint's ``step`` counts optimizer steps taken (``global_step``), while loggers record
    the step of the batch that was just processed, one less: ``epoch=1-step=8.ckpt`` after
    4-batch epochs sits at logger step 7, next to that epoch's validation point.
    """
    if x == "step":
        if "step" in position:
            return max(position["step"] - 1, 0.0)
        if "epoch" not in position:
            return None
        steps = [row["step"] for row in rows if row.get("epoch") == position["epoch"] and "step" in row]
        return max(steps) if steps else None
    if "epoch" in position:
        return position["epoch"]
    if "step" in position:
        return _epoch_for({"step": max(position["step"] - 1, 0.0)}, _epoch_of_step(rows))
    return None


# ---------------------------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------------------------
def plot_metrics(
    run_dir_or_metrics_csv: str | os.PathLike,
    output: str | os.PathLike | None = None,
    x: str | None = None,
    best_checkpoint: Any = None,
) -> str:
    """Draw the metrics of a run into one PNG and return its path.

    Args:
        run_dir_or_metrics_csv: a logger version folder (``metrics.csv`` or TensorBoard event files
            inside), a folder of ``version_*`` folders (the newest is used), or a ``metrics.csv``.
        output: the PNG to write; default ``metrics.png`` next to the metrics.
        x: ``"step"``, ``"epoch"`` or ``None`` to choose (epoch unless something was logged per step).
        best_checkpoint: a checkpoint path (``epoch=N``/``step=M`` in its name, or read from the
            file), a ``ModelCheckpoint`` or its state dict (``best_model_path``/``best_k_models``), or
            ``None`` to look in ``<run>/checkpoints``.

    The image has one panel per metric (at most three per row), each ``PANEL_WIDTH`` x
    ``PANEL_HEIGHT`` inches at ``DPI``.

    Example::

        >>> plot_metrics("lightning_logs/version_0", "curves.png", x="epoch")  # doctest: +SKIP
        'curves.png'
    """
    if x not in (None, "step", "epoch"):
        raise ValueError(f"`x` must be 'step', 'epoch' or None (choose automatically), got {x!r}.")
    source = _find_source(Path(run_dir_or_metrics_csv))
    run_dir = source if source.is_dir() else source.parent
    skipped: dict[str, list[Any]] = {}
    rows = _load_rows(source, skipped)
    if skipped:
        warnings.warn(_skipped_message(source, skipped), UserWarning, stacklevel=2)
    keys = list(dict.fromkeys(key for row in rows for key in row))
    panels, lr_keys = _group_metrics(keys)
    if not panels and not lr_keys:
        raise ValueError(f"'{source}' has no metrics to plot. Log some with `self.log(...)` first.")
    if x is None:
        x = _choose_x(rows, [k for group in panels.values() for k in group] + lr_keys)
    if x == "epoch" and not any("epoch" in row for row in rows):
        raise ValueError(f"'{source}' has no `epoch` column; plot against the step with x='step'.")
    mapping = _epoch_of_step(rows)
    best = _best_x(_best_position(best_checkpoint, run_dir), x, rows)

    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    layout = list(panels.items()) + ([("learning rate", lr_keys)] if lr_keys else [])
    columns = min(len(layout), MAX_COLUMNS)
    rows_of_panels = math.ceil(len(layout) / columns)
    figure = Figure(figsize=(columns * PANEL_WIDTH, rows_of_panels * PANEL_HEIGHT), dpi=DPI, layout="constrained")
    axes = figure.subplots(rows_of_panels, columns, squeeze=False).flatten()
    for ax, (title, group) in zip(axes, layout):
        for key in group:
            xs, ys = _series(rows, key, x, mapping)
            # per-step values as a thin line, epoch-level values as a line with markers
            per_step = _split_name(key)[2] == "step" or len(xs) > 50
            style = {"linewidth": 0.8, "alpha": 0.8} if per_step else {"marker": "o", "markersize": 3}
            ax.plot(xs, ys, label=_label(key), **style)
        if best is not None:
            ax.axvline(best, color="gray", linestyle="--", linewidth=1, label=f"best checkpoint ({x}={best:g})")
        ax.set_title(title)
        ax.set_xlabel(x)
        if x == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(layout) :]:
        ax.set_visible(False)

    out = Path(output) if output is not None else run_dir / "metrics.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=DPI, format="png")
    return str(out)


def main(argv: Sequence[str] | None = None) -> int:
    """``ember plot RUN_DIR [-o file.png] [--x step|epoch] [--best CKPT]``: write the plot, print its path."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["plot"] and not Path("plot").exists():
        args = args[1:]  # called with the sub-command name still in front
    parser = argparse.ArgumentParser(prog="ember plot", description="Plot the metrics of a run into a PNG.")
    parser.add_argument("run_dir", help="a logger version folder (e.g. lightning_logs/version_0) or a metrics.csv")
    parser.add_argument(
        "-o", "--output", default=None, help="the PNG to write (default: metrics.png in the run folder)"
    )
    parser.add_argument("--x", choices=("step", "epoch"), default=None, help="x axis (default: chosen from the data)")
    parser.add_argument("--best", default=None, help="checkpoint to mark (default: the best one found in the run)")
    ns = parser.parse_args(args)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            path = plot_metrics(ns.run_dir, ns.output, x=ns.x, best_checkpoint=ns.best)
    except (FileNotFoundError, ValueError) as ex:
        print(f"ember plot: error: {ex}", file=sys.stderr)
        return 2
    for warning in caught:
        print(f"ember plot: warning: {warning.message}", file=sys.stderr)
    print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
