"""Exception types, named as in Lightning so `except` clauses keep working."""


class MisconfigurationException(Exception):
    """The user asked for something that cannot work; the message says what and how to fix it."""


class PreemptionExit(SystemExit):
    """Raised after a preemption signal once the checkpoint is safely written."""
