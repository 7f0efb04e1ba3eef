"""``trainer.accelerator`` is an ``Accelerator`` object, as in Lightning: built from a name, a registered
name or an instance, with Lightning's static API (parse_devices, get_parallel_devices, ...) and its
hooks called around each run."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from tests.helpers.core_models import CoreModel, loader, quiet_trainer

from ember.accelerators import Accelerator, AcceleratorRegistry, CPUAccelerator, CUDAAccelerator, MPSAccelerator
from ember.strategies import DDPStrategy, SingleDeviceStrategy, StrategyRegistry
from ember.utilities.exceptions import MisconfigurationException

NO_GPU = not torch.cuda.is_available() and not MPSAccelerator.is_available()


class RecordingCPUAccelerator(CPUAccelerator):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def setup_device(self, device: torch.device) -> None:
        super().setup_device(device)
        self.calls.append(f"setup_device({device})")

    def setup(self, trainer) -> None:
        self.calls.append(f"setup(model on {trainer.lightning_module.device})")

    def teardown(self) -> None:
        self.calls.append("teardown")


@pytest.mark.skipif(not NO_GPU, reason="'auto' picks the GPU on this machine")
@pytest.mark.parametrize("name", ["cpu", "auto", "CPU"])
def test_a_name_gives_the_accelerator_object(name):
    trainer = quiet_trainer(accelerator=name)
    assert type(trainer.accelerator) is CPUAccelerator
    assert trainer.accelerator.name() == "cpu"
    assert trainer.strategy.root_device == torch.device("cpu")


def test_an_instance_is_used_and_its_hooks_run_around_each_call():
    accelerator = RecordingCPUAccelerator()
    trainer = quiet_trainer(accelerator=accelerator, max_epochs=1)
    assert trainer.accelerator is accelerator
    trainer.fit(CoreModel(), loader())
    trainer.validate(CoreModel(), loader())
    one_call = ["setup_device(cpu)", "setup(model on cpu)", "teardown"]
    assert accelerator.calls == one_call + one_call


@pytest.mark.parametrize("strategy", [SingleDeviceStrategy, DDPStrategy])
def test_an_accelerator_given_to_the_strategy_object_is_the_trainers(strategy):
    # as Lightning: with `Trainer(accelerator="auto")` the strategy's accelerator is used, hooks and all
    accelerator = RecordingCPUAccelerator()
    made = strategy(accelerator=accelerator) if strategy is DDPStrategy else strategy("cpu", accelerator=accelerator)
    trainer = quiet_trainer(strategy=made, max_epochs=1)
    assert trainer.accelerator is accelerator
    if strategy is SingleDeviceStrategy:
        trainer.fit(CoreModel(), loader())
        assert accelerator.calls == ["setup_device(cpu)", "setup(model on cpu)", "teardown"]
    with pytest.raises(MisconfigurationException, match="accelerator set through both strategy class and accelerator"):
        quiet_trainer(
            strategy=strategy("cpu", accelerator=CPUAccelerator())
            if strategy is SingleDeviceStrategy
            else strategy(accelerator=CPUAccelerator()),
            accelerator="cpu",
        )


def test_a_registered_name_builds_that_accelerator():
    AcceleratorRegistry.register("recording_cpu", RecordingCPUAccelerator, description="CPU, recorded")
    try:
        assert "recording_cpu" in AcceleratorRegistry.available_accelerators()
        trainer = quiet_trainer(accelerator="recording_cpu")
        assert type(trainer.accelerator) is RecordingCPUAccelerator
        with pytest.raises(MisconfigurationException, match="already present in the registry"):
            AcceleratorRegistry.register("recording_cpu", RecordingCPUAccelerator)
    finally:
        AcceleratorRegistry.remove("recording_cpu")
    assert str(AcceleratorRegistry) == "Registered Accelerators: " + ", ".join(AcceleratorRegistry)
    # Lightning's names, "tpu" too, which builds nothing and says so
    assert AcceleratorRegistry.available_accelerators() == {"cpu", "cuda", "mps", "tpu"}
    assert type(AcceleratorRegistry.get("cpu")) is CPUAccelerator
    with pytest.raises(MisconfigurationException, match=r"XLA devices \(TPUs\) are not supported"):
        AcceleratorRegistry.get("tpu")
    with pytest.raises(KeyError, match="'nope' not found in registry"):
        AcceleratorRegistry.get("nope")


class RecordingSingleDevice(SingleDeviceStrategy):
    """A library's own one-device strategy, registered by name (as anomalib registers its XPU strategy)."""


