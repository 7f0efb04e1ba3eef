"""Programs whose checkpoints' ``loops`` entries are compared with Lightning's (the same code runs on both).

Each case fits two epochs of five batches (three validation batches) and keeps every checkpoint, with
``trainer.save_checkpoint`` also called at each epoch's start, at the end of training and after ``fit``
returned (and, in the first case, after a ``validate``, a ``test`` and a ``predict`` that follow); the answer maps ``case/filename`` to the file's ``loops`` entry, tensors as lists.
"""

from __future__ import annotations

import glob
import os
from typing import Any

import torch

# name -> (ModelCheckpoint arguments, Trainer arguments, model arguments)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "epoch_end_validation": ({}, {}, {}),
    "every_3_steps": ({"every_n_train_steps": 3}, {}, {}),
    "validation_every_2_batches": ({}, {"val_check_interval": 2}, {}),
    "no_validation": ({}, {"limit_val_batches": 0}, {}),
    "manual_every_2_steps": ({"every_n_train_steps": 2}, {}, {"manual": True}),
    "epoch_scheduler": ({}, {}, {"scheduler": True}),
    "epoch_scheduler_every_2_steps": ({"every_n_train_steps": 2}, {}, {"scheduler": True}),
    "max_steps_mid_epoch": ({}, {"max_steps": 7}, {}),
    # `trainer.save_checkpoint` from inside training batches (`INSIDE_HOOKS`, at `INSIDE_BATCHES`)
    "inside_batches": ({}, {}, {"inside": True}),
    "inside_accumulating_batches": ({}, {"accumulate_grad_batches": 2}, {"inside": True}),
    "inside_manual_batches": ({}, {}, {"manual": True, "inside": True}),
    # `on_train_batch_start` returns -1 at the third batch of each epoch: that batch is fetched, not trained
    "cut_short_epochs": ({}, {}, {"cut_at": 2}),
    # ... at the fourth, accumulating 2 batches a step: each epoch ends inside a window whose zero_grad ran
    "cut_short_accumulating_epochs": ({}, {"accumulate_grad_batches": 2}, {"cut_at": 3}),
    # ... at the first: no batch trains
    "cut_at_the_first_batch": ({}, {}, {"cut_at": 0}),
    # training data of unknown length (an IterableDataset without `__len__`), a checkpoint after every batch
    "unknown_length": ({"every_n_train_steps": 1}, {}, {"iterable": True}),
    # `trainer.save_checkpoint` from inside evaluation batches: the first validation in fit, then a `test` call
    "inside_evaluation_batches": ({}, {}, {"inside_eval": True}),
    # validation data of unknown length
    "unknown_length_validation": ({}, {"limit_val_batches": 1.0}, {"iterable_val": True}),
    # ... and `trainer.save_checkpoint` from inside its batches: the loop knows the last one, read ahead
    "inside_evaluation_batches_of_unknown_length": (
        {},
        {"limit_val_batches": 1.0},
        {"inside_eval": True, "iterable_val": True},
    ),
}
INSIDE_HOOKS = (
    "on_after_batch_transfer",
    "on_train_batch_start",
    "training_step",
    "on_before_zero_grad",
    "optimizer_zero_grad",
    "on_after_backward",
    "on_before_optimizer_step",
    "lr_scheduler_step",
)
INSIDE_BATCHES = (0, 1, 4)  # a window's start and end with two batches a window, the epoch's last batch


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value


