"""Unmodified Lightning programs and libraries on Ember: ``ember.install_as_lightning()`` and ``ember run``.

Every check runs in a fresh interpreter (the alias changes how a process imports), with Lightning
installed and without it, whichever the environment has: the dev environment has the real Lightning
(the libraries of ``test_lightning_libraries.py`` bring it), "not installed" is played by hiding it
(``tests/helpers/without_lightning.py``), and "installed" by a stand-in distribution on ``sys.path``
and by the real one when ``pytorch_lightning`` is importable (or ``EMBER_TEST_LIGHTNING_PYTHON``
names an interpreter that has it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from tests.helpers.fresh_interpreter import run_code

import ember

SRC = Path(ember.__file__).resolve().parents[1]
REPO = Path(__file__).resolve().parents[1]
PROGRAM = REPO / "tests" / "helpers" / "lightning_program.py"

# Lightning's module paths (below `pytorch_lightning` / `lightning.pytorch`) that Ember provides:
# path -> (the Ember module it is, the names of Lightning's module that Ember has there)
SUPPORTED = {
    "accelerators": (
        "ember.accelerators",
        ["Accelerator", "AcceleratorRegistry", "CPUAccelerator", "CUDAAccelerator", "MPSAccelerator", "XLAAccelerator"],
    ),
    "accelerators.accelerator": ("ember.accelerators.accelerator", ["Accelerator"]),
    "accelerators.xla": ("ember.accelerators.xla", ["XLAAccelerator"]),
    "accelerators.cpu": ("ember.accelerators.cpu", ["CPUAccelerator"]),
    "accelerators.cuda": ("ember.accelerators.cuda", ["CUDAAccelerator"]),
    "accelerators.mps": ("ember.accelerators.mps", ["MPSAccelerator"]),
    "callbacks": (
        "ember.callbacks",
        [
            "BasePredictionWriter",
            "BatchSizeFinder",
            "Callback",
            "Checkpoint",
            "EarlyStopping",
            "GradientAccumulationScheduler",
            "LambdaCallback",
            "LearningRateFinder",
            "LearningRateMonitor",
            "ModelCheckpoint",
            "ModelSummary",
            "OnExceptionCheckpoint",
            "ProgressBar",
            "RichModelSummary",
            "RichProgressBar",
            "StochasticWeightAveraging",
            "TQDMProgressBar",
            "Timer",
        ],
    ),
    "callbacks.batch_size_finder": ("ember.callbacks.batch_size_finder", ["BatchSizeFinder"]),
    "callbacks.callback": ("ember.callbacks.callback", ["Callback"]),
    "callbacks.checkpoint": ("ember.callbacks.checkpoint", ["Checkpoint"]),
    "callbacks.early_stopping": ("ember.callbacks.early_stopping", ["EarlyStopping", "EarlyStoppingReason"]),
    "callbacks.gradient_accumulation_scheduler": (
        "ember.callbacks.gradient_accumulation_scheduler",
        ["GradientAccumulationScheduler"],
    ),
    "callbacks.lambda_function": ("ember.callbacks.lambda_function", ["LambdaCallback"]),
    "callbacks.lr_finder": ("ember.callbacks.lr_finder", ["LearningRateFinder"]),
    "callbacks.lr_monitor": ("ember.callbacks.lr_monitor", ["LearningRateMonitor"]),
    "callbacks.model_checkpoint": ("ember.callbacks.model_checkpoint", ["ModelCheckpoint"]),
    "callbacks.model_summary": ("ember.callbacks.model_summary", ["ModelSummary"]),
    "callbacks.on_exception_checkpoint": ("ember.callbacks.on_exception_checkpoint", ["OnExceptionCheckpoint"]),
    "callbacks.prediction_writer": ("ember.callbacks.prediction_writer", ["BasePredictionWriter"]),
    "callbacks.progress": ("ember.callbacks.progress", ["ProgressBar", "RichProgressBar", "TQDMProgressBar"]),
    "callbacks.progress.progress_bar": ("ember.callbacks.progress_bar", ["ProgressBar", "get_standard_metrics"]),
    "callbacks.progress.rich_progress": ("ember.callbacks.rich_progress", ["RichProgressBar", "RichProgressBarTheme"]),
    "callbacks.progress.tqdm_progress": ("ember.callbacks.tqdm_progress", ["TQDMProgressBar", "Tqdm", "convert_inf"]),
    "callbacks.rich_model_summary": ("ember.callbacks.rich_model_summary", ["RichModelSummary"]),
    "callbacks.stochastic_weight_avg": ("ember.callbacks.stochastic_weight_avg", ["StochasticWeightAveraging"]),
    "callbacks.timer": ("ember.callbacks.timer", ["Timer"]),
    "cli": (
        "ember.cli",
        ["LightningArgumentParser", "LightningCLI", "ReduceLROnPlateau", "SaveConfigCallback", "instantiate_class"],
    ),
    "core": ("ember.core", ["LightningDataModule", "LightningModule"]),
    "core.datamodule": ("ember.core.datamodule", ["LightningDataModule"]),
    "core.hooks": ("ember.core.hooks", []),
    "core.mixins": ("ember.core.mixins", ["HyperparametersMixin"]),
    "core.mixins.hparams_mixin": ("ember.core.hparams", ["HyperparametersMixin"]),
    "core.module": ("ember.core.module", ["LightningModule"]),
    "core.optimizer": ("ember.core.optimizer", ["LightningOptimizer", "_init_optimizers_and_lr_schedulers"]),
    "core.saving": ("ember.core.saving", ["get_filesystem", "pl_load"]),
    "loggers": (
        "ember.loggers",
        ["CSVLogger", "LitLogger", "Logger", "MLFlowLogger", "TensorBoardLogger", "WandbLogger"],
    ),
    "loggers.litlogger": ("ember.loggers.litlogger", ["LitLogger"]),
    "loggers.csv_logs": ("ember.loggers.csv_logs", ["CSVLogger", "ExperimentWriter"]),
    "loggers.logger": ("ember.loggers.logger", ["DummyExperiment", "DummyLogger", "Logger", "rank_zero_experiment"]),
    "loggers.mlflow": ("ember.loggers.mlflow", ["MLFlowLogger"]),
    "loggers.tensorboard": ("ember.loggers.tensorboard", ["TensorBoardLogger"]),
    "loggers.utilities": ("ember.loggers.utilities", []),
    "loggers.wandb": ("ember.loggers.wandb", ["WandbLogger"]),
    "plugins": (
        "ember.plugins",
        [
            "BitsandbytesPrecision",
            "DeepSpeedPrecision",
            "DoublePrecision",
            "FSDPPrecision",
            "HalfPrecision",
            "MixedPrecision",
            "Precision",
            "TransformerEnginePrecision",
            "XLACheckpointIO",
            "XLAPrecision",
        ],
    ),
    "plugins.precision": (
        "ember.precision",
        [
            "BitsandbytesPrecision",
            "DeepSpeedPrecision",
            "DoublePrecision",
            "FSDPPrecision",
            "HalfPrecision",
            "MixedPrecision",
            "Precision",
            "TransformerEnginePrecision",
            "XLAPrecision",
        ],
    ),
    "plugins.precision.fsdp": ("ember.precision.fsdp", ["FSDPPrecision"]),
    # by name only (libraries import them): building one is refused with what to use instead
    "plugins.precision.transformer_engine": ("ember.precision.unsupported", ["TransformerEnginePrecision"]),
    "plugins.precision.xla": ("ember.precision.unsupported", ["XLAPrecision"]),
    "plugins.io": ("ember.plugins.io", ["AsyncCheckpointIO", "CheckpointIO", "TorchCheckpointIO", "XLACheckpointIO"]),
    "plugins.io.xla": ("ember.plugins.io.xla", ["XLACheckpointIO"]),
    "plugins.io.async_plugin": ("ember.checkpoint.async_io", ["AsyncCheckpointIO"]),
    "plugins.io.checkpoint_plugin": ("ember.checkpoint.io", ["CheckpointIO"]),
    "plugins.io.torch_plugin": ("ember.checkpoint.io", ["TorchCheckpointIO"]),
    "plugins.io.wrapper": ("ember.checkpoint.io", ["_WrappingCheckpointIO"]),
    "plugins.precision.deepspeed": ("ember.precision.deepspeed", ["DeepSpeedPrecision"]),
    "plugins.precision.amp": ("ember.precision.amp", ["MixedPrecision"]),
    "plugins.precision.bitsandbytes": ("ember.precision.bitsandbytes", ["BitsandbytesPrecision"]),
    "plugins.precision.double": ("ember.precision.double", ["DoublePrecision"]),
    "plugins.precision.half": ("ember.precision.half", ["HalfPrecision"]),
    "plugins.precision.precision": ("ember.precision.precision", ["Precision"]),
    "plugins.layer_sync": ("ember.distributed.layer_sync", ["LayerSync", "TorchSyncBatchNorm"]),
    "plugins.environments": (
        "ember.distributed.environments",
        [
            "ClusterEnvironment",
            "KubeflowEnvironment",
            "LSFEnvironment",
            "LightningEnvironment",
            "MPIEnvironment",
            "SLURMEnvironment",
            "TorchElasticEnvironment",
            "XLAEnvironment",
        ],
    ),
    "profilers": (
        "ember.profilers",
        ["AdvancedProfiler", "PassThroughProfiler", "Profiler", "PyTorchProfiler", "SimpleProfiler", "XLAProfiler"],
    ),
    "profilers.xla": ("ember.profilers.xla", ["XLAProfiler"]),
    "profilers.advanced": ("ember.profilers.advanced", ["AdvancedProfiler"]),
    "profilers.base": ("ember.profilers.profiler", ["PassThroughProfiler", "Profiler"]),
    "profilers.profiler": ("ember.profilers.profiler", ["Profiler"]),
    "profilers.pytorch": ("ember.profilers.pytorch", ["PyTorchProfiler"]),
    "profilers.simple": ("ember.profilers.simple", ["SimpleProfiler"]),
    "strategies": (
        "ember.strategies",
        [
            "DDPStrategy",
            "DeepSpeedStrategy",
            "FSDPStrategy",
            "ModelParallelStrategy",
            "ParallelStrategy",
            "SingleDeviceStrategy",
            "Strategy",
            "StrategyRegistry",
            "XLAStrategy",
        ],
    ),
    "strategies.xla": ("ember.distributed.xla", ["XLAStrategy"]),
    "strategies.ddp": ("ember.distributed.ddp", ["DDPStrategy"]),
    "strategies.deepspeed": ("ember.distributed.deepspeed", ["DeepSpeedStrategy"]),
    "strategies.fsdp": ("ember.distributed.fsdp", ["FSDPStrategy"]),
    "strategies.model_parallel": ("ember.distributed.model_parallel", ["ModelParallelStrategy"]),
    "strategies.parallel": ("ember.distributed.parallel", ["ParallelStrategy"]),
    "strategies.single_device": ("ember.distributed.strategy", ["SingleDeviceStrategy"]),
    "strategies.strategy": ("ember.distributed.strategy", ["Strategy"]),
    "trainer": ("ember.trainer", ["Trainer", "seed_everything"]),
    "trainer.setup": ("ember.trainer.setup", ["_log_device_info"]),
    "demos": ("ember.demos", ["BoringDataModule", "BoringModel", "DemoModel", "LightningTransformer", "WikiText2"]),
    "demos.boring_classes": ("ember.demos.boring_classes", ["BoringModel", "ManualOptimBoringModel", "RandomDataset"]),
    "demos.lstm": ("ember.demos.lstm", ["LightningLSTM", "SequenceSampler", "SimpleLSTM"]),
    "demos.mnist_datamodule": ("ember.demos.mnist_datamodule", ["MNIST", "MNISTDataModule"]),
    "demos.transformer": ("ember.demos.transformer", ["LightningTransformer", "Transformer", "WikiText2"]),
    "utilities.imports": (
        "ember.utilities.imports",
        ["_OMEGACONF_AVAILABLE", "_RICH_AVAILABLE", "_TORCHVISION_AVAILABLE", "_TORCH_GREATER_EQUAL_2_6"],
    ),
    "strategies.single_xla": ("ember.distributed.xla", ["SingleDeviceXLAStrategy"]),
    # private, but scvi-tools builds one to read `accelerator`/`devices` the Trainer's way
    "trainer.connectors.accelerator_connector": ("ember.distributed.factory", ["_AcceleratorConnector"]),
    # private, but torch-uncertainty replaces `trainer.test_loop` with its own `_EvaluationLoop`
    "loops.evaluation_loop": ("ember.trainer.evaluation_loop", ["_EvaluationLoop"]),
    # private; finetuning-scheduler imports `_ResultMetric` and `_CheckpointConnector`
    "trainer.connectors.logger_connector.result": (
        "ember.trainer.logging",
        ["_OUT_DICT", "_PBAR_DICT", "_ResultMetric", "_ResultCollection"],
    ),
    "trainer.connectors.checkpoint_connector": ("ember.trainer.views", ["_CheckpointConnector"]),
    "overrides.distributed": (
        "ember.distributed.samplers",
        ["DistributedSamplerWrapper", "UnrepeatedDistributedSampler", "UnrepeatedDistributedSamplerWrapper"],
    ),
    "trainer.call": (
        "ember.trainer.call",
        [
            "_call_callback_hooks",
            "_call_lightning_datamodule_hook",
            "_call_lightning_module_hook",
            "_call_strategy_hook",
        ],
    ),
    "trainer.states": ("ember.trainer.states", ["RunningStage", "TrainerFn", "TrainerState", "TrainerStatus"]),
    "trainer.trainer": ("ember.trainer.trainer", ["Trainer"]),
    "tuner": ("ember.tuner", ["Tuner"]),
    "tuner.batch_size_scaling": ("ember.tuner.batch_size_scaling", []),
    "tuner.lr_finder": ("ember.tuner.lr_finder", ["_LRFinder"]),  # darts imports it
    "tuner.tuning": ("ember.tuner.tuning", ["Tuner"]),
    "utilities": (
        "ember.utilities",
        [
            "AttributeDict",
            "CombinedLoader",
            "move_data_to_device",
            "rank_zero_deprecation",
            "rank_zero_info",
            "rank_zero_only",
            "rank_zero_warn",
        ],
    ),
    "utilities.combined_loader": ("ember.utilities.combined_loader", ["CombinedLoader"]),
    "utilities.exceptions": ("ember.utilities.exceptions", ["MisconfigurationException"]),
    "utilities.model_summary": ("ember.utilities.model_summary", ["LayerSummary", "ModelSummary", "summarize"]),
    "utilities.model_summary.model_summary": (
        "ember.utilities.model_summary.model_summary",
        ["LayerSummary", "ModelSummary", "summarize", "get_human_readable_count", "UNKNOWN_SIZE"],
    ),
    "utilities.parsing": ("ember.utilities.parsing", ["AttributeDict", "save_hyperparameters"]),
    "utilities.data": ("ember.utilities.data", ["_update_dataloader", "extract_batch_size", "has_len_all_ranks"]),
    "utilities.migration": ("ember.utilities.migration", ["migrate_checkpoint", "pl_legacy_patch"]),
    "utilities.migration.utils": (
        "ember.utilities.migration.utils",
        ["_pl_migrate_checkpoint", "migrate_checkpoint", "pl_legacy_patch"],
    ),
    "utilities.upgrade_checkpoint": ("ember.utilities.upgrade_checkpoint", ["main"]),
    "utilities.consolidate_checkpoint": ("ember.utilities.consolidate_checkpoint", []),
    "serve": ("ember.serve", ["ServableModule", "ServableModuleValidator"]),
    "serve.servable_module": ("ember.serve.servable_module", ["ServableModule"]),
    "serve.servable_module_validator": ("ember.serve.servable_module_validator", ["ServableModuleValidator"]),
    "utilities.rank_zero": (
        "ember.utilities.rank_zero",
        [
            "LightningDeprecationWarning",
            "rank_zero_debug",
            "rank_zero_deprecation",
            "rank_zero_info",
            "rank_zero_only",
            "rank_zero_warn",
        ],
    ),
    "utilities.seed": ("ember.utilities.seed", ["isolate_rng"]),
    "utilities.types": (
        "ember.utilities.types",
        [
            "EVAL_DATALOADERS",
            "STEP_OUTPUT",
            "TRAIN_DATALOADERS",
            "LRSchedulerConfig",
            "LRSchedulerConfigType",
            "LRSchedulerPLType",
            "LRSchedulerType",
            "LRSchedulerTypeTuple",
            "LRSchedulerTypeUnion",
            "OptimizerConfig",
            "OptimizerLRScheduler",
            "OptimizerLRSchedulerConfig",
        ],
    ),
    "utilities.warnings": ("ember.utilities.warnings", ["PossibleUserWarning"]),
}


def python(
    code: str,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    exe: str | None = None,
    without_lightning: bool = False,
):
    """Run ``code`` in a fresh interpreter that imports this checkout's Ember; returns the completed process.

    ``without_lightning``: the interpreter does not see an installed Lightning (``tests/helpers/without_lightning.py``).
    """
    paths = [str(SRC), str(REPO), *filter(None, (env or {}).get("PYTHONPATH", "").split(os.pathsep))]
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(paths), "PYTHONWARNINGS": "ignore"}
    full_env.pop("EMBER_AS_LIGHTNING", None) if "EMBER_AS_LIGHTNING" not in (env or {}) else None
    code = textwrap.dedent(code)
    if without_lightning:
        code = "import tests.helpers.without_lightning\n" + code
    if code and exe is None:
        return run_code(code, *args, env=full_env, cwd=cwd, timeout=120)
    command = [exe or sys.executable, *(["-c", code] if code else []), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=full_env, cwd=cwd)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


def test_every_supported_lightning_path_is_the_ember_module_with_lightnings_names():
    code = """
        import importlib, json, sys
        import ember
        ember.install_as_lightning()
        supported = json.loads(sys.argv[1])
        problems = []
        for root in ("pytorch_lightning", "lightning.pytorch"):
            for path, (home, names) in supported.items():
                module = importlib.import_module(f"{root}.{path}")
                if module is not importlib.import_module(home):
                    problems.append(f"{root}.{path} is {module.__name__}, not {home}")
                if module.__spec__.name != module.__name__:
                    problems.append(f"{home} lost its own __spec__")
                problems += [f"{root}.{path} has no {name}" for name in names if not hasattr(module, name)]
                exec(f"from {root}.{path} import *")  # __all__ lists only what is there
        print(json.dumps(problems))
    """
    assert json.loads(ok(python(code, json.dumps(SUPPORTED)))) == []


def test_the_top_level_packages_report_lightnings_version_and_re_export_embers_names():
    code = """
        import sys
        import ember
        ember.install_as_lightning()
        import lightning as L
        import lightning.pytorch
        import pytorch_lightning as pl
        from lightning import LightningModule, Trainer
        from pytorch_lightning import loggers as pl_loggers

        assert pl is not ember and lightning.pytorch is not ember and pl is not lightning.pytorch
        assert pl.__version__ == lightning.pytorch.__version__ == L.__version__ == "2.6.6", pl.__version__
        assert ember.__version__ == "0.1.0"
        for package in (pl, lightning.pytorch, L):
            for name in ("Callback", "LightningDataModule", "LightningModule", "Trainer", "seed_everything"):
                assert getattr(package, name) is getattr(ember, name), (package, name)
            assert not hasattr(package, "no_such_name")
        assert Trainer is ember.Trainer and LightningModule is ember.LightningModule
        assert L.pytorch is lightning.pytorch and pl.callbacks is lightning.pytorch.callbacks is ember.callbacks
        assert pl_loggers is ember.loggers and pl.loggers.CSVLogger is ember.loggers.CSVLogger
        assert sys.modules["pytorch_lightning.callbacks"] is ember.callbacks
        # the banner Lightning's example scripts print first: Ember's own
        from pytorch_lightning import cli_lightning_logo
        assert cli_lightning_logo is lightning.pytorch.cli_lightning_logo and not hasattr(L, "cli_lightning_logo")
        print(repr(pl))
    """
    # `lightning` is the stand-in package here; with Lightning installed it is Lightning's own (tested below)
    out = ok(python(code, without_lightning=True)).strip()
    assert out == "<module 'pytorch_lightning' (Ember, through ember.install_as_lightning())>"


def test_disable_possible_user_warnings_is_an_attribute_of_the_top_level_packages_as_in_lightning():
    # Lightning's package imports it outside its `__all__`, and libraries call it as they load
    # (neuralforecast 1.7: `pl.disable_possible_user_warnings()`)
    code = """
        import warnings
        import ember
        ember.install_as_lightning()
        import lightning.pytorch
        import pytorch_lightning as pl
        from pytorch_lightning.utilities import disable_possible_user_warnings
        from pytorch_lightning.utilities.warnings import PossibleUserWarning

        assert pl.disable_possible_user_warnings is lightning.pytorch.disable_possible_user_warnings
        assert pl.disable_possible_user_warnings is disable_possible_user_warnings is ember.disable_possible_user_warnings
        assert "disable_possible_user_warnings" not in pl.__all__  # as Lightning lists it
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.warn("shown", PossibleUserWarning)
            pl.disable_possible_user_warnings()
            warnings.warn("hidden", PossibleUserWarning)
            warnings.warn("other warnings still show", UserWarning)
        print([str(w.message) for w in caught])
    """
    assert ok(python(code, without_lightning=True)).strip() == "['shown', 'other warnings still show']"


def test_isinstance_checks_and_monkeypatching_agree_under_every_name():
    code = """
        import ember
        ember.install_as_lightning()
        import pytorch_lightning as pl
        import pytorch_lightning.callbacks.progress.tqdm_progress as lightning_tqdm
        from lightning.pytorch.callbacks import ModelCheckpoint
        import ember.callbacks.tqdm_progress as ember_tqdm

        class Mine(pl.Callback):
            pass

        assert ModelCheckpoint is ember.callbacks.ModelCheckpoint is pl.callbacks.ModelCheckpoint
        assert isinstance(Mine(), ember.Callback) and issubclass(ember.callbacks.Timer, pl.Callback)
        assert isinstance(ember.Trainer(logger=False), pl.Trainer)
        assert lightning_tqdm is ember_tqdm
        lightning_tqdm.Tqdm = "patched"   # a library patching Lightning's module patches Ember's
        assert ember_tqdm.Tqdm == "patched"
    """
    ok(python(code))


def test_lightnings_submodules_are_attributes_of_their_packages_as_in_lightning():
    # Lightning's packages import their submodules: libraries write `pl.callbacks.early_stopping.EarlyStopping`
    code = """
        import sys, typing
        import ember
        ember.install_as_lightning()
        import pytorch_lightning as pl

        assert "ember.callbacks.early_stopping" not in sys.modules  # not imported yet: found on first use
        assert pl.callbacks.early_stopping.EarlyStopping is ember.callbacks.EarlyStopping
        assert pl.loggers.tensorboard.TensorBoardLogger is ember.loggers.TensorBoardLogger
        assert pl.callbacks.progress.tqdm_progress.TQDMProgressBar is ember.callbacks.TQDMProgressBar
        assert pl.strategies.ddp.DDPStrategy is ember.strategies.DDPStrategy  # kept in ember.distributed
        assert pl.plugins.io.async_plugin.AsyncCheckpointIO is ember.plugins.io.AsyncCheckpointIO
        assert pl.plugins.precision.amp.MixedPrecision is ember.plugins.MixedPrecision
        assert pl.profilers.base.Profiler is ember.profilers.Profiler
        assert pl.core.mixins.hparams_mixin.HyperparametersMixin is ember.core.mixins.HyperparametersMixin
        assert callable(pl.core.saving.get_filesystem) and callable(pl.core.saving.pl_load)
        assert not hasattr(pl.callbacks, "no_such_module") and not hasattr(pl.callbacks, "_private")
        assert callable(pl.utilities.migration.migrate_checkpoint)
        try:
            pl.utilities.argparse
        except AttributeError as error:
            assert "does not provide" in str(error), error  # a path Ember leaves out says so
        else:
            raise AssertionError("pl.utilities.argparse should not exist")
        # every class's module, by its Lightning name, is the module that holds it
        for cls in (ember.callbacks.ModelCheckpoint, ember.loggers.CSVLogger, ember.strategies.SingleDeviceStrategy):
            assert getattr(sys.modules[cls.__module__], cls.__name__) is cls
        typing.get_type_hints(ember.callbacks.ModelCheckpoint)  # resolves through that module
        print("ok")
    """
    assert ok(python(code, without_lightning=True)).strip() == "ok"


def test_the_private_accelerator_connector_resolves_hardware_arguments_as_lightnings_does():
    # scvi-tools turns `train(accelerator=..., devices=...)` into a device with Lightning's private
    # connector and reads its `_accelerator_flag` and `_devices_flag`; values recorded on Lightning 2.6.6
    code = """
        import json
        import ember
        ember.install_as_lightning()
        from lightning.pytorch.trainer.connectors.accelerator_connector import _AcceleratorConnector
        import pytorch_lightning as pl

        seen = {}
        for accelerator, devices in [("auto", "auto"), ("cpu", "auto"), ("cpu", 1), ("auto", 1), ("cpu", 2), ("cpu", "2")]:
            c = _AcceleratorConnector(accelerator=accelerator, devices=devices)
            seen[f"{accelerator}/{devices!r}"] = [
                c._accelerator_flag, c._devices_flag, type(c.accelerator).__name__, type(c.strategy).__name__,
                c.is_distributed, [str(d) for d in c._parallel_devices], c._precision_flag,
            ]
        try:
            _AcceleratorConnector(accelerator="gpu")
        except pl.utilities.exceptions.MisconfigurationException as error:
            seen["gpu"] = str(error).split("!")[0]
        assert pl.trainer.connectors.accelerator_connector._AcceleratorConnector is _AcceleratorConnector
        assert not hasattr(pl.trainer.connectors, "signal_connector")  # the other connectors are not provided
        print(json.dumps(seen))
    """
    seen = json.loads(ok(python(code, without_lightning=True)))
    one = ["cpu", 1, "CPUAccelerator", "SingleDeviceStrategy", False, ["cpu"], "32-true"]
    two = ["cpu", 2, "CPUAccelerator", "DDPStrategy", True, ["cpu", "cpu"], "32-true"]
    if torch.cuda.is_available():
        pytest.skip("the recorded values are those of a machine without a GPU")
    assert seen == {
        "auto/'auto'": one,
        "cpu/'auto'": one,
        "cpu/1": one,
        "auto/1": one,
        "cpu/2": two,
        "cpu/'2'": two,
        "gpu": "No supported gpu backend found",
    }


def test_lightnings_xla_names_import_for_libraries_that_patch_them_and_refuse_to_be_built():
    # nequip's `nequip-train` imports these at start-up, wraps the connector's resolution steps and replaces
    # `setup._log_device_info` and `DDPStrategy.barrier`, then trains on CPUs
    code = """
        import ember
        ember.install_as_lightning()
        import pytorch_lightning as pl
        import torch
        from lightning.pytorch.accelerators import XLAAccelerator
        from lightning.pytorch.strategies import DDPStrategy
        from lightning.pytorch.strategies.single_xla import SingleDeviceXLAStrategy
        from lightning.pytorch.trainer import setup
        from lightning.pytorch.trainer.connectors.accelerator_connector import _AcceleratorConnector

        original = _AcceleratorConnector._check_and_init_precision
        _AcceleratorConnector._check_and_init_precision = lambda self: original(self)
        _AcceleratorConnector._choose_strategy = lambda self: "patched"
        setup._log_device_info = lambda trainer: print("device info")
        assert XLAAccelerator.is_available() is False and XLAAccelerator.auto_device_count() == 0
        for cls in (XLAAccelerator, SingleDeviceXLAStrategy):
            try:
                cls()
            except pl.utilities.exceptions.MisconfigurationException as error:
                assert "not supported" in str(error), error
            else:
                raise AssertionError(f"{cls.__name__} was built")
        strategy = DDPStrategy()
        assert strategy.determine_ddp_device_ids() is None  # on the CPU, as Lightning's

        class Model(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.layer = torch.nn.Linear(2, 1)
            def training_step(self, batch, batch_idx):
                return self.layer(batch[0]).sum()
            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 2)), batch_size=2)
        trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
        trainer.fit(Model(), data)
        print(trainer.global_step, type(trainer.strategy).__name__)
    """
    assert ok(python(code)).splitlines()[-1] == "2 SingleDeviceStrategy"


def test_every_name_lightnings_public_packages_export_imports_under_the_alias():
    # recorded from Lightning 2.6.6 (`tests/fixtures/make_lightning_public_names.py`): a program or a library
    # that imports any of these gets a name, never an ImportError
    recorded = json.loads((REPO / "tests" / "fixtures" / "lightning_public_names.json").read_text())["names"]
    code = """
        import importlib, json, sys
        import ember
        ember.install_as_lightning()
        missing = []
        for path, names in json.loads(sys.argv[1]).items():
            module = importlib.import_module("pytorch_lightning" + (f".{path}" if path else ""))
            missing += [f"{path or 'pytorch_lightning'}.{name}" for name in names if not hasattr(module, name)]
        print(json.dumps(missing))
    """
    assert json.loads(ok(python(code, json.dumps(recorded)))) == []


@pytest.mark.parametrize(
    ("path", "name", "says"),
    [
        ("loggers.litlogger", "LitLogger", "logs to the Lightning AI service, which Ember does not support"),
        ("profilers.xla", "XLAProfiler", 'XLA devices (TPUs) are not supported. Use `Trainer(profiler="pytorch")`'),
        ("plugins.io.xla", "XLACheckpointIO", "XLA devices (TPUs) are not supported. Use the default"),
        ("plugins.precision.xla", "XLAPrecision", "XLA devices (TPUs) are not supported. Use `Trainer(precision=...)`"),
        ("plugins.precision.transformer_engine", "TransformerEnginePrecision", "Transformer Engine's FP8"),
        ("strategies.xla", "XLAStrategy", "XLA devices (TPUs) are not supported"),
        ("plugins.environments", "XLAEnvironment", "XLA devices (TPUs) are not supported"),
    ],
)
def test_lightnings_classes_for_what_ember_does_not_support_import_and_refuse_to_be_built(path, name, says):
    code = f"""
        import ember
        ember.install_as_lightning()
        from pytorch_lightning.{path} import {name}
        from lightning.pytorch.{path} import {name} as other
        assert other is {name}
        try:
            {name}()
        except Exception as error:
            print(type(error).__name__)
            print(error)
        else:
            raise AssertionError("built")
    """
    kind, message = ok(python(code, without_lightning=True)).split("\n", 1)
    missing = ("No module named 'litlogger'", "Requirement 'torch_xla", "Requirement 'transformer_engine")
    assert message.startswith((name, *missing)), message
    assert says in message
    # the error says what to use instead
    assert "Use " in message or "Pass " in message or "Log with " in message
    # without the `litlogger` (`torch_xla`, `transformer_engine`) package, LitLogger (XLAProfiler,
    # TransformerEnginePrecision) fails as Lightning's does, so a fallback on that error still works
    fails_as_lightning = ("LitLogger", "XLAProfiler", "TransformerEnginePrecision")
    assert kind == ("ModuleNotFoundError" if name in fails_as_lightning else "MisconfigurationException")


# Lightning 2.x keeps 1.x's plugin names (its `_graveyard`): (module below `plugins.precision`, old name, new name)
_OLD_PRECISION_NAMES = [
    ("precision", "PrecisionPlugin", "Precision"),
    ("amp", "MixedPrecisionPlugin", "MixedPrecision"),
    ("half", "HalfPrecisionPlugin", "HalfPrecision"),
    ("double", "DoublePrecisionPlugin", "DoublePrecision"),
    ("bitsandbytes", "BitsandbytesPrecisionPlugin", "BitsandbytesPrecision"),
    ("deepspeed", "DeepSpeedPrecisionPlugin", "DeepSpeedPrecision"),
    ("fsdp", "FSDPPrecisionPlugin", "FSDPPrecision"),
    ("fsdp", "FSDPMixedPrecisionPlugin", "FSDPPrecision"),
    ("transformer_engine", "TransformerEnginePrecisionPlugin", "TransformerEnginePrecision"),
    ("xla", "XLAPrecisionPlugin", "XLAPrecision"),
]


def test_lightning_1x_precision_plugin_names_import_subclass_and_warn_when_built(tmp_path):
    # lbster imports `PrecisionPlugin` from Lightning 1.x's module path, which Lightning 2.x keeps
    code = f"""
        import warnings
        import ember
        ember.install_as_lightning()
        import pytorch_lightning as pl
        from pytorch_lightning.plugins.precision.precision_plugin import PrecisionPlugin
        from lightning.pytorch.plugins.precision.precision_plugin import Precision
        assert Precision is pl.plugins.precision.Precision
        for module, old, new in {_OLD_PRECISION_NAMES!r}:
            cls = getattr(__import__("pytorch_lightning.plugins.precision." + module, fromlist=[old]), old)
            assert cls is getattr(pl.plugins.precision, old) is getattr(pl.plugins, old), old
            assert cls.__name__ == old and cls.__mro__[1] is getattr(pl.plugins.precision, new), old
            assert old not in pl.plugins.__all__ and old not in pl.plugins.precision.__all__
        assert PrecisionPlugin is pl.plugins.PrecisionPlugin

        class Mine(PrecisionPlugin):  # a plugin written for Lightning 1.x
            pass

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            half = pl.plugins.HalfPrecisionPlugin("bf16-true")
            mine = Mine()
        assert half.precision == "bf16-true" and isinstance(mine, pl.plugins.precision.Precision)
        print([(type(w.message).__name__, str(w.message).split(". ")[0]) for w in caught])
        trainer = pl.Trainer(plugins=[mine], max_steps=1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, default_root_dir={str(tmp_path)!r})
        assert trainer.precision_plugin is mine
        try:
            pl.plugins.XLAPrecisionPlugin()
        except Exception as error:
            print(type(error).__name__)
    """
    printed = ok(python(code, without_lightning=True)).splitlines()
    assert printed == [
        "[('LightningDeprecationWarning', 'The `HalfPrecisionPlugin` is deprecated'),"
        " ('LightningDeprecationWarning', 'The `PrecisionPlugin` is deprecated')]",
        "MisconfigurationException",  # the TPU plugin refuses to be built under either name
    ]


# Lightning 2.x keeps 1.x's TPU names (deprecated) and its removed HPU classes, at their old module paths too:
# (module below the root, name, the packages that export it)
_OLD_HARDWARE_NAMES = [
    ("accelerators.tpu", "TPUAccelerator", ["accelerators"]),
    ("strategies.single_tpu", "SingleTPUStrategy", ["strategies"]),
    ("plugins.precision.tpu", "TPUPrecisionPlugin", ["plugins", "plugins.precision"]),
    ("plugins.precision.tpu_bf16", "TPUBf16PrecisionPlugin", ["plugins", "plugins.precision"]),
    ("plugins.precision.xlabf16", "XLABf16PrecisionPlugin", ["plugins", "plugins.precision"]),
    ("accelerators.hpu", "HPUAccelerator", ["accelerators"]),
    ("strategies.hpu_parallel", "HPUParallelStrategy", ["strategies"]),
    ("strategies.single_hpu", "SingleHPUStrategy", ["strategies"]),
    ("plugins.io.hpu_plugin", "HPUCheckpointIO", ["plugins", "plugins.io"]),
    ("plugins.precision.hpu", "HPUPrecisionPlugin", ["plugins", "plugins.precision"]),
]


def test_lightnings_old_tpu_and_removed_hpu_names_import_and_refuse_to_be_built():
    # a module written for Lightning 1.x that imports `TPUAccelerator` at its top failed to import at all
    code = f"""
        import importlib
        import ember
        ember.install_as_lightning()
        for module, name, packages in {_OLD_HARDWARE_NAMES!r}:
            cls = getattr(importlib.import_module("pytorch_lightning." + module), name)
            assert all(getattr(importlib.import_module("pytorch_lightning." + p), name) is cls for p in packages), name
            assert cls.__name__ == name
            try:
                cls()
            except Exception as error:
                print(name, type(error).__name__, "not supported" in str(error) or "has been removed" in str(error))
    """
    printed = ok(python(code, without_lightning=True)).splitlines()
    expected = [
        f"{name} {'NotImplementedError' if 'HPU' in name else 'MisconfigurationException'} True"
        for _, name, _ in _OLD_HARDWARE_NAMES
    ]
    assert printed == expected


def test_a_lightning_path_imported_first_loads_embers_module_once():
    # nequip imports the connector by its deep path first, then patches `_AcceleratorConnector`: a second
    # copy of Ember's file (a second class) would take the patch where the Trainer never looks
    code = """
        import importlib, sys
        import ember
        ember.install_as_lightning()
        path, home = sys.argv[1], sys.argv[2]
        first = importlib.import_module(path)
        again = importlib.import_module(path)
        copies = {}
        for module in list(sys.modules.values()):
            if getattr(module, "__file__", None) and module.__name__.split(".")[0] in ("ember", "lightning", "pytorch_lightning"):
                copies.setdefault(module.__file__, set()).add(id(module))
        assert first is again is sys.modules[home], (first, sys.modules[home])
        print(sorted(file for file, ids in copies.items() if len(ids) > 1))
    """
    paths = {
        "lightning.pytorch.trainer.connectors.accelerator_connector": "ember.distributed.factory",
        "pytorch_lightning.strategies.ddp": "ember.distributed.ddp",
        "lightning.pytorch.loops.evaluation_loop": "ember.trainer.evaluation_loop",
    }
    for path, home in paths.items():
        assert ok(python(code, path, home)).strip() == "[]", path


@pytest.mark.parametrize("root", ["pytorch_lightning", "lightning.pytorch"])
def test_embers_classes_take_the_lightning_names_they_are_imported_by_and_pickle_under_them(root):
    code = f"""
        import pickle, sys
        import ember
        import ember.callbacks.early_stopping
        assert ember.callbacks.EarlyStopping.__module__ == "ember.callbacks.early_stopping"  # no alias yet
        ember.install_as_lightning()
        assert ember.callbacks.EarlyStopping.__module__ == "ember.callbacks.early_stopping"  # nor a Lightning import
        import {root} as pl
        from {root}.callbacks import EarlyStopping
        from {root}.callbacks.progress import TQDMProgressBar
        from {root}.strategies import SingleDeviceStrategy, Strategy

        # the modules loaded before the first Lightning import and those loaded after it
        assert EarlyStopping.__module__ == "{root}.callbacks.early_stopping"
        assert pl.Trainer.__module__ == "{root}.trainer.trainer"
        assert "ember.loggers.csv_logs" not in sys.modules
        assert pl.loggers.CSVLogger.__module__ == "{root}.loggers.csv_logs"
        # Ember's modules kept elsewhere take the path Lightning defines the class at
        assert TQDMProgressBar.__module__ == "{root}.callbacks.progress.tqdm_progress"
        assert SingleDeviceStrategy.__module__ == "{root}.strategies.single_device"
        assert Strategy.__module__ == "{root}.strategies.strategy"
        # the digits demo is not served under Lightning's names: its classes keep Ember's
        import ember.demos.digits
        assert ember.demos.digits.DigitsNet.__module__ == "ember.demos.digits"

        # a pickle names Lightning's module (which an allowlist of Lightning's packages accepts)
        data = pickle.dumps(EarlyStopping("val_loss", patience=3))
        assert b"{root}.callbacks.early_stopping" in data and b"ember" not in data
        back = pickle.loads(data)
        assert type(back) is ember.callbacks.EarlyStopping and back.patience == 3
        # the other root, imported second, serves the same classes
        other = "lightning.pytorch" if "{root}" == "pytorch_lightning" else "pytorch_lightning"
        assert __import__(other + ".callbacks", fromlist=["x"]).EarlyStopping is EarlyStopping
        assert EarlyStopping.__module__.startswith("{root}.")
    """
    ok(python(code, without_lightning=True))


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("pytorch_lightning.loops.fit_loop", "Ember has one loop and no loop classes to replace"),
        ("lightning.pytorch.strategies.launchers", None),
        ("lightning.pytorch.demos.digits", None),  # Ember's own demo, beside Lightning's demo models
        ("pytorch_lightning.utilities.argparse", None),
        ("pytorch_lightning.trainer.connectors.logger_connector.logger_connector", None),
        ("pytorch_lightning._graveyard", None),
        ("lightning.app", None),
    ],
)
def test_a_path_ember_does_not_provide_raises_naming_it(path, says):
    code = f"""
        import ember
        ember.install_as_lightning()
        try:
            import {path}
        except ModuleNotFoundError as error:
            print(error.name)
            print(error)
    """
    # `lightning.app` is the stand-in's to refuse; an installed Lightning answers for its own paths
    name, message = ok(python(code, without_lightning=True)).splitlines()
    assert name == path
    assert message.startswith(f"No module named {name!r}: this program runs on Ember in place of Lightning")
    assert f"and Ember does not provide {name!r}." in message
    if says:
        assert says in message


def test_lightnings_neptune_path_imports_under_the_alias():
    # a config or program that names Lightning's class imports it; only building it fails, as in Lightning
    code = """
        import ember
        ember.install_as_lightning()
        from pytorch_lightning.loggers.neptune import NeptuneLogger
        import lightning.pytorch as lp
        assert lp.loggers.neptune.NeptuneLogger is NeptuneLogger is ember.loggers.neptune.NeptuneLogger
        try:
            NeptuneLogger()
        except RuntimeError as error:
            print(str(error).splitlines()[0])
    """
    assert ok(python(code, without_lightning=True)).strip() == (
        "NeptuneLogger is no longer supported. Neptune has been sunset."
    )


def test_a_librarys_own_evaluation_loop_prints_its_own_results_table():
    # torch-uncertainty's trainer: `test_loop` replaced by an `_EvaluationLoop` subclass that prints its own
    # table, from the dicts of tensors Lightning passes it
    code = """
        import ember
        ember.install_as_lightning()
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        import lightning.pytorch as L
        from lightning.pytorch.loops.evaluation_loop import _EvaluationLoop
        from lightning.pytorch.loops import _EvaluationLoop as exported  # as Lightning's package exports it
        from lightning.pytorch.trainer.connectors.logger_connector.result import _OUT_DICT
        assert exported is _EvaluationLoop
        from lightning.pytorch.trainer.states import RunningStage, TrainerFn

        class OwnTable(_EvaluationLoop):
            @staticmethod
            def _print_results(results: list[_OUT_DICT], stage: str) -> None:
                print("OWN", stage, [(k, type(v).__name__, round(v.item(), 4)) for r in results for k, v in r.items()])

        class OwnTrainer(L.Trainer):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.test_loop = OwnTable(self, TrainerFn.TESTING, RunningStage.TESTING, inference_mode=True)

        class Model(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.layer = torch.nn.Linear(2, 1)

            def test_step(self, batch):
                self.log("test/mse", torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1]))

        torch.manual_seed(0)
        data = DataLoader(TensorDataset(torch.randn(8, 2), torch.randn(8, 1)), batch_size=4)
        trainer = OwnTrainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
        results = trainer.test(Model(), data)
        print(trainer.test_loop.batch_progress.total.completed, type(results[0]["test/mse"]).__name__)
        trainer.test(Model(), data, verbose=False)  # prints nothing
    """
    out = ok(python(code)).splitlines()
    assert out == ["OWN test [('test/mse', 'Tensor', 0.8134)]", "2 float"]  # Lightning 2.6.6 prints the same


def test_lightning_imported_first_is_refused_and_the_environment_variable_only_warns():
    code = """
        import sys, types, warnings
        sys.modules["pytorch_lightning"] = types.ModuleType("pytorch_lightning")   # Lightning, imported first
        import ember
        try:
            ember.install_as_lightning()
        except RuntimeError as error:
            print(error)
    """
    message = ok(python(code)).strip()
    assert message.startswith("`ember.install_as_lightning()` must run before Lightning is imported, but")
    assert "'pytorch_lightning' is imported already" in message and "ember run script.py" in message

    code = """
        import sys, types, warnings
        sys.modules["pytorch_lightning"] = types.ModuleType("pytorch_lightning")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import ember
        import ember.lightning_alias
        print(ember.lightning_alias.is_installed(), caught[0].message)
    """
    out = ok(python(code, env={"EMBER_AS_LIGHTNING": "1"})).strip()
    assert out.startswith("False EMBER_AS_LIGHTNING=1 asks Ember to stand in for Lightning, but 'pytorch_lightning'")


def test_a_lightning_program_trains_on_a_combined_loader_from_lightnings_path():
    code = """
        import ember
        ember.install_as_lightning()
        import torch
        from torch.utils.data import DataLoader
        import pytorch_lightning as pl
        from lightning.pytorch.utilities.combined_loader import CombinedLoader

        class Model(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.layer = torch.nn.Linear(1, 1)
                self.keys = []

            def training_step(self, batch, batch_idx):
                self.keys.append(sorted(batch))
                return self.layer(batch["a"].float().view(-1, 1)).sum() + batch["b"].float().sum() * 0

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        loaders = {"a": DataLoader(range(4), batch_size=2), "b": DataLoader(range(6), batch_size=2)}
        model = Model()
        trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False)
        trainer.fit(model, CombinedLoader(loaders, "max_size_cycle"))
        assert CombinedLoader is ember.utilities.CombinedLoader
        print(trainer.global_step, model.keys[0], sorted(trainer.train_dataloader))
    """
    assert ok(python(code)).split("\n")[-2] == "3 ['a', 'b'] ['a', 'b']"


def test_lightnings_logger_names_quiet_and_redirect_embers_messages(tmp_path):
    code = """
        import logging
        import ember
        logging.getLogger("pytorch_lightning.core").setLevel(logging.DEBUG)  # made before the alias: kept
        ember.install_as_lightning()
        import lightning.pytorch as pl
        import torch
        from torch.utils.data import DataLoader

        class Tiny(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.layer = torch.nn.Linear(1, 1)

            def training_step(self, batch, batch_idx):
                return self.layer(batch).sum()

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        def fit(epochs):
            kwargs = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
            pl.Trainer(max_epochs=epochs, **kwargs).fit(Tiny(), DataLoader(torch.ones(2, 1)))

        assert logging.getLogger("lightning.pytorch") is logging.getLogger("ember")
        # the package the program did not import has a logger of its own, as on Lightning
        assert logging.getLogger("pytorch_lightning") is not logging.getLogger("ember")
        assert logging.getLogger("pytorch_lightning.core").parent is logging.getLogger("pytorch_lightning")
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # Lightning's way to quiet its messages
        fit(1)
        logging.getLogger("lightning.pytorch").setLevel(logging.INFO)
        logging.getLogger("lightning.pytorch").addHandler(logging.FileHandler("messages.log"))
        fit(2)
        import pytorch_lightning  # now both packages serve the one Trainer: either name configures it
        assert logging.getLogger("pytorch_lightning") is logging.getLogger("ember")
    """
    proc = python(code, cwd=tmp_path)
    ok(proc)
    assert (
        "`max_epochs=1` reached" not in proc.stderr and "`Trainer.fit` stopped: `max_epochs=2` reached." in proc.stderr
    )
    assert (tmp_path / "messages.log").read_text() == "`Trainer.fit` stopped: `max_epochs=2` reached.\n"


def test_quieting_the_logger_of_the_package_not_imported_leaves_the_messages_as_on_lightning(tmp_path):
    # TorchEEG quiets `lightning.pytorch` as it loads, then trains through `pytorch_lightning`: on
    # Lightning that name is another package's logger, so the messages still show. A level set before
    # the import does not hold on Lightning either: its import sets its logger to INFO.
    code = """
        import logging
        import ember
        ember.install_as_lightning()
        logging.getLogger("lightning.pytorch").setLevel(logging.CRITICAL)
        logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
        import pytorch_lightning as pl

        pl.seed_everything(3)
        logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)  # after the import, it holds
        pl.seed_everything(4)
    """
    proc = python(code, cwd=tmp_path)
    ok(proc)
    assert "Seed set to 3" in proc.stderr
    assert "Seed set to 4" not in proc.stderr


def test_import_ember_honours_the_environment_variable_and_stays_light_without_it():
    code = """
        import sys, ember
        print(sorted(m for m in ("ember.lightning_alias", "ember.accelerators", "ember.cli.run") if m in sys.modules))
        import pytorch_lightning
        print(pytorch_lightning.Trainer is ember.Trainer)
    """
    assert ok(python(code, env={"EMBER_AS_LIGHTNING": "1"})).split() == ["['ember.lightning_alias']", "True"]
    code = """
        import sys, ember
        print(sorted(m for m in ("ember.lightning_alias", "ember.accelerators", "ember.cli.run") if m in sys.modules))
        try:
            import pytorch_lightning
        except ModuleNotFoundError:
            print("no Lightning")
    """
    assert ok(python(code, without_lightning=True)) == "[]\nno Lightning\n"


# a child process, started by an aliased one, that imports Lightning first and never names Ember
CHILD = """
import builtins, importlib, json, sys