def test_a_registered_strategy_name_builds_that_strategy():
    StrategyRegistry.register("single_recorded", RecordingSingleDevice, description="one device", device="cpu")
    StrategyRegistry.register("ddp_spawn_unused", DDPStrategy, start_method="spawn", find_unused_parameters=True)
    try:
        assert {"single_recorded", "ddp_spawn_unused"} <= set(StrategyRegistry.available_strategies())
        trainer = quiet_trainer(strategy="single_recorded", max_epochs=1)
        assert type(trainer.strategy) is RecordingSingleDevice
        trainer.fit(CoreModel(), loader())
        assert trainer.state.finished
        parallel = quiet_trainer(strategy="ddp_spawn_unused", devices=2).strategy
        assert type(parallel) is DDPStrategy and parallel.find_unused_parameters and parallel.world_size == 2
        assert parallel._start_method == "spawn"
        with pytest.raises(MisconfigurationException, match="already present in the registry"):
            StrategyRegistry.register("single_recorded", RecordingSingleDevice)
    finally:
        for name in ("single_recorded", "ddp_spawn_unused"):
            StrategyRegistry.pop(name, None)
    assert str(StrategyRegistry).startswith("Registered Strategies:")
    with pytest.raises(KeyError, match="'nope' not found in registry"):
        StrategyRegistry.get("nope")


class _StaticDDP(DDPStrategy):
    """A program's DDP strategy that registers its own name, the Lightning way."""

    @classmethod
    def register_strategies(cls, strategy_registry):
        strategy_registry.register("ddp_static_graph", cls, description="DDP, static graph", static_graph=True)


def test_strategy_classes_register_their_names_through_register_strategies():
    from ember.strategies import DeepSpeedStrategy, FSDPStrategy, SingleDeviceXLAStrategy, Strategy, XLAStrategy
    from ember.utilities.registry import _StrategyRegistry

    registries = {}
    for cls in (Strategy, SingleDeviceStrategy, DDPStrategy, DeepSpeedStrategy, FSDPStrategy, SingleDeviceXLAStrategy):
        registries[cls.__name__] = _StrategyRegistry()
        cls.register_strategies(registries[cls.__name__])
    XLAStrategy.register_strategies(registries["SingleDeviceXLAStrategy"])
    assert {name: len(registry) for name, registry in registries.items()} == {
        "Strategy": 0,
        "SingleDeviceStrategy": 1,
        "DDPStrategy": 12,
        "DeepSpeedStrategy": 7,
        "FSDPStrategy": 2,
        "SingleDeviceXLAStrategy": 4,
    }
    # together, the names `StrategyRegistry` holds, with the same classes and arguments
    merged = {name: entry for registry in registries.values() for name, entry in registry.items()}
    assert merged == {name: StrategyRegistry[name] for name in StrategyRegistry.available_strategies()}
    assert registries["DDPStrategy"]["ddp_fork_find_unused_parameters_true"]["init_params"] == {
        "find_unused_parameters": True,
        "start_method": "fork",
    }
    _StaticDDP.register_strategies(StrategyRegistry)
    try:
        strategy = quiet_trainer(strategy="ddp_static_graph", devices=2).strategy
        assert type(strategy) is _StaticDDP and strategy._ddp_kwargs == {"static_graph": True}
    finally:
        StrategyRegistry.pop("ddp_static_graph")


def test_lightnings_strategy_names_are_registered_with_what_they_stand_for():
    from ember.strategies import DeepSpeedStrategy, FSDPStrategy, XLAStrategy

    assert len(StrategyRegistry.available_strategies()) == 26  # Lightning 2.6's names, none of a program's
    assert StrategyRegistry["ddp"]["init_params"] == {"start_method": "popen"}
    assert StrategyRegistry["ddp_notebook_find_unused_parameters_true"]["init_params"] == {
        "find_unused_parameters": True,
        "start_method": "fork",
    }
    assert StrategyRegistry["deepspeed_stage_3_offload"]["strategy"] is DeepSpeedStrategy
    assert StrategyRegistry["deepspeed_stage_3_offload"]["init_params"] == {
        "stage": 3,
        "offload_optimizer": True,
        "offload_parameters": True,
    }
    assert StrategyRegistry["fsdp_cpu_offload"]["strategy"] is FSDPStrategy
    assert StrategyRegistry["xla_debug"]["strategy"] is XLAStrategy
    assert StrategyRegistry["xla_debug"]["init_params"] == {"debug": True}
    for name in ("ddp_spawn_find_unused_parameters_false", "ddp_fork"):
        built = StrategyRegistry.get(name)  # a new strategy, as the Trainer's name builds it
        trainer = quiet_trainer(strategy=name, devices=2).strategy
        assert type(built) is type(trainer) is DDPStrategy
        assert built._start_method == trainer._start_method == StrategyRegistry[name]["init_params"]["start_method"]
    with pytest.raises(MisconfigurationException, match="XLA devices \\(TPUs\\) are not supported"):
        quiet_trainer(strategy="xla")  # Lightning's name: Ember's message (it said "invalid strategy name")


