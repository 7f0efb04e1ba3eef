"""``LearningRateFinder``: run the learning rate range test when fitting starts.

Example::

    trainer = Trainer(callbacks=[LearningRateFinder(min_lr=1e-5, max_lr=1.0)])
    trainer.fit(model)       # the sweep runs first; model.lr is set to the suggestion
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ember.callbacks.callback import Callback
from ember.utilities.argument_checks import check_count, check_number, check_type
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer
    from ember.tuner.lr_finder import _LRFinder


class LearningRateFinder(Callback):
    """Runs a learning rate range test in ``on_fit_start`` and (by default) sets the suggested rate.

    Args:
        min_lr: the first learning rate of the sweep.
        max_lr: the last learning rate of the sweep.
        num_training_steps: how many learning rates (optimizer steps) to try.
        mode: ``"exponential"`` (default) or ``"linear"`` growth between the two.
        early_stop_threshold: stop once the smoothed loss exceeds this times the best; None never stops.
        update_attr: write the suggestion to ``model.lr``/``model.learning_rate`` (or ``attr_name``).
        attr_name: the attribute holding the learning rate, if not ``lr`` or ``learning_rate``.

    Subclass it to sweep again later, e.g. at chosen epochs::

        class FineTuneLearningRateFinder(LearningRateFinder):
            def __init__(self, milestones, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.milestones = milestones

            def on_fit_start(self, *args, **kwargs):
                return

            def on_train_epoch_start(self, trainer, pl_module):
                if trainer.current_epoch in self.milestones or trainer.current_epoch == 0:
                    self.lr_find(trainer, pl_module)
    """

    SUPPORTED_MODES = ("linear", "exponential")

    def __init__(
        self,
        min_lr: float = 1e-8,
        max_lr: float = 1,
        num_training_steps: int = 100,
        mode: str = "exponential",
        early_stop_threshold: float | None = 4.0,
        update_attr: bool = True,
        attr_name: str = "",
    ) -> None:
        mode = check_lr_find_arguments(
            "LearningRateFinder",
            min_lr,
            max_lr,
            ("num_training_steps", num_training_steps),
            mode,
            early_stop_threshold,
            attr_name,
        )
        self._min_lr = min_lr
        self._max_lr = max_lr
        self._num_training_steps = num_training_steps
        self._mode = mode
        self._early_stop_threshold = early_stop_threshold
        self._update_attr = update_attr
        self._attr_name = attr_name
        self._early_exit = False
        self.optimal_lr: _LRFinder | None = None

    def lr_find(self, trainer: Trainer, pl_module: Any) -> None:
        """Run the sweep now; the results land in ``self.optimal_lr``."""
        from ember.tuner.exceptions import _TunerExitException
        from ember.tuner.lr_finder import _lr_find
        from ember.utilities.seed import collect_rng_states, isolate_rng

        with isolate_rng():
            self.optimal_lr = _lr_find(
                trainer,
                pl_module,
                min_lr=self._min_lr,
                max_lr=self._max_lr,
                num_training=self._num_training_steps,
                mode=self._mode,
                early_stop_threshold=self._early_stop_threshold,
                update_attr=self._update_attr,
                attr_name=self._attr_name,
            )
            # as Lightning, which sets the training data up again (and draws its iterator's seed) here, before
            # the RNG is put back: the epoch that follows shuffles in another order than the sweep did
            trainer._run.sweep_rng = collect_rng_states()
        if self._early_exit:
            raise _TunerExitException()

    def on_fit_start(self, trainer: Trainer, pl_module: Any) -> None:
        self.lr_find(trainer, pl_module)


def check_lr_find_arguments(
    call: str,
    min_lr: Any,
    max_lr: Any,
    num_training: tuple[str, Any],
    mode: Any,
    early_stop_threshold: Any,
    attr_name: Any,
) -> str:
    """Refuse, naming the argument, what the sweep would fail on with Python's or torch's words
    ("division by zero", "argument alpha must not be a complex number"); return ``mode`` in lower case.

    ``num_training`` is the argument's name (``num_training`` in ``Tuner.lr_find``) and its value.
    """
    check_type(call, "mode", mode, (str,), "'exponential' or 'linear'")
    mode = mode.lower()
    if mode not in LearningRateFinder.SUPPORTED_MODES:
        raise ValueError(f"`mode` should be either of {LearningRateFinder.SUPPORTED_MODES}")
    check_number(call, "min_lr", min_lr, "a number: the first learning rate of the sweep")
    check_number(call, "max_lr", max_lr, "a number: the last learning rate of the sweep")
    if mode == "exponential" and (min_lr <= 0 or max_lr < 0):
        name, value, bound = ("min_lr", min_lr, "above 0") if min_lr <= 0 else ("max_lr", max_lr, "at least 0")
        raise ValueError(
            f"`{call}({name}={value!r})` must be {bound} with mode='exponential': its rates grow by a constant"
            " factor from `min_lr` to `max_lr`. Pass positive rates (e.g. min_lr=1e-8), or mode='linear'."
        )
    name, value = num_training
    check_count(call, name, value, "a whole number of at least 1: how many learning rates (steps) to try")
    check_number(
        call,
        "early_stop_threshold",
        early_stop_threshold,
        "a number: the loss ratio that ends the sweep, or None",
        optional=True,
    )
    if attr_name:  # (a false value: found by itself, `lr` or `learning_rate`, as in Lightning)
        check_type(call, "attr_name", attr_name, (str,), "the name of the attribute that holds the learning rate")
    return mode


lightning_style_annotations(LearningRateFinder)  # Lightning's `typing` forms in the signature
