"""LightningModule properties and the defaults of its hooks, as a user sees them."""

from __future__ import annotations

import importlib.util
import re
import warnings

import pytest
import torch
from tests.helpers.core_models import CoreModel, loader, quiet_trainer
from torch import nn

import ember
from ember.utilities import AttributeDict, MisconfigurationException


def test_properties_without_a_trainer():
    model = CoreModel()
    with pytest.raises(RuntimeError, match="CoreModel is not attached to a `Trainer`"):
        _ = model.trainer
    assert model.device == torch.device("cpu")
    assert model.dtype == torch.float32
    assert model.current_epoch == 0
    assert model.global_step == 0
    assert model.global_rank == 0
    assert model.local_rank == 0
    assert model.automatic_optimization is True
    assert model.strict_loading is True
    assert model.logger is None
    assert model.loggers == []
    assert model.example_input_array is None
    assert model.hparams == {} and isinstance(model.hparams, AttributeDict)
    assert model.hparams_initial == {}
    assert model.prepare_data_per_node is True
    assert isinstance(model, nn.Module)


def test_settable_properties():
    model = CoreModel()
    model.automatic_optimization = False
    model.strict_loading = False
    model.example_input_array = torch.zeros(2, 4)
    assert model.automatic_optimization is False
    assert model.strict_loading is False
    assert torch.equal(model.example_input_array, torch.zeros(2, 4))


def test_dtype_and_device_follow_moves():
    model = CoreModel()
    model.double()
    assert model.dtype == torch.float64
    model.to(torch.float32)
    assert model.dtype == torch.float32
    model.to("cpu")
    assert model.device == torch.device("cpu")


def test_dtype_and_device_of_a_nested_module():
    class Outer(CoreModel):
        def __init__(self):
            super().__init__()
            self.inner = CoreModel()

    model = Outer().to(torch.float64)
    assert model.inner.dtype == torch.float64


def test_dtype_and_device_are_what_the_move_asked_for_as_in_lightning():
    class NoParameters(ember.LightningModule):
        def predict_step(self, batch, batch_idx):
            return self.dtype

    model = NoParameters()
    assert model.to(torch.float64).dtype == torch.float64  # nothing to read them from: the move says it
    assert model.double().dtype == torch.float64 and model.float().dtype == torch.float32
    assert model.to("meta").device == torch.device("meta") and model.cpu().device == torch.device("cpu")
    assert model.bfloat16().dtype == torch.float32  # Lightning tracks to/double/float/half/type only
    with pytest.raises(RuntimeError, match="Cannot set the dtype explicitly. Please use module.to"):
        model.dtype = torch.float64
    predictions = quiet_trainer(precision="64-true").predict(NoParameters(), loader(n=4, batch_size=4))
    assert predictions == [torch.float64]


def test_the_trainer_reaches_lightningmodule_children_but_not_one_inside_a_plain_container():
    # Lightning's rule: through children that are LightningModules. torchdyn's tutorial model holds
    # its NeuralODE (a LightningModule) inside an `nn.Sequential`: that one stays unattached
    class Outer(CoreModel):
        def __init__(self):
            super().__init__()
            self.child = CoreModel()
            self.child.grandchild = CoreModel()
            self.wrapped = nn.Sequential(CoreModel())

    model = Outer()
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model, loader(n=4))
    assert model.child.trainer is trainer and model.child.grandchild.trainer is trainer
    with pytest.raises(RuntimeError, match="is not attached to a `Trainer`"):
        _ = model.wrapped[0].trainer
    assert model.wrapped[0].logger is None
    model.trainer = None
    with pytest.raises(RuntimeError, match="is not attached to a `Trainer`"):
        _ = model.child.grandchild.trainer


