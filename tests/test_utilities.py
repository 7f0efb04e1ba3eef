"""Seeding, rank-zero and logging helpers, as Lightning's behave."""

import datetime
import functools
import logging
import os
import pathlib
import random
import subprocess
import sys
import textwrap
import types
import typing
from typing import Any

import numpy as np
import pytest
import torch

import ember
from ember import seed_everything
from ember.utilities import AttributeDict, isolate_rng, rank_zero_only


def test_seed_everything_seeds_every_generator_and_exports_it(monkeypatch):
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    assert seed_everything(123) == 123
    draws = (random.random(), np.random.rand(), torch.rand(1).item())
    assert os.environ["PL_GLOBAL_SEED"] == "123" and os.environ["PL_SEED_WORKERS"] == "0"
    seed_everything(123, workers=True)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws
    assert os.environ["PL_SEED_WORKERS"] == "1"


def test_seed_everything_reads_the_environment_and_refuses_seeds_out_of_bounds_as_lightning(monkeypatch):
    import warnings

    monkeypatch.setenv("PL_GLOBAL_SEED", "77")
    assert seed_everything() == 77
    # as Lightning 2.6: a bad seed stops the run before anything trains with another one
    for bad in (2**40, -5):
        with pytest.raises(ValueError, match=f"^{bad} is not in bounds, numpy accepts from 0 to 4294967295"):
            seed_everything(bad)
    monkeypatch.setenv("PL_GLOBAL_SEED", "abc")
    with pytest.raises(ValueError, match="^Invalid seed specified via PL_GLOBAL_SEED: 'abc'"):
        seed_everything()
    monkeypatch.delenv("PL_GLOBAL_SEED")
    with pytest.warns(UserWarning, match="No seed found, seed set to 0"):
        assert seed_everything() == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert seed_everything(verbose=False) == 0  # quiet when asked


def test_isolate_rng_restores_all_generators():
    seed_everything(5)
    with isolate_rng():
        torch.rand(3), np.random.rand(), random.random()
    after = (torch.rand(1).item(), np.random.rand(), random.random())
    seed_everything(5)
    assert after == (torch.rand(1).item(), np.random.rand(), random.random())


def test_isolate_rng_restores_the_generators_when_its_body_raises():
    seed_everything(5)
    with pytest.raises(RuntimeError), isolate_rng():
        torch.rand(3)
        raise RuntimeError("inside")
    after = torch.rand(1).item()
    seed_everything(5)
    assert after == torch.rand(1).item()


def test_rng_states_survive_a_safe_checkpoint_round_trip_and_older_tuples_restore(tmp_path):
    from ember.utilities.seed import collect_rng_states, set_rng_states

    seed_everything(7)
    states = collect_rng_states()
    expected = (torch.rand(1).item(), np.random.rand(), random.random())
    torch.save(states, tmp_path / "rng.pt")
    set_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (torch.rand(1).item(), np.random.rand(), random.random()) == expected

    version, words, gauss = states["python"]
    set_rng_states({**states, "python": (version, tuple(words.tolist()), gauss)})  # as checkpoints held it before
    assert (torch.rand(1).item(), np.random.rand(), random.random()) == expected


def test_rank_zero_only_runs_on_rank_zero_only(monkeypatch):
    calls = []
    fn = rank_zero_only(lambda: calls.append(1))
    fn()
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    fn()
    assert calls == [1]


def test_attribute_dict():
    hparams = AttributeDict(lr=0.1)
    hparams.batch_size = 32
    assert hparams["batch_size"] == 32 and hparams.lr == 0.1


def test_isolate_rng_leaves_an_uninitialized_cuda_alone(monkeypatch):
    # reading CUDA's generators would initialize CUDA, which breaks a later ddp_fork: only read them once in use
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: calls.append("get") or [])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: calls.append("set"))
    with isolate_rng():
        torch.rand(1)
    assert calls == []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with isolate_rng():
        torch.rand(1)
    assert calls == ["get", "set"]


