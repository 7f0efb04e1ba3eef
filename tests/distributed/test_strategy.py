"""Strategy selection, environment detection and the pieces of failure and preemption handling
that need no second process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
import torch
from tests.helpers.core_models import CoreModel, ManualCoreModel, loader, quiet_trainer
from tests.helpers.environments import ForeignEnvironment
from torch import nn

import ember
from ember.distributed import DDPStrategy, SingleDeviceStrategy, failure
from ember.distributed.environments import (
    ClusterEnvironment,
    LightningEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
    detect_environment,
)
from ember.distributed.launch import _script_command
from ember.plugins.layer_sync import LayerSync, TorchSyncBatchNorm
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import _set_rank, rank_zero_only

RANK_VARS = (
    "LSB_JOBID",
    "LSB_DJOB_RANKFILE",
    "JSM_NAMESPACE_RANK",
    "JSM_NAMESPACE_LOCAL_RANK",
    "JSM_NAMESPACE_SIZE",
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "NODE_RANK",
    "GROUP_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_NODEID",
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_NODELIST",
    "SLURM_NTASKS_PER_NODE",
    "SLURM_NNODES",
    failure.ENV_DIR,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in RANK_VARS:
        monkeypatch.setenv(key, "")  # recorded, so that whatever a test sets is removed afterwards
        monkeypatch.delenv(key)
    yield
    _set_rank(0)


def make(**kwargs) -> ember.Trainer:
    options = dict(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    options.update(kwargs)
    return ember.Trainer(**options)


@pytest.mark.parametrize(
    ("name", "start_method", "find_unused"),
    [
        ("auto", "popen", False),
        ("ddp", "popen", False),
        ("ddp_spawn", "spawn", False),
        ("ddp_fork", "fork", False),
        ("ddp_notebook", "fork", False),
        ("ddp_find_unused_parameters_true", "popen", True),
        ("ddp_spawn_find_unused_parameters_true", "spawn", True),
    ],
)
def test_strategy_names_build_ddp(name, start_method, find_unused):
    trainer = make(devices=2, strategy=name)
    strategy = trainer.strategy
    assert isinstance(strategy, DDPStrategy)
    assert strategy._start_method == start_method and strategy.find_unused_parameters is find_unused
    assert trainer.world_size == 2 and trainer.num_devices == 2 and trainer.global_rank == 0 and trainer.is_global_zero
    assert strategy.is_distributed and strategy.process_group_backend is None  # chosen when the group is set up
    assert strategy.distributed_sampler_kwargs == {"num_replicas": 2, "rank": 0}
    assert strategy.root_device == torch.device("cpu")
    assert not strategy.launcher.is_launched  # nothing is started before fit
    # as Lightning's launchers: only forked workers can start from a notebook
    assert strategy.launcher.is_interactive_compatible is (start_method == "fork")


def test_one_device_stays_single_and_bad_names_say_what_exists():
    assert isinstance(make(devices=1).strategy, SingleDeviceStrategy)
    assert make(devices=1).strategy.launcher is None  # one process: nothing to launch, as in Lightning
    # ValueError, Lightning's type for a name or object it does not know and a number of nodes below 1
    lightnings = (
        r"^You selected an invalid strategy name: `strategy='dp'`\. It must be either a string or an instance of"
        r" `(ember|pytorch_lightning|lightning\.pytorch)\.strategies\.Strategy`\. Example choices: auto, ddp, ddp_spawn, deepspeed, \.\.\."
    )
    with pytest.raises(ValueError, match=lightnings + ".*ddp_notebook"):
        make(devices=2, strategy="dp")
    with pytest.raises(ValueError, match=r"invalid strategy name: `strategy=<object object at .*It must be either"):
        make(strategy=object())
    for nodes in (0, -1):
        with pytest.raises(ValueError, match=rf"`num_nodes` must be a positive integer, but got {nodes}\."):
            make(num_nodes=nodes)
    with pytest.raises(MisconfigurationException, match="sync_batchnorm=True.*CUDA"):
        make(devices=2, strategy="ddp", sync_batchnorm=True)


def test_single_device_on_several_devices_trains_in_one_process_as_in_lightning():
    trainer = make(devices=2, strategy="single_device", max_steps=1)
    assert isinstance(trainer.strategy, SingleDeviceStrategy) and trainer.strategy.root_device == torch.device("cpu")
    assert trainer.world_size == trainer.num_devices == 1
    trainer.fit(CoreModel(), loader())
    assert trainer.global_step == 1
    from ember.distributed.factory import create_strategy

    # on CUDA devices, the first one asked for (Lightning's name gives a CPU device there, which its fit refuses)
    assert create_strategy("single_device", "cuda", [1, 2], num_nodes=1).root_device == torch.device("cuda", 1)


def test_fsdp_cpu_offload_is_fsdp_offloading_to_the_cpu_as_in_lightning():
    from ember.distributed.factory import create_distributed_strategy
    from ember.distributed.fsdp import FSDPStrategy

    with pytest.raises(ValueError, match=r"^The strategy `fsdp` requires a GPU accelerator"):
        make(devices=2, strategy="fsdp_cpu_offload")
    strategy = create_distributed_strategy("fsdp_cpu_offload", "cuda", [0, 1], num_nodes=1)
    assert type(strategy) is FSDPStrategy and strategy.cpu_offload.offload_params is True


@pytest.mark.parametrize("name", ["ddp", "ddp_spawn", "ddp_spawn_find_unused_parameters_true", "DDP_Spawn"])
def test_an_interactive_session_refuses_what_cannot_start_from_it_in_lightnings_words(monkeypatch, name):
    from ember.distributed import factory

    monkeypatch.setattr(factory, "_IS_INTERACTIVE", True)
    message = (
        rf"^`Trainer\(strategy='{name.lower()}'\)` is not compatible with an interactive environment\. Run your code"
        r" as a script, or choose a notebook-compatible strategy: `Trainer\(strategy='ddp_notebook'\)`\."
    )
    with pytest.raises(MisconfigurationException, match=message):
        make(devices=2, strategy=name)
    assert make(devices=2, strategy="ddp_notebook").strategy._start_method == "fork"


def test_strategy_object_is_configured_by_the_trainer():
    strategy = DDPStrategy(
        find_unused_parameters=True,
        static_graph=False,
        timeout=timedelta(seconds=90),
        gradient_as_bucket_view=True,
        process_group_backend="gloo",
    )
    trainer = make(devices=3, num_nodes=2, strategy=strategy)
    assert trainer.strategy is strategy
    assert strategy.num_processes == 3 and strategy.num_nodes == 2 and trainer.world_size == 6
    assert strategy.timeout == timedelta(seconds=90)
    assert strategy._ddp_kwargs == {
        "find_unused_parameters": True,
        "static_graph": False,
        "gradient_as_bucket_view": True,
    }


class _OwnStrategy(ember.strategies.Strategy):
    """A strategy written Lightning's way on the base class: its abstract methods and Lightning's arguments."""

    def __init__(self, accelerator=None, checkpoint_io=None, precision_plugin=None):
        super().__init__(accelerator=accelerator, checkpoint_io=checkpoint_io, precision_plugin=precision_plugin)
        self.moved = 0

    @property
    def root_device(self):
        return torch.device("cpu")

    def model_to_device(self):
        self.moved += 1
        self.model.to(self.root_device)

    @property
    def is_global_zero(self):
        return True

    def reduce(self, tensor, group=None, reduce_op="mean"):
        return tensor

    def barrier(self, name=None):
        pass

    def broadcast(self, obj, src=0):
        return obj

    def all_gather(self, tensor, group=None, sync_grads=False):
        return tensor


def test_a_strategy_written_on_the_base_class_gives_it_lightnings_arguments(tmp_path):
    class RecordingIO(ember.plugins.TorchCheckpointIO):
        def __init__(self):
            self.saved = []

        def save_checkpoint(self, checkpoint, path, storage_options=None):
            self.saved.append(os.path.basename(path))
            super().save_checkpoint(checkpoint, path, storage_options)

    io, accelerator, precision = RecordingIO(), ember.accelerators.CPUAccelerator(), ember.plugins.DoublePrecision()
    strategy = _OwnStrategy(accelerator=accelerator, checkpoint_io=io, precision_plugin=precision)
    assert (strategy.accelerator, strategy.checkpoint_io, strategy.precision_plugin) == (accelerator, io, precision)
    assert isinstance(_OwnStrategy().checkpoint_io, ember.plugins.TorchCheckpointIO)  # the default, as in Lightning

    model = CoreModel()
    trainer = quiet_trainer(strategy=strategy, max_steps=2, enable_checkpointing=True, default_root_dir=tmp_path)
    trainer.fit(model, loader())
    assert trainer.strategy is strategy and trainer.global_step == 2 and strategy.moved == 1
    assert trainer.accelerator is accelerator and trainer.precision_plugin is precision
    assert model.layer.weight.dtype == torch.float64  # trained under the plugin the strategy was given
    assert io.saved == ["epoch=0-step=2.ckpt"]


class _BackwardRecordingStrategy(SingleDeviceStrategy):
    """A strategy of the program's own around every backward, as Lightning's users write them."""

    def __init__(self, **kwargs):
        super().__init__(device=torch.device("cpu"), **kwargs)
        self.calls: list[str] = []

    def pre_backward(self, loss):
        self.calls.append("pre_backward")

    def backward(self, closure_loss, optimizer, *args, **kwargs):
        self.calls.append(f"backward({type(optimizer).__name__})")
        return super().backward(closure_loss, optimizer, *args, **kwargs)

    def post_backward(self, loss):
        self.calls.append(f"post_backward({loss.requires_grad})")


class _BackwardHooks(CoreModel):
    def on_before_backward(self, loss):
        self.trainer.strategy.calls.append("on_before_backward")

    def on_after_backward(self):
        self.trainer.strategy.calls.append("on_after_backward")


def test_a_strategy_that_overrides_backward_runs_every_automatic_backward():
    torch.manual_seed(0)
    plain = CoreModel()
    model = _BackwardHooks()
    model.load_state_dict(plain.state_dict())
    quiet_trainer(max_epochs=1).fit(plain, loader(n=8))
    strategy = _BackwardRecordingStrategy()
    quiet_trainer(max_epochs=1, strategy=strategy).fit(model, loader(n=8))
    # Lightning's order: the hooks run inside the strategy's backward, and `post_backward` gets the loss detached
    one = ["backward(SGD)", "pre_backward", "on_before_backward", "on_after_backward", "post_backward(False)"]
    assert strategy.calls == one * 2  # 8 samples, batches of 4
    for key, value in plain.state_dict().items():
        assert torch.equal(value, model.state_dict()[key])  # the same training, through the strategy


def test_a_strategy_that_only_reads_backward_keeps_embers_own_path():
    class Plain(SingleDeviceStrategy):
        pass

    calls = []

    class Watched(CoreModel):
        def on_after_backward(self):
            calls.append(self.trainer.strategy.backward.__func__ is SingleDeviceStrategy.backward)

    quiet_trainer(max_epochs=1, strategy=Plain(device=torch.device("cpu"))).fit(Watched(), loader(n=8))
    assert calls == [True, True]


class _StepRecordingStrategy(SingleDeviceStrategy):
    """A strategy of the program's own around every step and batch transfer, Lightning's way."""

    def __init__(self):
        super().__init__(device=torch.device("cpu"))
        self.calls: list[str] = []

    def batch_to_device(self, batch, device=None, dataloader_idx=0):
        self.calls.append(f"batch_to_device({dataloader_idx})")
        return super().batch_to_device(batch, device, dataloader_idx)

    def training_step(self, *args, **kwargs):
        self.calls.append("training_step")
        return super().training_step(*args, **kwargs)

    def post_training_step(self):
        self.calls.append("post_training_step")

    def validation_step(self, *args, **kwargs):
        self.calls.append("validation_step")
        return super().validation_step(*args, **kwargs)

    def test_step(self, *args, **kwargs):
        self.calls.append("test_step")
        return super().test_step(*args, **kwargs)

    def predict_step(self, *args, **kwargs):
        self.calls.append("predict_step")
        return super().predict_step(*args, **kwargs)


class _AfterTransfer(CoreModel):
    def on_after_batch_transfer(self, batch, dataloader_idx):
        self.trainer.strategy.calls.append("on_after_batch_transfer")
        return batch


def test_a_strategy_that_overrides_the_step_methods_runs_every_step_through_them():
    torch.manual_seed(0)
    plain, model = CoreModel(), _AfterTransfer()
    model.load_state_dict(plain.state_dict())
    quiet_trainer(max_epochs=1).fit(plain, loader(n=8), loader(n=4))
    strategy = _StepRecordingStrategy()
    trainer = quiet_trainer(max_epochs=1, strategy=strategy)
    trainer.fit(model, loader(n=8), loader(n=4))
    # as in Lightning: the strategy moves each batch (the module's last transfer hook inside it), then runs the step
    train = ["batch_to_device(0)", "on_after_batch_transfer", "training_step", "post_training_step"]
    validation = ["batch_to_device(0)", "on_after_batch_transfer", "validation_step"]
    assert strategy.calls == train * 2 + validation
    for key, value in plain.state_dict().items():
        assert torch.equal(value, model.state_dict()[key])  # the same training, through the strategy
    strategy.calls.clear()
    trainer.test(model, loader(n=4), verbose=False)
    predictions = trainer.predict(model, loader(n=4))
    assert strategy.calls == [
        "batch_to_device(0)",
        "on_after_batch_transfer",
        "test_step",
        "batch_to_device(0)",
        "on_after_batch_transfer",
        "predict_step",
    ]
    assert predictions[0].shape == (4, 1)


class _HookRecordingStrategy(SingleDeviceStrategy):
    """A strategy of the program's own with Lightning's strategy hooks, its `optimizer_step` and `process_dataloader`."""

    def __init__(self):
        super().__init__(device=torch.device("cpu"))
        self.calls: list[str] = []

    def process_dataloader(self, dataloader):
        self.calls.append("strategy.process_dataloader")
        return super().process_dataloader(dataloader)

    def optimizer_step(self, optimizer, closure, model=None, **kwargs):
        self.calls.append(f"strategy.optimizer_step({type(model).__name__})")
        return super().optimizer_step(optimizer, closure, model, **kwargs)


for _name in ("on_train_start", "on_train_end", "on_train_batch_start", "on_validation_start", "on_validation_end"):

    def _hook(self, *args, _name=_name):
        self.calls.append(f"strategy.{_name}")

    setattr(_HookRecordingStrategy, _name, _hook)


class _ModuleHooks(CoreModel):
    def on_train_start(self):
        self.trainer.strategy.calls.append("module.on_train_start")

    def on_train_batch_start(self, batch, batch_idx):
        self.trainer.strategy.calls.append("module.on_train_batch_start")

    def on_before_optimizer_step(self, optimizer):
        self.trainer.strategy.calls.append("module.on_before_optimizer_step")

    def on_validation_end(self):
        self.trainer.strategy.calls.append("module.on_validation_end")


def test_a_strategy_with_lightnings_hooks_has_them_called_after_the_modules_as_in_lightning():
    torch.manual_seed(0)
    plain, model = CoreModel(), _ModuleHooks()
    model.load_state_dict(plain.state_dict())
    quiet_trainer(max_epochs=1, gradient_clip_val=0.5).fit(plain, loader(n=8), loader(n=4))
    strategy = _HookRecordingStrategy()
    quiet_trainer(max_epochs=1, gradient_clip_val=0.5, strategy=strategy).fit(model, loader(n=8), loader(n=4))
    batch = [
        "module.on_train_batch_start",
        "strategy.on_train_batch_start",
        "strategy.optimizer_step(_ModuleHooks)",
        "module.on_before_optimizer_step",  # inside the step, after the closure ran (clipping follows)
    ]
    assert strategy.calls == [
        "strategy.process_dataloader",  # the training loader
        "strategy.process_dataloader",  # the validation loader
        "module.on_train_start",
        "strategy.on_train_start",
        *batch,
        *batch,
        "strategy.on_validation_start",
        "module.on_validation_end",
        "strategy.on_validation_end",
        "strategy.on_train_end",
    ]
    for key, value in plain.state_dict().items():
        assert torch.equal(value, model.state_dict()[key])  # the same training, clipping included


def test_a_strategys_optimizer_step_runs_each_step_of_manual_optimization():
    class Manual(ManualCoreModel):
        pass

    strategy = _HookRecordingStrategy()
    trainer = quiet_trainer(max_epochs=1, strategy=strategy)
    trainer.fit(Manual(), loader(n=8))
    assert strategy.calls.count("strategy.optimizer_step(Manual)") == 2
    assert trainer.global_step == 2


def test_a_strategy_set_up_by_hand_outside_a_trainer_call_configures_the_optimizers():
    # Lightning's strategy lifecycle driven by a program (its own test drives DDPStrategy this way): connect, the
    # environment, then `setup` for fit, which calls `configure_optimizers` without a run of the Trainer around it
    from ember.trainer.states import TrainerFn

    model = CoreModel()
    trainer = quiet_trainer(max_epochs=1)
    trainer.state.fn = TrainerFn.FITTING
    trainer.strategy.connect(model)
    model.trainer = trainer
    trainer.strategy.setup_environment()
    trainer.strategy.setup(trainer)
    assert trainer.model is model
    assert [type(optimizer) for optimizer in trainer.optimizers] == [torch.optim.SGD]
    assert trainer.optimizers[0].param_groups[0]["params"] == list(model.parameters())


def test_batch_to_device_moves_a_batch_through_the_transfer_hooks_the_datamodules_first():
    seen = []

    class Module(CoreModel):
        def transfer_batch_to_device(self, batch, device, dataloader_idx):
            seen.append(("module", dataloader_idx))
            return super().transfer_batch_to_device(batch, device, dataloader_idx)

    class Data(ember.LightningDataModule):
        def train_dataloader(self):
            return loader(n=4)

        def on_after_batch_transfer(self, batch, dataloader_idx):
            seen.append(("datamodule", dataloader_idx))
            return [t * 2 for t in batch]

    class Grab(ember.Callback):
        def on_train_start(self, trainer, pl_module):
            # a callback moving a batch of its own, as Lightning's users do
            self.moved = trainer.strategy.batch_to_device([torch.ones(2)], dataloader_idx=3)

    grab = Grab()
    quiet_trainer(max_steps=1, callbacks=[grab]).fit(Module(), datamodule=Data())
    assert torch.equal(grab.moved[0], torch.full((2,), 2.0))
    assert seen[:2] == [("module", 3), ("datamodule", 3)]


def test_torchrun_environment_is_joined(monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc")
    for key, value in (
        ("RANK", "3"),
        ("LOCAL_RANK", "1"),
        ("WORLD_SIZE", "4"),
        ("GROUP_RANK", "1"),
        ("MASTER_ADDR", "10.0.0.1"),
        ("MASTER_PORT", "29500"),
    ):
        monkeypatch.setenv(key, value)
    assert isinstance(detect_environment(), TorchElasticEnvironment)
    trainer = make(devices=2, num_nodes=2, strategy="ddp")
    assert (trainer.global_rank, trainer.local_rank, trainer.node_rank, trainer.world_size) == (3, 1, 1, 4)
    assert not trainer.is_global_zero
    assert rank_zero_only.rank == 3  # rank_zero_* helpers know their rank from construction on
    with pytest.raises(ValueError, match="torchrun started 4 processes.*--nproc_per_node"):
        make(devices=2, strategy="ddp")


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_the_process_group_is_bound_to_the_ranks_gpu(monkeypatch, device):
    # as Lightning: NCCL sets up for the rank's device at once, and barriers do not guess the device
    joined = {}
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda *args, **kwargs: joined.update(kwargs))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr("atexit.register", lambda fn: fn)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # (set by the strategy: put back after the test)
    monkeypatch.setenv("MASTER_PORT", "29500")
    devices = [torch.device(device, 0), torch.device(device, 1)] if device == "cuda" else [torch.device("cpu")] * 2
    strategy = DDPStrategy(parallel_devices=devices, cluster_environment=LightningEnvironment())
    strategy.set_world_ranks()
    strategy.setup_distributed()
    assert joined.get("device_id") == (torch.device("cuda", 0) if device == "cuda" else None)
    assert joined["timeout"] == strategy._timeout


def test_slurm_environment_reads_srun_variables(monkeypatch):
    for key, value in (
        ("SLURM_NTASKS", "4"),
        ("SLURM_PROCID", "2"),
        ("SLURM_LOCALID", "0"),
        ("SLURM_NODEID", "1"),
        ("SLURM_JOB_ID", "123456"),
        ("SLURM_NODELIST", "gpu[07-09],cpu1"),
        ("SLURM_NNODES", "2"),
        ("SLURM_NTASKS_PER_NODE", "2"),
        ("SLURM_JOB_NAME", "train"),
    ):
        monkeypatch.setenv(key, value)
    env = detect_environment()
    assert isinstance(env, SLURMEnvironment) and env.creates_processes_externally
    assert env.main_address == "gpu07" and env.main_port == 15000 + 3456
    trainer = make(devices=2, num_nodes=2, strategy="ddp")
    assert (trainer.global_rank, trainer.local_rank, trainer.node_rank, trainer.world_size) == (2, 0, 1, 4)
    with pytest.raises(ValueError, match="ntasks-per-node=2"):
        make(devices=4, num_nodes=2, strategy="ddp")
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # `srun --job-name=interactive`: launch yourself
    assert isinstance(detect_environment(), LightningEnvironment)


@pytest.mark.parametrize(
    ("nodes", "root"),
    [
        ("host0 host1", "host0"),
        ("host0,host1", "host0"),
        ("host[5-9]", "host5"),
        ("host[5,7]", "host5"),
        ("alone", "alone"),
        ("n[12]", "n12"),
    ],
)
def test_slurm_root_node(nodes, root):
    assert SLURMEnvironment.resolve_root_node_address(nodes) == root


def test_a_rank_above_zero_that_would_start_the_ranks_again_is_refused_in_lightnings_words(monkeypatch):
    # an environment that says a process Ember started is not started from outside: that process would start
    # the job's ranks again, and each of them again
    class StartsItsOwnRanks(LightningEnvironment):
        @property
        def creates_processes_externally(self):
            return False

    monkeypatch.setenv("LOCAL_RANK", "1")
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))
    trainer = make(devices=2, strategy="ddp", plugins=[StartsItsOwnRanks()])
    with pytest.raises(RuntimeError) as raised:
        trainer.fit(CoreModel(), loader())
    message = str(raised.value)
    assert message.startswith(
        "Lightning attempted to launch new distributed processes with `local_rank > 0`. This should not happen."
        " Possible reasons: 1) LOCAL_RANK environment variable was incorrectly modified by the user,"
        " 2) `ClusterEnvironment.creates_processes_externally` incorrectly implemented."
    )
    assert "`StartsItsOwnRanks.local_rank()` is 1" in message
    assert started == []  # before any process started


@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_a_rank_and_world_size_left_in_the_environment_do_not_change_a_job_not_yet_started(monkeypatch, strategy):
    # as in Lightning: until this process starts the job (and sets them anew), its rank and the world size are
    # those of the Trainer's `devices` and `num_nodes`
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("NODE_RANK", "1")
    trainer = make(devices=2, num_nodes=2, strategy=strategy)
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (4, 2, 0, 1)
    environment = trainer.strategy.cluster_environment
    assert (environment.world_size(), environment.global_rank()) == (4, 2)
    assert rank_zero_only.rank == 2
    # a process started with LOCAL_RANK has the rank and world size its launcher gave it
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    trainer = make(devices=2, num_nodes=2, strategy=strategy)
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (4, 3, 1, 1)


def test_relaunching_pytest_is_refused():
    with pytest.raises(MisconfigurationException, match="pytest"):
        _script_command()


def test_relaunching_a_pytest_xdist_worker_is_refused_as_pytest(monkeypatch):
    # an xdist worker's `__main__` comes from `python -c`: no spec, no file, but pytest is loaded
    import __main__

    monkeypatch.setattr(__main__, "__spec__", None)
    monkeypatch.delattr(__main__, "__file__", raising=False)
    monkeypatch.setattr(sys, "argv", ["-c"])
    with pytest.raises(MisconfigurationException, match="this program is pytest"):
        _script_command()


def test_preemption_flag_is_agreed_only_every_n_batches_and_at_epoch_end():
    strategy = make(devices=2, strategy=DDPStrategy(preemption_check_interval=5)).strategy
    answers = [strategy.agree_on_stop(True, n) for n in (1, 2, 3, 4, 5, 6, 7, 7)]
    # batches 1..7: only batch 5 asks; the second call with 7 is the epoch-end check
    assert answers == [False, False, False, False, True, False, False, True]
    assert strategy.agree_on_stop(False, 10) is False
    with pytest.raises(ValueError, match="preemption_check_interval"):
        DDPStrategy(preemption_check_interval=0)


def test_first_failure_is_claimed_once(tmp_path, monkeypatch):
    monkeypatch.setenv(failure.ENV_DIR, str(tmp_path))
    assert failure.first_failure() is None
    assert failure.on_exception(ValueError("first"), rank=1) is True
    assert failure.first_failure() == (1, "ValueError: first")
    secondary = RuntimeError("connection closed by peer")
    assert failure.on_exception(secondary, rank=0) is False
    error = failure.collective_error("barrier('prepare_data')", 0, 2, timedelta(minutes=30), secondary)
    assert "`barrier('prepare_data')`" in str(error) and "rank 1 failed first" in str(error)


def test_a_failure_is_recorded_for_its_trainer_call_only(tmp_path, monkeypatch):
    # a program that catches a failure and makes another call: that call's failure is its own first rank's
    monkeypatch.setenv(failure.ENV_DIR, str(tmp_path))
    monkeypatch.setitem(failure._state, "call", 0)
    failure.begin_call()
    assert failure.on_exception(ValueError("bad config"), rank=0) is True
    assert failure.on_exception(RuntimeError("connection closed by peer"), rank=1) is False
    # the launching rank spares a rank that failed by itself; one that lost its peer may wait in a collective
    assert failure.failed_by_itself(0) and not failure.failed_by_itself(1)
    failure.begin_call()
    assert failure.first_failure() is None and not failure.failed_by_itself(0)
    assert failure.on_exception(ValueError("later"), rank=1) is True
    assert failure.first_failure() == (1, "ValueError: later")
    failure.forget_call()  # every rank failed by itself: the call's failure is over
    assert failure.first_failure() is None and not failure.failed_by_itself(1)


def test_a_rank_killed_by_a_signal_is_the_first_failure_and_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(failure.ENV_DIR, str(tmp_path))
    assert failure.describe_exit(-9) == "was killed by signal SIGKILL (9)"
    assert failure.describe_exit(3) == "exited with code 3"
    assert failure.record_killed(1, -9) is True  # by the launcher, which saw how rank 1 ended
    assert failure.record_killed(1, -15) is False  # only the first failure counts
    assert failure.first_failure() == (1, "was killed by signal SIGKILL (9)")
    lost = RuntimeError("[gloo] Read error: Connection reset by peer")
    assert failure.on_exception(lost, rank=0) is False  # rank 0 failed because of it
    line = failure.secondary_line(1, "was killed by signal SIGKILL (9)")
    assert line.startswith("stopped because rank 1 was killed by signal SIGKILL (9): the system ended that process")
    assert "the other ranks were stopped because of it" in line
    if hasattr(lost, "add_note"):
        assert lost.__notes__ == [f"[rank 0] {line}"]  # seen even where the error is caught and printed
    error = failure.collective_error("all_reduce", 0, 2, timedelta(minutes=30), lost)
    assert "rank 1 was killed by signal SIGKILL (9) (the out-of-memory killer or a preemption, usually)" in str(error)


def test_collective_error_without_a_known_failure_names_the_timeout():
    error = failure.collective_error("all_reduce", 1, 2, timedelta(seconds=5), RuntimeError("timed out"))
    assert "Rank 1/2: the collective `all_reduce` did not complete" in str(error)
    assert "timeout (0:00:05)" in str(error)


def test_rank_zero_only_runs_on_rank_zero():
    calls = []

    @rank_zero_only
    def record(value):
        calls.append(value)
        return value

    assert record(1) == 1
    _set_rank(1)
    assert record(2) is None
    assert calls == [1]


def test_a_one_device_trainer_in_a_ranks_process_keeps_the_rank_it_started_with():
    # asteroid builds a second, one-device Trainer inside each DDP rank; Lightning's single-device
    # strategy leaves `rank_zero_only.rank` alone, so rank 1 stays quiet
    code = (
        "import ember\n"
        "from ember.utilities.rank_zero import rank_zero_info, rank_zero_only\n"
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.INFO, format='LOG %(message)s')\n"
        "print('before', rank_zero_only.rank)\n"
        "ember.Trainer(accelerator='cpu', devices=1, logger=False, enable_progress_bar=False)\n"
        "print('after', rank_zero_only.rank)\n"
        "rank_zero_info('rank zero only')\n"
    )
    env = {**os.environ, "RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["before 1", "after 1"]


def test_every_rank_learns_which_signal_stopped_the_job():
    import signal
    from types import SimpleNamespace

    from ember.trainer.preemption import StopFlag

    asked = []

    def agree(value, total_batches):
        asked.append(value)
        return signal.SIGTERM  # another rank received SIGTERM

    flag = StopFlag()
    strategy, progress = SimpleNamespace(agree_on_stop=agree), SimpleNamespace(total_batches=10)
    checker = flag.checker(strategy, progress)
    assert checker() is True
    assert asked == [0] and flag.flag and flag.signum == signal.SIGTERM
    # agreed: it keeps saying so, without asking again (every rank waits for its accumulation window to close)
    assert checker() is True and asked == [0]
    own = StopFlag()
    own.flag, own.signum = True, signal.SIGUSR1
    own.checker(strategy, progress)()
    assert asked[-1] == signal.SIGUSR1  # this rank's own signal is what it offers


def test_cpu_devices_are_a_number_of_processes():
    from ember.distributed import parse_devices

    assert parse_devices(2, "cpu") == [0, 1] and parse_devices("2", "cpu") == [0, 1]
    assert parse_devices("auto", "cpu") == [0]
    for value in (-1, "-1", [0, 1], "0,1"):
        with pytest.raises(TypeError, match="should be an int > 0"):
            parse_devices(value, "cpu")


def test_rank_prefixed_message_and_deprecation_on_rank_zero_only():
    from ember.utilities.rank_zero import rank_prefixed_message, rank_zero_deprecation

    assert rank_prefixed_message("hello", 1) == "[rank: 1] hello"
    assert rank_prefixed_message("hello", None) == "hello"
    with pytest.warns(DeprecationWarning, match="old"):
        rank_zero_deprecation("old")
    _set_rank(1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rank_zero_deprecation("old")  # silent off rank 0


def test_a_one_process_ddp_run_leaves_only_the_process_group_variables_behind():
    """As Lightning: the rank layout torch reads may stay; nothing for children that don't exist."""

    class Probe(ember.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def test_step(self, batch, batch_idx):
            self.log("loss", self.layer(batch[0]).sum())

    before = set(os.environ)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=2)
    make(strategy="ddp", devices=1).test(Probe(), loader, verbose=False)
    left = set(os.environ) - before
    # and, as Lightning's launcher exports it, the number of threads the rank was given
    assert left <= {"MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "WORLD_SIZE", "LOCAL_RANK", "RANK", "OMP_NUM_THREADS"}
    assert "LOCAL_WORLD_SIZE" not in left and failure.ENV_DIR not in left


def test_a_parallel_strategy_tears_its_cluster_environment_down_when_the_call_ends(monkeypatch):
    class Recording(LightningEnvironment):
        torn_down = 0

        def teardown(self):
            Recording.torn_down += 1

    monkeypatch.setenv("SLURM_JOB_NAME", "train-llm")
    assert SLURMEnvironment.job_name() == "train-llm"
    environment = Recording()
    trainer = make(strategy="ddp", devices=1, plugins=[environment], max_steps=1)
    assert trainer.strategy.cluster_environment is environment
    trainer.fit(CoreModel(), loader())
    assert Recording.torn_down == 1
    ClusterEnvironment().teardown()  # the base class's does nothing, as Lightning's


def test_a_strategy_stepping_through_its_plugin_with_the_wrapped_model_runs_the_hooks_before_each_step():
    # Lightning's own strategies call `self.precision_plugin.optimizer_step(optimizer, model=..., closure=...)`;
    # one of the program's own may pass the DDP wrapper it trains (`self.model`)
    class PluginStepping(DDPStrategy):
        def optimizer_step(self, optimizer, closure, model=None, **kwargs):
            assert isinstance(self.model, torch.nn.parallel.DistributedDataParallel)
            return self.precision_plugin.optimizer_step(optimizer, model=self.model, closure=closure, **kwargs)

        def backward(self, closure_loss, optimizer, *args, **kwargs):
            loss = self.precision_plugin.pre_backward(closure_loss, self.model)
            loss.backward()
            return self.precision_plugin.post_backward(loss, self.model)

    class Counted(CoreModel):
        def __init__(self):
            super().__init__()
            self.calls = []

        def on_before_backward(self, loss):
            self.calls.append("on_before_backward")

        def on_after_backward(self):
            self.calls.append("on_after_backward")

        def on_before_optimizer_step(self, optimizer):
            self.calls.append("on_before_optimizer_step")

    model = Counted()
    make(strategy=PluginStepping(), devices=1, max_steps=2).fit(model, loader())
    assert model.calls == ["on_before_backward", "on_after_backward", "on_before_optimizer_step"] * 2


def test_the_single_device_world_size_is_a_plain_attribute_as_in_lightning():
    trainer = ember.Trainer(accelerator="cpu", logger=False)
    assert isinstance(trainer.strategy, SingleDeviceStrategy) and trainer.world_size == 1
    trainer.strategy.world_size = 2
    assert trainer.world_size == 2


def test_the_fsdp_name_needs_a_gpu_but_an_fsdp_object_runs_on_cpu():
    from ember.distributed import FSDPStrategy

    with pytest.raises(
        ValueError, match=r"The strategy `fsdp` requires a GPU accelerator, but received `accelerator='cpu'`"
    ):
        ember.Trainer(accelerator="cpu", strategy="fsdp", devices=2, logger=False)

    class Sharded(FSDPStrategy):
        pass

    for strategy in (FSDPStrategy(), Sharded()):
        assert ember.Trainer(accelerator="cpu", strategy=strategy, devices=2, logger=False).strategy is strategy


@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_devices_that_disagree_with_slurms_tasks_per_node_fail_at_construction(monkeypatch, strategy):
    # Lightning checks this only when `ddp` starts its processes, at the first `fit`; spawn never
    for key, value in {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_PROCID": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    message = r"You set `devices=2`.*`--ntasks-per-node=1` does not match\. HINT: Set `devices=1`"
    with pytest.raises(ValueError, match=message):
        make(strategy=strategy, devices=2)
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # an interactive allocation: not a SLURM launch
    assert make(strategy=strategy, devices=2).world_size == 2


def test_a_cluster_environment_with_the_whole_interface_is_used_even_under_slurm(monkeypatch):
    # SLURM's variables would pick SLURMEnvironment (and refuse devices=2 for one task a node)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "1")
    monkeypatch.setenv("SLURM_PROCID", "0")
    env = ForeignEnvironment(local_rank=1, node_rank=1)
    trainer = make(strategy="ddp", devices=2, num_nodes=2, plugins=[env])
    assert trainer.strategy.cluster_environment is env
    # the strategy tells it the ranks, as Lightning's does: node 1, local rank 1 of 2 processes a node
    assert (env.global_rank(), env.world_size()) == (3, 4)
    assert (trainer.global_rank, trainer.world_size, trainer.local_rank) == (3, 4, 1)


def test_two_cluster_environments_are_refused_whatever_their_base_class():
    with pytest.raises(MisconfigurationException, match="Received multiple values for ClusterEnvironment"):
        make(plugins=[LightningEnvironment(), ForeignEnvironment()])


def _fabrics(own: type, name: str) -> type:
    """A stand-in for Lightning Fabric's class ``name``: its interface, under Fabric's module."""
    return type(name, (own,), {"__module__": "lightning_fabric.plugins.environments.stand_in"})


def test_fabrics_own_environments_become_embers_with_their_settings(monkeypatch):
    # a Lightning program may import these from `lightning.fabric`, and a config Lightning printed names them there
    assert issubclass(ForeignEnvironment, ClusterEnvironment) and isinstance(ForeignEnvironment(), ClusterEnvironment)
    assert not issubclass(ForeignEnvironment, LightningEnvironment)
    for key, value in {"SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_NODEID": "0"}.items():
        monkeypatch.setenv(key, value)  # an srun job of two tasks, this one the second
    slurm = _fabrics(ForeignEnvironment, "SLURMEnvironment")()
    slurm.auto_requeue, slurm.requeue_signal = False, signal.SIGTERM
    env = make(strategy="ddp", devices=2, plugins=[slurm]).strategy.cluster_environment
    assert type(env) is SLURMEnvironment and (env.auto_requeue, env.requeue_signal) == (False, signal.SIGTERM)
    assert (env.global_rank(), env.world_size()) == (1, 2)  # Ember's reads srun's variables
    lightning = _fabrics(ForeignEnvironment, "LightningEnvironment")()
    assert type(DDPStrategy(cluster_environment=lightning).cluster_environment) is LightningEnvironment
    # a subclass a program wrote keeps its own behaviour
    mine = type("MyEnvironment", (type(lightning),), {"__module__": "my_project.cluster"})()
    assert make(strategy="ddp", devices=2, plugins=[mine]).strategy.cluster_environment is mine


class NoSync(LayerSync):
    def apply(self, model):
        return model

    def revert(self, model):
        return model


def test_sync_batchnorm_and_a_layer_sync_plugin_are_one_choice():
    with pytest.raises(MisconfigurationException, match=r"`Trainer\(sync_batchnorm=True\)` and provided a `NoSync`"):
        make(sync_batchnorm=True, plugins=[NoSync()])
    with pytest.raises(MisconfigurationException, match="Received multiple values for LayerSync"):
        make(plugins=[NoSync(), TorchSyncBatchNorm()])
    plugin = NoSync()
    strategy = make(strategy="ddp", devices=2, plugins=[plugin]).strategy
    assert strategy.layer_sync is plugin and not strategy.sync_batchnorm


def test_torch_sync_batchnorm_reverts_to_batchnorm_keeping_parameters_and_statistics():
    # no forward pass here: a CPU BatchNorm run in this process would start the OpenMP pool, which the
    # forked jobs of other test files cannot use
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    with torch.no_grad():
        model[1].running_mean += 1.0
        model[1].weight.mul_(2.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    synced = TorchSyncBatchNorm().apply(model)
    assert isinstance(synced[1], nn.SyncBatchNorm)
    reverted = TorchSyncBatchNorm().revert(synced)
    norm = reverted[1]
    assert isinstance(norm, nn.modules.batchnorm._BatchNorm) and not isinstance(norm, nn.SyncBatchNorm)
    for key, value in reverted.state_dict().items():
        assert torch.equal(value, before[key]), key
    norm._check_input_dim(torch.empty(2, 4, 5))  # any input dimension, as the original class is unknown


def test_a_kubeflow_pytorchjob_pod_takes_its_rank_from_the_operator(monkeypatch):
    from ember.plugins.environments import KubeflowEnvironment

    for key, value in {"MASTER_ADDR": "job-master-0", "MASTER_PORT": "23456", "WORLD_SIZE": "3", "RANK": "2"}.items():
        monkeypatch.setenv(key, value)
    env = KubeflowEnvironment()
    trainer = make(strategy="ddp", num_nodes=3, devices=1, plugins=[env])
    assert trainer.strategy.cluster_environment is env and env.creates_processes_externally
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (3, 2, 0, 2)
    assert (env.main_address, env.main_port) == ("job-master-0", 23456)
    env.set_global_rank(0)
    env.set_world_size(1)  # the operator's values stand
    assert (env.global_rank(), env.world_size()) == (2, 3)
    with pytest.raises(NotImplementedError, match="can't be detected automatically"):
        KubeflowEnvironment.detect()


def test_an_lsf_jsrun_job_is_detected_and_read_from_its_rank_file(tmp_path, monkeypatch):
    import socket

    from ember.plugins.environments import LSFEnvironment

    here = socket.gethostname()
    rankfile = tmp_path / "rankfile"
    rankfile.write_text(f"launch-node\nnode-a\nnode-a\n{here}\n{here}\n")  # 2 nodes of 2 slots; this is the second
    for key, value in {
        "LSB_JOBID": "123456",
        "LSB_DJOB_RANKFILE": str(rankfile),
        "JSM_NAMESPACE_SIZE": "4",
        "JSM_NAMESPACE_RANK": "3",
        "JSM_NAMESPACE_LOCAL_RANK": "1",
    }.items():
        monkeypatch.setenv(key, value)
    trainer = make(strategy="ddp", num_nodes=2, devices=2)
    env = trainer.strategy.cluster_environment
    assert isinstance(env, LSFEnvironment) and env.creates_processes_externally
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (4, 3, 1, 1)
    assert (env.main_address, env.main_port) == ("node-a", 10456)  # the job id decides the port on every node
    assert os.environ["MASTER_ADDR"] == "node-a" and os.environ["MASTER_PORT"] == "10456"
    monkeypatch.delenv("JSM_NAMESPACE_RANK")
    with pytest.raises(ValueError, match="Environment variable `JSM_NAMESPACE_RANK` not found. Run the program with"):
        env.global_rank()


class _FakeComm:
    """What MPIEnvironment uses of mpi4py's communicators, for rank 5 of 6 over 3 hosts (2 per host)."""

    def __init__(self, rank: int = 5, size: int = 6) -> None:
        self.rank, self.size, self.calls = rank, size, []

    def Get_size(self):
        return self.size

    def Get_rank(self):
        return self.rank

    def bcast(self, value, root):
        self.calls.append("bcast")
        return ("host-0", 29500) if isinstance(value, tuple) else ["host-0", "host-1", socket.gethostname()]

    def gather(self, value, root):
        return None  # not rank 0

    def Split(self, color):
        return _FakeComm(rank=1, size=2)


def test_an_mpi_job_is_detected_through_mpi4py_and_reads_its_ranks_from_the_world(monkeypatch):
    import types

    from ember.plugins.environments import MPIEnvironment

    mpi4py = types.ModuleType("mpi4py")
    mpi4py.MPI = types.SimpleNamespace(COMM_WORLD=_FakeComm())
    monkeypatch.setitem(sys.modules, "mpi4py", mpi4py)
    trainer = make(strategy="ddp", num_nodes=3, devices=2)
    env = trainer.strategy.cluster_environment
    assert isinstance(env, MPIEnvironment) and env.creates_processes_externally
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (6, 5, 1, 2)
    assert (env.main_address, env.main_port) == ("host-0", 29500)  # rank 0's, broadcast once
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    assert not MPIEnvironment.detect()
    with pytest.raises(ModuleNotFoundError, match=r"needs the `mpi4py` package .*`pip install mpi4py`"):
        MPIEnvironment()


@pytest.mark.parametrize("strategy_class", ["DDPStrategy", "FSDPStrategy", "ModelParallelStrategy"])
def test_an_unknown_start_method_is_refused_by_the_trainer_in_lightnings_words(strategy_class):
    from ember import strategies

    strategy = getattr(strategies, strategy_class)(start_method="thread")  # as Lightning: refused by the Trainer
    with pytest.raises(ValueError, match=r"^The start method 'thread' is not available on this platform\."):
        make(devices=2, strategy=strategy)


def test_a_strategy_that_builds_its_own_optimizers_is_used_by_fit():
    class OwnOptimizers(SingleDeviceStrategy):
        calls = 0

        def setup_optimizers(self, trainer):
            OwnOptimizers.calls += 1
            assert trainer.strategy is self
            self.optimizers = [torch.optim.Adam(self.lightning_module.parameters(), lr=0.05)]
            self.lr_scheduler_configs = []

    model = CoreModel(optimizers=lambda module: pytest.fail("configure_optimizers ran past the strategy"))
    trainer = quiet_trainer(strategy=OwnOptimizers("cpu"), max_epochs=2)
    before = model.layer.weight.detach().clone()
    trainer.fit(model, loader())
    assert OwnOptimizers.calls == 1  # once per fit
    assert [type(opt) for opt in trainer.optimizers] == [torch.optim.Adam]
    assert trainer.strategy.optimizers == trainer.optimizers and trainer.strategy.lr_scheduler_configs == []
    assert not torch.equal(model.layer.weight, before)  # the strategy's optimizer trained the model


def test_a_strategy_builds_on_the_optimizers_lightnings_private_helper_makes():
    # strategies written for Lightning (custom DeepSpeed-like or accelerator-specific ones) call
    # `core.optimizer._init_optimizers_and_lr_schedulers(module)` in their `setup_optimizers`, then wrap the result
    from ember.core.optimizer import _init_optimizers_and_lr_schedulers

    made = []

    class Wrapping(SingleDeviceStrategy):
        def setup_optimizers(self, trainer):
            optimizers, configs = _init_optimizers_and_lr_schedulers(self.lightning_module)
            made.append((list(trainer.optimizers), [(c.interval, c.frequency) for c in configs]))  # nothing set yet
            self.optimizers, self.lr_scheduler_configs = optimizers, configs

    def configure(module):
        optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)}

    trainer = quiet_trainer(strategy=Wrapping("cpu"), max_epochs=2)
    trainer.fit(CoreModel(optimizers=configure), loader())
    assert made == [([], [("epoch", 1)])]  # made once, as `fit` makes them, and set by the strategy alone
    assert [type(opt) for opt in trainer.optimizers] == [torch.optim.SGD]
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.25  # the scheduler stepped at each epoch's end
    with pytest.raises(RuntimeError, match="is not attached to a `Trainer`"):
        _init_optimizers_and_lr_schedulers(CoreModel())


def test_the_default_setup_optimizers_runs_configure_optimizers_once_per_fit():
    seen = []

    class Counting(SingleDeviceStrategy):
        def setup_optimizers(self, trainer):
            super().setup_optimizers(trainer)
            seen.append([type(opt) for opt in self.optimizers])

    trainer = quiet_trainer(strategy=Counting("cpu"), max_epochs=1)
    trainer.fit(CoreModel(), loader())
    trainer.validate(CoreModel(), loader())  # only fit sets up optimizers
    assert seen == [[torch.optim.SGD]]


def test_a_strategy_keeps_the_optimizers_set_before_a_trainer_runs_it_as_lightnings_does():
    import pickle

    strategy = SingleDeviceStrategy("cpu")
    assert strategy.optimizers == [] and strategy.lr_scheduler_configs == []
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    strategy.optimizers = [optimizer]  # Lightning's own test sets them, then pickles the strategy
    assert strategy.optimizers == [optimizer]
    assert [type(o) for o in pickle.loads(pickle.dumps(strategy)).optimizers] == [torch.optim.SGD]
    # `fit` sets up the module's own, as Lightning's `setup_optimizers` does
    trainer = quiet_trainer(strategy=strategy, max_epochs=1)
    model = CoreModel()
    trainer.fit(model, loader())
    assert strategy.optimizers == trainer.optimizers and strategy.optimizers[0] is not optimizer


def test_the_samplers_that_share_a_loader_among_ranks():
    from torch.utils.data import WeightedRandomSampler

    from ember.distributed.samplers import (
        DistributedSamplerWrapper,
        UnrepeatedDistributedSampler,
        UnrepeatedDistributedSamplerWrapper,
    )

    def weighted():  # the same draw on every rank, as seeded ranks make it
        return WeightedRandomSampler([0.1, 0.2, 0.3, 0.4, 5.0], 7, generator=torch.Generator().manual_seed(3))

    drawn = list(weighted())
    shares = [list(DistributedSamplerWrapper(weighted(), num_replicas=2, rank=r, shuffle=False)) for r in (0, 1)]
    assert shares == [drawn[0::2], [*drawn[1::2], drawn[0]]]  # padded to equal lengths, as DistributedSampler
    # predict: each sample once, the last rank one fewer
    assert [list(UnrepeatedDistributedSampler(range(5), num_replicas=2, rank=r, shuffle=False)) for r in (0, 1)] == [
        [0, 2, 4],
        [1, 3],
    ]
    shuffled = [list(UnrepeatedDistributedSampler(range(5), num_replicas=2, rank=r)) for r in (0, 1)]
    assert sorted(shuffled[0] + shuffled[1]) == [0, 1, 2, 3, 4] and len(shuffled[1]) == 2
    wrapped = [
        list(UnrepeatedDistributedSamplerWrapper(weighted(), num_replicas=3, rank=r, shuffle=False)) for r in range(3)
    ]
    assert wrapped == [drawn[0::3], drawn[1::3], drawn[2::3]]
    with pytest.raises(TypeError, match=r"has no finite length.*use_distributed_sampler=False"):
        DistributedSamplerWrapper(iter(range(3)), num_replicas=2, rank=0)


@pytest.mark.parametrize("strategy", ["auto", "ddp"])
def test_the_strategys_accelerator_is_the_trainers_accelerator_object(strategy):
    # as Lightning: a custom strategy or callback reads `trainer.strategy.accelerator` for the device's kind
    assert SingleDeviceStrategy(device=torch.device("cpu")).accelerator is None  # no Trainer has taken it yet
    trainer = ember.Trainer(logger=False, accelerator="cpu", devices=2 if strategy == "ddp" else 1, strategy=strategy)
    assert trainer.strategy.accelerator is trainer.accelerator
    assert isinstance(trainer.strategy.accelerator, ember.accelerators.CPUAccelerator)


def test_an_accelerator_name_given_to_the_strategy_is_the_trainers_as_in_lightning():
    strategy = DDPStrategy(accelerator="cpu")
    assert strategy.accelerator == "cpu"  # a name, until a Trainer takes the strategy
    trainer = ember.Trainer(logger=False, devices=2, strategy=strategy)  # `accelerator="auto"` takes the strategy's
    assert isinstance(trainer.accelerator, ember.accelerators.CPUAccelerator)
    assert trainer.strategy.accelerator is trainer.accelerator
    with pytest.raises(
        MisconfigurationException, match="^accelerator set through both strategy class and accelerator flag, choose one"
    ):
        make(devices=2, strategy=DDPStrategy(accelerator="cpu"))


def test_optimizer_states_move_with_the_step_count_left_where_the_optimizer_keeps_it():
    # what the teardown after a GPU run does (to the CPU); moved here to the meta device, which needs no GPU
    from ember.distributed.strategy import optimizers_to_device

    layer = nn.Linear(3, 2)
    adam = torch.optim.Adam(layer.parameters())
    layer(torch.ones(1, 3)).sum().backward()
    adam.step()
    optimizers_to_device([adam], torch.device("meta"))
    for state in adam.state.values():
        assert state["exp_avg"].device.type == state["exp_avg_sq"].device.type == "meta"
        assert state["step"].device.type == "cpu"


class _CountingSingleDevice(SingleDeviceStrategy):
    """A strategy of the program's own overriding two methods Lightning's Trainer calls."""

    def __init__(self):
        super().__init__(device=torch.device("cpu"))
        self.calls: dict[str, int] = {}

    def model_to_device(self):
        self.calls["model_to_device"] = self.calls.get("model_to_device", 0) + 1
        super().model_to_device()

    def reduce_boolean_decision(self, decision, all=True):
        self.calls[f"reduce_boolean_decision(all={all})"] = self.calls.get(f"reduce_boolean_decision(all={all})", 0) + 1
        return super().reduce_boolean_decision(decision, all)


class _LogsTrainLoss(CoreModel):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("train_loss", loss, on_epoch=True)
        return loss


def test_a_strategys_model_to_device_and_boolean_decisions_are_called_as_lightning_calls_them(tmp_path):
    # `setup` moves the module through `model_to_device`; `ModelCheckpoint` asks whether a file name is taken
    # through `reduce_boolean_decision(..., all=False)`, and whether to save through it (all=True)
    strategy = _CountingSingleDevice()
    checkpoint = ember.callbacks.ModelCheckpoint(tmp_path, monitor="train_loss", save_top_k=1)
    trainer = quiet_trainer(max_epochs=2, strategy=strategy, callbacks=[checkpoint], enable_checkpointing=True)
    trainer.fit(_LogsTrainLoss(), loader(n=8))
    assert strategy.calls == {
        "model_to_device": 1,
        "reduce_boolean_decision(all=True)": 1,  # the save decision once the top 1 is taken (second epoch)
        "reduce_boolean_decision(all=False)": 2,  # one name check per save
    }


class _ReduceRecording(SingleDeviceStrategy):
    def __init__(self):
        super().__init__(device=torch.device("cpu"))
        self.reduced: list[int] = []

    def reduce(self, tensor, group=None, reduce_op="mean"):
        self.reduced.append(int(tensor))
        return super().reduce(tensor, group=group, reduce_op=reduce_op)


def test_a_strategy_that_overrides_reduce_counts_the_loader_lengths_on_one_device_too():
    # as Lightning: each loader's length goes through `strategy.reduce(..., "sum")` when it is set up
    strategy = _ReduceRecording()
    trainer = quiet_trainer(max_epochs=1, strategy=strategy)
    trainer.fit(CoreModel(), loader(n=8, batch_size=2), loader(n=4, batch_size=2))
    assert strategy.reduced == [4, 2]  # the training loader's 4 batches, the validation loader's 2
    trainer.predict(CoreModel(), loader(n=6, batch_size=2))
    assert strategy.reduced[2:] == [3]


def test_is_distributed_is_deprecated_on_ddp_and_ember_reads_it_without_the_warning():
    import warnings

    from ember.distributed.processes import runs_distributed

    with pytest.warns(DeprecationWarning, match=r"`DDPStrategy.is_distributed` is deprecated. Use is discouraged."):
        assert DDPStrategy().is_distributed is True

    class CustomSingle(SingleDeviceStrategy):  # a program's own strategy says what it is
        @property
        def is_distributed(self):
            return True

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runs_distributed(DDPStrategy()) and not runs_distributed(SingleDeviceStrategy("cpu"))
        assert runs_distributed(CustomSingle("cpu"))
        trainer = ember.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
        assert trainer._accelerator_connector.is_distributed is True


@pytest.fixture
def overwrite_params_on_conversion():
    """torch's switch that makes `module.to(...)` put new Parameter objects in the module, even for no move."""
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    yield
    torch.__future__.set_overwrite_module_params_on_conversion(False)


def test_the_optimizer_steps_the_modules_parameters_when_conversions_overwrite_them(overwrite_params_on_conversion):
    # the module is moved to its device once, before the optimizers are made from its parameters: a second
    # move after them left the optimizer stepping the replaced parameters, and the module never trained
    model = CoreModel()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = quiet_trainer(max_steps=3, limit_val_batches=0)
    trainer.fit(model, loader())
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimized == {id(p) for p in model.parameters()}
    assert all(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters()))


