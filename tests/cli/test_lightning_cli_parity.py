"""``LightningCLI`` prints and builds what Lightning 2.6.6's does for the same programs.

The programs are in ``tests/helpers/cli_programs.py``; ``tests/fixtures/lightning_cli_reference.json`` holds
Lightning's results (``tests/fixtures/make_lightning_cli_reference.py``), with the framework's name written
``PL``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers import cli_programs

import ember

REFERENCE = json.loads((Path(__file__).parents[1] / "fixtures" / "lightning_cli_reference.json").read_text())


def _public_strategy_paths(value):
    """jsonargparse prints the shortest import path of a class: Ember's strategies are also in
    ``ember.distributed`` (a shorter path than ``ember.strategies``); both name the same class."""
    if isinstance(value, dict):
        return {k: _public_strategy_paths(v) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("PL.distributed.") and value.endswith("Strategy"):
        return "PL.strategies." + value.rpartition(".")[2]
    return value


@pytest.mark.parametrize("name", sorted(cli_programs.CASES))
def test_printed_config_and_built_objects_match_lightning(name, tmp_path):
    result = cli_programs.run_case(ember, name, tmp_path)
    expected = REFERENCE["cases"][name]
    assert _public_strategy_paths(result["printed"]) == expected["printed"]
    assert result["built"] == expected["built"]


def test_the_reference_is_from_lightning_2_6_6():
    assert REFERENCE["versions"]["pytorch_lightning"] == "2.6.6"
    assert set(REFERENCE["cases"]) == set(cli_programs.CASES)


# where Ember's arguments differ from Lightning 2.6.6's on purpose (the reason after each)
INIT_DIFFERENCES = {
    # an argument Ember adds: the artifact folder uploaded checkpoints go under
    "loggers.MLFlowLogger": {"checkpoint_path_prefix"},
    # both take `record_shapes` out of **profiler_kwargs, so jsonargparse lists it; Lightning's default is
    # False, Ember's None: unset, it follows `group_by_input_shapes` (checked below)
    "profilers.PyTorchProfiler": {"record_shapes"},
}
# `**kwargs` a logger passes to its backend: jsonargparse lists the backend's arguments when it is installed
# (wandb is in Ember's test environment, not in the one that recorded Lightning's)
BACKEND_KWARGS = {"loggers.WandbLogger", "loggers.CometLogger", "loggers.MLFlowLogger"}


# the reference was recorded where rich is not installed: jsonargparse could not resolve the theme's `Style` and
# read the '#6206E0' defaults as YAML comments (None); with rich installed, Lightning keeps them, as Ember does
_RICH_THEME = {"progress_bar": "#6206E0", "progress_bar_finished": "#6206E0", "progress_bar_pulse": "#6206E0"}


def _with_rich(defaults):
    bar = defaults["callbacks.RichProgressBar"]
    return {**defaults, "callbacks.RichProgressBar": {**bar, "theme": {**bar["theme"], **_RICH_THEME}}}


def test_callback_logger_and_profiler_arguments_and_defaults_match_lightning():
    expected = _with_rich(REFERENCE["init_defaults"])
    actual = cli_programs.init_defaults(ember)
    common = sorted(set(expected) & set(actual))
    assert len(common) >= 37, common  # every public class both have (LitLogger and XLAProfiler by name only)
    for name in common:
        skip = INIT_DIFFERENCES.get(name, set())
        theirs = {k: v for k, v in expected[name].items() if k not in skip}
        mine = {k: v for k, v in actual[name].items() if k not in skip and (k in theirs or name not in BACKEND_KWARGS)}
        assert mine == theirs, name
    assert actual["profilers.PyTorchProfiler"]["record_shapes"] is None  # an argument, as in Lightning