def _modules_that_log_under_their_name() -> list[str]:
    src = pathlib.Path(ember.__file__).parent
    return sorted(
        ".".join(path.relative_to(src.parent).with_suffix("").parts)
        for path in src.rglob("*.py")
        if "logging.getLogger(__name__)" in path.read_text()
    )


def test_every_ember_logger_exists_from_import_ember_before_its_module_loads():
    names = _modules_that_log_under_their_name()
    assert "ember.callbacks.model_summary" in names
    code = "import logging, sys, ember; print(sorted(set(sys.argv[1:]) - set(logging.Logger.manager.loggerDict)))"
    proc = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_logging_config_that_disables_existing_loggers_quiets_embers_messages_as_lightnings(tmp_path):
    # Hydra applies such a config after the program's imports; Lightning's loggers all exist by then
    code = textwrap.dedent(
        """
        import logging.config
        import ember
        from ember.demos.boring_classes import BoringModel

        logging.config.dictConfig({
            "version": 1, "disable_existing_loggers": True,
            "handlers": {"out": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}},
            "root": {"handlers": ["out"], "level": "INFO"},
        })
        logging.getLogger("program").info("the program's own line")

        trainer = ember.Trainer(max_steps=2, enable_progress_bar=False, logger=False, enable_checkpointing=False)
        trainer.fit(BoringModel())
        trainer.save_checkpoint("unused.ckpt")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    said = proc.stdout + proc.stderr
    assert "the program's own line" in said
    assert "Trainable params" not in said and "Name" not in said  # the model summary
    assert "`weights_only` was not set" not in said


def test_seed_everything_says_the_seed_with_the_rank_a_launcher_gave_the_process(monkeypatch, caplog):
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(key, raising=False)
    with caplog.at_level("INFO"):
        seed_everything(5)
        monkeypatch.setenv("LOCAL_RANK", "1")
        seed_everything(6)
        seed_everything(7, verbose=False)
    assert [r.getMessage() for r in caplog.records] == ["Seed set to 5", "[rank: 1] Seed set to 6"]


@pytest.mark.parametrize(
    ("name", "level", "said"),
    [
        ("lightning.fabric.utilities.seed", logging.ERROR, False),  # kraken's `ketos` quiets it so
        ("lightning_fabric.utilities.seed", logging.WARNING, False),
        ("lightning_fabric", logging.ERROR, False),  # a package above Lightning's seed module
        ("lightning.fabric", logging.INFO, True),  # a level that lets the message through
    ],
)
def test_seed_everything_is_quiet_where_a_program_quieted_lightnings_seed_message(caplog, name, level, said):
    logger = logging.getLogger(name)
    try:
        logger.setLevel(level)
        with caplog.at_level("INFO"):
            seed_everything(5)
    finally:
        logger.setLevel(logging.NOTSET)
    assert ("Seed set to 5" in caplog.text) is said


_FAST_DEV_RUN_TRAINER = "Trainer(fast_dev_run=True, logger=False, enable_progress_bar=False)"


def test_a_program_that_configured_logging_before_importing_lightning_gets_its_lines(tmp_path):
    # under `ember run` Ember is imported before the program runs; Lightning decides where its messages
    # go when the program imports it, and so does the alias now
    program = tmp_path / "program.py"
    program.write_text(
        textwrap.dedent(
            f"""
            import logging, sys
            logging.basicConfig(filename=sys.argv[1], level=logging.INFO, format="[%(levelname)s] %(message)s")
            import pytorch_lightning as pl
            pl.{_FAST_DEV_RUN_TRAINER}
            """
        )
    )
    log_file = tmp_path / "run.log"
    command = [sys.executable, "-m", "ember", "run", str(program), str(log_file)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "[INFO] Running in `fast_dev_run` mode" in log_file.read_text()
    assert "fast_dev_run" not in proc.stderr  # not on Ember's own stream as well


def test_info_lines_reach_a_root_handler_whatever_the_roots_level(tmp_path):
    # `logging.basicConfig()` (as mlflow calls it) leaves the root at WARNING; Lightning's logger says
    # INFO itself, so its info lines still reach the root's handler, and Ember's do too
    code = f"import logging, sys; logging.basicConfig(stream=sys.stdout); import ember; ember.{_FAST_DEV_RUN_TRAINER}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "INFO:ember" in proc.stdout and "Running in `fast_dev_run` mode" in proc.stdout


class _SharedBase:
    def __init__(self):
        ember.utilities.rank_zero_warn("kept once")  # the line the warning names


class _One(_SharedBase):
    pass


class _Two(_SharedBase):
    pass


def _deprecated_api():
    ember.utilities.rank_zero_deprecation("old api")  # the line the deprecation names


def _informs():
    ember.utilities.rank_zero_info("an info line")  # the line the log record names


def _line_of(function, text: str) -> int:
    import inspect

    lines, first = inspect.getsourcelines(function)
    return first + next(i for i, line in enumerate(lines) if text in line)


def test_rank_zero_warnings_and_records_name_the_line_that_gave_them_as_lightnings_do(caplog):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _One()
        _Two()
        _deprecated_api()
    shared, also, deprecation = caught
    # a warning given in a base class names that line, so Python's default filter shows it once, not per subclass
    assert (shared.filename, shared.lineno) == (__file__, _line_of(_SharedBase.__init__, "kept once"))
    assert (also.filename, also.lineno) == (shared.filename, shared.lineno)
    assert deprecation.category is ember.utilities.rank_zero.LightningDeprecationWarning
    assert (deprecation.filename, deprecation.lineno) == (__file__, _line_of(_deprecated_api, "old api"))
    with caplog.at_level(logging.INFO, logger="ember"):
        _informs()
    (record,) = [r for r in caplog.records if r.getMessage() == "an info line"]
    assert (record.pathname, record.lineno) == (__file__, _line_of(_informs, "an info line"))


def test_warnings_of_a_library_built_on_lightning_print_as_on_lightning(tmp_path):
    # under the alias, a file whose path says "lightning" prints its warnings on one line, as Lightning's
    # formatter prints them; and a LightningDeprecationWarning is shown, as Lightning's filter shows it
    library = tmp_path / "my_lightning_extras"
    library.mkdir()
    (library / "extras.py").write_text(
        "import warnings\n"
        "from pytorch_lightning.utilities.rank_zero import rank_zero_deprecation\n"
        "def plain():\n"
        "    warnings.warn('from the library')\n"
        "def old():\n"
        "    rank_zero_deprecation('old api')\n"
    )
    elsewhere = tmp_path / "elsewhere.py"
    elsewhere.write_text("import warnings\ndef plain():\n    warnings.warn('from elsewhere')\n")
    code = textwrap.dedent(
        """
        import sys
        import ember
        ember.install_as_lightning()
        sys.path[:0] = [sys.argv[1], sys.argv[2]]
        import extras, elsewhere
        extras.plain()
        extras.old()
        elsewhere.plain()
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "EMBER_AS_LIGHTNING")}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(library), str(tmp_path)], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert f"{library / 'extras.py'}:4: from the library" in lines
    assert f"{library / 'extras.py'}:6: old api" in lines
    # a file outside any Lightning path keeps Python's format: the category, then the source line
    assert f"{elsewhere}:3: UserWarning: from elsewhere" in lines


