"""Warning categories, named as in Lightning, and a switch to silence the ones that may be false alarms."""

from __future__ import annotations

import warnings


class PossibleUserWarning(UserWarning):
    """A setting that is probably not what the user meant."""


class EmberDeprecationWarning(DeprecationWarning):
    """A name or argument that will go away."""


def disable_possible_user_warnings(module: str = "") -> None:
    """Ignore every ``PossibleUserWarning`` from now on, or only those raised from ``module``.

    Args:
        module: a regular expression matched against the start of the warning's module name
            (e.g. ``"ember.trainer"``); the default ``""`` silences them wherever they come from.

    Example::

        from ember.utilities import disable_possible_user_warnings

        disable_possible_user_warnings()  # e.g. no "few dataloader workers" hint on a small machine
    """
    warnings.filterwarnings("ignore", module=module, category=PossibleUserWarning)


def _disable_from_environment() -> None:
    """``POSSIBLE_USER_WARNINGS=0`` (or ``off``) in the environment silences them, as in Lightning."""
    import os

    if os.environ.get("POSSIBLE_USER_WARNINGS", "").lower() in ("0", "off"):
        disable_possible_user_warnings()
