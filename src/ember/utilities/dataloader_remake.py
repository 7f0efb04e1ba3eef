"""A DataLoader made again with another sampler: what the Trainer does for distributed and ``overfit_batches``
runs and for prediction, and what Lightning's ``utilities.data._update_dataloader`` does for a program.

A subclass is made again through its own ``__init__`` where it can be (with the arguments it was made with,
recorded while a ``*_dataloader`` hook ran, see :func:`recording_loader_arguments`), so that what it sets
up there exists in the copy; a batch sampler is copied to draw from the new sampler.

Example::

    from torch.utils.data.distributed import DistributedSampler

    sharded = rebuild_dataloader(loader, DistributedSampler(loader.dataset, shuffle=False))
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from typing import Any

from torch.utils.data import BatchSampler, DataLoader

from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_warn
from ember.utilities.warnings import PossibleUserWarning


def rebuild_dataloader(
    loader: DataLoader,
    sampler: Any,
    drop_last: bool | None = None,
    batch_sampler: Any = None,
    required: bool = True,
) -> DataLoader:
    """A copy of ``loader`` drawing from ``sampler`` instead (for distributed and overfit runs), and
    keeping or dropping its last, smaller batch as ``drop_last`` says (by default as ``loader`` does; a loader
    built with ``batch_sampler=`` gets a copy of it, see ``_batch_sampler_with``); or, given ``batch_sampler``,
    drawing its batches from that. A subclass that its own ``__init__``
    cannot make again gets only ``DataLoader.__init__``, or, not ``required``, comes back as it is."""
    kwargs: dict[str, Any] = {
        "batch_size": loader.batch_size,
        "drop_last": loader.drop_last if drop_last is None else drop_last,
        "num_workers": loader.num_workers,
        "collate_fn": loader.collate_fn,
        "pin_memory": loader.pin_memory,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        "multiprocessing_context": loader.multiprocessing_context,
        "generator": loader.generator,
        "prefetch_factor": loader.prefetch_factor,
        "persistent_workers": loader.persistent_workers,
    }
    if batch_sampler is None and loader.batch_size is None:
        # a loader built with `batch_sampler=`: a copy of that batch sampler draws from `sampler`
        batch_sampler = _batch_sampler_with(loader.batch_sampler, sampler=sampler, drop_last=drop_last)
        if batch_sampler is None:
            return loader  # one that cannot take them (a prediction only warns, as in Lightning)
    if batch_sampler is not None:
        kwargs.update(batch_size=1, drop_last=False, sampler=None, batch_sampler=batch_sampler)
    else:
        kwargs["sampler"] = sampler
    if loader.num_workers == 0:
        kwargs.pop("prefetch_factor")
        kwargs["persistent_workers"] = False
    cls = type(loader)
    if cls is not DataLoader:
        rebuilt = _through_own_init(cls, loader, kwargs, refuse_given_twice=required)
        if rebuilt is not None:
            return rebuilt
        if not required:
            return loader
    new = cls.__new__(cls)
    try:
        DataLoader.__init__(new, loader.dataset, **kwargs)
    except TypeError:
        new = DataLoader(loader.dataset, **kwargs)
    return new


@contextlib.contextmanager
def recording_loader_arguments() -> Iterator[None]:
    """While a ``*_dataloader`` hook runs, each DataLoader or BatchSampler subclass it makes remembers the
    arguments of its ``__init__`` (Lightning records them so too), so that a copy with a new sampler passes
    them again: an argument the subclass keeps under another name, or not at all, is not lost."""
    patched: list[tuple[type, Any]] = []
    pending = [*DataLoader.__subclasses__(), *BatchSampler.__subclasses__()]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        original = cls.__dict__.get("__init__")
        if original is None or getattr(original, "_ember_records", False):
            continue
        try:
            type.__setattr__(cls, "__init__", _recording(original))
        except (TypeError, AttributeError):  # a class that cannot be changed (an extension type): not recorded
            continue
        patched.append((cls, original))
    try:
        yield
    finally:
        for cls, original in patched:
            type.__setattr__(cls, "__init__", original)


def _recording(init: Any) -> Any:
    @functools.wraps(init)
    def recorded_init(self: Any, *args: Any, **kwargs: Any) -> None:
        state = getattr(self, "__dict__", None)
        if state is not None and "_ember_init_arguments" not in state:  # the outermost `__init__`: what was passed
            state["_ember_init_arguments"] = (args, kwargs)
        init(self, *args, **kwargs)

    recorded_init._ember_records = True  # type: ignore[attr-defined]
    return recorded_init


def _recorded_arguments(cls: type, made: Any) -> dict[str, Any]:
    """The named ``__init__`` arguments ``made`` (a loader, a batch sampler) was made with inside a hook (``{}``
    when not recorded), those its ``**kwargs`` took among them."""
    call = _recorded_call(cls, made)
    return {} if call is None else {**call[0], **call[1]}


def _recorded_call(cls: type, made: Any) -> tuple[dict[str, Any], dict[str, Any], bool] | None:
    """How ``made`` was made inside a hook: ``(arguments of its named parameters, those its **kwargs took,
    whether its *args took any)``; ``None`` when not recorded (made outside a hook) or not matching the
    signature."""
    import inspect

    recorded = getattr(made, "__dict__", {}).get("_ember_init_arguments")
    if recorded is None:
        return None
    try:
        signature = inspect.signature(cls)
        bound = signature.bind_partial(*recorded[0], **recorded[1]).arguments
    except (TypeError, ValueError):
        return None
    named: dict[str, Any] = {}
    through_kwargs: dict[str, Any] = {}
    through_args = False
    for name, value in bound.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            through_kwargs.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            through_args = bool(value)
        else:
            named[name] = value
    return named, through_kwargs, through_args


def _through_own_init(
    cls: type[DataLoader], loader: DataLoader, kwargs: dict[str, Any], refuse_given_twice: bool
) -> DataLoader | None:
    """A DataLoader subclass made again through its own ``__init__``, so that what it sets up there (a
    ``StatefulDataLoader``'s position tracking, a subclass's own attributes) exists in the copy, as
    Lightning re-creates one: each argument is the new loader setting, else what it was made with in a
    ``*_dataloader`` hook, else the instance's attribute of that name, else its default. ``None`` when an
    argument has none of them or the call fails; with ``refuse_given_twice``, a call that fails because its
    ``__init__`` passes a setting of ours on twice raises Lightning's ``MisconfigurationException``
    (see :func:`_given_twice_error`).

    As in Lightning, a loader made in a hook gets its dataset from the arguments it was made with, whatever
    its ``__init__`` calls that parameter (``def __init__(self, ds, **kwargs)``), and the arguments its
    ``**kwargs`` took are passed again; one made outside a hook (or whose ``*args`` took arguments, which
    are not passed again) gets it as ``dataset=``."""
    call = _recorded_call(cls, loader)
    named, through_kwargs, through_args = call if call is not None else ({}, {}, False)
    given = {**through_kwargs, "shuffle": False, **kwargs}  # the new sampler holds the order
    if call is None or through_args:
        given["dataset"] = loader.dataset
    attributes = {**vars(loader), **named}
    # the new sampler replaces the old order, whichever of the two held it
    attributes.pop("batch_sampler", None)
    if "batch_sampler" not in kwargs:
        given.pop("batch_sampler", None)
    remade = _made_again(cls, given, attributes, rest_to_kwargs=True, refuse_given_twice=refuse_given_twice)
    if remade is None:
        return None
    batch_sampler = given.get("batch_sampler")
    taken = remade.batch_sampler is batch_sampler if batch_sampler is not None else remade.sampler is given["sampler"]
    return remade if taken else None  # else its `__init__` did not pass the new sampler on (no such argument)


def _made_again(
    cls: type,
    given: dict[str, Any],
    attributes: dict[str, Any],
    rest_to_kwargs: bool,
    refuse_given_twice: bool = False,
) -> Any:
    """``cls(...)`` with each ``__init__`` argument taken from ``given``, else from ``attributes`` (the old
    instance's), else its default; ``rest_to_kwargs``: what ``given`` has beyond the named arguments goes to
    a ``**kwargs``, else every name in ``given`` must be an argument. ``None`` when one is missing or the call
    fails; with ``refuse_given_twice``, :func:`_given_twice_error` where it failed on an argument given twice."""
    import inspect

    try:
        parameters = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return None
    call: dict[str, Any] = {}
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            if rest_to_kwargs:
                call.update({name: value for name, value in given.items() if name not in call})
        elif parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        elif parameter.name in given:
            call[parameter.name] = given[parameter.name]
        elif parameter.name in attributes:
            call[parameter.name] = attributes[parameter.name]
        elif parameter.default is inspect.Parameter.empty:
            return None
    if not rest_to_kwargs and not set(given) <= set(call):
        return None
    try:
        return cls(**call)
    except TypeError as error:
        twice = _GIVEN_TWICE.search(str(error))
        if refuse_given_twice and twice is not None:
            raise _given_twice_error(cls, twice.group(1)) from error
        return None
    except ValueError:
        return None


# Python's words for a call that passes one argument twice, e.g. `super().__init__(shuffle=x, **kwargs)` with
# `shuffle` in `kwargs`: "DataLoader.__init__() got multiple values for keyword argument 'shuffle'"
_GIVEN_TWICE = re.compile(r"__init__\(\) got multiple values for (?:keyword )?argument '(\w+)'")


def _given_twice_error(cls: type, argument: str) -> MisconfigurationException:
    """A loader subclass whose ``__init__`` passes its own value for ``argument`` and its ``**kwargs``
    (which hold ours) on to its parent cannot be made again with a new sampler. The copy made without its
    ``__init__`` would lack what that sets up, so this is refused, in Lightning's words (its first sentence
    is the one programs match), with the fix."""
    name = cls.__name__
    return MisconfigurationException(
        f"The {name} implementation has an error where more than one `__init__` argument can be passed to its"
        f" parent's `{argument}=...` `__init__` argument. The Trainer makes the loader again with a new sampler"
        f" (for distributed training or `overfit_batches`) and passes `{argument}` among the arguments;"
        f" `{name}.__init__` passes its own `{argument}` to its parent as well as its `**kwargs`. Remove"
        f" `{argument}` from `kwargs` before passing them on (`kwargs.pop({argument!r}, None)`); in distributed"
        " training you may instead set `Trainer(use_distributed_sampler=False)` and give the loader a"
        " `DistributedSampler` yourself."
    )


_NOT_A_BATCH_SAMPLER = (
    " Lightning can't inject a (distributed) sampler into your batch sampler, because it doesn't subclass PyTorch's"
    " `BatchSampler`. To mitigate this, either follow the API of `BatchSampler` or set"
    " `Trainer(use_distributed_sampler=False)`. If you choose the latter, you will be responsible for handling the"
    " distributed sampling within your batch sampler."
)


def _batch_sampler_with(batch_sampler: Any, sampler: Any, drop_last: bool | None = None) -> Any:
    """A copy of ``batch_sampler`` drawing from ``sampler`` (and, given ``drop_last``, keeping or dropping its
    last, smaller batch so); the user's own is left as it was. Lightning re-creates it from the arguments it
    was made with; here a torch ``BatchSampler`` (or subclass, or a look-alike with a ``sampler``) is made
    again through its ``__init__`` where every argument is known, else copied with the two attributes
    replaced. A look-alike with only ``batch_size`` and ``drop_last`` is made as ``cls(sampler, batch_size=...,
    drop_last=...)``, as Lightning makes it. Anything else cannot take the sampler: ``TypeError`` with
    Lightning's words, or, when only ``drop_last`` was asked for (a prediction), Lightning's warning and
    ``None`` (the loader stays as it is)."""
    import copy

    changes: dict[str, Any] = {"sampler": sampler}
    if drop_last is not None:
        changes["drop_last"] = drop_last
    cls = type(batch_sampler)
    if hasattr(batch_sampler, "sampler"):
        attributes = vars(batch_sampler) if hasattr(batch_sampler, "__dict__") else {}
        attributes = {**attributes, **_recorded_arguments(cls, batch_sampler)}
        remade = _made_again(cls, changes, attributes, rest_to_kwargs=False)
        if remade is None:
            remade = copy.copy(batch_sampler)
            for name, value in changes.items():
                setattr(remade, name, value)
        return remade
    if hasattr(batch_sampler, "batch_size") and hasattr(batch_sampler, "drop_last"):
        keep_last = batch_sampler.drop_last if drop_last is None else drop_last
        try:
            return cls(sampler, batch_size=batch_sampler.batch_size, drop_last=keep_last)
        except TypeError as error:
            raise TypeError(_NOT_A_BATCH_SAMPLER) from error
    if drop_last is not None:
        rank_zero_warn(
            f"You are using a custom batch sampler `{cls.__qualname__}` for prediction. Lightning would normally set"
            " `drop_last=False` to ensure all samples are returned, but for custom samplers it can't guarantee this."
            " Make sure your sampler is configured correctly to return all indices.",
            category=PossibleUserWarning,
        )
        return None
    raise TypeError(_NOT_A_BATCH_SAMPLER)
