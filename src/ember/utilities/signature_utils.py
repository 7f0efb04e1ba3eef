"""Which arguments a user's step or hook takes: ``training_step(self, batch)`` needs no ``batch_idx``.

Example::

    is_param_in_hook_signature(model.validation_step, "batch_idx", min_args=2)
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import Any


def is_param_in_hook_signature(
    hook_fx: Callable[..., Any], param: str, explicit: bool = False, min_args: int | None = None
) -> bool:
    """Whether ``hook_fx`` takes ``param``: by name, through ``*args`` (unless ``explicit``), or by having at
    least ``min_args`` parameters after ``self``."""
    args, varargs, _ = _arguments(_function(hook_fx))
    return param in args or (not explicit and varargs) or (isinstance(min_args, int) and len(args) >= min_args)


def _function(hook_fx: Callable[..., Any]) -> Callable[..., Any]:
    hook_fx = getattr(hook_fx, "__wrapped__", hook_fx)  # a decorated hook: its own signature
    return getattr(hook_fx, "__func__", hook_fx)


_ARGUMENTS: weakref.WeakKeyDictionary[Any, tuple[tuple[str, ...], bool, frozenset[str]]] = weakref.WeakKeyDictionary()


def _arguments(fn: Callable[..., Any]) -> tuple[tuple[str, ...], bool, frozenset[str]]:
    """``fn``'s positional parameter names after the first (``self``), whether it takes ``*args``, and which of
    those names have no default: read once per function (each stage asks again for the same hooks, and
    ``inspect`` takes tens of microseconds)."""
    try:
        return _ARGUMENTS[fn]
    except (KeyError, TypeError):  # TypeError: not weakly referable, read every time
        pass
    spec = inspect.getfullargspec(fn)
    without_default = spec.args[1 : len(spec.args) - len(spec.defaults or ())]
    found = (tuple(spec.args[1:]), spec.varargs is not None, frozenset(without_default))
    try:
        _ARGUMENTS[fn] = found
    except TypeError:
        pass
    return found


def step_without_batch_idx(module: Any, name: str, step: Callable[..., Any]) -> Callable[..., Any]:
    """``step`` called as ``step(batch, batch_idx, *extra)`` by the loop; when ``module.<name>`` takes no
    ``batch_idx`` (``def validation_step(self, batch)``), the index is left out, as Lightning does. A step
    that draws its own batches (``def training_step(self, dataloader_iter)``) gets the iterator alone."""
    fn = getattr(module, name)
    if is_param_in_hook_signature(fn, "dataloader_iter", explicit=True):
        return lambda dataloader_iter, batch_idx, *extra: step(dataloader_iter)
    if is_param_in_hook_signature(fn, "batch_idx", min_args=2):
        return step

    def call(batch: Any, batch_idx: int, *extra: Any) -> Any:
        return step(batch, *extra)

    return call


def check_dataloader_idx(module: Any, names: tuple[str, ...], several: bool, prefix: str) -> None:
    """A step or batch hook names ``dataloader_idx`` exactly when there are several dataloaders (or gives it
    a default): Lightning's check, with its messages, before the loop starts. Asked at every evaluation, it
    reads the signatures :func:`is_param_in_hook_signature` keeps, not ``inspect.signature`` (tens of µs a hook)."""
    for name in names:
        args, varargs, without_default = _arguments(_function(getattr(module, name)))
        if not several:
            if "dataloader_idx" in without_default:
                raise RuntimeError(
                    f"You provided only a single `{prefix}_dataloader`, but have included `dataloader_idx` in"
                    f" `{type(module).__name__}.{name}()`. Either remove the argument or give it a default value"
                    " i.e. `dataloader_idx=0`."
                )
        elif "dataloader_idx" not in args and not varargs:
            raise RuntimeError(
                f"You provided multiple `{prefix}_dataloader`, but no `dataloader_idx` argument in"
                f" `{type(module).__name__}.{name}()`. Try adding `dataloader_idx=0` to its signature."
            )


def lightning_style_annotations(*classes: type, resolve: bool = True) -> None:
    """Give each class's ``__init__`` its annotations as types, in Lightning's ``typing`` forms.

    Ember's modules write ``int | None`` under postponed annotations; Lightning's signatures read
    ``Optional[int]``. Config tools build typed fields from them (hydra-zen recognises only
    ``typing.Union``, and makes anything else ``Any``, so an override such as
    ``trainer.enable_progress_bar='false'`` stayed the string 'false'). A parser given an annotation as a
    ``type`` also needs the type rather than its text.

    ``resolve=False`` keeps them text, rewritten to ``Union[...]`` (the class's module must bind ``Union``): for
    a class whose hints name what ``import ember`` does not load (the Trainer's), so that they are resolved only
    when asked for (``typing.get_type_hints``).
    """
    for cls in classes:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        if resolve:
            hints = {name: _lightning_form(hint) for name, hint in _type_hints(init).items()}
        else:
            hints = {
                name: _union_text(hint) if isinstance(hint, str) else hint
                for name, hint in init.__annotations__.items()
            }
        function: Any = init
        while function is not None:  # a decorated `__init__` too: `inspect.signature` reads the one it wraps
            function.__annotations__ = hints
            given = function.__dict__.get("__signature__")
            if given is not None:  # a signature set by hand (keyword-only arguments): its annotations too
                parameters = [
                    p.replace(annotation=_lightning_form(hints.get(p.name, p.annotation)))
                    for p in given.parameters.values()
                ]
                function.__signature__ = given.replace(parameters=parameters)
            function = getattr(function, "__wrapped__", None)


def _type_hints(function: Any) -> dict[str, Any]:
    """``typing.get_type_hints(function)``, read from a copy of ``function`` whose postponed annotations are
    evaluated in one expression.

    ``typing`` compiles each annotation's text on its own (a ``ForwardRef``), some 70 µs apiece the first time,
    paid by every class at its import (the seven on the way to a default ``Trainer``: 1.5-2.7 ms, 1.2-1.3 ms
    with one compilation a class). ``get_type_hints`` then reads the evaluated annotations as it reads any
    others (``None``, the defaults of Python 3.10, texts nested in a generic), so the answer is its own; a text
    that does not evaluate is left to it, for its error.
    """
    import typing

    return typing.get_type_hints(_with_annotations_evaluated(function))


def _with_annotations_evaluated(function: Any) -> Any:
    """A copy of ``function`` with its string annotations evaluated in one expression (``function`` itself when
    there are none, or they do not all evaluate)."""
    import types

    if not isinstance(function, types.FunctionType):  # (a partialmethod, a slot: as it is)
        return function
    texts = {name: hint for name, hint in function.__annotations__.items() if isinstance(hint, str)}
    if not texts:
        return function
    names = inspect.unwrap(function).__globals__  # where `get_type_hints` takes them from
    expression = "(" + "".join(f"({text}), " for text in texts.values()) + ")"
    try:
        values = eval(compile(expression, f"<annotations of {function.__qualname__}>", "eval"), names)
    except Exception:
        return function
    evaluated = types.FunctionType(
        function.__code__, names, function.__name__, function.__defaults__, function.__closure__
    )
    evaluated.__kwdefaults__ = function.__kwdefaults__
    evaluated.__annotations__ = {**function.__annotations__, **dict(zip(texts, values))}
    return evaluated


def _lightning_form(hint: Any) -> Any:
    """``X | Y`` as ``typing.Union[X, Y]`` (``Optional[X]`` for ``X | None``); any other hint as it is."""
    import types
    import typing

    if isinstance(hint, types.UnionType):
        return typing.Union[typing.get_args(hint)]  # Lightning's form, on purpose
    return hint


def _union_text(annotation: str) -> str:
    """``"A | B[C | D]"`` as ``"Union[A, B[C | D]]"``: the top-level alternatives in ``typing``'s form."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(annotation):
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(annotation[start:i].strip())
            start = i + 1
    parts.append(annotation[start:].strip())
    return annotation if len(parts) == 1 else f"Union[{', '.join(parts)}]"
