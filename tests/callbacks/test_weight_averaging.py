"""WeightAveraging / EMAWeightAveraging: the average, exact resume, and updates that never read the device."""

from __future__ import annotations

import re

import pytest
import torch
from tests.helpers.names_programs import QUIET, _loader, _module_class
from torch.optim.swa_utils import AveragedModel, get_ema_avg_fn

import ember as pl
from ember.callbacks import EMAWeightAveraging, ModelCheckpoint, WeightAveraging
from ember.callbacks.weight_averaging import _AveragedModel

Net = _module_class(pl)


def _fit(root, max_epochs, callback, ckpt_path=None, extra=()):
    torch.manual_seed(0)
    model = Net()
    trainer = pl.Trainer(
        **{**QUIET, "enable_checkpointing": True},
        default_root_dir=root,
        max_epochs=max_epochs,
        limit_val_batches=0,
        callbacks=[callback, *extra],
    )
    trainer.fit(model, _loader(), ckpt_path=ckpt_path)
    return model


def test_default_average_is_the_mean_of_the_weights_after_each_step(tmp_path):
    seen = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            seen.append([t.detach().clone() for t in pl_module.state_dict().values()])

    averaging = WeightAveraging()
    model = _fit(tmp_path, 1, averaging, extra=[Record()])
    expected = [torch.stack(ts).double().mean(0) for ts in zip(*seen)]
    for name, value, mean in zip(model.state_dict(), model.state_dict().values(), expected):
        if value.is_floating_point():
            torch.testing.assert_close(value.double(), mean, rtol=1e-5, atol=1e-6, msg=name)


def test_resume_continues_the_average_and_the_weights_exactly(tmp_path):
    uninterrupted = _fit(tmp_path / "a", 3, EMAWeightAveraging(decay=0.5))
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, filename="{epoch}")
    _fit(tmp_path / "b", 2, EMAWeightAveraging(decay=0.5), extra=[checkpoint])
    saved = torch.load(tmp_path / "ckpt" / "epoch=1.ckpt", weights_only=True)
    assert {"current_model_state", "averaging_state"} <= saved.keys()
    assert saved["averaging_state"]["n_averaged"].item() == 8  # every optimizer step of two epochs
    resumed = _fit(tmp_path / "c", 3, EMAWeightAveraging(decay=0.5), ckpt_path=str(tmp_path / "ckpt" / "epoch=1.ckpt"))
    for a, b in zip(uninterrupted.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.fixture
def host_reads(monkeypatch):
    reads = {"n": 0}
    for name in ("__bool__", "item", "__int__", "__index__", "tolist", "cpu"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            reads["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return reads


@pytest.mark.parametrize("avg_fn", [None, get_ema_avg_fn(0.9)])
def test_updates_read_nothing_back_from_the_device(host_reads, avg_fn):
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    ours = _AveragedModel(model, avg_fn=avg_fn, use_buffers=True)
    theirs = AveragedModel(model, avg_fn=avg_fn, use_buffers=True)
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        before = host_reads["n"]
        ours.update_parameters(model)
        assert host_reads["n"] == before
        theirs.update_parameters(model)
    assert host_reads["n"] > 0  # torch's own update reads `n_averaged` back (twice per update)
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_loading_the_averaging_state_restores_the_update_count():
    model = torch.nn.Linear(2, 2)
    averaged = _AveragedModel(model)
    averaged.update_parameters(model)
    averaged.update_parameters(model)
    restored = _AveragedModel(model)
    restored.load_state_dict(averaged.state_dict())
    assert restored._updates == 2 and int(restored.n_averaged) == 2


def test_ema_should_update_schedule():
    ema = EMAWeightAveraging(update_every_n_steps=2, update_starting_at_step=4, update_starting_at_epoch=1)
    assert [s for s in range(10) if ema.should_update(step_idx=s)] == [4, 6, 8]
    assert [ema.should_update(epoch_idx=e) for e in range(3)] == [False, True, True]


@pytest.mark.parametrize("device", [0.5, True, float("nan"), lambda: "cpu"])
def test_a_device_that_is_no_device_is_refused_when_the_callback_is_made(device):
    # it failed when fit set the average up, in torch's words ("tensor(): argument 'device' must be
    # torch.device, not float"; True reached `Module.to` as a dtype)
    with pytest.raises(TypeError, match=re.escape(f"`EMAWeightAveraging(device={device!r})` must be a device")):
        EMAWeightAveraging(device=device)


@pytest.mark.parametrize("device", [False, [], {}])
def test_a_false_device_keeps_the_average_on_the_modules_device_as_in_lightning(tmp_path, device):
    averaging = EMAWeightAveraging(device=device)
    _fit(tmp_path, 1, averaging)
    assert all(p.device.type == "cpu" for p in averaging._average_model.parameters())
