"""Lightning's registries of named classes: ``AcceleratorRegistry`` and ``StrategyRegistry``.

A library registers a class (or factory) and its arguments under a name; ``Trainer(accelerator=name)``
or ``Trainer(strategy=name)`` then builds one.

Example::

    StrategyRegistry.register("ddp_static", DDPStrategy, description="DDP, static graph", static_graph=True)
    Trainer(strategy="ddp_static", devices=2)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ember.utilities.exceptions import MisconfigurationException


class _Registry(dict):
    """Named entries ``{"description", "init_params", <kind>, "<kind>_name"}``, as Lightning stores them."""

    kind = "entry"  # "accelerator" or "strategy": the key Lightning gives the registered class
    plural = "Entries"  # as `str(registry)` names them

    def _register(
        self, name: str, registered: Callable | None, description: Any, override: bool, init_params: dict[str, Any]
    ) -> Callable:
        """Register ``registered`` (a class or factory) under ``name``; a decorator when it is None."""
        if not isinstance(name, str):
            raise TypeError(f"`name` must be a str, found {name}")
        if name in self and not override:
            raise MisconfigurationException(f"'{name}' is already present in the registry. HINT: Use `override=True`.")

        def do_register(registered: Callable) -> Callable:
            self[name] = {
                "description": description,
                "init_params": init_params,
                self.kind: registered,
                f"{self.kind}_name": name,
            }
            return registered

        return do_register(registered) if registered is not None else do_register

    def get(self, name: str, default: Any = None) -> Any:
        """A new instance of what is registered as ``name``."""
        if name in self:
            data = self[name]
            return data[self.kind](**data["init_params"])
        if default is not None:
            return default
        raise KeyError(f"'{name}' not found in registry. Available names: {set(self.keys())}")

    def remove(self, name: str) -> None:
        """Forget what is registered as ``name``."""
        self.pop(name)

    def __str__(self) -> str:
        return f"Registered {self.plural}: " + ", ".join(self)


class _StrategyRegistry(_Registry):
    """Strategies by name, as ``Trainer(strategy="<name>")`` finds the names Ember does not build itself.

    Example::

        StrategyRegistry.register("ddp_static", DDPStrategy, description="DDP, static graph", static_graph=True)
        Trainer(strategy="ddp_static", devices=2)
    """

    kind = "strategy"
    plural = "Strategies"

    def register(
        self,
        name: str,
        strategy: Callable | None = None,
        description: str | None = None,
        override: bool = False,
        **init_params: Any,
    ) -> Callable:
        """Register ``strategy`` (a class or factory) under ``name``; usable as a decorator without it."""
        return self._register(name, strategy, description, override, init_params)

    def available_strategies(self) -> list[str]:
        """The registered names."""
        return list(self.keys())
