"""Tied (shared) parameters: find them, and tie them again after something untied them.

Moving a module to another device, or loading it from a checkpoint, can leave tied weights as two
separate parameters; ``set_shared_parameters`` ties them again.

Example::

    shared = find_shared_parameters(model)   # [["encoder.weight", "decoder.weight"], ...]
    model.to(device)
    set_shared_parameters(model, shared)
"""

from __future__ import annotations

from torch import nn


def find_shared_parameters(module: nn.Module) -> list[list[str]]:
    """The names of the parameters shared by several submodules, one list per shared parameter."""
    names: dict[nn.Parameter, list[str]] = {}
    for prefix, submodule in module.named_modules(remove_duplicate=False):
        for name, param in submodule._parameters.items():
            if param is not None:
                names.setdefault(param, []).append(f"{prefix}.{name}" if prefix else name)
    return [found for found in names.values() if len(found) > 1]


def set_shared_parameters(module: nn.Module, shared_params: list[list[str]]) -> nn.Module:
    """Make every name of each group in ``shared_params`` refer to the first one's parameter again."""
    for group in shared_params:
        reference = _get(module, group[0])
        for path in group[1:]:
            *parents, name = path.split(".")
            owner = module
            for parent in parents:
                owner = getattr(owner, parent)
            setattr(owner, name, reference)
    return module


def _get(module: nn.Module, path: str) -> nn.Module:
    value = module
    for name in path.split("."):
        value = getattr(value, name)
    return value