@pytest.mark.parametrize("flag", ["find_unused_parameters", "static_graph", "gradient_as_bucket_view"])
def test_a_ddp_flag_that_is_no_truth_value_is_named_when_the_strategy_is_made(flag):
    # torch's DistributedDataParallel refused it at the start of fit, listing its C++ signatures
    with pytest.raises(
        TypeError, match=re.escape(f"`DDPStrategy({flag}='yes')` must be True or False (an option of torch's")
    ):
        DDPStrategy(**{flag: "yes"})
    DDPStrategy(**{flag: 1})  # a number or None torch reads as true or false, as in Lightning
    DDPStrategy(**{flag: None})


@pytest.mark.parametrize("device", [None, 0.5, [0]])
def test_a_single_device_strategy_device_that_is_no_device_is_named(device):
    # torch's `device()` listed its signatures: "received an invalid combination of arguments"
    with pytest.raises(
        TypeError, match=rf"^`SingleDeviceStrategy\(device={re.escape(repr(device))}\)` must be the device to run on"
    ):
        SingleDeviceStrategy(device=device)
    with pytest.raises(TypeError, match=r"^`SingleDeviceStrategy\(device=True\)` must be the device"):
        SingleDeviceStrategy(device=True)  # an int to Python, never a device


@pytest.mark.parametrize("requeue_signal", [0, 0.5, "USR1"])
def test_a_requeue_signal_that_is_no_signal_is_named_when_the_environment_is_made(requeue_signal):
    # Lightning's failed when the handler was set, in `signal`'s words ("signal number out of range")
    with pytest.raises(ValueError, match=re.escape(f"`SLURMEnvironment(requeue_signal={requeue_signal!r})` takes")):
        SLURMEnvironment(requeue_signal=requeue_signal)
    assert SLURMEnvironment(requeue_signal=signal.SIGUSR2).requeue_signal == signal.SIGUSR2
