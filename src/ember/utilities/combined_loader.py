"""``CombinedLoader``: several iterables drawn together, at Lightning's path ``utilities.combined_loader``.

The iterables come as one iterable or a collection of them (lists, tuples, namedtuples, dicts,
nested in each other). They are flattened into a list (``flattened``), drawn from in one of four
modes, and every batch is put back into the collection's shape::

    loader = CombinedLoader({"a": loader_a, "b": loader_b}, mode="max_size_cycle")
    for batch, batch_idx, dataloader_idx in loader:
        batch["a"], batch["b"]  # one batch of each

Modes: ``min_size`` stops with the shortest iterable; ``max_size_cycle`` stops with the longest,
starting the shorter ones again when they run out; ``max_size`` stops with the longest and gives
``None`` for the ones that ran out; ``sequential`` runs the iterables one after another and yields
each one's own batches, with ``dataloader_idx`` saying which one.

The trainer trains on several dataloaders through ``max_size_cycle`` and evaluates them through
``sequential``, as Lightning does.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from ember.utilities.data import sized_len

_ITERATOR_RETURN = tuple[Any, int, int]  # batch, batch_idx, dataloader_idx
_LITERAL_SUPPORTED_MODES = Literal["min_size", "max_size_cycle", "max_size", "sequential"]


# =====================================================================================
# the collection of iterables, flattened and rebuilt
# =====================================================================================
class _Spec:
    """The shape of a collection: how to rebuild it from its flattened leaves.

    ``kind`` is None for a leaf (one iterable standing for itself).
    """

    __slots__ = ("children", "context", "kind")

    def __init__(self, kind: Any = None, context: Any = None, children: list[_Spec] | None = None) -> None:
        self.kind = kind
        self.context = context
        self.children = children or []

    def rebuild(self, leaves: Iterator[Any]) -> Any:
        if self.kind is None:
            return next(leaves)
        values = [child.rebuild(leaves) for child in self.children]
        kind, context = self.kind, self.context
        if kind is list:
            return values
        if kind is tuple:
            return tuple(values)
        if kind == "namedtuple":
            return context(*values)
        if kind is dict:
            return dict(zip(context, values))
        if kind is OrderedDict:
            return OrderedDict(zip(context, values))
        if kind is defaultdict:
            factory, keys = context
            return defaultdict(factory, zip(keys, values))
        return deque(values, maxlen=context)  # deque


def _node(tree: Any) -> tuple[Any, Any, list[Any]] | None:
    """``(kind, context, children)`` for a container that is split up, None for anything else."""
    kind = type(tree)
    if kind is list:
        return list, None, tree
    if kind is tuple:
        return tuple, None, list(tree)
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return "namedtuple", kind, list(tree)
    if kind is dict or kind is OrderedDict:
        return kind, list(tree), list(tree.values())
    if kind is defaultdict:
        return defaultdict, (tree.default_factory, list(tree)), list(tree.values())
    if kind is deque:
        return deque, tree.maxlen, list(tree)
    return None


def _flatten(tree: Any) -> tuple[list[Any], _Spec]:
    """The leaves of a collection of iterables, and its shape.

    As in Lightning, a container holding only numbers and strings (or nothing) is one iterable
    itself: ``[1, 2, 3]`` is a leaf, ``[loader_a, loader_b]`` has two.
    """
    node = _node(tree)
    if node is None or all(isinstance(child, (int, float, str)) for child in node[2]):
        return [tree], _Spec()
    kind, context, children = node
    leaves: list[Any] = []
    specs = []
    for child in children:
        child_leaves, child_spec = _flatten(child)
        leaves += child_leaves
        specs.append(child_spec)
    return leaves, _Spec(kind, context, specs)


def _unflatten(leaves: list[Any], spec: _Spec) -> Any:
    return spec.rebuild(iter(leaves))


def _lengths(iterables: list[Any]) -> list[int | float]:
    return [float("inf") if (length := sized_len(iterable)) is None else length for iterable in iterables]


def _limited(iterables: list[Any], limits: list[int | float] | None) -> list[int | float]:
    lengths = _lengths(iterables)
    if limits is None:
        return lengths
    return [min(length, limit) for length, limit in zip(lengths, limits)]


# =====================================================================================
# the modes
# =====================================================================================
class _ModeIterator(Iterator[_ITERATOR_RETURN]):
    """Draws batches from the flat list of iterables; each mode says how.

    ``_pull`` draws one item from an inner iterator and ``_before_reopen`` is called before an inner
    iterator is created again mid-way (a cycle, the next iterable of ``sequential``); the trainer sets
    them to skip batches quickly and to record the random state when it resumes a run exactly.
    """

    def __init__(self, iterables: list[Iterable[Any]], limits: list[int | float] | None = None) -> None:
        if limits is not None and len(limits) != len(iterables):
            raise ValueError(f"Mismatch in number of limits ({len(limits)}) and number of iterables ({len(iterables)})")
        self.iterables = iterables
        self.limits = limits
        self.iterators: list[Iterator[Any]] = []
        self._idx = 0  # the batch_idx of the next batch
        self._pull: Callable[[Iterator[Any]], Any] = next
        self._before_reopen: Callable[[int, int], None] | None = None

    def __iter__(self) -> _ModeIterator:
        self.iterators = [iter(iterable) for iterable in self.iterables]
        self._idx = 0
        return self

    def __next__(self) -> _ITERATOR_RETURN:
        raise NotImplementedError

    def length(self) -> int | float:
        """The number of batches (``inf`` when an iterable that decides it has no length)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.length()  # type: ignore[return-value]  # inf makes len() raise TypeError, as in Lightning

    def reset(self) -> None:
        self.iterators = []
        self._idx = 0

    def _reopen(self, index: int) -> Iterator[Any]:
        if self._before_reopen is not None:
            self._before_reopen(self._idx, index)
        return iter(self.iterables[index])

    def __getstate__(self) -> dict[str, Any]:
        from torch.utils.data.dataloader import _BaseDataLoaderIter

        state = self.__dict__.copy()
        # a DataLoader's iterator cannot be pickled: it is left out, as in Lightning
        state["iterators"] = [None if isinstance(it, _BaseDataLoaderIter) else it for it in self.iterators]
        state["_before_reopen"] = None
        return state