def run_cases(pl: Any, root: str) -> dict[str, Any]:
    class Model(pl.LightningModule):
        def __init__(
            self,
            manual: bool = False,
            scheduler: bool = False,
            inside: bool = False,
            cut_at: int = -1,
            inside_eval: bool = False,
        ):
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)
            self.automatic_optimization = not manual
            self.scheduler = scheduler or inside
            self.inside = inside
            self.cut_at = cut_at
            self.inside_eval = inside_eval
            self.batch_idx = 0
            self.readings = {}  # what `trainer.fit_loop.epoch_loop.batch_progress` read where a file was saved

        def save_inside(self, hook):
            trainer = self.trainer
            if self.inside and trainer.current_epoch == 0 and trainer.training and self.batch_idx in INSIDE_BATCHES:
                name = f"{hook}-{self.batch_idx}.ckpt"
                trainer.save_checkpoint(os.path.join(trainer.default_root_dir, "checkpoints", name))
                loop = trainer.fit_loop.epoch_loop
                progress = loop.batch_progress
                self.readings[f"{name}.reading"] = {
                    "batch_progress": {
                        part: {
                            count: getattr(getattr(progress, part), count)
                            for count in ("ready", "started", "processed", "completed")
                        }
                        for part in ("current", "total")
                    },
                    # the same objects' state dicts, and the other counters of the loop
                    "batch_progress.state_dict": progress.state_dict(),
                    "optim_progress": loop.automatic_optimization.optim_progress.state_dict(),
                    "optim_step_progress": loop.manual_optimization.optim_step_progress.state_dict(),
                    "scheduler_progress": loop.scheduler_progress.state_dict(),
                    "epoch_progress": trainer.fit_loop.epoch_progress.state_dict(),
                    "optimizer_steps": loop.automatic_optimization.optim_progress.optimizer_steps,
                    "fit_loop.state_dict": trainer.fit_loop.state_dict(),
                }

        def on_train_epoch_start(self):
            self.batch_idx = 0  # the batch under way, from its transfer on

        def on_train_batch_start(self, batch, batch_idx):
            self.save_inside("on_train_batch_start")
            return -1 if batch_idx == self.cut_at else None

        def on_train_batch_end(self, outputs, batch, batch_idx):
            self.batch_idx = batch_idx + 1

        def training_step(self, batch, batch_idx):
            self.save_inside("training_step")
            loss = self.layer(batch).square().mean()
            if self.automatic_optimization:
                return loss
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
            return None

        def forward(self, batch):
            return self.layer(batch)

        def save_inside_evaluation(self, hook, batch_idx):
            trainer = self.trainer
            if self.inside_eval and not trainer.sanity_checking and trainer.current_epoch == 0 and batch_idx in (1, 2):
                name = f"{hook}-{batch_idx}.ckpt"
                trainer.save_checkpoint(os.path.join(trainer.default_root_dir, "checkpoints", name))

        def on_validation_batch_start(self, batch, batch_idx):
            self.save_inside_evaluation("on_validation_batch_start", batch_idx)

        def validation_step(self, batch, batch_idx):
            self.save_inside_evaluation("validation_step", batch_idx)
            self.log("val", self.layer(batch).mean())

        def on_validation_batch_end(self, outputs, batch, batch_idx):
            self.save_inside_evaluation("on_validation_batch_end", batch_idx)

        def test_step(self, batch, batch_idx):
            self.save_inside_evaluation("test_step", batch_idx)
            self.log("test", self.layer(batch).mean())

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            if not self.scheduler:
                return opt
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, 1)]

    def saving_inside(hook: str) -> Any:
        def hook_method(self, *args, **kwargs):
            self.save_inside(hook)
            return getattr(pl.LightningModule, hook)(self, *args, **kwargs)

        return hook_method

    for hook in INSIDE_HOOKS:
        if hook not in ("training_step", "on_train_batch_start"):
            setattr(Model, hook, saving_inside(hook))

    class Snapshots(pl.Callback):
        """Checkpoints between epochs, where the loops' per-epoch counters still hold the epoch that ended."""

        def on_train_epoch_start(self, trainer, pl_module):
            trainer.save_checkpoint(
                os.path.join(trainer.default_root_dir, "checkpoints", f"start-{trainer.current_epoch}.ckpt")
            )

        def on_train_end(self, trainer, pl_module):
            trainer.save_checkpoint(os.path.join(trainer.default_root_dir, "checkpoints", "train-end.ckpt"))

    class Stream(torch.utils.data.IterableDataset):
        def __init__(self, rows):
            self.rows = rows

        def __iter__(self):
            return iter(self.rows)

    data = torch.utils.data.DataLoader(torch.randn(20, 4), batch_size=4)
    answers = {}
    for name, (checkpoint_args, trainer_args, model_args) in CASES.items():
        torch.manual_seed(0)
        folder = os.path.join(root, name)
        arguments = {"max_epochs": 2, "limit_val_batches": 3, "num_sanity_val_steps": 2, **trainer_args}
        trainer = pl.Trainer(
            default_root_dir=folder,
            enable_progress_bar=False,
            enable_model_summary=False,
            logger=False,
            callbacks=[pl.callbacks.ModelCheckpoint(save_top_k=-1, **checkpoint_args), Snapshots()],
            **arguments,
        )
        model_args = dict(model_args)
        stream = torch.utils.data.DataLoader(Stream(data.dataset), batch_size=4)
        train = stream if model_args.pop("iterable", False) else data
        val = stream if model_args.pop("iterable_val", False) else data
        model = Model(**model_args)
        trainer.fit(model, train, val)
        trainer.save_checkpoint(os.path.join(folder, "checkpoints", "after-fit.ckpt"))
        if name == "inside_evaluation_batches":
            trainer.test(model, data, verbose=False)
        if name == "epoch_end_validation":
            # each evaluation loop keeps its counts through the calls that follow (fit's validation loop too)
            trainer.validate(model, data, verbose=False)
            trainer.test(model, data, verbose=False)
            trainer.predict(model, data)
            trainer.save_checkpoint(os.path.join(folder, "checkpoints", "after-evaluation.ckpt"))
        answers.update({f"{name}/{reading}": counts for reading, counts in model.readings.items()})
        for path in sorted(glob.glob(os.path.join(folder, "checkpoints", "*.ckpt"))):
            loops = torch.load(path, weights_only=False)["loops"]
            answers[f"{name}/{os.path.basename(path)}"] = _plain(loops)
    return answers
