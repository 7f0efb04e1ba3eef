"""Exception types, named as in Lightning so `except` clauses keep working."""


class MisconfigurationException(Exception):
    """The user asked for something that cannot work; the message says what and how to fix it."""


def not_supported(name: str, reason: str, instead: str) -> MisconfigurationException:
    """The error of a Lightning class Ember keeps by name only (libraries import it for ``isinstance`` checks
    and their own registries) when one is built: what it is, why Ember has none, what to use instead."""
    return MisconfigurationException(f"{name}: {reason} {instead}")


def xla_not_supported(
    name: str, instead: str = 'Use `accelerator="cuda"`, `"cpu"` or `"mps"`, or Lightning itself on TPUs.'
) -> MisconfigurationException:
    """``not_supported`` for Lightning's TPU classes."""
    return not_supported(name, "Ember runs on CPUs, CUDA and MPS only; XLA devices (TPUs) are not supported.", instead)


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
