"""ModelSummary: the layer table and totals, in Lightning 2.6.6's exact format."""

from __future__ import annotations

import logging

import pytest
import torch
from tests.helpers.callback_models import QUIET, make_regressor, train_loader, val_loader
from torch import nn

import ember as pl
from ember.callbacks import ModelSummary, RichModelSummary
from ember.callbacks.model_summary import get_human_readable_count, summarize

Regressor = make_regressor(pl)

# observed from pytorch_lightning 2.6.6 on the same modules
LIGHTNING_DEPTH_1_WITH_EXAMPLE = """\
  | Name | Type       | Params | Mode  | FLOPs | In sizes | Out sizes
---------------------------------------------------------------------------
0 | net  | Sequential | 56     | train | 128   | [2, 4]   | [2, 8]   
1 | head | Linear     | 9      | train | 32    | [2, 8]   | [2, 1]   
---------------------------------------------------------------------------
65        Trainable params
0         Non-trainable params
65        Total params
0.000     Total estimated model params size (MB)
5         Modules in train mode
0         Modules in eval mode
160       Total Flops"""

LIGHTNING_ALL_DEPTHS = """\
  | Name  | Type        | Params | Mode  | FLOPs
------------------------------------------------------
0 | net   | Sequential  | 56     | train | 0    
1 | net.0 | Linear      | 40     | train | 0    
2 | net.1 | BatchNorm1d | 16     | train | 0    
3 | net.2 | ReLU        | 0      | train | 0    
4 | head  | Linear      | 9      | train | 0    
------------------------------------------------------
65        Trainable params
0         Non-trainable params
65        Total params
0.000     Total estimated model params size (MB)
5         Modules in train mode
0         Modules in eval mode
0         Total Flops"""


@pytest.fixture
def ember_log():
    """Collect what Ember's loggers print (the `ember` logger does not propagate to the root)."""
    records: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = _Collect(level=logging.INFO)
    logger = logging.getLogger("ember")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_table_matches_lightning_with_example_input():
    model = Regressor(batch_norm=True, example_input=True)
    assert str(summarize(model)) == LIGHTNING_DEPTH_1_WITH_EXAMPLE


def test_all_depths_without_example_input():
    assert str(summarize(Regressor(batch_norm=True), max_depth=-1)) == LIGHTNING_ALL_DEPTHS


def test_example_forward_keeps_modes_and_leaves_no_hooks():
    model = Regressor(batch_norm=True, example_input=True)
    model.head.eval()
    summary = summarize(model, max_depth=2)
    assert model.training and not model.head.training and model.net.training
    assert all(not m._forward_hooks for m in model.modules())
    assert summary.in_sizes == [[2, 4], [2, 4], [2, 8], [2, 8], [2, 8]]
    assert summary.total_training_modes == {"train": 4, "eval": 1}
    assert summary.training_modes[-1] is False


