"""Rewrite checkpoints written by older Lightning releases in the layout of the one Ember follows.

``fit(ckpt_path=...)`` and ``load_from_checkpoint`` upgrade such a checkpoint in memory each time they
read it (``ember.utilities.migration``); this makes it permanent. Each file is first copied to a backup
next to it (``name.bak``; an existing backup, the untouched original, is never overwritten), then
written again atomically. Files load safely (``weights_only=True``), as everywhere in Ember.

Example::

    python -m ember.utilities.upgrade_checkpoint lightning_logs/version_0/checkpoints/last.ckpt
    python -m ember.utilities.upgrade_checkpoint lightning_logs/ --extension .ckpt   # every file below
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

_log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ember.utilities.upgrade_checkpoint",
        description=(
            "A utility to upgrade old checkpoints to the format of the current Lightning version."
            " This will also save a backup of the original files."
        ),
    )
    parser.add_argument("path", type=str, help="Path to a checkpoint file or a directory with checkpoints to upgrade")
    parser.add_argument(
        "--extension",
        "-e",
        type=str,
        default=".ckpt",
        help="The file extension to look for when searching for checkpoint files in a directory.",
    )
    parser.add_argument(
        "--map-to-cpu",
        action="store_true",
        help=(
            "Map all tensors in the checkpoint to CPU. Enable this option if you are converting a GPU checkpoint"
            " on a machine without GPUs."
        ),
    )
    args = parser.parse_args(argv)
    files = _checkpoint_files(Path(args.path).absolute(), args.extension)
    if isinstance(files, str):
        # as Lightning's: the error through the logger (shown on the console), then exit status 1
        _log.error(files)
        sys.exit(1)
    return upgrade(files, map_to_cpu=args.map_to_cpu)


def _checkpoint_files(path: Path, extension: str) -> list[Path] | str:
    """The files to upgrade, or the error that says why there are none."""
    extension = extension if extension.startswith(".") else f".{extension}"
    if not path.exists():
        return (
            f"The path {path} does not exist. Please provide a valid path to a checkpoint file or a directory"
            f" containing checkpoints ending in {extension}."
        )
    files = sorted(path.rglob(f"*{extension}")) if path.is_dir() else [path]
    if not files:
        return (
            f"No checkpoint files with extension {extension} were found in {path}."
            " HINT: Try setting the `--extension` option to specify the right file extension to look for."
        )
    return files


def upgrade(files: Sequence[Path], map_to_cpu: bool = False) -> int:
    """Back up, then upgrade ``files`` in place; 0 when every one was upgraded."""
    from tqdm import tqdm

    from ember.checkpoint.files import atomic_save
    from ember.checkpoint.loading import load_checkpoint
    from ember.utilities.migration import migrate_checkpoint

    for file in files:
        backup = file.with_suffix(".bak")
        if not backup.exists():  # an existing backup is the untouched original
            shutil.copyfile(file, backup)
    failed = 0
    for file in tqdm(files, desc="Upgrading checkpoints"):
        try:
            checkpoint = load_checkpoint(file, map_location=torch.device("cpu") if map_to_cpu else None)
        except Exception as error:  # one unreadable file does not stop the others
            failed += 1
            tqdm.write(f"{file}: not upgraded: {error}", file=sys.stderr)
            continue
        if not isinstance(checkpoint, dict) or "pytorch-lightning_version" not in checkpoint:
            failed += 1
            tqdm.write(
                f"{file}: not upgraded: it is not a Lightning checkpoint (no 'pytorch-lightning_version')",
                file=sys.stderr,
            )
            continue
        migrate_checkpoint(checkpoint)
        atomic_save(checkpoint, file)
    done = len(files) - failed
    print(f"Upgraded {done} of {len(files)} checkpoint file(s); the originals are kept next to them as *.bak.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
