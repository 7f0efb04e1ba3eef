"""Checkpoints written by older Lightning releases, brought to the layout of the one Ember follows.

Lightning's checkpoint layout changed a few times before 2.0: where the callbacks keep their state, the
key a ``ModelCheckpoint`` stores it under, and the loops' progress entries. The trainer
(``fit(ckpt_path=...)`` and the other entry points) and ``load_from_checkpoint`` bring a checkpoint from
an older release up to date as they read it, as Lightning does, so that a resumed run picks up its
callbacks' states (the best model so far, the early-stopping count) and its place; the file itself is
left as it is. ``python -m ember.utilities.upgrade_checkpoint PATH`` rewrites the files.

Example::

    from ember.checkpoint import load_checkpoint
    from ember.utilities.migration import migrate_checkpoint

    checkpoint, applied = migrate_checkpoint(load_checkpoint("lightning-1.8.ckpt"))
    applied  # {"1.9.0": ["_migrate_model_checkpoint_save_on_train_epoch_end_default"], "2.0.0": [...]}
"""

from ember.utilities.migration.utils import migrate_checkpoint, pl_legacy_patch
from ember.utilities.migration.utils import migrate_loaded as migrate_loaded  # the trainer's

__all__ = ["migrate_checkpoint", "pl_legacy_patch"]
