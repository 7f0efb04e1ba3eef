"""Creating a model without running its weight initialisation (for a model about to load a checkpoint)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.overrides import TorchFunctionMode


class EmptyInit(TorchFunctionMode):
    """Inside this context, ``torch.nn.init.*`` leave the tensor as it is: memory is allocated, not filled.

    Building a large model this way skips the initialisation work a checkpoint would overwrite.

    Example::

        with EmptyInit():
            model = BigModel()          # weights hold whatever the memory held
        model.load_state_dict(state)
    """

    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if self.enabled and getattr(func, "__module__", None) == "torch.nn.init":
            return kwargs["tensor"] if "tensor" in kwargs else args[0]
        return func(*args, **kwargs)
