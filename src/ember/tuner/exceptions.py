"""The signal a tuner callback raises to end the ``trainer.fit`` call that hosted its search."""


class _TunerExitException(Exception):
    """Raised by ``LearningRateFinder``/``BatchSizeFinder`` when run through ``Tuner``: the search is done,
    and the trainer tears down as after a finished run (no ``on_exception`` hooks, loggers finalize "success")."""
