"""Seeding and RNG state capture, as Lightning's ``seed_everything`` does it."""

from __future__ import annotations

import array
import logging
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ember.utilities.rank_zero import _rank_in_env, log, rank_prefixed_message, rank_zero_only, rank_zero_warn

_MAX_SEED = 2**32 - 1
_MIN_SEED = 0


def seed_everything(seed: int | None = None, workers: bool = False, verbose: bool = True) -> int:
    """Seed python's ``random``, numpy and torch, and export ``PL_GLOBAL_SEED``.

    With ``workers=True`` the dataloader workers are seeded from it too (``PL_SEED_WORKERS=1``).
    Returns the seed used. Without ``seed``, ``PL_GLOBAL_SEED`` gives it, else 0.

    Raises:
        ValueError: the seed is outside numpy's bounds (0 to 2**32 - 1), or ``PL_GLOBAL_SEED`` is no integer
            (as Lightning 2.6: a run never trains with another seed than the one asked for).

    Example::

        seed_everything(42)
    """
    if seed is None:
        env_seed = os.environ.get("PL_GLOBAL_SEED")
        if env_seed is None:
            seed = 0
            if verbose:
                rank_zero_warn(f"No seed found, seed set to {seed}")
        else:
            try:
                seed = int(env_seed)
            except ValueError:
                raise ValueError(
                    f"Invalid seed specified via PL_GLOBAL_SEED: {env_seed!r}. Set it to an integer from {_MIN_SEED}"
                    f" to {_MAX_SEED}, or unset it."
                ) from None
    elif not isinstance(seed, int):
        seed = int(seed)
    if not (_MIN_SEED <= seed <= _MAX_SEED):
        raise ValueError(f"{seed} is not in bounds, numpy accepts from {_MIN_SEED} to {_MAX_SEED}")
    if verbose and not _quieted_by_lightnings_name():
        # every process says it, a launched one with its rank: "[rank: 1] Seed set to 0"
        log.info(rank_prefixed_message(f"Seed set to {seed}", _rank_in_env()))
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    torch.manual_seed(seed)
    os.environ["PL_SEED_WORKERS"] = f"{int(workers)}"
    return seed


# the loggers Lightning's `seed_everything` says "Seed set to ..." through (Fabric's seed module, by either name)
_LIGHTNING_SEED_LOGGERS = ("lightning.fabric.utilities.seed", "lightning_fabric.utilities.seed")


def _quieted_by_lightnings_name() -> bool:
    """Whether the program quieted Lightning's seed message by its logger's name (kraken's ``ketos`` sets
    ``lightning.fabric.utilities.seed`` to ERROR) or by a package above it. As for Lightning's message, the
    nearest of those loggers with a level of its own (or disabled) decides; none is created here."""
    registry = logging.Logger.manager.loggerDict
    for name in _LIGHTNING_SEED_LOGGERS:
        while name:
            logger = registry.get(name)
            if isinstance(logger, logging.Logger) and (logger.disabled or logger.level != logging.NOTSET):
                if logger.disabled or logger.level > logging.INFO:
                    return True
                break  # this one lets INFO through
            name = name.rpartition(".")[0]
    return False


def reset_seed() -> None:
    """Seed again from ``PL_GLOBAL_SEED`` when it was set (used by spawned processes)."""
    seed = os.environ.get("PL_GLOBAL_SEED")
    if seed is None:
        return
    workers = os.environ.get("PL_SEED_WORKERS", "0")
    seed_everything(int(seed), workers=bool(int(workers)), verbose=False)


def pl_worker_init_function(worker_id: int, rank: int | None = None) -> None:
    """Seed each dataloader worker differently but reproducibly (used when ``workers=True``)."""
    global_rank = rank if rank is not None else rank_zero_only.rank  # type: ignore[attr-defined]  # as in Lightning
    process_seed = torch.initial_seed()
    base_seed = process_seed - worker_id
    seed_sequence = _generate_seed_sequence(base_seed, worker_id, global_rank, count=4)
    torch.manual_seed(seed_sequence[0])
    random.seed((seed_sequence[1] << 32) | seed_sequence[2])
    try:
        import numpy as np

        ss = np.random.SeedSequence([base_seed, worker_id, global_rank])
        np.random.seed(ss.generate_state(4))
    except ImportError:
        pass


def _generate_seed_sequence(base_seed: int, worker_id: int, global_rank: int, count: int) -> list[int]:
    # Lightning's: the three numbers in one 64-bit one, its bits spread by MurmurHash3's finalizer (so that a
    # small base seed does not leave the low bits zero), then a linear congruential generator (Knuth's constant)
    mask = (1 << 64) - 1
    combined_seed = (base_seed << 32) | (worker_id << 16) | global_rank
    combined_seed ^= combined_seed >> 33
    combined_seed = (combined_seed * 0xFF51AFD7ED558CCD) & mask
    combined_seed ^= combined_seed >> 33
    combined_seed = (combined_seed * 0xC4CEB9FE1A85EC53) & mask
    combined_seed ^= combined_seed >> 33
    seeds = []
    for _ in range(count):
        combined_seed = (combined_seed * 6364136223846793005 + 1) & mask
        seeds.append(combined_seed)
    return seeds


def collect_rng_states(include_cuda: bool = True) -> dict[str, Any]:
    """Every global RNG state of this process: torch, CUDA, numpy and python."""
    version, words, gauss = random.getstate()
    # the 625 words of python's generator as one tensor: a checkpoint pickles one object, not 625 (built
    # through an array: `torch.tensor` of a tuple of ints takes four times as long)
    python_words = torch.frombuffer(array.array("q", words), dtype=torch.int64)
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": (version, python_words, gauss)}
    try:
        import numpy as np

        name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
        # plain data only, so the state loads with torch.load(weights_only=True)
        states["numpy"] = (
            name,
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(gauss),
        )
    except ImportError:
        pass
    if include_cuda and torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore states captured by :func:`collect_rng_states`."""
    torch.set_rng_state(states["torch"])
    if "torch.cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch.cuda"])
    if "numpy" in states:
        import numpy as np

        name, keys, pos, has_gauss, gauss = states["numpy"]
        keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
        np.random.set_state((name, keys.astype(np.uint32), pos, has_gauss, gauss))
    version, words, gauss = states["python"]
    words = words.tolist() if isinstance(words, torch.Tensor) else words  # tuples in older checkpoints
    random.setstate((version, tuple(words), gauss))


@contextmanager
def isolate_rng(include_cuda: bool = True) -> Iterator[None]:
    """Run the body, then put every global RNG back as it was."""
    states = collect_rng_states(include_cuda)
    try:
        yield
    finally:
        set_rng_states(states)
