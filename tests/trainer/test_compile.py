"""``trainer.fit(torch.compile(model))``: compiled steps, the same numbers as eager, plain checkpoints.

The tests compile through dynamo with a backend that records each graph and runs it eagerly:
dynamo really traces the steps, and the arithmetic stays bit for bit that of an eager run, without
waiting for a C++ compiler.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.utilities.compile import from_compiled, to_uncompiled

dynamo = pytest.importorskip("torch._dynamo")


class Regressor(ember.LightningModule):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self(x), y))

    def predict_step(self, batch, batch_idx):
        return self(batch[0])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.05)


def _loader(n: int = 64) -> DataLoader:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(n, 4, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


def _trainer(tmp_path, **kwargs) -> ember.Trainer:
    options = dict(
        max_epochs=2, default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False,
    )  # fmt: skip
    options.update(kwargs)
    return ember.Trainer(**options)


@pytest.fixture
def graphs():
    """A dynamo backend that records every graph it is given and runs it as it is."""
    dynamo.reset()
    seen: list[int] = []

    def backend(graph_module, example_inputs):
        seen.append(len(graph_module.graph.nodes))
        return graph_module.forward

    yield backend, seen
    dynamo.reset()


def _fit(tmp_path, model, **kwargs):
    trainer = _trainer(tmp_path, **kwargs)
    trainer.fit(model, _loader(), _loader(16))
    return trainer


def test_compiled_fit_matches_eager_and_runs_compiled_code(tmp_path, graphs):
    backend, seen = graphs
    torch.manual_seed(0)
    eager = Regressor()
    eager_trainer = _fit(tmp_path / "eager", eager)
    torch.manual_seed(0)
    model = Regressor()
    compiled_trainer = _fit(tmp_path / "compiled", torch.compile(model, backend=backend))
    assert seen, "no step was compiled"
    for key in ("train_loss", "train_loss_epoch", "val_loss"):
        assert torch.equal(compiled_trainer.callback_metrics[key], eager_trainer.callback_metrics[key]), key
    for compiled_param, eager_param in zip(model.parameters(), eager.parameters()):
        assert torch.equal(compiled_param, eager_param)
    assert compiled_trainer.lightning_module is model  # the Trainer works on the module inside
    assert compiled_trainer.global_step == eager_trainer.global_step == 16


def test_checkpoints_of_a_compiled_model_have_plain_keys_and_load_uncompiled(tmp_path, graphs):
    backend, _ = graphs
    model = Regressor(hidden=6)
    trainer = _fit(tmp_path, torch.compile(model, backend=backend), max_epochs=1)
    path = tmp_path / "compiled.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert sorted(checkpoint["state_dict"]) == ["net.0.bias", "net.0.weight", "net.2.bias", "net.2.weight"]
    restored = Regressor.load_from_checkpoint(path)  # a plain module: no compiled methods
    assert restored.hparams.hidden == 6
    assert "training_step" not in restored.__dict__
    for key, value in model.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value)
    # and a compiled module resumes from it
    resumed = _trainer(tmp_path, max_epochs=2)
    resumed.fit(torch.compile(Regressor(hidden=6), backend=backend), _loader(), ckpt_path=path)
    assert resumed.current_epoch == 2


def test_validate_test_and_predict_run_the_compiled_steps(tmp_path, graphs):
    backend, seen = graphs
    torch.manual_seed(0)
    model = Regressor()
    compiled = torch.compile(model, backend=backend)
    trainer = _trainer(tmp_path)
    validated = trainer.validate(compiled, _loader(16), verbose=False)
    graphs_after_validate = len(seen)
    predictions = trainer.predict(compiled, _loader(16))
    assert graphs_after_validate > 0 and len(seen) > graphs_after_validate
    eager_trainer = _trainer(tmp_path)
    plain = to_uncompiled(model)
    assert validated == eager_trainer.validate(plain, _loader(16), verbose=False)
    assert all(torch.equal(a, b) for a, b in zip(predictions, eager_trainer.predict(plain, _loader(16))))


def test_to_uncompiled_gives_the_plain_methods_back(graphs):
    backend, _ = graphs
    model = Regressor()
    unwrapped = from_compiled(torch.compile(model, backend=backend))
    assert unwrapped is model
    assert {"forward", "training_step", "validation_step", "predict_step", "log"} <= set(model.__dict__)
    # a default the module does not override is not compiled, so it never looks overridden
    assert "test_step" not in model.__dict__
    assert to_uncompiled(model) is model
    assert not {"forward", "training_step", "validation_step", "predict_step", "log"} & set(model.__dict__)
    assert model._compiler_ctx is None


def test_compiling_something_else_than_a_lightning_module_is_a_clear_error(tmp_path, graphs):
    backend, _ = graphs
    with pytest.raises(TypeError, match=r"Compile the LightningModule itself"):
        _trainer(tmp_path).fit(torch.compile(nn.Linear(4, 1), backend=backend), _loader())