def test_summarize_returns_each_layers_summary_by_name_as_lightning():
    # `ModelSummary(model).summarize()` is public in Lightning's `utilities.model_summary`
    model = Regressor(batch_norm=True, example_input=True)
    summary = summarize(model, max_depth=2)
    layers = summary.summarize()
    assert list(layers) == ["net", "net.0", "net.1", "net.2", "head"]
    assert [layer.layer_type for layer in layers.values()] == ["Sequential", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert layers["head"].in_size == [2, 8] and layers["head"].num_parameters == 9
    assert all(not m._forward_hooks for m in model.modules())


def test_non_trainable_and_leftover_params():
    model = Regressor()
    model.head.requires_grad_(False)
    model.scale = nn.Parameter(torch.ones(3))  # a parameter on the root, in no listed layer
    text = str(summarize(model))
    assert "  | other params | n/a        | 3      | n/a   | n/a  " in text
    assert "\n9         Non-trainable params" in text
    assert "\n43        Trainable params" in text
    assert "\n52        Total params" in text


def test_max_depth_validation():
    with pytest.raises(ValueError, match="`max_depth` can be -1, 0 or > 0, got -2"):
        summarize(Regressor(), max_depth=-2)


@pytest.mark.parametrize(
    ("number", "text"),
    [(0, "0  "), (123, "123  "), (1234, "1.2 K"), (2e6, "2.0 M"), (3e9, "3.0 B"), (4e14, "400 T"), (5e15, "5,000 T")],
)
def test_human_readable_count(number, text):
    assert get_human_readable_count(number) == text


def test_callback_logs_table_on_fit_start(ember_log):
    trainer = pl.Trainer(
        **{**QUIET, "enable_model_summary": True}, max_epochs=1, limit_train_batches=1, limit_val_batches=0
    )
    trainer.fit(Regressor(batch_norm=True, example_input=True), train_loader())
    tables = [m for m in ember_log if "Trainable params" in m]
    assert tables == ["\n" + LIGHTNING_DEPTH_1_WITH_EXAMPLE]


def test_a_summarize_override_gets_total_flops_by_keyword():
    seen = {}

    class Custom(ModelSummary):
        @staticmethod
        def summarize(summary_data, total_parameters, trainable_parameters, model_size, total_training_modes, **kw):
            seen.update(kw, params=total_parameters, modes=total_training_modes)

    trainer = pl.Trainer(**QUIET, max_epochs=1, limit_train_batches=1, limit_val_batches=0, callbacks=[Custom()])
    trainer.fit(Regressor(), train_loader())
    assert set(seen) == {"total_flops", "params", "modes"} and seen["params"] > 0


def test_max_depth_zero_prints_nothing(ember_log):
    trainer = pl.Trainer(**QUIET, max_epochs=1, limit_train_batches=1, callbacks=[ModelSummary(max_depth=0)])
    trainer.fit(Regressor(), train_loader(), val_loader())
    assert not [m for m in ember_log if "Trainable params" in m]


def test_deeper_summary_through_the_callback(ember_log):
    trainer = pl.Trainer(**QUIET, max_epochs=1, limit_train_batches=1, callbacks=[ModelSummary(max_depth=-1)])
    trainer.fit(Regressor(batch_norm=True), train_loader(), val_loader())
    assert [m for m in ember_log if "Trainable params" in m] == ["\n" + LIGHTNING_ALL_DEPTHS]


def test_rich_model_summary_prints_table(monkeypatch):
    from rich.console import Console

    console = Console(record=True, width=200, file=open("/dev/null", "w"))
    monkeypatch.setattr("rich.get_console", lambda: console)
    summary = summarize(Regressor(example_input=True))
    RichModelSummary.summarize(
        summary._get_summary_data(),
        summary.total_parameters,
        summary.trainable_parameters,
        summary.model_size,
        summary.total_training_modes,
        summary.total_flops,
    )
    text = console.export_text()
    for expected in (
        "Name",
        "Sequential",
        "FLOPs",
        "[2, 4]",
        "Trainable params: 49",
        "Modules in train mode: 4",
        "Total FLOPs: 160",
    ):
        assert expected in text


def test_rich_model_summary_callback_in_a_fit(monkeypatch):
    from rich.console import Console

    console = Console(record=True, width=200, file=open("/dev/null", "w"))
    monkeypatch.setattr("rich.get_console", lambda: console)
    trainer = pl.Trainer(
        **QUIET, max_epochs=1, limit_train_batches=1, limit_val_batches=0, callbacks=[RichModelSummary(max_depth=-1)]
    )
    trainer.fit(Regressor(batch_norm=True), train_loader())
    text = console.export_text()
    assert "net.1" in text and "BatchNorm1d" in text and "Total params: 65" in text


def test_rich_model_summary_without_rich(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rich" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'ember\[rich\]'"):
        RichModelSummary()


def test_lightnings_module_path_for_the_table():
    from ember.utilities.model_summary.model_summary import UNKNOWN_SIZE, ModelSummary
    from ember.utilities.model_summary.model_summary import summarize as summarize_there

    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    table = summarize_there(model, max_depth=-1)
    assert isinstance(table, ModelSummary) and table.layer_types == ["Linear", "ReLU"]
    assert table.in_sizes == [UNKNOWN_SIZE, UNKNOWN_SIZE]


def test_lazy_parameters_warn_once(monkeypatch, recwarn):
    import ember.callbacks.model_summary as module

    monkeypatch.setattr(module, "_warned_uninitialized", False)
    table = summarize(nn.Sequential(nn.LazyLinear(3)))
    with pytest.warns(UserWarning, match="may be inaccurate because the model contains an instance of"):
        assert table.total_parameters == 0
    recwarn.clear()
    assert table.trainable_parameters == 0 and table.total_parameters == 0
    assert not [w for w in recwarn if "UninitializedParameter" in str(w.message)]


def test_the_example_input_goes_through_the_model_in_the_precision_plugins_context():
    """Under `bf16-true` a step makes new float tensors in bf16: the summary's forward does too, as Lightning's,
    so a forward that builds one (`torch.eye`) works there as in the steps."""
    from tests.helpers.core_models import CoreModel, loader

    class Builds(CoreModel):
        def __init__(self):
            super().__init__()
            self.example_input_array = torch.zeros(2, 4)

        def forward(self, x):
            return self.layer(x.to(self.dtype)) @ torch.eye(1)  # `eye` takes the default dtype

    trainer = pl.Trainer(max_steps=1, precision="bf16-true", logger=False, enable_checkpointing=False)
    trainer.fit(Builds(), loader(n=4))  # (the summary printed at the start ran the example input)
    assert trainer.global_step == 1