class _MaxSizeCycle(_ModeIterator):
    """Until the longest iterable is done; shorter ones start again when they run out."""

    def __init__(self, iterables: list[Iterable[Any]], limits: list[int | float] | None = None) -> None:
        super().__init__(iterables, limits)
        self._consumed: list[bool] = []

    def __iter__(self) -> _MaxSizeCycle:
        super().__iter__()
        self._consumed = [False] * len(self.iterables)
        return self

    def __next__(self) -> _ITERATOR_RETURN:
        pull, iterators = self._pull, self.iterators
        out: list[Any] = [None] * len(iterators)
        for i in range(len(iterators)):
            try:
                out[i] = pull(iterators[i])
            except StopIteration:
                self._consumed[i] = True
                if all(self._consumed):
                    raise
                iterators[i] = self._reopen(i)
                out[i] = pull(iterators[i])
        index = self._idx
        self._idx += 1
        return out, index, 0

    def length(self) -> int | float:
        return max(_limited(self.iterables, self.limits))

    def reset(self) -> None:
        super().reset()
        self._consumed = []


class _MinSize(_ModeIterator):
    """Until the shortest iterable is done."""

    def __next__(self) -> _ITERATOR_RETURN:
        pull = self._pull
        out = [pull(iterator) for iterator in self.iterators]
        index = self._idx
        self._idx += 1
        return out, index, 0

    def length(self) -> int | float:
        return min(_limited(self.iterables, self.limits))


class _MaxSize(_ModeIterator):
    """Until the longest iterable is done; the ones that ran out give ``None``."""

    def __next__(self) -> _ITERATOR_RETURN:
        pull = self._pull
        out: list[Any] = [None] * len(self.iterators)
        exhausted = True
        for i, iterator in enumerate(self.iterators):
            with contextlib.suppress(StopIteration):
                out[i] = pull(iterator)
                exhausted = False
        if exhausted:
            raise StopIteration
        index = self._idx
        self._idx += 1
        return out, index, 0

    def length(self) -> int | float:
        return max(_limited(self.iterables, self.limits))


