"""``_EvaluationLoop``: Lightning's private evaluation-loop class, for libraries that build one.

A library may replace ``trainer.test_loop`` (or ``validate_loop``) with its own subclass whose
``_print_results`` prints its own results table (torch-uncertainty's trainer does). Ember runs one loop
(``loop.py``); the object built here is a view of it, like the trainer's own ``test_loop``, that takes
Lightning's constructor arguments. Served at ``lightning.pytorch.loops.evaluation_loop``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ember.trainer.states import RunningStage, TrainerFn
from ember.trainer.views import EvaluationLoopView

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer


class _EvaluationLoop(EvaluationLoopView):
    """The loop of ``trainer_fn`` (``TrainerFn.TESTING``, ...) running ``stage`` (``RunningStage.TESTING``, ...)."""

    def __init__(
        self,
        trainer: Trainer,
        trainer_fn: TrainerFn,
        stage: RunningStage,
        verbose: bool = True,
        inference_mode: bool = True,
    ) -> None:
        key = RunningStage(stage).dataloader_prefix
        assert key is not None
        super().__init__(trainer, TrainerFn(trainer_fn).value, key)
        self.verbose, self.inference_mode = verbose, inference_mode