def test_properties_while_fitting(tmp_path):
    seen = []

    class Watch(CoreModel):
        def training_step(self, batch, batch_idx):
            seen.append(
                (
                    self.current_epoch,
                    self.global_step,
                    self.trainer.current_epoch,
                    self.global_rank,
                    self.local_rank,
                    self.device.type,
                    self.logger is self.trainer.logger,
                    self.loggers is self.trainer.loggers or self.loggers == self.trainer.loggers,
                )
            )
            return super().training_step(batch, batch_idx)

    model = Watch()
    trainer = quiet_trainer(max_epochs=2, default_root_dir=tmp_path)
    trainer.fit(model, loader(n=8))
    assert [s[:2] for s in seen] == [(0, 0), (0, 1), (1, 2), (1, 3)]
    assert all(s[2:] == (s[0], 0, 0, "cpu", True, True) for s in seen)
    assert model.trainer is trainer
    assert model.current_epoch == 2 and model.global_step == 4


def test_logger_properties_with_a_logger(tmp_path):
    logger = ember.loggers.CSVLogger(tmp_path)
    model = CoreModel()
    trainer = ember.Trainer(
        max_epochs=1,
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, loader(n=4))
    assert model.logger is logger
    assert model.loggers == [logger]


def test_print_prints_on_rank_zero(capsys):
    model = CoreModel()
    model.print("hello", 1)  # no Trainer holds it: it prints (Lightning raises asking for the rank)
    assert capsys.readouterr().out == "hello 1\n"


def test_predict_step_default_calls_forward():
    class NoPredict(CoreModel):
        predict_step = ember.LightningModule.predict_step

    model = NoPredict()
    x = torch.randn(3, 4)
    assert torch.equal(model.predict_step(x, 0), model(x))
    out = quiet_trainer().predict(model, torch.utils.data.DataLoader(torch.randn(6, 4), batch_size=3))
    assert len(out) == 2 and out[0].shape == (3, 1)


def test_validation_and_test_step_defaults_return_none():
    model = ember.LightningModule()
    assert model.validation_step(torch.zeros(1), 0) is None
    assert model.test_step(torch.zeros(1), 0) is None
    assert model.configure_callbacks() == []
    assert model.configure_model() is None


def test_fit_without_configure_optimizers_raises_lightnings_error():
    class NoOptim(CoreModel):
        configure_optimizers = ember.LightningModule.configure_optimizers

    with pytest.raises(
        ember.utilities.MisconfigurationException, match=r"No `configure_optimizers\(\)` method defined"
    ):
        quiet_trainer(max_epochs=1).fit(NoOptim(), loader(n=8))


def test_configure_optimizers_returning_none_warns_and_fit_runs_without_optimizer():
    class NoneOptim(CoreModel):
        def configure_optimizers(self):
            return None

    model = NoneOptim()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match="configure_optimizers"):
        quiet_trainer(max_epochs=1).fit(model, loader(n=8))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_base_training_step_warns_and_skips_the_batch_as_lightnings_does():
    class CallsTheBase(CoreModel):
        def training_step(self, batch, batch_idx):
            return super(CoreModel, self).training_step(batch, batch_idx)  # ember.LightningModule's

    model = CallsTheBase()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match="^`training_step` must be implemented to be used with the Lightning Trainer"):
        quiet_trainer(max_steps=2).fit(model, loader(n=8))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing trained


def test_dataloader_defaults_raise_with_the_fix():
    model = ember.LightningModule()
    for name in ("train_dataloader", "val_dataloader", "test_dataloader", "predict_dataloader"):
        with pytest.raises(
            ember.utilities.MisconfigurationException,
            match=f"^`{name}` must be implemented to be used with the Lightning Trainer\\. Define",
        ):
            getattr(model, name)()


def test_batch_transfer_defaults():
    model = CoreModel()
    batch = {"x": [torch.ones(2)], "y": (torch.zeros(1), "label")}
    assert model.on_before_batch_transfer(batch, 0) is batch
    assert model.on_after_batch_transfer(batch, 0) is batch
    moved = model.transfer_batch_to_device(batch, torch.device("cpu"), 0)
    assert torch.equal(moved["x"][0], torch.ones(2)) and moved["y"][1] == "label"


