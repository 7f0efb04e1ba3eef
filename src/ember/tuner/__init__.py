"""Find a learning rate and a batch size before a long run: ``Tuner(trainer).lr_find(model)``.

Example::

    from ember.tuner import Tuner

    tuner = Tuner(trainer)
    lr_finder = tuner.lr_find(model)          # sets model.lr to the suggestion
    tuner.scale_batch_size(model)             # sets model.batch_size to the largest that fits
    trainer.fit(model)
"""

from __future__ import annotations

from typing import Any

__all__ = ["Tuner"]


def __getattr__(name: str) -> Any:
    # `import ember` loads this package (the trainer knows the tuner's exit exception); the
    # tuner itself loads on first use
    if name == "Tuner":
        from ember.tuner.tuning import Tuner

        return Tuner
    raise AttributeError(f"module 'ember.tuner' has no attribute {name!r}")
