"""Precision plugins (``MixedPrecision``, ``HalfPrecision``, ``DoublePrecision``, a ``Precision`` of
one's own) passed in ``Trainer(plugins=[...])``: the same training as the ``precision`` name, the
plugin's own settings honoured, and Lightning's errors for conflicting choices."""

from __future__ import annotations

import contextlib
import re

import pytest
import torch
from tests.helpers.core_models import CoreModel, ManualCoreModel, loader, quiet_trainer
from torch import nn

import ember
from ember.distributed import DDPStrategy
from ember.plugins import DoublePrecision, HalfPrecision, MixedPrecision, Precision
from ember.utilities.apply_func import apply_to_tensors
from ember.utilities.exceptions import MisconfigurationException


def _trained_weights(**trainer_args) -> tuple[torch.Tensor, ember.Trainer]:
    torch.manual_seed(0)
    model = CoreModel(lr=0.05)
    trainer = quiet_trainer(max_epochs=2, **trainer_args)
    trainer.fit(model, loader(n=16))
    return torch.cat([model.layer.weight.flatten(), model.layer.bias]).detach(), trainer


@pytest.mark.parametrize(
    ("plugin", "name"),
    [
        (lambda: DoublePrecision(), "64-true"),
        (lambda: HalfPrecision("bf16-true"), "bf16-true"),
        (lambda: MixedPrecision("bf16-mixed", "cpu"), "bf16-mixed"),
        (lambda: Precision(), "32-true"),
    ],
)
def test_a_plugin_trains_exactly_as_the_precision_it_stands_for(plugin, name):
    by_plugin, trainer = _trained_weights(plugins=[plugin()])
    by_name, named = _trained_weights(precision=name)
    assert trainer.precision == name
    assert type(named.precision_plugin) is type(trainer.precision_plugin)  # the name builds that very class
    assert torch.equal(by_plugin, by_name)


def test_the_plugin_passed_in_is_the_one_the_trainer_uses_for_every_call():
    plugin = HalfPrecision("bf16-true")
    trainer = quiet_trainer(max_epochs=1, plugins=plugin)
    model = CoreModel()
    trainer.fit(model, loader(n=8))
    trainer.validate(model, loader(n=4))
    assert trainer.precision_plugin is plugin
    assert model.layer.weight.dtype == torch.bfloat16


def test_fp16_mixed_plugin_on_cpu_scales_the_loss_with_its_own_scaler_and_resumes_it(tmp_path):
    # the GradScaler path runs on CPU when the plugin asks for it (the "16-mixed" name falls back to bf16 there)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    seen = {}

    class Recorder(CoreModel):
        def training_step(self, batch, batch_idx):
            out = self(batch[0])
            seen["output"] = out.dtype
            return nn.functional.mse_loss(out.float(), batch[1])

        def on_after_backward(self):
            seen.setdefault("grad", self.layer.weight.grad.clone())

    torch.manual_seed(0)
    model = Recorder(lr=0.01)
    trainer = quiet_trainer(max_steps=4, plugins=[plugin], default_root_dir=tmp_path)
    trainer.fit(model, loader(n=16))
    assert seen["output"] == torch.float16
    assert trainer.precision == "16-mixed" and trainer.precision_plugin.scaler is scaler
    # the first backward ran on the loss times the initial scale
    torch.manual_seed(0)
    reference = CoreModel()
    x, y = next(iter(loader(n=16)))
    nn.functional.mse_loss(reference(x), y).backward()
    assert torch.allclose(seen["grad"] / 2.0**10, reference.layer.weight.grad, rtol=1e-2, atol=1e-3)
    # four finite steps with growth every 2: the scale doubled twice, and the checkpoint keeps it
    assert scaler.get_scale() == 2.0**12
    path = tmp_path / "amp.ckpt"
    trainer.save_checkpoint(path)
    assert torch.load(path, weights_only=True)["MixedPrecision"]["scale"] == 2.0**12

    fresh = torch.amp.GradScaler("cpu", init_scale=1.0, growth_interval=1000)
    resumed = quiet_trainer(max_steps=5, plugins=[MixedPrecision("16-mixed", "cpu", scaler=fresh)])
    resumed.fit(Recorder(lr=0.01), loader(n=16), ckpt_path=path)
    assert fresh.get_scale() == 2.0**12  # restored, then one more step (growth comes every 2)


