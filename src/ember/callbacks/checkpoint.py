"""``Checkpoint``: the base class the trainer recognises as a checkpointing callback.

Checkpoint callbacks run after the other callbacks (so they see the final ``should_stop``) and
after the module's ``on_train_epoch_end``.
"""

from ember.callbacks.callback import Callback


class Checkpoint(Callback):
    """Base class for callbacks that save checkpoints."""