def test_a_program_may_register_its_own_strategy_under_one_of_lightnings_names():
    with pytest.raises(MisconfigurationException, match="'ddp' is already present in the registry"):
        StrategyRegistry.register("ddp", RecordingSingleDevice)
    own = StrategyRegistry["ddp"]
    StrategyRegistry.register("ddp", RecordingSingleDevice, override=True, device="cpu")
    try:
        assert type(quiet_trainer(strategy="ddp").strategy) is RecordingSingleDevice  # as Lightning builds it
    finally:
        StrategyRegistry["ddp"] = own
    assert type(quiet_trainer(strategy="ddp", devices=2).strategy) is DDPStrategy


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_accelerator_instance_is_refused_naming_what_is_available():
    with pytest.raises(MisconfigurationException) as error:
        quiet_trainer(accelerator=CUDAAccelerator())
    assert str(error.value).startswith("`CUDAAccelerator` can not run on your system since the accelerator is not")
    assert "['cpu']" in str(error.value) or "'mps'" in str(error.value)


def test_an_accelerator_for_another_kind_of_device_is_refused():
    class TPUAccelerator(CPUAccelerator):
        @staticmethod
        def name() -> str:
            return "tpu"

    with pytest.raises(MisconfigurationException, match="names the device type 'tpu', but Ember runs on 'cpu'"):
        quiet_trainer(accelerator=TPUAccelerator())


def test_the_base_class_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        Accelerator()  # type: ignore[abstract]
    with pytest.raises(NotImplementedError):
        Accelerator.get_device_stats(CPUAccelerator(), "cpu")


def test_cpu_devices_are_a_number_of_processes():
    assert CPUAccelerator.parse_devices("2") == 2
    assert CPUAccelerator.get_parallel_devices(2) == [torch.device("cpu")] * 2
    assert CPUAccelerator.auto_device_count() == 1 and CPUAccelerator.is_available()
    for bad in (0, -1, "x", [0]):
        with pytest.raises(TypeError, match="`devices` selected with `CPUAccelerator` should be an int > 0."):
            CPUAccelerator.parse_devices(bad)
    with pytest.raises(MisconfigurationException, match="Device should be CPU, got cuda:0 instead."):
        CPUAccelerator().setup_device(torch.device("cuda", 0))