loaded = sorted(name for name in ("ember", "torch") if name in sys.modules)
pl = importlib.import_module(sys.argv[1])
ember = sys.modules.get("ember")
print(json.dumps({
    "root": sys.argv[1],
    "loaded_before_lightning": loaded,
    "trainer_is_embers": ember is not None and pl.Trainer is ember.Trainer,
    "version": pl.__version__,
    "users_sitecustomize_ran": getattr(builtins, "USERS_SITECUSTOMIZE_RAN", False),
}))
"""

# a child process whose interpreter cannot import Ember
CHILD_WITHOUT_EMBER = """
import sys
sys.modules["ember"] = None
try:
    import pytorch_lightning as pl
except ModuleNotFoundError as error:
    print("not found:", error.name)
else:
    print("its own Lightning:", not getattr(pl, "__ember_alias__", False))
"""


def test_python_processes_started_from_an_aliased_one_get_ember_at_their_first_lightning_import(tmp_path):
    # as Ray's workers, `torchrun`'s ranks or any `subprocess` do: they import Lightning, not Ember
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    users_site = tmp_path / "users_site"  # a sitecustomize of the user's own, which must still run
    users_site.mkdir()
    (users_site / "sitecustomize.py").write_text("import builtins\nbuiltins.USERS_SITECUSTOMIZE_RAN = True\n")
    hidden = f"import tests.helpers.without_lightning; exec(open({str(child)!r}).read())"
    code = f"""
        import subprocess, sys
        import ember
        ember.install_as_lightning()
        for root in ("lightning.pytorch", "pytorch_lightning"):
            subprocess.run([sys.executable, {str(child)!r}, root], check=True)
        subprocess.run([sys.executable, "-c", {hidden!r}, "pytorch_lightning"], check=True, cwd={str(REPO)!r})
    """
    children = [json.loads(line) for line in ok(python(code, env={"PYTHONPATH": str(users_site)})).splitlines()]
    assert [child["root"] for child in children] == ["lightning.pytorch", "pytorch_lightning", "pytorch_lightning"]
    for seen in children:  # with Lightning installed (the first two, in the dev environment) and without it
        assert seen["trainer_is_embers"] and seen["version"] == "2.6.6"
        assert seen["loaded_before_lightning"] == []  # nothing is imported until Lightning is
        assert seen["users_sitecustomize_ran"]


def test_a_started_process_that_cannot_import_ember_imports_lightning_as_without_the_alias(tmp_path):
    child = tmp_path / "child.py"
    child.write_text(CHILD_WITHOUT_EMBER)
    hidden = f"import tests.helpers.without_lightning; exec(open({str(child)!r}).read())"
    code = f"""
        import subprocess, sys
        import ember
        ember.install_as_lightning()
        subprocess.run([sys.executable, {str(child)!r}], check=True)  # finds the installed Lightning, if any
        subprocess.run([sys.executable, "-c", {hidden!r}], check=True, cwd={str(REPO)!r})
    """
    out = ok(python(code)).splitlines()
    assert out[0] in ("not found: pytorch_lightning", "its own Lightning: True")
    assert out[1] == "not found: pytorch_lightning"  # the error of an environment without Lightning, not the hook's


def test_the_startup_hook_keeps_every_pythonpath_entry_and_runs_once_among_copies(tmp_path):
    (tmp_path / "linked").symlink_to(Path(ember.__file__).parent / "lightning_startup")  # a second copy
    users_site = tmp_path / "users_site"
    users_site.mkdir()
    (users_site / "sitecustomize.py").write_text("import builtins\nbuiltins.USERS_SITECUSTOMIZE_RAN = True\n")
    child = (
        "import builtins, sys; print(getattr(builtins, 'USERS_SITECUSTOMIZE_RAN', False),"
        " sum(getattr(f, 'ember_startup_hook', False) for f in sys.meta_path))"
    )
    code = f"""
        import os, subprocess, sys
        os.environ["PYTHONPATH"] += os.pathsep  # an empty entry: the working directory
        before = os.environ["PYTHONPATH"].split(os.pathsep)
        import ember
        ember.install_as_lightning()
        after = os.environ["PYTHONPATH"].split(os.pathsep)
        print(after[1:] == before, os.path.basename(after[0]))
        path = os.pathsep.join([os.environ["PYTHONPATH"], {str(tmp_path / "linked")!r}, {str(users_site)!r}])
        subprocess.run([sys.executable, "-c", {child!r}], check=True, env=dict(os.environ, PYTHONPATH=path))
    """
    # the user's sitecustomize runs once, after the hook, whichever copies of the hook come first
    assert ok(python(code)).splitlines() == ["True lightning_startup", "True 1"]


def test_ember_run_runs_an_unmodified_lightning_script(tmp_path):
    proc = python("", "-m", "ember", "run", str(PROGRAM), str(tmp_path), "--epochs", "2", cwd=tmp_path)
    ok(proc)
    seen = json.loads((tmp_path / "rank0.json").read_text())
    assert seen["trainer_is_embers"] and seen["lightning_version"] == "2.6.6"
    assert seen["trainer"] == "lightning.pytorch.trainer.trainer.Trainer"  # Ember's class, by Lightning's name
    assert seen["epochs"] == 2 and seen["accelerator"] == "CPUAccelerator"
    assert seen["argv"] == [str(tmp_path), "--epochs", "2"] and seen["name"] == "__main__"
    assert Path(seen["best_model_path"]).is_file()
    assert torch.load(seen["best_model_path"], weights_only=True)["hyper_parameters"] == {"lr": 0.1}


def test_ember_run_gives_a_script_named_by_a_relative_path_what_python_gives_it(tmp_path):
    # as `python train.py`: an absolute `__file__` (so `Path(__file__).parent` still works after a
    # `chdir`, as careamics' scripts use it) and `sys.argv[0]` as typed
    (tmp_path / "train.py").write_text(
        "import os, sys, tempfile\n"
        "os.chdir(tempfile.gettempdir())\nprint(__file__, sys.argv[0], os.path.isfile(__file__))\n"
    )
    on_python = ok(python("", "train.py", cwd=tmp_path)).split()
    on_ember = ok(python("", "-m", "ember", "run", "train.py", cwd=tmp_path)).split()
    assert on_ember == on_python == [str(tmp_path / "train.py"), "train.py", "True"]


def test_ember_run_a_module_and_the_exit_code_of_a_failing_program(tmp_path):
    package = tmp_path / "project"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "train.py").write_text(
        "import sys\nimport pytorch_lightning as pl\nprint(__name__, pl.__version__, sys.argv[1:])\n"
        "if sys.argv[1] == 'raise':\n    raise ValueError('from the program')\nsys.exit(int(sys.argv[1]))\n"
    )
    proc = python("", "-m", "ember", "run", "-m", "project.train", "3", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.strip() == "__main__ 2.6.6 ['3']"
    proc = python("", "-m", "ember", "run", "-m", "project.train", "raise", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.rstrip().endswith("ValueError: from the program")


def test_ember_run_without_a_program_prints_its_usage(tmp_path, capsys, monkeypatch):
    from ember.cli import console, run

    monkeypatch.chdir(tmp_path)
    assert run.main(["missing.py"]) == 2
    assert "ember run: can't open file" in capsys.readouterr().err
    assert run.main(["-m"]) == 2
    assert "-m needs a module name" in capsys.readouterr().err
    assert console.main(["run"]) == 2
    assert capsys.readouterr().out.startswith("usage: ember run script.py [args ...]")
    assert console.main(["--help"]) == 0
    assert "run        run an unmodified Lightning script" in capsys.readouterr().out
    assert "ember.lightning_alias" not in sys.modules or not sys.modules["ember.lightning_alias"].is_installed()


FAKE_LIGHTNING = {
    # Lightning's own packages: importing them under the alias is a failure
    "pytorch_lightning/__init__.py": 'raise AssertionError("Lightning\'s own pytorch_lightning was imported")\n',
    "lightning/pytorch/__init__.py": 'raise AssertionError("Lightning\'s own lightning.pytorch was imported")\n',
    # the top of the unified package, as Lightning 2.6's own __init__ imports it
    "lightning/__init__.py": (
        "__version__ = '2.6.6'\n"
        "REAL = True\n"
        "from lightning.fabric import Fabric, seed_everything\n"
        "from lightning.pytorch.callbacks import Callback\n"
        "from lightning.pytorch.core import LightningDataModule, LightningModule\n"
        "from lightning.pytorch.trainer import Trainer\n"
    ),
    "lightning/fabric/__init__.py": (
        "import torch\n\n\nclass Fabric:\n    pass\n\n\n"
        "def seed_everything(seed=None, workers=False):\n    torch.manual_seed(seed)\n    return seed\n"
    ),
    "lightning_fabric/__init__.py": "class Fabric:\n    pass\n",
}


def test_with_lightning_installed_its_trainer_packages_are_ember_and_the_rest_stays_lightnings(tmp_path):
    for relative, text in FAKE_LIGHTNING.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    code = """
        import ember
        ember.install_as_lightning()
        import lightning as L
        import lightning.fabric
        import lightning_fabric
        import pytorch_lightning as pl

        assert L.REAL and L.Trainer is ember.Trainer and L.LightningModule is ember.LightningModule
        assert L.pytorch is __import__("sys").modules["lightning.pytorch"] and L.pytorch.__version__ == "2.6.6"
        assert L.pytorch.callbacks is pl.callbacks is ember.callbacks
        assert L.Fabric is lightning.fabric.Fabric and lightning.fabric.__file__.endswith("lightning/fabric/__init__.py")
        assert lightning_fabric.Fabric is not L.Fabric  # two real packages, as installed
        print("ok")
    """
    assert ok(python(code, env={"PYTHONPATH": str(tmp_path)})).strip() == "ok"
    proc = python("", "-m", "ember", "run", str(PROGRAM), str(tmp_path), env={"PYTHONPATH": str(tmp_path)})
    ok(proc)
    assert json.loads((tmp_path / "rank0.json").read_text())["trainer_is_embers"]


def test_without_lightning_the_lightning_package_is_a_stand_in_and_fabric_comes_from_lightning_fabric(tmp_path):
    (tmp_path / "lightning_fabric").mkdir()
    (tmp_path / "lightning_fabric" / "__init__.py").write_text("class Fabric:\n    pass\n")
    code = """
        import ember
        ember.install_as_lightning()
        import lightning as L
        print(sorted(L.__all__))
        print(L.Fabric is __import__("lightning_fabric").Fabric, L.fabric is __import__("lightning_fabric"))
    """
    out = ok(python(code, env={"PYTHONPATH": str(tmp_path)}, without_lightning=True)).splitlines()
    assert out == [
        "['Callback', 'Fabric', 'LightningDataModule', 'LightningModule', 'Trainer', '__version__', 'seed_everything']",
        "True True",
    ]
    code = """
        import ember
        ember.install_as_lightning()
        import lightning as L
        print("Fabric" in L.__all__, hasattr(L, "Fabric"))
        try:
            import lightning.fabric
        except ModuleNotFoundError as error:
            print(error)
    """
    out = ok(python(code, without_lightning=True)).splitlines()
    assert out[0] == "False False"
    assert out[1].startswith("No module named 'lightning.fabric': this program runs on Ember in place of")
    assert "Install `lightning-fabric`" in out[1]


LIGHTNING_PYTHON = os.environ.get("EMBER_TEST_LIGHTNING_PYTHON") or (
    sys.executable if importlib.util.find_spec("pytorch_lightning") is not None else None
)


@pytest.mark.skipif(
    LIGHTNING_PYTHON is None,
    reason="needs pytorch-lightning installed (or EMBER_TEST_LIGHTNING_PYTHON=<a python that has it>)",
)
def test_with_the_real_lightning_installed(tmp_path):
    code = """
        import sys
        import ember
        ember.install_as_lightning()
        import lightning_fabric
        import pytorch_lightning as pl
        from pytorch_lightning.callbacks import ModelCheckpoint
        assert pl.Trainer is ember.Trainer and ModelCheckpoint is ember.callbacks.ModelCheckpoint
        assert pl.__version__ == "2.6.6" and not hasattr(pl, "__file__")
        assert lightning_fabric.__file__.endswith("lightning_fabric/__init__.py")
        try:
            import lightning
        except ModuleNotFoundError:
            print("no unified package")
        else:
            assert lightning.Trainer is ember.Trainer and lightning.pytorch.Trainer is ember.Trainer
            assert "site-packages" in lightning.fabric.__file__
            print("unified package" if getattr(lightning, "__ember_alias__", False) is False else "stand-in")
    """
    print(ok(python(code, exe=LIGHTNING_PYTHON)))
    ok(python("", "-m", "ember", "run", str(PROGRAM), str(tmp_path), exe=LIGHTNING_PYTHON))
    assert json.loads((tmp_path / "rank0.json").read_text())["trainer_is_embers"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
@pytest.mark.timeout(200)
@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_the_processes_of_a_ddp_run_import_ember_for_lightning_too(tmp_path, strategy):
    env = {"OMP_NUM_THREADS": "1"}
    proc = python("", "-m", "ember", "run", str(PROGRAM), str(tmp_path), "--strategy", strategy, env=env, cwd=tmp_path)
    ok(proc)
    # `ddp` re-runs the script for rank 1, `ddp_spawn` starts workers that import it: each must find Ember
    ranks = [0, 1] if strategy == "ddp" else [0]
    for rank in ranks:
        seen = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert seen["trainer_is_embers"] and seen["lightning_version"] == "2.6.6"
        assert seen["trainer"] == "lightning.pytorch.trainer.trainer.Trainer"  # Ember's class, by Lightning's name
        assert (seen["rank"], seen["world_size"]) == (rank, 2)


@pytest.mark.parametrize("fabric_first", [False, True], ids=["ember-first", "fabric-first"])
def test_fabrics_exception_and_warning_classes_are_embers_under_the_alias(fabric_first):
    pytest.importorskip("lightning_fabric")
    code = f"""
        if {fabric_first}:
            import lightning_fabric.utilities.exceptions  # imported before the alias
        import ember
        ember.install_as_lightning()
        import pytorch_lightning as pl
        from lightning_fabric.utilities.exceptions import MisconfigurationException
        from lightning_fabric.utilities.warnings import PossibleUserWarning
        from lightning_fabric.utilities.rank_zero import LightningDeprecationWarning
        from lightning_fabric.utilities.spike import TrainingSpikeException
        import ember.callbacks.spike, ember.utilities.rank_zero, ember.utilities.warnings
        assert MisconfigurationException is pl.utilities.exceptions.MisconfigurationException
        assert PossibleUserWarning is ember.utilities.warnings.PossibleUserWarning
        assert LightningDeprecationWarning is ember.utilities.rank_zero.LightningDeprecationWarning
        assert TrainingSpikeException is ember.callbacks.spike.TrainingSpikeException
        try:
            pl.Trainer(gradient_clip_algorithm="sideways")
        except MisconfigurationException as error:  # a program catching Fabric's class catches the trainer's
            print("caught:", error)
    """
    assert "caught: `gradient_clip_algorithm` sideways is invalid" in ok(python(code))


@pytest.mark.skipif(
    LIGHTNING_PYTHON is None,
    reason="needs pytorch-lightning installed (or EMBER_TEST_LIGHTNING_PYTHON=<a python that has it>)",
)
def test_a_module_pickled_under_the_alias_trains_in_lightning(tmp_path):
    # mlflow's `log_model` pickles the whole module; Lightning's Trainer reads attributes its `__init__` sets
    saved = tmp_path / "module.pt"
    ok(
        python(
            f"""
            import torch, ember
            ember.install_as_lightning()
            from pytorch_lightning.demos.boring_classes import BoringModel
            torch.save(BoringModel(), {str(saved)!r})
            """,
            exe=LIGHTNING_PYTHON,
        )
    )
    out = ok(
        python(
            f"""
            import sys, torch
            import pytorch_lightning as pl
            module = torch.load({str(saved)!r}, weights_only=False)
            assert "ember" not in sys.modules and type(module).__module__.startswith("pytorch_lightning")
            pl.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                       enable_checkpointing=False).fit(module)
            print("trained", module.trainer.global_step)
            """,
            exe=LIGHTNING_PYTHON,
        )
    )
    assert "trained 1" in out


# classes a LightningCLI config or a pickle names: the module each reports under the alias, which
# Lightning has too (checked against the real package below, where it is installed)
_CONFIG_CLASS_MODULES = {
    "plugins.environments": ["LightningEnvironment", "SLURMEnvironment", "TorchElasticEnvironment"],
    "plugins.layer_sync": ["LayerSync", "TorchSyncBatchNorm"],
    "plugins.io.torch_plugin": ["TorchCheckpointIO"],
    # Lightning 2.x's module, not the 1.x path `plugins.precision.precision_plugin` it keeps for imports
    "plugins.precision.precision": ["Precision"],
    "cli": ["LightningCLI", "SaveConfigCallback", "ReduceLROnPlateau"],
}


def test_classes_a_config_names_report_modules_that_lightning_has():
    code = f"""
        import pickle, sys
        import ember
        ember.install_as_lightning()
        import pytorch_lightning as pl
        from pytorch_lightning.cli import LightningCLI, ReduceLROnPlateau, SaveConfigCallback
        from pytorch_lightning.plugins import TorchCheckpointIO
        from pytorch_lightning.plugins.environments import LightningEnvironment, SLURMEnvironment, TorchElasticEnvironment
        from pytorch_lightning.plugins.layer_sync import LayerSync, TorchSyncBatchNorm
        from pytorch_lightning.plugins.precision import Precision
        for module, names in {_CONFIG_CLASS_MODULES!r}.items():
            for name in names:
                cls = globals()[name]
                assert cls.__module__ == "pytorch_lightning." + module, (name, cls.__module__)
                assert getattr(sys.modules[cls.__module__], name) is cls
        data = pickle.dumps(SLURMEnvironment(auto_requeue=False))
        assert b"pytorch_lightning.plugins.environments" in data and b"ember" not in data
        assert pickle.loads(data).auto_requeue is False
        print("ok")
    """
    assert ok(python(code, without_lightning=True)).strip() == "ok"


@pytest.mark.parametrize("root", ["pytorch_lightning", "lightning.pytorch"])
def test_a_function_a_config_names_reports_lightnings_module(root):
    code = f"""
        import pickle
        import ember
        from ember.callbacks.finetuning import multiplicative
        assert multiplicative.__module__ == "ember.callbacks.finetuning"  # Ember's own name without the alias
        ember.install_as_lightning()
        from {root}.callbacks import BackboneFinetuning
        from {root}.cli import LightningArgumentParser
        assert multiplicative.__module__ == "{root}.callbacks.finetuning"
        # a saved config names the default as Lightning does, so Lightning can read it back
        parser = LightningArgumentParser(exit_on_error=False)
        parser.add_class_arguments(BackboneFinetuning, "finetuning")
        dumped = parser.dump(parser.parse_args([]))
        assert "lambda_func: {root}.callbacks.finetuning.multiplicative" in dumped, dumped
        assert parser.instantiate_classes(parser.parse_string(dumped)).finetuning.lambda_func is multiplicative
        assert pickle.loads(pickle.dumps(multiplicative)) is multiplicative
        print("ok")
    """
    assert ok(python(code)).strip() == "ok"


@pytest.mark.skipif(
    LIGHTNING_PYTHON is None,
    reason="needs pytorch-lightning installed (or EMBER_TEST_LIGHTNING_PYTHON=<a python that has it>)",
)
def test_the_modules_those_classes_report_hold_them_in_lightning():
    code = f"""
        import importlib
        for module, names in {_CONFIG_CLASS_MODULES!r}.items():
            held = importlib.import_module("pytorch_lightning." + module)
            assert all(hasattr(held, name) for name in names), module
        print("ok")
    """
    assert ok(python(code, exe=LIGHTNING_PYTHON)).strip() == "ok"


@pytest.mark.parametrize("root", ["pytorch_lightning", "lightning.pytorch"])
def test_pythons_random_after_the_seed_is_lightnings_when_a_program_loads_rich_later(root):
    # Lightning imports rich with its package, and rich draws from `random` as it loads; a program that seeds
    # after importing Lightning and loads rich later (a library's bar, a logger) must draw Lightning's numbers
    pytest.importorskip("rich")
    code = f"""
        import random, sys
        import ember
        ember.install_as_lightning()
        import {root} as pl
        pl.seed_everything(42, verbose=False)
        assert "rich.progress" not in sys.modules  # Ember still loads rich's progress bars only when used
        import rich.progress
        print(random.random())
    """
    assert float(ok(python(code))) == random.Random(42).random()
