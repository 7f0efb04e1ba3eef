"""Exception types, named as in Lightning so `except` clauses keep working."""


class MisconfigurationException(Exception):
    """The user asked for something that cannot work; the message says what and how to fix it."""


class SIGTERMException(SystemExit):
    """The process received SIGTERM (Lightning's name): training stopped at a step boundary.

    Example::

        class Save(Callback):
            def on_exception(self, trainer, pl_module, exception):
                if isinstance(exception, SIGTERMException):
                    ...  # e.g. tell a job scheduler
    """


class PreemptionExit(SystemExit):
    """Raised after a preemption signal once the checkpoint is safely written."""


class SIGTERMPreemptionExit(PreemptionExit, SIGTERMException):
    """``PreemptionExit`` for SIGTERM: also a ``SIGTERMException``, so Lightning's ``except`` clauses catch it."""