class _Sequential(_ModeIterator):
    """Each iterable in turn (up to its limit); only the current one has an iterator."""

    def __init__(self, iterables: list[Iterable[Any]], limits: list[int | float] | None = None) -> None:
        super().__init__(iterables, limits)
        self._iterator_idx = 0  # the dataloader_idx of the current iterable

    def __iter__(self) -> _Sequential:
        self._iterator_idx = 0
        self._idx = 0
        self._open_current()
        return self

    def __next__(self) -> _ITERATOR_RETURN:
        count, limits = len(self.iterables), self.limits
        while self._iterator_idx < count:
            if limits is not None and self._idx >= limits[self._iterator_idx]:
                self._next_iterable()
                continue
            try:
                out = self._pull(self.iterators[0])
            except StopIteration:
                self._next_iterable()
                continue
            index = self._idx
            self._idx += 1
            return out, index, self._iterator_idx
        raise StopIteration

    def length(self) -> int | float:
        return sum(_limited(self.iterables, self.limits))

    def reset(self) -> None:
        super().reset()
        self._iterator_idx = 0

    def _open_current(self) -> None:
        # one iterator at a time, so that only one set of worker processes runs
        index = self._iterator_idx
        if index >= len(self.iterables):
            self.iterators = []
        elif index == 0:
            self.iterators = [iter(self.iterables[0])]
        else:
            self.iterators = [self._reopen(index)]

    def _next_iterable(self) -> None:
        self._iterator_idx += 1
        self._idx = 0
        self._open_current()


_SUPPORTED_MODES: dict[str, tuple[Callable[[list[int]], int], type[_ModeIterator]]] = {
    "min_size": (min, _MinSize),
    "max_size_cycle": (max, _MaxSizeCycle),
    "max_size": (max, _MaxSize),
    "sequential": (sum, _Sequential),
}


