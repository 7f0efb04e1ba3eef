"""String enums that compare equal to their value in any case, and ``GradClipAlgorithmType``.

Lightning's import paths: ``lightning.pytorch.utilities.enums`` and ``LightningEnum`` from
``lightning.pytorch.utilities``.
"""

from __future__ import annotations

import warnings
from enum import Enum
from typing import Literal

_Source = Literal["key", "value", "any"]


class LightningEnum(str, Enum):
    """A ``str`` enum whose members equal their value, or their value in another case.

    Example::

        >>> class Mode(LightningEnum):
        ...     FAST = "fast"
        >>> Mode.FAST == "FAST", Mode.from_str("fast"), {Mode.FAST: 1}["fast"]
        (True, <Mode.FAST: 'fast'>, 1)
    """

    @classmethod
    def from_str(cls, value: str, source: _Source = "key") -> LightningEnum:
        """The member whose name (``source="key"``), value (``"value"``) or either (``"any"``) is ``value``.

        Names match in any case and win over values. Raises ``ValueError`` listing what would match.
        """
        if source in ("key", "any"):
            for name in cls.__members__:
                if name.lower() == value.lower():
                    return cls[name]
        if source in ("value", "any"):
            for name, member in cls.__members__.items():
                if member == value:
                    return cls[name]
        raise ValueError(f"Invalid match: expected one of {cls._allowed_matches(source)}, but got {value}.")

    @classmethod
    def try_from_str(cls, value: str, source: _Source = "key") -> LightningEnum | None:
        """Like :meth:`from_str`, but warns and returns ``None`` when nothing matches."""
        try:
            return cls.from_str(value, source)
        except ValueError:
            warnings.warn(
                UserWarning(f"Invalid string: expected one of {cls._allowed_matches(source)}, but got {value}."),
                stacklevel=2,
            )
        return None

    @classmethod
    def _allowed_matches(cls, source: str) -> list[str]:
        names = list(cls.__members__)
        values = [member.value for member in cls.__members__.values()]
        if source == "key":
            return names
        if source == "value":
            return values
        return names + values

    # A member is the string of its value (the ``str`` mixin), so ``str.lower(self)`` reads it without the
    # ``value`` property, whose descriptor costs several times the rest: the loops look stages up in dicts
    # at every evaluation batch.

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        other_value = other.value if isinstance(other, Enum) else other
        return str.lower(self) == str(other_value).lower()

    def __hash__(self) -> int:
        # equal members and strings must hash alike, so a member and its value find the same dict entry
        return hash(str.lower(self))


class GradClipAlgorithmType(LightningEnum):
    """How ``Trainer(gradient_clip_algorithm=...)`` clips: ``"norm"`` scales all gradients together so
    that their total norm is at most the clip value (``torch.nn.utils.clip_grad_norm_``); ``"value"``
    clamps each gradient element (``torch.nn.utils.clip_grad_value_``).

    Example::

        >>> GradClipAlgorithmType("norm") is GradClipAlgorithmType.NORM
        True
    """

    VALUE = "value"
    NORM = "norm"

    @staticmethod
    def supported_type(val: str) -> bool:
        """Whether ``val`` is one of the algorithm names."""
        return any(member.value == val for member in GradClipAlgorithmType)

    @staticmethod
    def supported_types() -> list[str]:
        """The algorithm names: ``["value", "norm"]``."""
        return [member.value for member in GradClipAlgorithmType]
