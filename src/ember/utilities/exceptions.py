"""Exception types, named as in Lightning so `except` clauses keep working."""

import importlib.util


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


# Lightning's message when `torch_xla` is not installed
_TORCH_XLA_MISSING = "Requirement 'torch_xla>=1.13' not met. HINT: Try running `pip install -U 'torch_xla>=1.13'`"


def xla_requested(name: str, instead: str) -> Exception:
    """``xla_not_supported``, but where ``torch_xla`` is not installed Lightning's ``ModuleNotFoundError`` (its
    text first), so a program that falls back on ``except ImportError`` behaves as on Lightning."""
    error = xla_not_supported(name, instead)
    if importlib.util.find_spec("torch_xla") is None:
        return ModuleNotFoundError(f"{_TORCH_XLA_MISSING}. {error}")
    return error


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
