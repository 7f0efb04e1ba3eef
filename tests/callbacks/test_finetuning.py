"""BaseFinetuning / BackboneFinetuning: freezing, groups added, and a resumed run rebuilding them."""

from __future__ import annotations

import re

import pytest
import torch
from tests.helpers.names_programs import QUIET, _loader, _module_class

import ember as pl
from ember.callbacks import BackboneFinetuning, BaseFinetuning, ModelCheckpoint
from ember.utilities.exceptions import MisconfigurationException

Net = _module_class(pl)


def _fit(tmp_path, max_epochs, ckpt_path=None, callbacks=()):
    torch.manual_seed(0)
    model = Net()
    finetuning = BackboneFinetuning(unfreeze_backbone_at_epoch=1, lambda_func=lambda epoch: 1.5)
    trainer = pl.Trainer(
        **{**QUIET, "enable_checkpointing": True},
        default_root_dir=tmp_path,
        max_epochs=max_epochs,
        limit_val_batches=0,
        callbacks=[finetuning, *callbacks],
    )
    trainer.fit(model, _loader(), ckpt_path=ckpt_path)
    return trainer, model, finetuning


def test_resume_rebuilds_the_added_group_and_continues_exactly(tmp_path):
    _, uninterrupted, _ = _fit(tmp_path / "a", max_epochs=3)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, filename="{epoch}")
    _fit(tmp_path / "b", max_epochs=2, callbacks=[checkpoint])
    trainer, resumed, finetuning = _fit(tmp_path / "c", max_epochs=3, ckpt_path=str(tmp_path / "ckpt" / "epoch=1.ckpt"))
    groups = trainer.optimizers[0].param_groups
    assert [len(g["params"]) for g in groups] == [4, 2]
    assert groups[1]["lr"] == pytest.approx(0.1 * 0.1 * 1.5)  # unfrozen at epoch 1, raised once at epoch 2
    # Lightning 2.6 leaves the restored backbone frozen, so the resumed run stops training it
    assert all(p.requires_grad for p in resumed.backbone.parameters())
    assert finetuning.previous_backbone_lr == pytest.approx(groups[1]["lr"])
    for a, b in zip(uninterrupted.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_freeze_filter_and_make_trainable():
    layers = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    BaseFinetuning.freeze(layers, train_bn=False)
    assert not any(p.requires_grad for p in layers.parameters()) and not layers[1].track_running_stats
    assert len(list(BaseFinetuning.filter_params(layers, requires_grad=False))) == 4
    assert len(list(BaseFinetuning.filter_params(layers, train_bn=False, requires_grad=False))) == 2
    BaseFinetuning.make_trainable([layers[0], [layers[1]]])
    assert all(p.requires_grad for p in layers.parameters()) and layers[1].track_running_stats


def test_parameters_already_in_the_optimizer_are_skipped_with_a_hint():
    layer = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    with pytest.warns(UserWarning, match="already exist within another group"):
        BaseFinetuning.unfreeze_and_add_param_group(layer, optimizer)
    assert len(optimizer.param_groups) == 1


def test_new_group_learning_rate_defaults_to_a_tenth_of_the_first():
    head, backbone = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(head.parameters(), lr=0.5)
    BaseFinetuning.freeze(backbone)
    BaseFinetuning.unfreeze_and_add_param_group(backbone, optimizer)
    assert optimizer.param_groups[1]["lr"] == pytest.approx(0.05)


def test_a_module_without_backbone_is_refused():
    model = Net()
    del model.backbone
    model.backbone = None
    trainer = pl.Trainer(**QUIET, max_epochs=1, callbacks=[BackboneFinetuning()])
    with pytest.raises((MisconfigurationException, AttributeError)):
        trainer.fit(model, _loader())


@pytest.mark.parametrize(
    ("epoch", "error"), [(-1, ValueError), (0.5, ValueError), (float("nan"), ValueError), ("2", TypeError)]
)
def test_an_unfreeze_epoch_that_is_no_epoch_is_refused_when_the_callback_is_made(epoch, error):
    # a fraction or a negative epoch never matched, and the next epoch failed with "unsupported operand type(s)
    # for *: 'float' and 'NoneType'"; text failed at the first epoch with "'>' not supported"
    with pytest.raises(
        error, match=re.escape(f"`BackboneFinetuning(unfreeze_backbone_at_epoch={epoch!r})` must be an epoch")
    ):
        BackboneFinetuning(unfreeze_backbone_at_epoch=epoch)
    BackboneFinetuning(unfreeze_backbone_at_epoch=0)
    BackboneFinetuning(unfreeze_backbone_at_epoch=3.0)
