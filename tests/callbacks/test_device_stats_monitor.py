"""DeviceStatsMonitor: keys, steps and cadence, CPU stats through psutil, and its errors."""

from __future__ import annotations

import re
import sys
import types

import pytest
import torch
from tests.helpers.callback_models import QUIET, make_recording_logger, make_regressor, train_loader, val_loader

import ember as pl
from ember.callbacks import DeviceStatsMonitor
from ember.callbacks import device_stats_monitor as dsm
from ember.utilities.exceptions import MisconfigurationException

Regressor = make_regressor(pl)
RecordingLogger = make_recording_logger(pl)


@pytest.fixture
def psutil(monkeypatch):
    module = types.ModuleType("psutil")
    module.virtual_memory = lambda: types.SimpleNamespace(percent=41.0)
    module.swap_memory = lambda: types.SimpleNamespace(percent=3.0)
    module.cpu_percent = lambda: 77.0
    monkeypatch.setitem(sys.modules, "psutil", module)
    return module


def _fit(logger, monitor, **kwargs):
    trainer = pl.Trainer(**{**QUIET, "logger": logger}, callbacks=[monitor], **kwargs)
    trainer.fit(Regressor(), train_loader(n=24), val_loader(n=12))
    return trainer


def test_cpu_stats_are_logged_at_the_log_points_with_lightnings_keys(psutil):
    logger = RecordingLogger()
    _fit(logger, DeviceStatsMonitor(), max_epochs=1, log_every_n_steps=2, num_sanity_val_steps=0)
    device_calls = [(m, step) for m, step in logger.calls if any(k.startswith("DeviceStatsMonitor") for k in m)]
    train = [(sorted(m), step) for m, step in device_calls if "train" in next(iter(m))]
    # 6 batches, every 2nd one logs: before its step (batch start) and after it (batch end)
    assert [step for _, step in train] == [1, 1, 3, 3, 5, 5]
    assert train[0][0] == [
        "DeviceStatsMonitor.on_train_batch_start/cpu_percent",
        "DeviceStatsMonitor.on_train_batch_start/cpu_swap_percent",
        "DeviceStatsMonitor.on_train_batch_start/cpu_vm_percent",
    ]
    assert device_calls[0][0]["DeviceStatsMonitor.on_train_batch_start/cpu_percent"] == 77.0
    validation = [sorted(m)[0].split("/")[0] for m, _ in device_calls if "validation" in next(iter(m))]
    # 3 validation batches: the 2nd logs at its start and its end
    assert validation == ["DeviceStatsMonitor.on_validation_batch_start", "DeviceStatsMonitor.on_validation_batch_end"]


def test_cpu_stats_false_logs_nothing_on_the_cpu(psutil):
    logger = RecordingLogger()
    _fit(logger, DeviceStatsMonitor(cpu_stats=False), max_epochs=1, log_every_n_steps=1)
    assert not any(k.startswith("DeviceStatsMonitor") for m, _ in logger.calls for k in m)


def test_cuda_stats_come_from_the_allocator(monkeypatch, psutil):
    monkeypatch.setattr(torch.cuda, "memory_stats", lambda device: {"allocated_bytes.all.current": 512})
    stats = dsm.get_device_stats(torch.device("cuda", 0))
    assert stats == {"allocated_bytes.all.current": 512}


def test_without_a_logger_fit_is_refused():
    trainer = pl.Trainer(**QUIET, max_epochs=1, callbacks=[DeviceStatsMonitor()])
    with pytest.raises(
        MisconfigurationException, match=r"Cannot use `DeviceStatsMonitor` callback with `Trainer\(logger=False\)`"
    ):
        trainer.fit(Regressor(), train_loader())


def test_missing_psutil_is_named_in_lightnings_words(monkeypatch):
    monkeypatch.setitem(sys.modules, "psutil", None)
    trainer = pl.Trainer(**{**QUIET, "logger": RecordingLogger()}, max_epochs=1, callbacks=[DeviceStatsMonitor()])
    lightnings = (
        "`DeviceStatsMonitor` cannot log CPU stats as `psutil` is not installed. Requirement 'psutil' not met."
        " HINT: Try running `pip install -U 'psutil'`"
    )
    with pytest.raises(
        ModuleNotFoundError, match=re.escape(lightnings) + r" \(or pass `DeviceStatsMonitor\(cpu_stats=False\)`\)"
    ):
        trainer.fit(Regressor(), train_loader())
    with pytest.raises(ModuleNotFoundError) as raised:
        dsm.get_cpu_stats()
    assert str(raised.value) == (
        "Fetching CPU device stats requires `psutil` to be installed. Requirement 'psutil' not met."
        " HINT: Try running `pip install -U 'psutil'`"
    )


def test_lightnings_psutil_flag_set_false_acts_as_if_psutil_were_missing(monkeypatch, psutil):
    # `callbacks.device_stats_monitor._PSUTIL_AVAILABLE`, which Lightning's tests (and suites copying them) set
    assert bool(dsm._PSUTIL_AVAILABLE) or "psutil" not in sys.modules  # Lightning's flag, read where set
    monkeypatch.setattr(dsm, "_PSUTIL_AVAILABLE", False)
    trainer = pl.Trainer(**{**QUIET, "logger": RecordingLogger()}, max_epochs=1, callbacks=[DeviceStatsMonitor()])
    with pytest.raises(ModuleNotFoundError, match="psutil` is not installed"):
        trainer.fit(Regressor(), train_loader())
