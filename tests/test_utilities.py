"""Seeding and rank-zero helpers, as Lightning's behave."""

import os
import random

import numpy as np
import torch

from ember import seed_everything
from ember.utilities import AttributeDict, isolate_rng, rank_zero_only


def test_seed_everything_seeds_every_generator_and_exports_it(monkeypatch):
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    assert seed_everything(123) == 123
    draws = (random.random(), np.random.rand(), torch.rand(1).item())
    assert os.environ["PL_GLOBAL_SEED"] == "123" and os.environ["PL_SEED_WORKERS"] == "0"
    seed_everything(123, workers=True)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws
    assert os.environ["PL_SEED_WORKERS"] == "1"


def test_seed_everything_reads_the_environment_and_bounds(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "77")
    assert seed_everything() == 77
    assert seed_everything(2**40) == 0  # out of numpy's range: falls back to 0 with a warning


def test_isolate_rng_restores_all_generators():
    seed_everything(5)
    with isolate_rng():
        torch.rand(3), np.random.rand(), random.random()
    after = (torch.rand(1).item(), np.random.rand(), random.random())
    seed_everything(5)
    assert after == (torch.rand(1).item(), np.random.rand(), random.random())


def test_rng_states_survive_a_safe_checkpoint_round_trip_and_older_tuples_restore(tmp_path):
    from ember.utilities.seed import collect_rng_states, set_rng_states

    seed_everything(7)
    states = collect_rng_states()
    expected = (torch.rand(1).item(), np.random.rand(), random.random())
    torch.save(states, tmp_path / "rng.pt")
    set_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (torch.rand(1).item(), np.random.rand(), random.random()) == expected

    version, words, gauss = states["python"]
    set_rng_states({**states, "python": (version, tuple(words.tolist()), gauss)})  # as checkpoints held it before
    assert (torch.rand(1).item(), np.random.rand(), random.random()) == expected


def test_rank_zero_only_runs_on_rank_zero_only(monkeypatch):
    calls = []
    fn = rank_zero_only(lambda: calls.append(1))
    fn()
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    fn()
    assert calls == [1]


def test_attribute_dict():
    hparams = AttributeDict(lr=0.1)
    hparams.batch_size = 32
    assert hparams["batch_size"] == 32 and hparams.lr == 0.1


def test_isolate_rng_leaves_an_uninitialized_cuda_alone(monkeypatch):
    # reading CUDA's generators would initialize CUDA, which breaks a later ddp_fork: only read them once in use
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: calls.append("get") or [])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: calls.append("set"))
    with isolate_rng():
        torch.rand(1)
    assert calls == []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with isolate_rng():
        torch.rand(1)
    assert calls == ["get", "set"]
