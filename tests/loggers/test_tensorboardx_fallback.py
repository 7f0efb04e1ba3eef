"""TensorBoardLogger without ``tensorboard``: ``tensorboardX`` writes the event files, as in Lightning.

The program runs in a fresh interpreter where importing ``tensorboard`` fails (a ``sys.modules``
block), so nothing of it can have been imported before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("tensorboardX")

PROGRAM = textwrap.dedent(
    """
    import json, sys, warnings
    sys.modules["tensorboard"] = None  # `import tensorboard` (and its submodules) now fails
    import ember as pl
    from ember.loggers import TensorBoardLogger
    from tests.helpers.callback_models import QUIET, make_regressor, train_loader

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger = TensorBoardLogger(sys.argv[1], name="tbx", log_graph=True)
    model = make_regressor(pl)()
    model.save_hyperparameters({"lr": 0.1})
    trainer = pl.Trainer(**{**QUIET, "logger": logger}, max_epochs=2, log_every_n_steps=1)
    trainer.fit(model, train_loader(n=8))
    print(json.dumps({
        "writer": type(logger.experiment).__module__,
        "warned": [str(w.message) for w in caught],
        "log_dir": logger.log_dir,
        "default_logger": type(pl.Trainer(default_root_dir=sys.argv[1]).logger).__name__,
        "tensorboard_loaded": any(m == "tensorboard" or m.startswith("tensorboard.") for m in sys.modules
                                  if sys.modules[m] is not None),
    }))
    """
)


def _scalars(log_dir: str) -> dict[str, list[tuple[int, float]]]:
    from tensorboardX.proto.event_pb2 import Event

    found: dict[str, list[tuple[int, float]]] = {}
    for name in sorted(os.listdir(log_dir)):
        if not name.startswith("events.out.tfevents"):
            continue
        data = Path(log_dir, name).read_bytes()
        offset = 0
        while offset < len(data):
            length = int.from_bytes(data[offset : offset + 8], "little")
            event = Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def test_tensorboardx_writes_scalars_and_hparams_without_tensorboard(tmp_path):
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(tmp_path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["writer"].startswith("tensorboardX")
    assert not result["tensorboard_loaded"]
    assert result["default_logger"] == "TensorBoardLogger"  # tensorboardX alone is enough, as in Lightning
    assert any("log_graph=True" in w and "`tensorboard` is not available" in w for w in result["warned"])
    scalars = _scalars(result["log_dir"])
    assert [step for step, _ in scalars["train_loss"]] == [0, 1, 2, 3]
    assert scalars["hp_metric"] == [(0, -1.0)]
    assert (Path(result["log_dir"]) / "hparams.yaml").read_text() == "lr: 0.1\n"
