"""A Hydra app (``@hydra.main``, which moves the process into its run folder) that trains with
``strategy="ddp"`` on 2 CPU processes, as schnetpack's ``spktrain`` does. Each rank writes where it ran.

Run from its own folder, by a relative path, as ``python hydra_ddp_program.py``.
"""

import json
import os

import hydra

import ember
from ember.demos.boring_classes import BoringModel


@hydra.main(version_base="1.1", config_path=None, config_name=None)
def main(cfg) -> None:
    trainer = ember.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_steps=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(BoringModel())
    seen = {"cwd": os.getcwd(), "original": hydra.utils.get_original_cwd(), "global_step": trainer.global_step}
    with open(f"rank{trainer.global_rank}.json", "w") as file:
        json.dump(seen, file)


if __name__ == "__main__":
    main()
