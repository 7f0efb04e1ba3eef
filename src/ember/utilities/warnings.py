"""Warning categories, named as in Lightning, and a switch to silence the ones that may be false alarms."""

from __future__ import annotations

import os
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
    if os.environ.get("POSSIBLE_USER_WARNINGS", "").lower() in ("0", "off"):
        disable_possible_user_warnings()


_EMBER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../ember


def _install_lightning_format() -> None:
    """Print warnings as Lightning does: Ember's own as ``file:line: message``, one line, and its
    deprecations shown.

    Lightning replaces ``warnings.formatwarning`` when it is imported, so a warning raised from its
    package (any file whose path contains "lightning") shows neither the category nor the source line;
    and it shows every ``LightningDeprecationWarning``, which Python's default filters would hide. Where
    Ember stands in for Lightning (the alias), the same paths are shortened: a library built on Lightning
    (``pytorch_lightning_spells``, ...) prints its warnings as it does on Lightning. Warnings from anywhere
    else keep the format in place before (Python's, or Lightning's when Lightning is also imported).
    """
    from ember.utilities.rank_zero import LightningDeprecationWarning

    warnings.simplefilter("default", category=LightningDeprecationWarning)
    previous = warnings.formatwarning
    if getattr(previous, "_ember", False):
        return

    def formatwarning(
        message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
    ) -> str:
        path = str(filename)
        if path.startswith(_EMBER_DIR + os.sep) or ("lightning" in os.path.abspath(path) and _standing_in()):
            return f"{filename}:{lineno}: {message}\n"
        return previous(message, category, filename, lineno, line)

    formatwarning._ember = True  # type: ignore[attr-defined]
    warnings.formatwarning = formatwarning


def _standing_in() -> bool:
    """Whether Ember stands in for Lightning in this process (``install_as_lightning``)."""
    import sys

    alias = sys.modules.get("ember.lightning_alias")
    return alias is not None and alias.is_installed()