# =====================================================================================
# CombinedLoader
# =====================================================================================
class CombinedLoader(Iterable[Any]):
    """Combines several iterables under one of four sampling modes.

    Args:
        iterables: one iterable, or a collection (list, tuple, dict, nested) of them.
        mode: ``"min_size"`` (the default, as in Lightning): stop after the shortest iterable;
            ``"max_size_cycle"``: stop after the longest, starting the others again when they run
            out; ``"max_size"``: stop after the longest, giving ``None`` for the ones that ran out;
            ``"sequential"``: each iterable completely, one after another.

    Iterating yields ``(batch, batch_idx, dataloader_idx)``. In the first three modes ``batch`` has
    the shape of ``iterables`` (a dict of batches for a dict of loaders) and ``dataloader_idx`` is
    0; in ``sequential`` it is one iterable's batch and ``dataloader_idx`` says which (its
    position in ``flattened``), with ``batch_idx`` counting from 0 in each.

    Raises:
        ValueError: ``mode`` is not one of the four.

    Example::

        loader = CombinedLoader({"a": DataLoader(range(6), batch_size=4),
                                 "b": DataLoader(range(15), batch_size=5)}, "max_size_cycle")
        iter(loader)
        len(loader)  # 3
        for batch, batch_idx, dataloader_idx in loader:
            ...  # {"a": tensor([0, 1, 2, 3]), "b": tensor([0, 1, 2, 3, 4])}, 0, 0; then 1, then 2
    """

    def __init__(self, iterables: Any, mode: _LITERAL_SUPPORTED_MODES = "min_size") -> None:
        if mode not in _SUPPORTED_MODES:
            raise ValueError(f"Unsupported mode {mode!r}, please select one of: {list(_SUPPORTED_MODES)}.")
        self._iterables = iterables
        self._flattened, self._spec = _flatten(iterables)
        self._mode = mode
        self._iterator: _ModeIterator | None = None
        self._limits: list[int | float] | None = None

    @property
    def iterables(self) -> Any:
        """The collection of iterables, as given (or as last set through ``flattened``)."""
        return self._iterables

    @property
    def sampler(self) -> Any:
        """The ``sampler`` of each iterable (None where it has none), in the collection's shape."""
        return _unflatten([getattr(it, "sampler", None) for it in self._flattened], self._spec)

    @property
    def batch_sampler(self) -> Any:
        """The ``batch_sampler`` of each iterable (None where it has none), in the collection's shape."""
        return _unflatten([getattr(it, "batch_sampler", None) for it in self._flattened], self._spec)

    @property
    def flattened(self) -> list[Any]:
        """The iterables as a flat list; setting it replaces them (same number) and rebuilds ``iterables``."""
        return self._flattened

    @flattened.setter
    def flattened(self, flattened: list[Any]) -> None:
        if len(flattened) != len(self._flattened):
            raise ValueError(
                f"Mismatch in flattened length ({len(flattened)}) and existing length ({len(self._flattened)})"
            )
        self._iterables = _unflatten(flattened, self._spec)
        self._flattened = flattened

    @property
    def limits(self) -> list[int | float] | None:
        """The most batches to draw from each iterable (None: no limits); one number sets it for all."""
        return self._limits

    @limits.setter
    def limits(self, limits: int | float | list[int | float] | None) -> None:
        if isinstance(limits, (int, float)):
            limits = [limits] * len(self._flattened)
        elif isinstance(limits, list) and len(limits) != len(self._flattened):
            raise ValueError(
                f"Mismatch in number of limits ({len(limits)}) and number of iterables ({len(self._flattened)})"
            )
        self._limits = limits

    def __iter__(self) -> CombinedLoader:
        iterator = _SUPPORTED_MODES[self._mode][1](self._flattened, self._limits)
        iter(iterator)
        self._iterator = iterator
        return self

    def __next__(self) -> _ITERATOR_RETURN:
        if self._iterator is None:
            raise RuntimeError("Please call `iter(combined_loader)` first.")
        out, batch_idx, dataloader_idx = next(self._iterator)
        if self._mode == "sequential":
            return out, batch_idx, dataloader_idx
        return _unflatten(out, self._spec), batch_idx, dataloader_idx

    def __len__(self) -> int:
        """The number of batches in this mode, with the limits; needs ``iter(combined_loader)`` first.

        Raises:
            RuntimeError: the loader has not been iterated yet.
            TypeError: an iterable that decides the length has none (an ``IterableDataset``).
        """
        if self._iterator is None:
            raise RuntimeError("Please call `iter(combined_loader)` first.")
        return len(self._iterator)

    def _length(self) -> int | float:
        """The number of batches (``inf`` when unsized) without creating iterators."""
        return _SUPPORTED_MODES[self._mode][1](self._flattened, self._limits).length()

    def reset(self) -> None:
        """Drop the iterator and shut down the worker processes of the iterables."""
        if self._iterator is not None:
            self._iterator.reset()
            self._iterator = None
        for iterable in self._flattened:
            _shutdown_workers_and_reset_iterator(iterable)

    def _dataset_length(self) -> int:
        """The datasets' lengths combined as this mode combines batches (max, min or sum).

        Raises:
            NotImplementedError: every dataset is an iterable-style dataset without a length.
        """
        lengths = [n for it in self._flattened if (n := sized_len(getattr(it, "dataset", None))) is not None]
        if not lengths:
            raise NotImplementedError("All datasets are iterable-style datasets.")
        return _SUPPORTED_MODES[self._mode][0](lengths)

    def _state_dicts(self) -> list[dict[str, Any]]:
        """The ``state_dict()`` of every iterable that has ``state_dict`` and ``load_state_dict``."""
        return [iterable.state_dict() for iterable in self._flattened if _is_stateful(iterable)]

    def _load_state_dicts(self, states: list[dict[str, Any]]) -> None:
        """Give each stateful iterable its state back, in order.

        Raises:
            RuntimeError: the number of states differs from the number of stateful iterables.
        """
        if not states:
            return
        stateful = [iterable for iterable in self._flattened if _is_stateful(iterable)]
        if len(stateful) != len(states):
            raise RuntimeError(
                f"The CombinedLoader has {len(stateful)} stateful loaders, but found {len(states)} states"
                " in the checkpoint. Please make sure you define the same dataloaders that were used when saving"
                " the checkpoint."
            )
        for iterable, state in zip(stateful, states):
            iterable.load_state_dict(state)


def _is_stateful(obj: Any) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))


def _shutdown_workers_and_reset_iterator(dataloader: object) -> None:
    if hasattr(dataloader, "_iterator"):
        from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

        if isinstance(dataloader._iterator, _MultiProcessingDataLoaderIter):
            dataloader._iterator._shutdown_workers()
        dataloader._iterator = None


__all__ = ["CombinedLoader"]