class _Image(dict):
    """A dict subclass whose ``__init__`` refuses a plain dict (torchio's images are such)."""

    def __init__(self, path=None, **items):
        if isinstance(path, dict):
            raise TypeError("The path argument cannot be a dictionary")
        super().__init__(**items)
        self.path = path


def test_move_data_to_device_keeps_every_container_type():
    import collections
    import dataclasses

    from ember.utilities import move_data_to_device

    Pair = collections.namedtuple("Pair", ["a", "b"])

    @dataclasses.dataclass
    class Sample:
        x: torch.Tensor
        name: str

    counts = collections.defaultdict(list, {"x": torch.ones(1)})
    image = _Image("scan.nii", data=torch.ones(2))
    moved = move_data_to_device(
        {
            "pair": Pair(torch.ones(1), [torch.ones(1)]),
            "sample": Sample(torch.ones(1), "s"),
            "counts": counts,
            "image": image,
            "text": "kept",
        },
        "cpu",
    )
    assert isinstance(moved["pair"], Pair) and isinstance(moved["pair"].b, list)
    assert isinstance(moved["sample"], Sample) and moved["sample"].name == "s"
    assert isinstance(moved["counts"], collections.defaultdict) and moved["counts"].default_factory is list
    # a mapping its type cannot be made from is copied with its items replaced, as torch's collate does
    assert isinstance(moved["image"], _Image) and moved["image"].path == "scan.nii" and moved["image"] is not image
    assert torch.equal(moved["image"]["data"], torch.ones(2)) and moved["text"] == "kept"