def test_batch_transfer_hooks_are_used_in_fit():
    calls = []

    class Transfer(CoreModel):
        def on_before_batch_transfer(self, batch, dataloader_idx):
            calls.append(("before", dataloader_idx))
            return batch

        def transfer_batch_to_device(self, batch, device, dataloader_idx):
            calls.append(("transfer", device.type))
            return super().transfer_batch_to_device(batch, device, dataloader_idx)

        def on_after_batch_transfer(self, batch, dataloader_idx):
            calls.append(("after", dataloader_idx))
            x, y = batch
            return x * 0, y * 0  # the loss is 0 for a zero-bias start only if this is applied

    model = Transfer()
    quiet_trainer(max_steps=1).fit(model, loader(n=4))
    assert calls == [("before", 0), ("transfer", "cpu"), ("after", 0)]


def test_optimization_hook_defaults():
    model = CoreModel()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    loss = model(torch.ones(1, 4)).sum()
    model.backward(loss)
    assert model.layer.weight.grad is not None
    weight = model.layer.weight.detach().clone()
    model.optimizer_step(0, 0, opt, optimizer_closure=lambda: None)
    assert not torch.equal(weight, model.layer.weight)
    model.optimizer_zero_grad(0, 0, opt)
    assert model.layer.weight.grad is None

    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    model.lr_scheduler_step(sched, None)
    assert opt.param_groups[0]["lr"] == 0.5
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    model.lr_scheduler_step(plateau, 1.0)
    model.lr_scheduler_step(plateau, 2.0)
    assert opt.param_groups[0]["lr"] == 0.25


def test_model_mode_hooks_in_validation():
    modes = []

    class Modes(CoreModel):
        def __init__(self):
            super().__init__()
            self.frozen = nn.Dropout()

        def on_train_start(self):
            self.frozen.eval()  # a submodule the user keeps in eval mode stays so after validation

        def validation_step(self, batch, batch_idx):
            modes.append((self.training, self.frozen.training))
            return super().validation_step(batch, batch_idx)

    model = Modes()
    quiet_trainer(max_epochs=1).fit(model, loader(n=8), loader(n=4))
    assert modes == [(False, False)]
    assert model.training and not model.frozen.training


def test_validation_model_zero_grad_clears_grads_before_validation():
    grads = []

    class Grads(CoreModel):
        def on_validation_start(self):
            grads.append(self.layer.weight.grad)

    quiet_trainer(max_epochs=1).fit(Grads(), loader(n=8), loader(n=4))
    assert grads == [None]


def test_all_gather_on_one_process_returns_the_data():
    seen = {}

    class Gather(CoreModel):
        def training_step(self, batch, batch_idx):
            seen["out"] = self.all_gather({"a": torch.tensor([1.0, 2.0])})
            return super().training_step(batch, batch_idx)

    quiet_trainer(max_steps=1).fit(Gather(), loader(n=4))
    assert torch.equal(seen["out"]["a"], torch.tensor([1.0, 2.0]))


def test_all_gather_makes_numbers_tensors_as_lightning_does():
    seen = {}

    class Gather(CoreModel):
        def training_step(self, batch, batch_idx):
            seen["out"] = self.all_gather({"f": 2.5, "i": 4, "b": True, "t": torch.tensor(1.0)})
            return super().training_step(batch, batch_idx)

    quiet_trainer(max_steps=1).fit(Gather(), loader(n=4))
    out = seen["out"]
    assert {k: (v.item(), v.dtype) for k, v in out.items()} == {
        "f": (2.5, torch.float32),
        "i": (4, torch.int32),
        "b": (1, torch.uint8),  # not bool: NCCL has no bool
        "t": (1.0, torch.float32),
    }


def test_to_torchscript_trace(tmp_path):
    model = CoreModel()
    model.example_input_array = torch.randn(2, 4)
    path = tmp_path / "m.pt"
    from ember.utilities.rank_zero import LightningDeprecationWarning

    with pytest.warns(
        LightningDeprecationWarning, match="`LightningModule.to_torchscript` has been deprecated in v2.7"
    ):
        scripted = model.to_torchscript(path, method="trace")
    assert path.exists()
    assert torch.allclose(scripted(model.example_input_array), model(model.example_input_array))
    with pytest.raises(ValueError, match="'script' or 'trace'"), pytest.deprecated_call():
        model.to_torchscript(method="onnx")