class SeesTheBackwardLoss(ember.Callback):
    def __init__(self):
        self.seen = []

    def on_before_backward(self, trainer, pl_module, loss):
        self.seen.append(("callback", loss.item()))


class ManualLossRecorder(CoreModel):
    def __init__(self, manual: bool, seen: list) -> None:
        super().__init__(lr=0.01)
        self.automatic_optimization = not manual
        self.seen, self.losses = seen, []

    def training_step(self, batch, batch_idx):
        loss = nn.functional.mse_loss(self(batch[0]).float(), batch[1])
        self.losses.append(loss.item())
        if self.automatic_optimization:
            return loss
        optimizer = self.optimizers()
        self.manual_backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        return None

    def on_before_backward(self, loss):
        self.seen.append(("module", loss.item()))


@pytest.mark.parametrize("manual", [False, True])
def test_the_backward_hooks_get_the_loss_scaled_by_the_fp16_scaler_as_lightnings_docs_say(manual):
    # `on_before_backward(loss)`: "scaled if using AMP" (Lightning's docs), in automatic and manual optimization
    callback = SeesTheBackwardLoss()
    model = ManualLossRecorder(manual, callback.seen)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0**10))
    quiet_trainer(max_steps=1, plugins=[plugin], callbacks=[callback]).fit(model, loader(n=8))
    scaled = model.losses[0] * 2.0**10
    assert [who for who, _ in callback.seen] == ["callback", "module"]
    assert all(value == pytest.approx(scaled, rel=1e-3) for _, value in callback.seen)


class Custom(Precision):
    """A plugin of one's own: inputs doubled, steps counted, its state in checkpoints."""

    def __init__(self) -> None:
        self.contexts = 0
        self.saved: list[str] = []
        self.loaded: dict = {}

    def convert_input(self, data):
        return apply_to_tensors(data, lambda t: t * 2)

    @contextlib.contextmanager
    def _counting(self):
        self.contexts += 1
        yield

    def forward_context(self):
        return self._counting()

    def state_dict(self):
        return {"contexts": self.contexts}

    def load_state_dict(self, state_dict):
        self.loaded = state_dict

    def on_save_checkpoint(self, checkpoint):
        self.saved.append(sorted(checkpoint)[0])


def test_a_plugin_of_ones_own_is_honoured_in_every_step_and_in_checkpoints(tmp_path):
    seen = []

    class Inputs(CoreModel):
        def training_step(self, batch, batch_idx):
            seen.append(batch[0].clone())
            return super().training_step(batch, batch_idx)

    plugin = Custom()
    trainer = quiet_trainer(max_epochs=1, plugins=[plugin], limit_val_batches=2)
    trainer.fit(Inputs(), loader(n=8), loader(n=8))
    assert torch.equal(seen[0], next(iter(loader(n=8)))[0] * 2)
    assert plugin.contexts == 2 + 2  # two training steps, two validation steps
    path = tmp_path / "custom.ckpt"
    trainer.save_checkpoint(path)
    assert plugin.saved  # its on_save_checkpoint saw the checkpoint
    assert torch.load(path, weights_only=True)["Custom"] == {"contexts": 4}

    again = Custom()
    quiet_trainer(max_epochs=2, plugins=[again]).fit(Inputs(), loader(n=8), ckpt_path=path)
    assert again.loaded == {"contexts": 4}
    for call in ("validate", "test", "predict"):  # every call restores it, as in Lightning
        evaluating = Custom()
        getattr(quiet_trainer(plugins=[evaluating]), call)(Inputs(), loader(n=8), ckpt_path=path)
        assert evaluating.loaded == {"contexts": 4}, call


class _StepRecording(Precision):
    """A plugin written Lightning's way around each backward and step, recording the calls; ``super()`` does
    the work, so the run trains as without the plugin."""

    def __init__(self):
        self.calls = []

    def pre_backward(self, tensor, module):
        self.calls.append("pre_backward")
        return super().pre_backward(tensor, module)

    def backward(self, tensor, model, optimizer, *args, **kwargs):
        self.calls.append(f"backward({type(optimizer).__name__})")
        super().backward(tensor, model, optimizer, *args, **kwargs)

    def post_backward(self, tensor, module):
        released = super().post_backward(tensor, module)
        self.calls.append(f"post_backward -> {released.requires_grad}")
        return released

    def optimizer_step(self, optimizer, model, closure, **kwargs):
        self.calls.append("optimizer_step")
        return super().optimizer_step(optimizer, model, closure, **kwargs)