def test_a_batch_holding_such_a_mapping_goes_through_the_transfer_hooks():
    # Lightning fails rebuilding it (`elem_type(OrderedDict(out))`) whenever it moves the batch
    from tests.helpers.core_models import CoreModel, quiet_trainer

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return i

    def collate(indices):
        return {"image": _Image(data=torch.randn(len(indices), 4)), "y": torch.randn(len(indices), 1)}

    class Model(CoreModel):
        def on_after_batch_transfer(self, batch, dataloader_idx):
            assert isinstance(batch["image"], _Image)
            return batch

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.mse_loss(self.layer(batch["image"]["data"]), batch["y"])

    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(Model(), torch.utils.data.DataLoader(Data(), batch_size=4, collate_fn=collate))
    assert trainer.global_step == 2


def test_public_constructors_annotate_their_arguments_in_lightnings_typing_forms():
    # config tools read the signatures: hydra-zen types a field only from `typing.Optional`/`Union` (Lightning's
    # form) and makes `int | None` an untyped field, which let `trainer.max_epochs='3'` through as text
    import importlib
    import inspect
    import types
    import typing

    packages = ["ember", "ember.callbacks", "ember.loggers", "ember.profilers", "ember.strategies", "ember.plugins"]
    checked, problems = 0, []
    for package in packages:
        module = importlib.import_module(package)
        for name in module.__all__:
            cls = getattr(module, name)
            if not inspect.isclass(cls) or "__init__" not in cls.__dict__ or not cls.__module__.startswith("ember."):
                continue
            checked += 1
            hints = typing.get_type_hints(cls.__init__)
            problems += [f"{name}.{arg}: {hint!r}" for arg, hint in hints.items() if isinstance(hint, types.UnionType)]
            # the signature itself holds the types (the Trainer's stay text until asked for: `import ember` stays light)
            for argument, parameter in inspect.signature(cls).parameters.items():
                annotation = parameter.annotation
                if isinstance(annotation, types.UnionType) or (
                    isinstance(annotation, str) and cls is not ember.Trainer
                ):
                    problems.append(f"{name}.{argument}: {annotation!r}")
    assert checked > 30
    assert problems == []
    hints = typing.get_type_hints(ember.Trainer.__init__)
    assert hints["max_epochs"] == typing.Optional[int]
    assert hints["enable_progress_bar"] == typing.Optional[bool]
    keyword_only = inspect.signature(ember.callbacks.LambdaCallback).parameters["on_fit_start"].annotation
    assert typing.get_origin(keyword_only) is typing.Union