def test_a_traced_export_takes_its_inputs_through_the_batch_hooks_and_reads_the_example_as_lightning():
    # mlcolvar's example_input_array draws random inputs: how often it is read moves the global generator
    class Drawing(CoreModel):
        reads = 0

        def __init__(self):
            super().__init__()
            self.hooks = []

        @property
        def example_input_array(self):
            type(self).reads += 1
            return torch.randn(1, 4)

        def on_before_batch_transfer(self, batch, dataloader_idx):
            self.hooks.append("before")
            return batch

        def on_after_batch_transfer(self, batch, dataloader_idx):
            self.hooks.append("after")
            return batch

    torch.manual_seed(0)
    model = Drawing()
    with pytest.deprecated_call():
        model.to_torchscript(method="trace")
    # recorded with Lightning 2.6.6: the check, the read and torch.jit.trace's own four; then the generator
    assert Drawing.reads == 6 and model.hooks == ["before", "after"]
    assert torch.rand(1).item() == pytest.approx(0.5675464272499084, abs=0)


def test_copy_and_pickle_after_fit_leave_the_trainer_behind():
    import copy
    import pickle

    model = CoreModel()
    trainer = quiet_trainer(max_steps=1)
    trainer.fit(model, loader())
    clone = copy.deepcopy(model)
    assert clone._trainer is None and model.trainer is trainer
    assert torch.equal(clone.layer.weight, model.layer.weight)
    restored = pickle.loads(pickle.dumps(model))
    assert torch.equal(restored.layer.weight, model.layer.weight)


def test_freeze_and_unfreeze():
    model = CoreModel()
    model.freeze()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    model.unfreeze()
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_freeze_and_unfreeze_return_the_module():
    model = CoreModel()
    assert model.freeze() is model and model.unfreeze() is model


def test_to_torchscript_writes_to_fsspec_paths_and_names_a_folder_in_pythons_words(tmp_path):
    # as Lightning, through a Python file: a `memory://` path works, and a folder is `IsADirectoryError` naming it
    # (torch's own save said "[enforce fail at inline_container.cc:...] . open file failed with strerror: Is a
    # directory")
    import fsspec

    model = CoreModel()
    model.example_input_array = torch.randn(2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the deprecation above)
        model.to_torchscript("memory://exported/m.pt", method="trace")
        with fsspec.open("memory://exported/m.pt", "rb") as file:
            loaded = torch.jit.load(file)
        assert torch.allclose(loaded(model.example_input_array), model(model.example_input_array))
        with pytest.raises(IsADirectoryError, match=re.escape(str(tmp_path))):
            model.to_torchscript(tmp_path, method="trace")


def test_to_torchscript_script():
    model = CoreModel()
    with pytest.deprecated_call():
        scripted = model.to_torchscript()
    x = torch.randn(2, 4)
    assert torch.allclose(scripted(x), model(x))
    assert model.training  # the mode is restored


def test_to_onnx_without_an_input_says_what_is_missing():
    import importlib.util

    model = CoreModel()
    expected = ValueError if importlib.util.find_spec("onnx") else ModuleNotFoundError
    with pytest.raises(expected, match="input_sample|requires `onnx`"):
        model.to_onnx("model.onnx")


def test_to_onnx_writes_into_an_open_file_and_takes_a_path_object(tmp_path, monkeypatch):
    # what torch.onnx.export gets: the open file itself (Lightning documents `BytesIO`), a path object as text
    import importlib.util
    import io
    import pathlib

    given = []
    monkeypatch.setattr(torch.onnx, "export", lambda module, sample, target, **kwargs: given.append(target))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "onnx" else real_find_spec(name, *a)
    )
    monkeypatch.chdir(tmp_path)
    buffer = io.BytesIO()
    model = CoreModel()
    model.to_onnx(buffer, torch.randn(1, 4))
    model.to_onnx(pathlib.Path("model.onnx"), torch.randn(1, 4))
    model.to_onnx(None, torch.randn(1, 4), dynamo=True)
    assert given[0] is buffer and given[1:] == ["model.onnx", None]


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs onnx")
def test_to_onnx_into_an_open_file_leaves_the_working_folder_as_it_was(tmp_path, monkeypatch):
    import io

    monkeypatch.chdir(tmp_path)
    buffer = io.BytesIO()
    CoreModel().to_onnx(buffer, torch.randn(1, 4), dynamo=False)
    assert buffer.getvalue() and list(tmp_path.iterdir()) == []


