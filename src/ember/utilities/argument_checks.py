"""Type checks of constructor arguments, said in the caller's terms.

A wrong type passed to a callback often fails much later, inside the loop, with Python's own words
("unhashable type: 'list'", "'<' not supported between instances of 'str' and 'int'"). These checks
refuse it where it is given, naming the argument and what it takes.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any


def check_type(call: str, name: str, value: Any, types: tuple[type, ...], expected: str, bool_too: bool = True) -> None:
    """Raise ``TypeError`` unless ``value`` is one of ``types`` (list ``type(None)`` to let None pass).

    ``call`` names the callable (``"ModelCheckpoint"``), ``expected`` says what ``name`` takes, e.g.
    ``"an int: how many best checkpoints to keep"``. With ``bool_too=False`` a bool is refused where ``types``
    holds ``int`` (Python's bool is one; a device index, say, is not ``True``).
    """
    if not isinstance(value, types) or (not bool_too and isinstance(value, bool)):
        raise TypeError(f"`{call}({name}={value!r})` must be {expected}, not {type(value).__name__}.")


def check_number(call: str, name: str, value: Any, expected: str, optional: bool = False) -> None:
    """``check_type`` for a real number (an int or a float; numpy's scalars count too), or None where
    ``optional``."""
    if optional and value is None:
        return
    check_type(call, name, value, (Real,), expected)


def check_count(call: str, name: str, value: Any, expected: str, minimum: int = 1) -> None:
    """A whole number of at least ``minimum`` (an int, or a float with nothing after the point, as ``10.0``).

    A type that is no number is a ``TypeError``; a fraction, a number below ``minimum``, NaN or infinity a
    ``ValueError``; both say ``expected``.
    """
    check_number(call, name, value, expected)
    if not (math.isfinite(value) and value == int(value) and value >= minimum):
        raise ValueError(f"`{call}({name}={value!r})` must be {expected}.")
