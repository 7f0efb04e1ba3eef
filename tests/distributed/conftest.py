"""Fixtures shared by the distributed tests."""

from __future__ import annotations

import os

import pytest
import torch

# what a launcher or scheduler sets for a rank; a test starts without them
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS")


@pytest.fixture
def no_rank_variables(monkeypatch):
    for key in RANK_VARIABLES:
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def in_test_process(monkeypatch):
    """A run in the test process itself (1 rank, no launcher): its process group, the rank
    variables and the launcher that later Trainers would join must not outlive the test."""
    from ember.distributed import launch

    monkeypatch.setattr(launch, "_ACTIVE", [])
    saved = dict(os.environ)
    yield
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def no_process_group_left():
    """Ember keeps a run's process group until the interpreter exits; in the test process that would
    leave the next test's forked ranks inside a world of one. Every test here ends without one."""
    yield
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
