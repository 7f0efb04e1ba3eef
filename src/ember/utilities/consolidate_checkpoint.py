"""Turn a sharded checkpoint folder into one file that ``torch.load`` reads.

``FSDPStrategy(state_dict_type="sharded")`` and ``ModelParallelStrategy()`` save each checkpoint as a
folder of every rank's shards. This reads one whole, in one process and without a process group, and
writes a single checkpoint file in Lightning's layout: the model's full weights in ``"state_dict"``, each
optimizer's full state (keyed by parameter name, as the shards hold it) in ``"optimizer_states"``, and
the rest of the checkpoint (epoch, loops, callbacks, hyperparameters, ...). ``load_from_checkpoint``
builds the model from it anywhere, and ``fit(ckpt_path=...)`` resumes from it on one device or under
FSDP with full checkpoints. The folder is read safely (as ``load_checkpoint`` reads it) and the file is
written atomically; the whole checkpoint must fit in memory.

Example::

    python -m ember.utilities.consolidate_checkpoint checkpoints/epoch=3-step=400.ckpt
    # -> checkpoints/epoch=3-step=400.ckpt.consolidated
    python -m ember.utilities.consolidate_checkpoint checkpoints/last.ckpt --output_file model.ckpt
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ember.utilities.consolidate_checkpoint",
        description=(
            "Converts a distributed/sharded checkpoint into a single file that can be loaded with `torch.load()`."
            " Only supports FSDP sharded checkpoints at the moment."
        ),
    )
    parser.add_argument(
        "checkpoint_folder",
        type=str,
        help=(
            "Path to a checkpoint folder, containing the sharded checkpoint files saved using the"
            " `torch.distributed.checkpoint` API."
        ),
    )
    parser.add_argument(
        "--output_file",
        type=str,
        help=(
            "Path to the file where the converted checkpoint should be saved. The file should not already exist."
            " If no path is provided, the file will be saved next to the input checkpoint folder with the same name"
            " and a '.consolidated' suffix."
        ),
    )
    args = parser.parse_args(argv)
    folder = Path(args.checkpoint_folder)
    output = Path(args.output_file) if args.output_file else folder.with_suffix(folder.suffix + ".consolidated")
    problem = _problem(folder, output)
    if problem:
        sys.stderr.write(problem + "\n")
        return 1
    from ember.checkpoint.files import atomic_save
    from ember.checkpoint.sharded import read_whole

    atomic_save(read_whole(folder), output)
    print(f"Wrote the consolidated checkpoint to {output}")
    return 0


def _problem(folder: Path, output: Path) -> str | None:
    """Why the folder cannot be consolidated into ``output``, or None."""
    from ember.checkpoint.files import METADATA_FILENAME

    if not folder.exists():
        return f"The provided checkpoint folder does not exist: {folder}"
    if not folder.is_dir():
        return f"The provided checkpoint path must be a folder, containing the checkpoint shards: {folder}"
    if not (folder / METADATA_FILENAME).is_file():
        return (
            "Only FSDP-sharded checkpoints saved with Lightning are supported for consolidation. The provided folder"
            f" is not in that format: {folder}"
        )
    if output.exists():
        return (
            "The path for the converted checkpoint already exists. Choose a different path by providing"
            f" `--output_file` or move/delete the file first: {output}"
        )
    return None


if __name__ == "__main__":
    sys.exit(main())