def test_fabric_and_device_mesh_are_none():
    model = CoreModel()
    assert model.fabric is None and model.device_mesh is None


def test_remove_ignored_hparams():
    class Hp(CoreModel):
        def __init__(self, a=1, b=2):
            super().__init__()
            self.save_hyperparameters()
            self.remove_ignored_hparams(["b", "missing"])

    assert Hp().hparams == {"a": 1}


def test_on_train_batch_start_returning_minus_one_ends_the_epoch():
    class Short(CoreModel):
        def on_train_batch_start(self, batch, batch_idx):
            return -1 if batch_idx == 1 else None

    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(Short(), loader(n=16))
    assert trainer.global_step == 2 and trainer.current_epoch == 2


class _LazyHead(CoreModel):
    """Trains through a ``head`` that its ``configure_model`` hook builds."""

    def configure_model(self):
        if not hasattr(self, "head"):
            self.head = nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.head(self(x)), y)


def test_configure_model_builds_layers_before_the_optimizers():
    model = _LazyHead()
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model, loader(n=8))
    assert any(p is model.head.weight for p in trainer.optimizers[0].param_groups[0]["params"])


def test_the_deprecated_configure_sharded_model_still_builds_layers_with_lightnings_warning():
    class OldName(_LazyHead):
        configure_sharded_model = _LazyHead.configure_model
        configure_model = ember.LightningModule.configure_model  # only the old name is overridden

    model = OldName()
    with pytest.warns(DeprecationWarning, match=r"overridden `OldName.configure_sharded_model` which is deprecated"):
        quiet_trainer(max_epochs=1).fit(model, loader(n=8))
    assert isinstance(model.head, nn.Linear)

    class BothNames(OldName):
        def configure_model(self):
            pass

    with pytest.raises(RuntimeError, match=r"Both `BothNames.configure_model`, and `BothNames.configure_sharded"):
        quiet_trainer(max_epochs=1).fit(BothNames(), loader(n=8))


def test_configure_model_hooks_that_only_wrap_the_inherited_ones_are_not_overrides():
    # as Lightning's `is_overridden` (its hook-order test wraps every hook on the instance): neither hook counts,
    # so neither runs and there is no "both overridden" error
    import functools

    model = CoreModel()
    called = []
    for name in ("configure_model", "configure_sharded_model"):
        inherited = getattr(model, name)

        def recorded(*args, _name=name, _inherited=inherited, **kwargs):
            called.append(_name)
            return _inherited(*args, **kwargs)

        setattr(model, name, functools.update_wrapper(functools.partial(recorded), inherited))
    quiet_trainer(max_epochs=1).validate(model, loader(n=8), verbose=False)
    assert called == []


def test_overridden_model_mode_hooks_are_called():
    calls = []

    class Modes(CoreModel):
        def on_validation_model_eval(self):
            calls.append("val_eval")
            super().on_validation_model_eval()

        def on_validation_model_train(self):
            calls.append("val_train")
            super().on_validation_model_train()

        def on_test_model_eval(self):
            calls.append("test_eval")
            super().on_test_model_eval()

        def on_test_model_train(self):
            calls.append("test_train")
            super().on_test_model_train()

        def on_predict_model_eval(self):
            calls.append("predict_eval")
            super().on_predict_model_eval()

    model = Modes()
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model, loader(n=4), loader(n=4))
    trainer.test(model, loader(n=4), verbose=False)
    trainer.predict(model, loader(n=4))
    assert calls == ["val_eval", "val_train", "test_eval", "test_train", "predict_eval"]


class _Shifting(CoreModel):
    """Batch hooks that leave a mark: doubled before the transfer, plus one after it."""

    def on_before_batch_transfer(self, batch, dataloader_idx):
        return batch * 2 if isinstance(batch, torch.Tensor) else batch  # (the training batches pass unchanged)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        return batch + 1 if isinstance(batch, torch.Tensor) else batch


