"""Exact resume: an interrupted run resumed in a fresh process ends with bit-identical weights."""

import os
import subprocess
import sys

import pytest
import torch

PROGRAM = os.path.join(os.path.dirname(__file__), "..", "helpers", "resume_program.py")
MAX_STEPS = 14  # 2 epochs of 6 batches, and 2 batches into the third


def _run(out, *args):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    subprocess.run(
        [sys.executable, PROGRAM, str(out), "--max-steps", str(MAX_STEPS), *args],
        check=True,
        env=env,
        timeout=240,
        capture_output=True,
    )


def _weights(out):
    return torch.load(os.path.join(out, "final.pt"), weights_only=True)


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_and_at_epoch_boundary_gives_identical_weights(tmp_path, workers):
    full = tmp_path / "full"
    _run(full, "--workers", str(workers))
    reference = _weights(full)

    resumes = {
        "mid-epoch": full / "steps" / "step=9.ckpt",  # 3 batches into the second epoch
        "epoch-boundary": full / "epochs" / "epoch=0.ckpt",  # written at the end of the first epoch
    }
    for name, checkpoint in resumes.items():
        assert checkpoint.exists(), sorted(os.listdir(checkpoint.parent))
        resumed = tmp_path / name
        # another seed: everything random must come from the checkpoint, not from seeding again
        _run(resumed, "--workers", str(workers), "--resume", str(checkpoint), "--seed", "123")
        weights = _weights(resumed)
        for key, value in reference.items():
            assert torch.equal(value, weights[key]), f"{name}: {key} differs after resuming"


def test_resume_without_rng_state_is_not_exact(tmp_path):
    """Guards the test above: dropping Ember's resume state must change the result."""
    full = tmp_path / "full"
    _run(full)
    checkpoint = torch.load(full / "steps" / "step=9.ckpt", weights_only=True)
    del checkpoint["ember"]
    stripped = tmp_path / "stripped.ckpt"
    torch.save(checkpoint, stripped)
    resumed = tmp_path / "resumed"
    _run(resumed, "--resume", str(stripped), "--seed", "123")
    reference, weights = _weights(full), _weights(resumed)
    assert any(not torch.equal(v, weights[k]) for k, v in reference.items())