class _Recorded(CoreModel):
    def _note(self, call):
        getattr(self.trainer.precision_plugin, "calls", []).append(call)  # into the recording plugin's list

    def on_before_backward(self, loss):
        self._note("on_before_backward")

    def on_after_backward(self):
        self._note("on_after_backward")

    def on_before_optimizer_step(self, optimizer):
        self._note("on_before_optimizer_step")


class _ManualRecorded(_Recorded, ManualCoreModel):
    """The same hooks recorded in manual optimization."""


@pytest.mark.parametrize("model_class", [_Recorded, _ManualRecorded], ids=["automatic", "manual"])
def test_a_plugin_overriding_lightnings_backward_and_step_methods_runs_every_step_through_them(model_class):
    torch.manual_seed(0)
    model = model_class()
    plugin = _StepRecording()
    quiet_trainer(max_steps=2, plugins=[plugin]).fit(model, loader(n=8))
    one_step = ["optimizer_step"] if model_class is _Recorded else []
    one_step += [
        "pre_backward",
        "on_before_backward",
        f"backward({'SGD' if model_class is _Recorded else 'NoneType'})",
        "on_after_backward",
        "post_backward -> False",  # the loss, released from its graph once backward ran
    ]
    one_step += (
        ["on_before_optimizer_step"] if model_class is _Recorded else ["optimizer_step", "on_before_optimizer_step"]
    )
    assert plugin.calls == one_step * 2
    torch.manual_seed(0)
    reference = model_class()
    quiet_trainer(max_steps=2).fit(reference, loader(n=8))  # the same numbers without the plugin
    torch.testing.assert_close(model.layer.weight, reference.layer.weight, rtol=0, atol=0)


def test_a_plugins_own_step_contexts_are_entered_around_each_kind_of_step():
    entered = []

    class Contexts(Precision):
        @contextlib.contextmanager
        def _record(self, kind):
            entered.append(kind)
            yield

        def train_step_context(self):
            return self._record("train")

        def val_step_context(self):
            return self._record("val")

        def test_step_context(self):
            return self._record("test")

        def predict_step_context(self):
            return self._record("predict")

    class Evaluated(CoreModel):
        def validation_step(self, batch, batch_idx):
            pass

        def test_step(self, batch, batch_idx):
            pass

        def predict_step(self, batch, batch_idx):
            return self(batch[0])

    trainer = quiet_trainer(max_steps=2, plugins=[Contexts()], num_sanity_val_steps=1, limit_val_batches=1)
    model = Evaluated()
    trainer.fit(model, loader(n=8), loader(n=4))
    assert entered == ["val", "train", "train", "val"]  # the sanity check's batch, the steps, the validation
    entered.clear()
    trainer.test(model, loader(n=8), verbose=False)
    trainer.predict(model, loader(n=4))
    assert entered == ["test", "test", "predict"]

    class DrawsItsBatches(Evaluated):  # steps that take `dataloader_iter` run in the loops' other path
        def test_step(self, dataloader_iter):
            next(dataloader_iter)

        def predict_step(self, dataloader_iter):
            batch, _, _ = next(dataloader_iter)  # (the batch, its index, its dataloader's)
            return self(batch[0])

    entered.clear()
    trainer.test(DrawsItsBatches(), loader(n=8), verbose=False)
    trainer.predict(DrawsItsBatches(), loader(n=4))
    assert entered == ["test", "test", "predict"]


def test_lightnings_plugin_methods_can_be_called_outside_a_trainer():
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    module = CoreModel()
    loss = module.layer(torch.ones(1, 4)).sum()
    scaled = plugin.pre_backward(loss, module)  # scaled, as Lightning's does; no trainer, so no hooks
    torch.testing.assert_close(scaled, loss * 4.0)
    plugin.backward(scaled, module, None)
    released = plugin.post_backward(scaled, module)
    assert not released.requires_grad and module.layer.bias.grad is not None


