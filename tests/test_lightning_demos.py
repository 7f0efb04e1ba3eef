"""Lightning's ``lightning.pytorch.demos`` on Ember: the same models, data and numbers as Lightning 2.6.6.

``tests/fixtures/make_lightning_demos_reference.py`` observed the demos on the real Lightning
(``lightning_demos_reference.json``); here its ``observe`` runs again, on Ember through the alias,
in a fresh interpreter, and every value must match: the random datasets and data modules, seeded
runs of ``BoringModel``, ``DemoModel``, ``ManualOptimBoringModel``, ``LightningTransformer`` and
``LightningLSTM`` (on a small text placed where WikiText2 goes) and ``MNISTDataModule`` (on fake
``training.pt`` / ``test.pt`` files). Nothing is downloaded: a failed download is simulated.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.error import URLError

import pytest
from tests.helpers.recorded_floats import tolerance

import ember

SRC = Path(ember.__file__).resolve().parents[1]
REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
REFERENCE = json.loads((FIXTURES / "lightning_demos_reference.json").read_text())
RELATIVE, ABSOLUTE = tolerance(REFERENCE["versions"].get("cpu_kind"))


def _run_on_ember(code: str, cwd: Path, **env: str) -> str:
    """Run ``code`` in a fresh interpreter that imports this checkout's Ember and does not see an installed
    Lightning (``tests/helpers/without_lightning.py``: the alias then serves every Lightning name, and the
    run does not spend seconds importing ``lightning.fabric``)."""
    paths = os.pathsep.join([str(SRC), str(REPO), str(FIXTURES)])
    full_env = {**os.environ, "PYTHONPATH": paths, "PYTHONWARNINGS": "ignore", **env}
    full_env.pop("EMBER_AS_LIGHTNING", None)
    code = "import tests.helpers.without_lightning\n" + code
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=full_env, cwd=cwd
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


@pytest.fixture(scope="module")
def on_ember(tmp_path_factory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("demos")
    code = f"""
import json
from pathlib import Path
import ember
ember.install_as_lightning()
from make_lightning_demos_reference import observe
print(json.dumps(observe(Path({str(folder)!r}))))
"""
    return json.loads(_run_on_ember(code, folder, PL_USE_MOCKED_MNIST="1").splitlines()[-1])


def _same(ours: Any, theirs: Any, where: str = "") -> None:
    """Equal, floats to 1e-6 relative on a CPU of the kind the reference was recorded on (1e-2 on another:
    ``tests/helpers/recorded_floats.py``)."""
    if isinstance(theirs, float) and isinstance(ours, (int, float)):
        assert math.isclose(ours, theirs, rel_tol=RELATIVE, abs_tol=ABSOLUTE), f"{where}: {ours} != {theirs}"
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict) and sorted(ours) == sorted(theirs), (
            f"{where}: keys {sorted(ours)} != {sorted(theirs)}"
        )
        for key in theirs:
            _same(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), f"{where}: {ours} != {theirs}"
        for index, (mine, reference) in enumerate(zip(ours, theirs)):
            _same(mine, reference, f"{where}[{index}]")
    else:
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


def test_the_reference_is_lightnings():
    assert REFERENCE["versions"]["lightning"] == "2.6.6"
    assert REFERENCE["trainer"] == "lightning.pytorch.trainer.trainer"


@pytest.mark.parametrize(
    "section",
    [
        "names",
        "random_dataset",
        "random_dict_dataset",
        "random_iterable",
        "random_iterable_with_len",
        "boring_datamodule",
        "boring_datamodule_no_len",
        "iterable_boring_datamodule",
        "sequence_sampler",
        "boring_model",
        "boring_model_with_datamodule",
        "demo_model",
        "manual_optim_boring_model",
        "wikitext2",
        "lightning_transformer",
        "lightning_lstm",
        "mnist",
    ],
)
def test_the_demos_give_lightnings_values(on_ember, section):
    _same(on_ember[section], REFERENCE[section], section)


def test_the_demos_import_lazily_and_keep_the_digits_demo(tmp_path):
    code = """
import sys
import ember, ember.demos
assert not any(name.startswith("ember.demos.") for name in sys.modules), sorted(sys.modules)
from ember.demos import BoringModel, WikiText2
assert "torchvision" not in sys.modules
from ember.demos import digits
assert BoringModel.__module__ == "ember.demos.boring_classes" and callable(digits.main)
assert sorted(ember.demos.__all__) == sorted([
    "LightningLSTM", "SequenceSampler", "SimpleLSTM", "LightningTransformer", "Transformer", "WikiText2",
    "BoringModel", "BoringDataModule", "DemoModel",
])
ember.install_as_lightning()
from pytorch_lightning.demos.boring_classes import BoringModel as Served
from lightning.pytorch.demos.mnist_datamodule import MNIST, MNISTDataModule
import lightning.pytorch.demos as demos
assert Served is BoringModel and demos is ember.demos and demos.SimpleLSTM is ember.demos.lstm.SimpleLSTM
"""
    _run_on_ember(code, tmp_path)


def test_a_failed_wikitext2_download_names_the_url_and_the_folder(tmp_path, monkeypatch):
    from ember.demos import _download
    from ember.demos.transformer import WIKITEXT2_URL, WikiText2

    def offline(url: str) -> bytes:
        raise URLError("no network")

    monkeypatch.setattr(_download, "_get", offline)
    with pytest.raises(OSError, match="Could not download") as raised:
        WikiText2(tmp_path / "data")
    message = str(raised.value)
    assert WIKITEXT2_URL in message and str(tmp_path / "data") in message
    assert str(tmp_path / "data" / "wikitext-2.txt") in message and "no network" in message
    assert isinstance(raised.value.__cause__, URLError)
    assert not (tmp_path / "data" / "wikitext-2.txt").exists()  # no empty file left to be read next time


def test_a_failed_mnist_download_names_the_urls_and_the_folder(tmp_path, monkeypatch):
    from ember.demos import _download
    from ember.demos.mnist_datamodule import _MNIST

    def offline(url: str) -> bytes:
        raise URLError("no network")

    monkeypatch.setattr(_download, "_get", offline)
    with pytest.raises(OSError) as raised:
        _MNIST(str(tmp_path), train=True, download=True)
    message = str(raised.value)
    folder = str(tmp_path / "MNIST" / "complete")
    assert _MNIST.RESOURCES[0] in message and _MNIST.RESOURCES[1] in message and folder in message
    assert list((tmp_path / "MNIST" / "complete").iterdir()) == []
    with pytest.raises(RuntimeError, match="Dataset not found"):
        _MNIST(str(tmp_path), train=True, download=False)


def test_the_demo_transformer_refuses_an_unbatched_input_with_lightnings_error():
    import torch

    from ember.demos import Transformer

    model = Transformer(vocab_size=50)
    with pytest.raises(ValueError, match="not enough values to unpack"):
        model(torch.arange(8), torch.arange(8))