def test_constructor_annotations_are_evaluated_at_once_with_typings_own_answers(monkeypatch):
    # every public class rewrites its `__init__` annotations at import; `typing.get_type_hints` compiles each
    # annotation's text on its own (a `ForwardRef`, ~70 us apiece the first time), which every import paid
    from ember.utilities.signature_utils import lightning_style_annotations

    def made() -> tuple[type, type]:
        class Plain:
            def __init__(
                self,
                path: "str | pathlib.Path | None" = None,
                mode: "typing.Literal['min', 'max']" = "min",
                every: "datetime.timedelta | None" = None,
                call: "typing.Callable[[int], None] | None" = None,
                flag: "bool" = True,
                *,
                depth: "int | None" = None,
            ) -> "None": ...

        def decorated(init: Any) -> Any:
            @functools.wraps(init)
            def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
                init(self, *args, **kwargs)

            return wrapper

        class Nested:  # a text inside a generic, a decorated `__init__`: typing reads them itself
            @decorated
            def __init__(self, names: "list['str']", size: "int" = 1) -> None: ...

        return Plain, Nested

    expected = {cls.__name__: typing.get_type_hints(cls.__init__) for cls in made()}
    created: list[str] = []

    class CountedForwardRef(typing.ForwardRef, _root=True):
        def __init__(self, arg: str, *args: Any, **kwargs: Any) -> None:
            created.append(arg)
            super().__init__(arg, *args, **kwargs)

    monkeypatch.setattr(typing, "ForwardRef", CountedForwardRef)
    plain, nested = made()
    lightning_style_annotations(plain)
    assert created == []  # (one a text before)
    lightning_style_annotations(nested)
    monkeypatch.undo()
    for cls in (plain, nested):
        hints = {name: hint for name, hint in typing.get_type_hints(cls.__init__).items()}
        assert hints == {
            name: typing.Union[typing.get_args(hint)] if isinstance(hint, types.UnionType) else hint
            for name, hint in expected[cls.__name__].items()
        }
    assert typing.get_type_hints(plain.__init__)["path"] == typing.Optional[typing.Union[str, pathlib.Path]]

    class Unknown:
        def __init__(self, value: "Undefined | None" = None) -> None: ...  # noqa: F821

    with pytest.raises(NameError, match="Undefined"):  # typing's own error
        lightning_style_annotations(Unknown)


def test_worker_seeds_are_lightnings():
    # `lightning_fabric.utilities.seed._generate_seed_sequence(7, 1, 0, 4)` and `(123456789, 3, 2, 4)` in Lightning
    # 2.6.6: the MurmurHash3 finalizer, then the linear congruential generator
    from ember.utilities.seed import _generate_seed_sequence

    assert _generate_seed_sequence(7, 1, 0, 4) == [
        3577095794510285667,
        17609867884544548200,
        7563256566083552073,
        12321555704801905366,
    ]
    assert _generate_seed_sequence(123456789, 3, 2, 4) == [
        1213182296290202754,
        618358367923968219,
        18018776216508138368,
        1208395540905631105,
    ]


def test_the_rank_is_read_from_local_rank_before_slurm_procid(monkeypatch):
    # SLURM sets SLURM_PROCID for every task of a job step, also where it does not start the processes
    from ember.utilities.rank_zero import _rank_in_env

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert _rank_in_env() == 0


def test_a_process_rank_reaches_the_rank_zero_only_of_lightning_utilities():
    # torchmetrics warns through `lightning_utilities`' decorator: on rank 1 it must stay quiet, as in Lightning
    utilities_rank_zero = pytest.importorskip("lightning_utilities.core.rank_zero")
    from ember.utilities.rank_zero import _set_rank, rank_zero_only

    decorator = utilities_rank_zero.rank_zero_only
    before = rank_zero_only.rank, getattr(decorator, "rank", None)  # unset until a library sets it
    try:
        _set_rank(1)
        assert rank_zero_only.rank == decorator.rank == 1
    finally:
        _set_rank(before[0])
        if before[1] is None:
            del decorator.rank
        else:
            decorator.rank = before[1]


def test_a_missing_attribute_names_the_attribute_dicts_own_class():
    class Config(AttributeDict):
        pass

    with pytest.raises(AttributeError, match="^'Config' object has no attribute 'lr'$"):
        Config().lr  # noqa: B018
