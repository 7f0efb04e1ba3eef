"""``BitsandbytesPrecision`` with the real bitsandbytes (``bitsandbytes_cases.py``, run in a child
process so that its optimizer classes stay out of this one), and its error without the package."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from ember.plugins import BitsandbytesPrecision

CASES = Path(__file__).with_name("bitsandbytes_cases.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes is a dev dependency on Linux"
)
@pytest.mark.timeout(240)
def test_quantized_training_with_bitsandbytes():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider", str(CASES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "6 passed" in proc.stdout and "skipped" not in proc.stdout


def test_without_the_package_the_error_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # `import bitsandbytes` fails
    with pytest.raises(ModuleNotFoundError, match=r"needs the `bitsandbytes` package.*pip install bitsandbytes"):
        BitsandbytesPrecision("nf4")