def test_conflicting_precision_choices_get_lightnings_errors():
    with pytest.raises(ValueError, match=r"Received both `precision=bf16-mixed` and `plugins=.*`. Choose one."):
        ember.Trainer(precision="bf16", plugins=[DoublePrecision()])
    with pytest.raises(MisconfigurationException, match="multiple values for Precision flags in `plugins`"):
        ember.Trainer(plugins=[DoublePrecision(), HalfPrecision()])
    strategy = DDPStrategy(precision_plugin=DoublePrecision())
    with pytest.raises(MisconfigurationException, match="precision set through both strategy class and plugins"):
        ember.Trainer(strategy=strategy, plugins=[HalfPrecision()])


def test_a_strategys_precision_plugin_is_used():
    plugin = DoublePrecision()
    trainer = ember.Trainer(logger=False, strategy=DDPStrategy(precision_plugin=plugin), devices=1)
    assert trainer.precision_plugin is plugin and trainer.precision == "64-true"


def test_plugin_arguments_are_checked():
    with pytest.raises(MisconfigurationException, match="`precision='bf16-mixed'` does not use a scaler"):
        MixedPrecision("bf16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    with pytest.raises(ValueError, match=r"HalfPrecision\(precision='64-true'\)` is not supported"):
        HalfPrecision("64-true")


def test_init_module_goes_through_the_strategys_context_as_lightning_calls_it():
    from ember.strategies import SingleDeviceStrategy

    class KeywordOnly(SingleDeviceStrategy):
        @contextlib.contextmanager
        def tensor_init_context(self, *, empty_init=None):  # Lightning passes `empty_init` by keyword
            with super().tensor_init_context(empty_init=empty_init):
                yield

    class DeviceOnly(SingleDeviceStrategy):
        @contextlib.contextmanager
        def tensor_init_context(self, empty_init=None):  # an override decides the dtype too: it leaves it
            with self.root_device:
                yield

    dtypes = {}
    for strategy in (KeywordOnly(device=torch.device("cpu")), DeviceOnly(device=torch.device("cpu"))):
        trainer = ember.Trainer(strategy=strategy, precision="64-true", logger=False, enable_checkpointing=False)
        with trainer.init_module():
            dtypes[type(strategy).__name__] = nn.Linear(2, 2).weight.dtype
    assert dtypes == {"KeywordOnly": torch.float64, "DeviceOnly": torch.float32}


def test_init_module_creates_tensors_in_the_plugins_dtype():
    trainer = ember.Trainer(logger=False, plugins=[DoublePrecision()])
    with trainer.init_module():
        layer = nn.Linear(2, 2)
    assert layer.weight.dtype == torch.float64
    assert torch.get_default_dtype() == torch.float32


def test_the_plugin_classes_are_lightnings_under_the_alias():
    import subprocess
    import sys

    code = (
        "import ember; ember.install_as_lightning()\n"
        "from pytorch_lightning.plugins import MixedPrecision, Precision\n"
        "from lightning.pytorch.plugins.precision import HalfPrecision\n"
        "from pytorch_lightning.plugins.precision.double import DoublePrecision\n"
        "import pytorch_lightning as pl\n"
        "t = pl.Trainer(precision='bf16-true', logger=False)\n"
        "assert isinstance(t.precision_plugin, HalfPrecision) and isinstance(t.precision_plugin, Precision)\n"
        "assert MixedPrecision is ember.plugins.MixedPrecision and DoublePrecision is ember.plugins.DoublePrecision\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_package_loads_each_plugin_class_when_it_is_first_named():
    import subprocess
    import sys

    code = (
        "import sys, ember.precision as precision\n"
        "print(sorted(m for m in sys.modules if m.startswith('ember.precision.')))\n"
        "from ember.precision import MixedPrecision, TPUPrecisionPlugin\n"
        "from ember.precision.amp import MixedPrecision as home\n"
        "assert MixedPrecision is home and 'MixedPrecision' in vars(precision)  # kept: found without a call next time\n"
        "assert {'DoublePrecision', 'HalfPrecisionPlugin'} <= set(dir(precision))\n"
        "try:\n"
        "    precision.Nothing\n"
        "except AttributeError as error:\n"
        "    print(error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.splitlines() == ["['ember.precision.precision']", "module 'ember.precision' has no attribute 'Nothing'"]


@pytest.mark.parametrize(("precision", "dtype"), [("bf16-true", torch.bfloat16), ("64-true", torch.float64)])
def test_layers_created_in_configure_model_take_the_precisions_dtype(precision, dtype):
    created = {}

    class Late(CoreModel):
        def configure_model(self):
            self.extra = nn.Linear(1, 3)
            created["dtype"] = self.extra.weight.dtype  # already in the dtype while the hook runs

    quiet_trainer(max_steps=1, precision=precision).fit(Late(), loader(n=4))
    assert created["dtype"] == dtype


def test_a_plugins_connect_sees_and_replaces_the_model_and_optimizers():
    seen = {}

    class Connecting(Precision):
        def connect(self, model, optimizers, lr_schedulers):
            seen["optimizers"] = list(optimizers)
            wrapped = [torch.optim.SGD(model.parameters(), lr=0.0)]  # a plugin may swap the optimizer
            return model, wrapped, lr_schedulers

    torch.manual_seed(0)
    model = CoreModel(lr=0.5)
    before = model.layer.weight.detach().clone()
    trainer = quiet_trainer(max_steps=2, plugins=[Connecting()])
    trainer.fit(model, loader(n=8))
    assert isinstance(seen["optimizers"][0], torch.optim.SGD) and seen["optimizers"][0].defaults["lr"] == 0.5
    assert trainer.optimizers[0].defaults["lr"] == 0.0 and torch.equal(model.layer.weight, before)


def test_the_strategy_connects_its_plugin_in_setup_precision_plugin_as_lightnings_does():
    from ember.strategies import SingleDeviceStrategy

    calls = []

    class Connecting(Precision):
        def connect(self, model, optimizers, lr_schedulers):
            calls.append("connect")
            return model, [torch.optim.SGD(model.parameters(), lr=0.0)], lr_schedulers

    class Recording(SingleDeviceStrategy):
        def setup_precision_plugin(self):  # a strategy of the program's own may extend it, as in Lightning
            calls.append("setup_precision_plugin")
            super().setup_precision_plugin()
            calls.append(self.optimizers[0].defaults["lr"])

    trainer = quiet_trainer(max_steps=1, strategy=Recording("cpu", precision_plugin=Connecting()))
    trainer.fit(CoreModel(lr=0.5), loader(n=4))
    assert calls == ["setup_precision_plugin", "connect", 0.0]
    assert trainer.optimizers[0].defaults["lr"] == 0.0


def test_double_precision_keeps_complex_buffers_complex():
    module = nn.Linear(2, 2)
    module.register_buffer("phase", torch.ones(2, dtype=torch.complex64))
    DoublePrecision().convert_module(module)
    assert module.weight.dtype == torch.float64 and module.phase.dtype == torch.complex64


@pytest.mark.parametrize("precision", ["16", 16, "bf16", "32-true"])
def test_mixed_precision_refuses_a_precision_that_is_not_mixed_with_lightnings_message(precision):
    expected = f"Passed `MixedPrecision(precision={precision!r})`. Precision must be '16-mixed' or 'bf16-mixed'"
    with pytest.raises(ValueError, match=re.escape(expected)):
        MixedPrecision(precision, "cpu")


def test_a_single_device_strategys_precision_plugin_is_the_one_used():
    from ember.strategies import SingleDeviceStrategy

    strategy = SingleDeviceStrategy("cpu", precision_plugin=DoublePrecision())
    with strategy.tensor_init_context():  # on its own too, as Lightning's
        assert nn.Linear(2, 2).weight.dtype == torch.float64
    trainer = quiet_trainer(max_steps=1, strategy=strategy)
    assert isinstance(trainer.precision_plugin, DoublePrecision)
    model = CoreModel()
    trainer.fit(model, loader())
    assert model.layer.weight.dtype == torch.float64
    with pytest.raises(MisconfigurationException, match="precision set through both strategy class and plugins"):
        ember.Trainer(strategy=SingleDeviceStrategy("cpu", precision_plugin=DoublePrecision()), plugins=[Precision()])


@pytest.mark.parametrize("automatic", [True, False])
def test_fp16_gradients_are_unscaled_once_whichever_optimizer_object_clipping_gets(automatic):
    """Clipping through `self.optimizers()` (a `LightningOptimizer`) unscaled a second time: the scaler keys its
    record by the optimizer inside. Clipping sees the true gradients (Lightning clips manual optimization's still
    scaled ones), and the step uses them, unscaled once."""
    seen = []

    class Clips(CoreModel):
        def __init__(self, limit):
            super().__init__()
            self.automatic_optimization = automatic
            self.limit = limit

        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            if automatic:
                return loss
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(loss)
            self.clip_gradients(opt, gradient_clip_val=self.limit, gradient_clip_algorithm="norm")
            opt.step()

        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            self.clip_gradients(self.optimizers(), gradient_clip_val=self.limit, gradient_clip_algorithm="norm")

        def on_before_optimizer_step(self, optimizer):
            seen.append(torch.cat([p.grad.flatten() for p in self.parameters()]).norm().item())

    def run(limit):
        seen.clear()
        torch.manual_seed(0)
        model = Clips(limit)
        scaler = torch.amp.GradScaler("cpu", init_scale=64.0)
        plugin = MixedPrecision("16-mixed", "cpu", scaler)
        quiet_trainer(max_steps=1, plugins=[plugin]).fit(model, loader(n=4, batch_size=4))
        return seen[0], model.layer.weight.detach().clone()

    torch.manual_seed(0)
    reference = CoreModel()
    start = {k: v.clone() for k, v in reference.state_dict().items()}
    x, y = next(iter(loader(n=4, batch_size=4)))
    with torch.autocast("cpu", dtype=torch.float16):
        nn.functional.mse_loss(reference(x), y).backward()
    true_norm = torch.cat([p.grad.flatten() for p in reference.parameters()]).norm().item()

    def stepped(limit):  # SGD(lr=0.1) with the true gradients clipped to `limit`
        scale = min(1.0, limit / true_norm)
        return start["layer.weight"] - 0.1 * reference.layer.weight.grad * scale

    for limit in (1e6, true_norm / 2):  # far above (no clipping), then one that bites
        norm, weight = run(limit)
        torch.testing.assert_close(weight, stepped(limit), rtol=1e-4, atol=1e-6)
        if not automatic:  # (automatic: the hook runs before `configure_gradient_clipping`)
            assert norm == pytest.approx(min(true_norm, limit), rel=1e-3)


def test_trainer_precision_is_read_from_the_plugin_each_time_as_in_lightning():
    trainer = quiet_trainer()
    assert trainer.precision == "32-true"
    trainer.strategy.precision_plugin = DoublePrecision()
    assert trainer.precision == "64-true"
    with pytest.raises(AttributeError):
        trainer.precision = "16-true"  # read-only, as Lightning's


@pytest.mark.parametrize(("precision", "name"), [(16, "16-mixed"), ("16", "16-mixed"), ("bf16", "bf16-mixed")])
def test_the_historical_precision_names_warn_as_in_lightning(precision, name):
    with pytest.warns(UserWarning, match=rf"`precision={precision}` is supported for historical reasons.*to {name}"):
        quiet_trainer(precision=precision)


def test_the_deprecated_double_precision_wrapper_hands_float64_inputs_to_the_module():
    from ember.precision.double import LightningDoublePrecisionModule

    seen = []

    class Records(ember.LightningModule):
        _ddp_params_and_buffers_to_ignore = ["buffer"]

        def forward(self, x, flag=None):
            seen.append((x.dtype, flag.dtype))
            return x

        def training_step(self, batch, batch_idx):
            seen.append((batch[0].dtype, batch[1].dtype))

    with pytest.warns(DeprecationWarning, match="`LightningDoublePrecisionModule` is deprecated and no longer needed"):
        wrapped = LightningDoublePrecisionModule(Records())
    wrapped(torch.ones(1), flag=torch.ones(1, dtype=torch.int64))
    wrapped.training_step((torch.ones(1, dtype=torch.float16), torch.ones(1, dtype=torch.int32)), 0)
    assert seen == [(torch.float64, torch.int64), (torch.float64, torch.int32)]
    assert wrapped._ddp_params_and_buffers_to_ignore == ["module.buffer"]


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_bf16_mixed_clips_the_gradients_as_a_hand_written_autocast_loop_does(algorithm):
    # bf16 has no GradScaler: clipping has nothing to unscale (it used to fail at the first step)
    torch.manual_seed(0)
    model = CoreModel(lr=0.5)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    batches = list(loader(n=8))
    trainer = quiet_trainer(
        max_epochs=1, precision="bf16-mixed", gradient_clip_val=0.01, gradient_clip_algorithm=algorithm
    )
    trainer.fit(model, loader(n=8))
    expected = CoreModel(lr=0.5)
    expected.load_state_dict(init)
    optimizer = torch.optim.SGD(expected.parameters(), lr=0.5)
    for x, y in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
            loss = nn.functional.mse_loss(expected(x), y)
        optimizer.zero_grad()
        loss.backward()
        if algorithm == "norm":
            nn.utils.clip_grad_norm_(expected.parameters(), 0.01)
        else:
            nn.utils.clip_grad_value_(expected.parameters(), 0.01)
        optimizer.step()
    for key, value in expected.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=1e-6)


class _ManualClosure(CoreModel):
    """Steps with ``opt.step(closure)``, whose closure returns the loss (``"loss"``) or, as Lightning's docstring
    has it, nothing (``"nothing"``); or backpropagates first and steps with no closure (``"no closure"``)."""

    def __init__(self, closure: str):
        super().__init__()
        self.automatic_optimization = False
        self.closure = closure

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()

        def closure():
            loss = nn.functional.mse_loss(self(batch[0]), batch[1])
            optimizer.zero_grad()
            self.manual_backward(loss)
            return loss if self.closure == "loss" else None

        if self.closure == "no closure":
            closure()
            optimizer.step()
        else:
            optimizer.step(closure=closure)


def test_fp16_manual_steps_whatever_the_closure_returns():
    # a GradScaler stepped only where the closure returned a loss: one returning nothing trained nothing
    weights = []
    for closure in ("loss", "nothing", "no closure"):
        torch.manual_seed(0)
        model = _ManualClosure(closure)
        before = model.layer.weight.detach().clone()
        plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=4.0))
        quiet_trainer(max_steps=3, plugins=[plugin]).fit(model, loader(n=16))
        assert not torch.equal(model.layer.weight, before)
        weights.append(model.layer.weight.detach().clone())
    torch.testing.assert_close(weights[0], weights[1])
    torch.testing.assert_close(weights[0], weights[2])


def test_fp16_automatic_step_after_a_skipped_batch_unscales_its_own_gradients():
    # a batch whose training_step returns None neither unscales nor steps, as in Lightning: the next batch's
    # gradients are unscaled before they are clipped and stepped (they were left scaled, the unscale spent)
    class SkipsTheFirst(CoreModel):
        def training_step(self, batch, batch_idx):
            return None if batch_idx == 0 else super().training_step(batch, batch_idx)

        def on_before_optimizer_step(self, optimizer):
            if self.layer.weight.grad is not None:
                seen.append(self.layer.weight.grad.abs().max().item())

    seen: list[float] = []
    torch.manual_seed(0)
    scaled = SkipsTheFirst()
    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0**10))
    quiet_trainer(max_steps=2, plugins=[plugin]).fit(scaled, loader(n=8))
    unscaled_grads = list(seen)
    seen.clear()
    torch.manual_seed(0)
    plain = SkipsTheFirst()
    quiet_trainer(max_steps=2, precision="bf16-mixed").fit(plain, loader(n=8))
    assert len(unscaled_grads) == 1 and unscaled_grads == pytest.approx(
        seen, rel=0.05
    )  # the true gradients, not 1024 times them


def test_fp16_with_lbfgs_is_refused_in_lightnings_words():
    model = CoreModel(optimizers=lambda module: torch.optim.LBFGS(module.parameters()))
    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    with pytest.raises(MisconfigurationException, match=r"^AMP and the LBFGS optimizer are not compatible\. LBFGS re"):
        quiet_trainer(max_steps=1, plugins=[plugin]).fit(model, loader(n=8))