def test_gpu_device_ids_are_parsed_and_checked_against_the_machine():
    count = torch.cuda.device_count()
    assert CUDAAccelerator.parse_devices(0) is None and CUDAAccelerator.parse_devices("0") is None
    assert CUDAAccelerator.get_parallel_devices([0, 1]) == [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert CUDAAccelerator.auto_device_count() == count
    assert CUDAAccelerator.is_available() == (count > 0)
    assert CUDAAccelerator.name() == "cuda" and MPSAccelerator.name() == "mps"
    if count >= 2:
        assert CUDAAccelerator.parse_devices("0,1") == [0, 1]
        assert CUDAAccelerator.parse_devices(-1) == list(range(count))
    with pytest.raises(MisconfigurationException, match=rf"You requested gpu: \[{count}\]"):
        CUDAAccelerator.parse_devices([count])
    with pytest.raises(MisconfigurationException, match="must be unique"):
        CUDAAccelerator.parse_devices([0, 0])
    with pytest.raises(TypeError, match="a sequence of bool"):
        CUDAAccelerator.parse_devices([True])


def test_gpu_choice_and_device_counts_follow_num_cuda_devices(monkeypatch):
    """Device counts come from `accelerators.cuda.num_cuda_devices`, so a test can stand in for GPUs there."""
    import ember
    from ember.accelerators import cuda

    monkeypatch.setattr(cuda, "num_cuda_devices", lambda: 4)
    trainer = ember.Trainer(accelerator="cuda", devices="0, 2", strategy="ddp")
    assert isinstance(trainer.accelerator, CUDAAccelerator) and trainer.device_ids == [0, 2]
    assert CUDAAccelerator.auto_device_count() == 4
    monkeypatch.setattr(cuda, "num_cuda_devices", lambda: 0)
    monkeypatch.setattr(MPSAccelerator, "is_available", staticmethod(lambda: False))
    with pytest.raises(MisconfigurationException, match="CUDAAccelerator` can not run on your system"):
        ember.Trainer(accelerator="cuda")
    with pytest.raises(MisconfigurationException, match="No supported gpu backend found!"):
        ember.Trainer(accelerator="gpu")


def test_a_strategys_parallel_devices_choose_the_accelerator_or_must_agree_with_it():
    import ember
    from ember.strategies import DDPStrategy

    trainer = ember.Trainer(strategy=DDPStrategy(parallel_devices=[torch.device("cpu")] * 2))
    assert isinstance(trainer.accelerator, CPUAccelerator)
    with pytest.raises(MisconfigurationException, match="CPU parallel_devices set through DDPStrategy class, but"):
        ember.Trainer(strategy=DDPStrategy(parallel_devices=[torch.device("cpu")]), accelerator="cuda")


def test_one_cluster_environment_in_plugins():
    import ember
    from ember.plugins.environments import LightningEnvironment, SLURMEnvironment

    with pytest.raises(MisconfigurationException, match="Received multiple values for ClusterEnvironment flags"):
        ember.Trainer(plugins=[LightningEnvironment(), SLURMEnvironment()])


def test_ddp_joins_its_process_group_in_setup_distributed(monkeypatch):
    import ember
    from ember.strategies import DDPStrategy

    calls = []
    monkeypatch.setattr(DDPStrategy, "setup_distributed", lambda self: calls.append(self))
    strategy = ember.Trainer(strategy="ddp", devices=2, accelerator="cpu").strategy
    strategy.setup_environment()
    assert calls == [strategy]


def test_device_stats():
    if importlib.util.find_spec("psutil") is None:
        with pytest.raises(ModuleNotFoundError, match="requires `psutil` to be installed: `pip install psutil`"):
            CPUAccelerator().get_device_stats("cpu")
    else:
        assert set(CPUAccelerator().get_device_stats("cpu")) == {"cpu_vm_percent", "cpu_percent", "cpu_swap_percent"}
    if torch.cuda.is_available():
        assert "allocated_bytes.all.current" in CUDAAccelerator().get_device_stats(0)


def test_the_private_accelerator_connector_answers_what_libraries_ask_it():
    # optuna's PyTorchLightningPruningCallback reads `trainer._accelerator_connector.is_distributed`
    trainer = quiet_trainer(accelerator="cpu")
    connector = trainer._accelerator_connector
    assert connector.is_distributed is False
    assert connector.accelerator is trainer.accelerator and connector.strategy is trainer.strategy
    assert quiet_trainer(accelerator="cpu", devices=2, strategy="ddp_spawn")._accelerator_connector.is_distributed


def test_devices_none_is_taken_as_auto_where_lightning_raises():
    # Lightning 1.x's programs pass `devices=None` for "the default" (the DQN tutorial does); Lightning 2.x raises
    # `TypeError` on the CPU. Ember takes it as "auto", which is what such a program means
    trainer = quiet_trainer(accelerator="cpu", devices=None)
    assert trainer.num_devices == 1 and trainer.strategy.root_device == torch.device("cpu")


def test_nvidia_gpu_stats_are_read_from_nvidia_smi_for_the_visible_gpu(tmp_path, monkeypatch):
    from ember.accelerators.cuda import get_nvidia_gpu_stats

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nvidia-smi: command not found"):
        get_nvidia_gpu_stats(0)
    asked = tmp_path / "asked"
    script = tmp_path / "nvidia-smi"
    script.write_text(f'#!/bin/sh\necho "$@" > {asked}\necho "37, 1024, 31744, 12, [N/A], 55, [N/A]"\n')
    script.chmod(0o755)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    stats = get_nvidia_gpu_stats(torch.device("cuda", 1))
    assert stats == {
        "utilization.gpu (%)": 37.0,
        "memory.used (MB)": 1024.0,
        "memory.free (MB)": 31744.0,
        "utilization.memory (%)": 12.0,
        "fan.speed (%)": 0.0,  # not reported by this GPU
        "temperature.gpu (°C)": 55.0,
        "temperature.memory (°C)": 0.0,
    }
    query = "utilization.gpu,memory.used,memory.free,utilization.memory,fan.speed,temperature.gpu,temperature.memory"
    assert asked.read_text().split() == [f"--query-gpu={query}", "--format=csv,nounits,noheader", "--id=5"]


def test_each_rank_says_which_gpus_it_sees_in_nvidia_smis_order_as_lightning_does(monkeypatch, caplog):
    import logging
    import os
    from types import SimpleNamespace

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    with caplog.at_level(logging.INFO, logger="ember.accelerators.cuda"):
        CUDAAccelerator().setup(SimpleNamespace(local_rank=1))  # when a call starts on rank 1
    assert "LOCAL_RANK: 1 - CUDA_VISIBLE_DEVICES: [1,3]" in caplog.messages
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # processes it starts number the GPUs as nvidia-smi
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ember.accelerators.cuda"):
        CUDAAccelerator.set_nvidia_flags(0)  # without the variable: every GPU of the machine
    assert caplog.messages == ["LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0,1]"]