def test_lightnings_batch_transfer_helpers_run_the_hooks_the_loops_run():
    model = _Shifting()
    moved = model._apply_batch_transfer_handler(model._on_before_batch_transfer(torch.ones(2)))
    assert moved.tolist() == [3.0, 3.0] and moved.device == model.device

    class OwnTransfer(ember.LightningDataModule):
        def on_after_batch_transfer(self, batch, dataloader_idx):
            # the datamodule's hook wins over the module's, as in the loops
            return batch - 1 if isinstance(batch, torch.Tensor) else batch

        def train_dataloader(self):
            return loader(n=4)

    seen = {}

    class InStep(_Shifting):
        def training_step(self, batch, batch_idx):
            seen["moved"] = self._apply_batch_transfer_handler(torch.ones(2), dataloader_idx=0).tolist()
            return super().training_step(batch, batch_idx)

    from ember.trainer.loop import _transfer_warnings

    _transfer_warnings.clear()  # given once a process, as in Lightning: forget earlier tests'
    with pytest.warns(UserWarning, match="overridden `on_after_batch_transfer` in both"):
        quiet_trainer(max_steps=1).fit(InStep(), datamodule=OwnTransfer())
    assert seen["moved"] == [0.0, 0.0]


def test_verify_is_manual_optimization_in_lightnings_words():
    model = CoreModel()
    with pytest.raises(MisconfigurationException, match="^to use my_step, please disable automatic optimization"):
        model._verify_is_manual_optimization("my_step")
    model.automatic_optimization = False
    model._verify_is_manual_optimization("my_step")


def _fake_torch_tensorrt(monkeypatch):
    """A stand-in for ``torch_tensorrt`` that records its calls (the real one needs CUDA and TensorRT)."""
    import importlib.machinery
    import sys
    import types

    calls = []
    fake = types.ModuleType("torch_tensorrt")
    fake.__spec__ = importlib.machinery.ModuleSpec("torch_tensorrt", None)
    fake.compile = lambda module, ir, inputs, **kw: calls.append(("compile", module.training, ir, inputs, kw)) or "trt"
    fake.save = lambda obj, path, **kw: calls.append(("save", obj, path, kw))
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake)
    return calls


def test_to_tensorrt_needs_torch_tensorrt_and_then_cuda(monkeypatch):
    model = CoreModel()
    if importlib.util.find_spec("torch_tensorrt") is None:
        with pytest.raises(ModuleNotFoundError, match="`CoreModel.to_tensorrt` requires `torch_tensorrt`"):
            model.to_tensorrt(input_sample=torch.ones(1, 4))
    _fake_torch_tensorrt(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MisconfigurationException, match="TensorRT only supports CUDA devices. The current device"):
        model.to_tensorrt(input_sample=torch.ones(1, 4))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_to_tensorrt_compiles_on_cuda_through_the_batch_hooks_and_puts_the_module_back(monkeypatch, tmp_path):
    calls = _fake_torch_tensorrt(monkeypatch)
    model = _Shifting()
    assert model.to_tensorrt(tmp_path / "m.ep", input_sample=torch.ones(1, 4), ir="dynamo", workspace_size=1) == "trt"
    (_, training, ir, inputs, kwargs), (_, saved, path, save_kwargs) = calls
    assert (training, ir, kwargs) == (False, "dynamo", {"workspace_size": 1})
    assert inputs[0].device.type == "cuda" and inputs[0].tolist() == [[3.0] * 4]
    assert (saved, path, save_kwargs["output_format"]) == ("trt", tmp_path / "m.ep", "exported_program")
    assert model.training and model.device.type == "cpu"


def test_print_outside_a_drawing_bar_still_prints(capsys):
    """In `setup`, `on_fit_end` or after a run, no bar is drawing: Lightning's `TQDMProgressBar.print` drops
    the text; Ember prints it."""

    class PrintsAround(CoreModel):
        def setup(self, stage):
            self.print("in setup")

        def on_fit_end(self):
            self.print("at the end")

    trainer = ember.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(PrintsAround(), loader(n=4))
    out = capsys.readouterr().out
    assert "in setup\n" in out and "at the end\n" in out
