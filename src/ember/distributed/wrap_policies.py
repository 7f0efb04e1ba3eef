"""FSDP1's wrapping policies, read for FSDP2: which layers ``FSDPStrategy`` shards, or re-computes in backward, on
their own.

A policy is one of Lightning's forms:

* layer classes: a set of classes (Lightning's shorthand), ``ModuleWrapPolicy({...})`` or
  ``functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={...})``; every layer of those
  classes is chosen;
* a rule: a callable FSDP1 calls as ``policy(module=..., recurse=..., nonwrapped_numel=...)``
  (``size_based_auto_wrap_policy``, a ``lambda_auto_wrap_policy`` partial, a function of one's own), or
  FSDP1's ``CustomPolicy(lambda_fn)`` (any FSDP1 policy object: its ``_run_policy`` names the layers). FSDP1 decides while it walks the model, and so does
  ``layers_chosen_by_rule``, in FSDP1's order and with its counts, on the model as given.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from ember.utilities.rank_zero import rank_zero_warn

_ACCEPTED = (
    "a set of layer classes, `ModuleWrapPolicy({...})`, `functools.partial(transformer_auto_wrap_policy,"
    " transformer_layer_cls={...})`, FSDP1's `CustomPolicy(lambda_fn)` or a callable FSDP1 calls as"
    " `policy(module=..., recurse=..., nonwrapped_numel=...)` (`size_based_auto_wrap_policy`,"
    " `functools.partial(lambda_auto_wrap_policy, lambda_fn=...)`)"
)


def read_policy(policy: Any, argument: str) -> tuple[type[nn.Module], ...] | Callable[..., Any] | None:
    """The layer classes a policy names (a tuple), or the policy itself when it is a rule; None for no policy.
    Anything else is refused here, when the strategy is built, with the forms accepted."""
    if policy is None:
        return None
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy, transformer_auto_wrap_policy

    classes = policy
    if isinstance(policy, ModuleWrapPolicy):
        classes = policy._module_classes  # the set it was built from; FSDP1 has no public accessor
    elif isinstance(policy, functools.partial) and policy.func is transformer_auto_wrap_policy:
        classes = policy.keywords.get("transformer_layer_cls", policy)
    if isinstance(classes, type):
        classes = (classes,)
    if isinstance(classes, (set, list, tuple, frozenset)) and all(
        isinstance(cls, type) and issubclass(cls, nn.Module) for cls in classes
    ):
        return tuple(classes)
    if callable(getattr(policy, "_run_policy", None)) and not isinstance(policy, type):
        return policy  # FSDP1's `_Policy` objects: `CustomPolicy`, or one of the program's own
    if callable(policy) and not isinstance(policy, (type, nn.Module)) and _takes_fsdp1_arguments(policy):
        return policy
    raise TypeError(
        f"`FSDPStrategy({argument}={policy!r})` is not supported: it takes {_ACCEPTED}. A function of the layer"
        f" alone goes in `CustomPolicy(fn)`; for layer classes, e.g. `{argument}={{nn.TransformerEncoderLayer}}`."
    )


def _takes_fsdp1_arguments(policy: Callable[..., Any]) -> bool:
    """Whether FSDP1's call ``policy(module=..., recurse=..., nonwrapped_numel=...)`` binds to the callable's
    signature (one without a readable signature is taken on trust)."""
    try:
        signature = inspect.signature(policy)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind(module=None, recurse=True, nonwrapped_numel=0)
    except TypeError:
        return False
    return True


def layers_chosen_by_rule(root: nn.Module, rule: Any, ignored: Iterable[Any] = ()) -> set[nn.Module]:
    """The layers below ``root`` that FSDP1 wraps under ``rule`` (``root`` itself is always sharded, apart).

    ``ignored`` are FSDP1's ``ignored_modules``/``ignored_states`` (modules or parameters): FSDP1 does not walk
    into those modules and does not count those parameters. ``CustomPolicy`` asks its function of every layer;
    a per-layer dictionary of FSDP1 arguments it returns is not applied, with a warning.
    """
    ignored = list(ignored)
    ignored_modules = {sub for item in ignored if isinstance(item, nn.Module) for sub in item.modules()}
    ignored_params = {p for m in ignored_modules for p in m.parameters()}
    ignored_params.update(item for item in ignored if isinstance(item, nn.Parameter))
    if hasattr(rule, "_run_policy"):  # CustomPolicy (a function of each layer) or another `_Policy`: its own choice
        targets = rule._run_policy(root, ignored_modules, {})
        overrides = sorted({key for arguments in targets.values() for key in arguments})
        if overrides:
            rank_zero_warn(
                f"The `CustomPolicy` given to `FSDPStrategy` returns FSDP1 arguments for some layers ({overrides}):"
                " FSDP2 shards every layer with the strategy's own arguments, so they are not applied; the"
                " layers are sharded on their own."
            )
        return {module for module in targets if module is not root}

    chosen: set[nn.Module] = set()

    def walk(module: nn.Module, is_root: bool = False) -> int:
        """FSDP1's recursive wrap: returns the parameter count wrapped at or below ``module``."""
        count = sum(p.numel() for p in module.parameters() if p not in ignored_params)
        if not rule(module=module, recurse=True, nonwrapped_numel=count):
            return 0
        wrapped = sum(walk(child) for child in module.children() if child not in ignored_modules)
        if not is_root and rule(module=module, recurse=False, nonwrapped_numel=count - wrapped):
            chosen.add(module)
            return count
        return wrapped

    walk(root, is_root=True)
    return chosen
