"""The benchmark harness on a few steps: the programs do the same math and the runner writes its table.

No timing is asserted: these only prove that `make bench` works and compares like with like.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"ember_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


workloads = _load("workloads")
runner = _load("run")


@pytest.fixture(autouse=True)
def one_thread():
    # as run.py does for its workers: intra-op threads only add noise on a small shared CPU
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("case", ["tiny", "tiny_defaults"])
def test_raw_loop_and_ember_train_the_same_weights(case):
    raw = workloads.run_case(case, "raw", quick=True)
    ember = workloads.run_case(case, "ember", quick=True)
    assert raw["steps"] == ember["steps"] == 20  # 10 batches x 2 epochs
    assert ember["checksum"] == pytest.approx(raw["checksum"], rel=1e-6, abs=1e-6)
    assert raw["seconds"] > 0 and ember["seconds"] > 0


def test_digits_checkpointing_and_early_stopping_match_the_raw_loop():
    pytest.importorskip("sklearn")
    raw = workloads.run_case("digits", "raw", quick=True)
    ember = workloads.run_case("digits", "ember", quick=True)
    assert raw["steps"] == ember["steps"] > 0
    assert ember["checksum"] == pytest.approx(raw["checksum"], rel=1e-6, abs=1e-6)


def test_async_ckpt_times_synchronous_and_asynchronous_saves_of_the_same_training():
    raw = workloads.run_case("async_ckpt", "raw", quick=True)
    ember = workloads.run_case("async_ckpt", "ember", quick=True)
    assert raw["steps"] == ember["steps"] == 27  # 3 warm-up steps, then 12 with synchronous and 12 with async saves
    assert ember["checksum"] == pytest.approx(raw["checksum"], rel=1e-6, abs=1e-6)
    assert len(raw["stalls"]["sync"]) == 6 and len(ember["stalls"]["sync"]) == len(ember["stalls"]["async"]) == 3
    assert ember["seconds"] == sorted(ember["stalls"]["async"])[1]  # the median asynchronous stall
    note = runner.async_ckpt_note({"raw": raw, "ember": ember})
    assert "raw loop: synchronous save" in note and "ember: synchronous save" in note and "asynchronous" in note


def test_first_step_is_measured_from_the_given_start():
    import time

    t0 = time.time()
    out = workloads.run_case("first_step", "ember", quick=True, t0=t0)
    assert 0 < out["seconds"] < time.time() - t0


def test_run_py_prints_and_writes_the_table(tmp_path):
    out = tmp_path / "results.md"
    # a previous report: its CPU part is replaced, the figures from a GPU machine are kept
    out.write_text("# Benchmark results\n\n| tiny | 1 µs/step | OLD |\n\n## CUDA: NVIDIA H200\n\n| tiny | GPU ROW |\n")
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "run.py"),
            "--cases",
            "tiny,import",
            "--repeats",
            "1",
            "--import-repeats",
            "1",
            "--quick",
            "--no-peers",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| case | raw loop | Ember | Ember vs raw | goal | met |" in proc.stdout
    text = out.read_text()
    assert text.startswith("# Benchmark results")
    assert "| tiny | " in text and "µs/step" in text
    assert "| import | " in text and " MB" in text and "(worst +" in text
    assert "`tiny`: same final weights (steps: raw 20, ember 20)." in text
    assert "OLD" not in text and text.endswith("\n## CUDA: NVIDIA H200\n\n| tiny | GPU ROW |\n")


def test_table_has_lightning_columns_and_goal_verdicts():
    rows = [
        {
            "case": "tiny",
            "medians": {"raw": 1.0, "ember": 1.02, "lightning": 2.5},
            "steps": {"raw": 1000, "ember": 1000, "lightning": 1000},
            "same_math": True,
        },
        {"case": "digits", "medians": {"raw": 1.0, "ember": 1.2, "lightning": 1.7}, "same_math": False},
        {
            "case": "import",
            "medians": {"raw": (1.0, 300.0), "ember": (1.05, 310.0), "lightning": (3.0, 450.0)},
            "added": {"ember": [(0.03, 2.0), (0.05, 10.0), (0.04, 3.0)], "lightning": [(2.0, 150.0)]},
        },
        {"case": "ddp2", "skipped": "bench/ddp2.py is not there yet"},
        {"case": "first_step", "medians": {"raw": 1.0, "ember": 1.3, "lightning": 3.0}},
    ]
    table = runner.render_table(rows, ["raw", "ember", "lightning"])
    lines = table.splitlines()
    assert lines[0] == "| case | raw loop | Ember | Lightning | Ember vs raw | Lightning vs raw | goal | met |"
    assert lines[2] == "| tiny | 1,000 µs/step | 1,020 µs/step | 2,500 µs/step | 1.020× | 2.500× | ≤ 1.05× | yes |"
    assert lines[3].endswith("| 1.200× | 1.700× | ≤ 1.05× | no (NOT the same math: see notes) |")
    # the import verdict holds the worst run to the goal, not the median
    assert "| +0.040 s, +3 MB (worst +0.050 s, +10 MB) | +2.000 s, +150 MB (worst +2.000 s, +150 MB) |" in lines[4]
    assert lines[4].endswith("| ≤ +0.1 s, ≤ +15 MB (every run) | yes |")
    rows[2]["added"]["ember"].append((0.12, 2.0))  # one slow run is enough to miss the goal
    assert runner.render_table(rows, ["raw", "ember", "lightning"]).splitlines()[4].endswith("| no |")
    assert "skipped: bench/ddp2.py is not there yet" in lines[5]
    assert lines[6].endswith("| +0.300 s | +2.000 s | ≤ +0.1 s | no |")


def test_ddp2_case_uses_run_from_the_file_when_present(tmp_path):
    assert "skipped" in runner.run_ddp2_case(1, tmp_path / "ddp2.py")
    (tmp_path / "ddp2.py").write_text(
        "def run(repeats):\n    return {'raw': [1.0] * repeats, 'ember': 1.03, 'note': 'gloo'}\n"
    )
    row = runner.run_ddp2_case(3, tmp_path / "ddp2.py")
    assert row["medians"] == {"raw": 1.0, "ember": 1.03}
    assert row["note"] == "gloo"


def _fake_job(tmp_path, body: str) -> str:
    """An executable standing in for a Python interpreter: called as ``<it> ddp2.py <impl> <out>``."""
    script = tmp_path / "job"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return str(script)


def test_ddp2_keeps_a_result_written_before_an_abort_at_exit(tmp_path):
    ddp2 = _load("ddp2")
    python = _fake_job(
        tmp_path,
        'echo \'{"seconds": 2.0, "steps": 1000, "checksum": 1.0}\' > "$3"\n'
        'echo "terminate called without an active exception" >&2\nexit 134\n',
    )
    result, aborted = ddp2._one("lightning", python)
    assert result["seconds"] == 2.0 and aborted


def test_ddp2_reports_a_job_that_failed_before_its_result(tmp_path):
    ddp2 = _load("ddp2")
    python = _fake_job(tmp_path, 'echo "terminate called without an active exception" >&2\nexit 134\n')
    with pytest.raises(RuntimeError, match="lightning ddp2 job failed"):
        ddp2._one("lightning", python)
    python = _fake_job(tmp_path, 'echo \'{"seconds": 2.0}\' > "$3"\necho "Traceback: boom" >&2\nexit 1\n')
    with pytest.raises(RuntimeError, match="boom"):
        ddp2._one("lightning", python)


def test_unknown_case_is_refused(capsys):
    with pytest.raises(SystemExit):
        runner.parse_args(["--cases", "tiny,huge"])
    assert "unknown case(s) huge" in capsys.readouterr().err


def _python(code: str) -> str:
    """What a fresh interpreter running ``code`` prints (it must succeed)."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_ember_loads_nothing_heavy():
    # what the bench's `import` case measures: Ember adds its own modules to `import torch`, nothing else heavy
    code = (
        "import sys, ember\n"
        "heavy = ('torch._dynamo', 'scipy', 'pandas', 'rich', 'jsonargparse', 'tensorboard', 'matplotlib',"
        " 'torchmetrics', 'mlflow', 'wandb', 'sklearn', 'omegaconf')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    stdout = _python(code)
    assert stdout.strip() == ""


def test_import_ember_reads_no_package_metadata_and_the_version_flags_are_decided_when_read():
    # reading an installed package's metadata searches the whole path; Lightning's version flags
    # (`_TORCH_GREATER_EQUAL_2_6`, ...) are for the libraries that read them, so `import ember` does not pay for them
    code = (
        "import importlib.metadata as metadata, torch\n"
        "read = []\n"
        "version = metadata.version\n"
        "metadata.version = lambda name: read.append(name) or version(name)\n"
        "import ember\n"
        "print(read)\n"
        "from ember.utilities.imports import _TORCH_GREATER_EQUAL_2_6, _TORCH_GREATER_EQUAL_2_11\n"
        "print(_TORCH_GREATER_EQUAL_2_6, _TORCH_GREATER_EQUAL_2_11 == (torch.__version__ >= '2.11'), read)\n"
    )
    stdout = _python(code)
    assert stdout.splitlines() == ["[]", "True True ['torch', 'torch']"]


def test_a_default_fit_on_local_folders_loads_neither_fsspec_nor_the_precision_plugins(tmp_path):
    # fsspec serves remote paths; local checkpoints, hparams.yaml and logs go through the standard library,
    # and a run in full precision needs none of the mixed, half, double, FSDP, DeepSpeed or bitsandbytes
    # plugins: a default run does not pay for their imports (what `tiny_defaults` measures)
    code = (
        "import sys, torch, ember\n"
        "from torch.utils.data import DataLoader, TensorDataset\n"
        "class M(ember.LightningModule):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.layer = torch.nn.Linear(4, 1)\n"
        "    def training_step(self, batch, i):\n"
        "        loss = self.layer(batch[0]).pow(2).mean(); self.log('loss', loss); return loss\n"
        "    def validation_step(self, batch, i): self.log('val_loss', self.layer(batch[0]).pow(2).mean())\n"
        "    def configure_optimizers(self): return torch.optim.SGD(self.parameters(), lr=0.1)\n"
        "data = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)\n"
        f"trainer = ember.Trainer(max_epochs=2, default_root_dir={str(tmp_path)!r}, enable_progress_bar=False)\n"
        "trainer.fit(M(), data, data)\n"
        "assert trainer.checkpoint_callback.best_model_path\n"
        "print(sorted(m for m in sys.modules if m == 'fsspec' or m.startswith('ember.precision.')))\n"
    )
    stdout = _python(code)
    assert stdout.strip().splitlines()[-1] == "['ember.precision.precision']"
    assert list(tmp_path.rglob("hparams.yaml")) and list(tmp_path.rglob("*.ckpt"))


def test_a_failing_case_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("ember failed on case 'tiny' (exit 1)")

    monkeypatch.setattr(runner, "run_training_case", broken)
    monkeypatch.setattr(
        runner, "run_ddp2_case", lambda repeats: {"case": "ddp2", "skipped": "bench/ddp2.py is not there yet"}
    )
    out = tmp_path / "results.md"
    rows = runner.main(["--cases", "tiny,ddp2", "--no-peers", "--out", str(out)])
    assert rows[0] == {"case": "tiny", "skipped": "failed: RuntimeError: ember failed on case 'tiny' (exit 1)"}
    assert rows[1]["case"] == "ddp2"
    assert "| tiny | - | - | - | ≤ 1.05× | skipped: failed: RuntimeError" in out.read_text()


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_gpu_check_writes_one_report_and_fails_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("on a GPU machine this is the real check (`make gpu-check`), not a smoke test")
    env = {**os.environ, "OUT": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(BENCH / "gpu_check.py"), "--test-timeout", "240"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = (tmp_path / "gpu-report.md").read_text()
    assert done.returncode == 1  # nothing GPU-specific ran: not a pass
    assert "no CUDA device visible" in report
    # every gpu-marked test is listed, skipped here
    assert "test_cuda_fit_has_no_sync_between_log_points` | skipped" in report
    assert "test_mixed_precision_trains_on_cuda[bf16-mixed" in report


def test_instruction_counts_run_the_tiny_programs_and_report_per_step_and_fixed_costs(monkeypatch, capsys):
    """bench/instructions.py: its measured programs run (here without valgrind), and the table splits
    the counts into a per-step and a fixed part."""
    instructions = _load("instructions")
    # Ember's program with the defaults (the raw loop's is workloads.raw_tiny, run by the tests above)
    done = subprocess.run(
        [sys.executable, str(BENCH / "instructions.py"), "--child", "ember", "defaults", "3"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(BENCH.parent / "src")},
    )
    assert done.returncode == 0, done.stderr

    # made-up counts: raw 1 M a step, Ember 1.1 M (lean) or 1.2 M (defaults); Ember's fixed extra 50 M
    def fake_count(impl, mode, steps):
        per_step = {"raw": 10**6, "ember": 11 * 10**5 if mode == "lean" else 12 * 10**5}[impl]
        return 9 * 10**9 + per_step * steps + (5 * 10**7 if impl == "ember" else 0)

    monkeypatch.setattr(instructions, "count", fake_count)
    monkeypatch.setattr(instructions.shutil, "which", lambda name: "/usr/bin/valgrind")
    instructions.main(["--steps", "10,30", "--jobs", "1"])
    rows = capsys.readouterr().out.splitlines()
    assert "| tiny | 1.000 M | 1.100 M | +100 k (+10.0%) | +50 M |" in rows
    assert any(row.startswith("| tiny_defaults") and row.endswith("| +200 k (+20.0%) | +50 M |") for row in rows)


def test_step_time_clocks_every_step_of_both_sides_and_reports_medians(capsys):
    """bench/step_time.py: both programs' steps are clocked (warm-up left out), then compared by median."""
    step_time = _load("step_time")
    sys.path.insert(0, str(BENCH))
    try:
        steps = step_time.epoch_steps("ember", True, 12)
        assert len(steps) == 12 - step_time.WARMUP - 1 and all(0 < s < 5 for s in steps)
        lines = step_time.main(["--steps", "12", "--epochs", "1"])
    finally:
        sys.path.remove(str(BENCH))
    assert lines[2] == "| program | raw loop | Ember | Ember's extra | ratio |"
    assert [line.split(" | ")[0] for line in lines[4:]] == ["| tiny", "| tiny_defaults"]
    assert all(line.endswith("× |") for line in lines[4:])
    assert "| tiny_defaults |" in capsys.readouterr().out


def test_calls_and_bytecodes_per_step_are_counted_on_both_sides_and_the_training_step_adds_little():
    """bench/calls.py: the steady-state steps' Python calls and bytecodes are counted for the raw loop and Ember.
    Ember's step adds a few layers to the hand-written loop (the module's own call and `self.log`, the closure and
    the optimizer step, the hook dispatch; with the defaults the bar's batch hook and the log and validation
    checks): 16 and 21 calls, 494 and 645 bytecodes (of the raw loop's 7277) with this torch. A change that puts
    more layers or more work on the hot path fails here."""
    calls = _load("calls")
    sys.path.insert(0, str(BENCH))
    try:
        lines = calls.main(["--steps", "10", "--diff"])
    finally:
        sys.path.remove(str(BENCH))
    rows = {line.split(" | ")[0][2:]: line.rstrip(" |").split(" | ")[1:] for line in lines if line.startswith("| tiny")}
    extra_calls = {name: float(cells[2]) for name, cells in rows.items()}
    extra_codes = {name: float(cells[5].split()[0]) for name, cells in rows.items()}
    assert 0 < extra_calls["tiny"] <= 18, lines
    assert extra_calls["tiny"] < extra_calls["tiny_defaults"] <= 23, lines
    assert 0 < extra_codes["tiny"] <= 500, lines
    assert extra_codes["tiny"] < extra_codes["tiny_defaults"] <= 660, lines
    # which functions: Ember's layers and the module's, each once or twice a step
    sections: dict[str, dict[str, float]] = {}
    for line in lines:
        if line.endswith("per step that differ (Ember - raw loop)"):
            current = sections.setdefault(line.split(":")[0] + ":" + line.split()[1], {})
        elif line.startswith("  "):
            current[line.split()[1]] = float(line.split()[0])
    differ = sections["tiny:calls"]
    assert differ["step.py:_closure"] == differ["logging.py:log"] == 1.0
    # the raw loop's `x.to(device)` and `y.to(device)`, which Ember skips on the CPU
    assert differ["C:Tensor.to"] == -2.0
    assert max(differ.values()) <= 2.0, differ
    # the bytecodes name the same functions, weighed by what they do
    assert sections["tiny:bytecodes"]["step.py:_closure"] > 10
    assert sections["tiny_defaults:bytecodes"]["loop.py:_run_batch_steps"] > 10


def test_report_carries_the_per_step_medians_when_measured():
    rows = [{"case": "tiny", "medians": {"raw": 1.0, "ember": 1.02}, "steps": {"raw": 10, "ember": 10}}]
    context = {
        k: "x" for k in ("when", "commit", "machine", "device", "torch", "lightning", "load_before", "load_after")
    }
    args = runner.parse_args(["--cases", "tiny,tiny_defaults"])
    assert "step_time.py" not in runner.render_report(rows, ["raw", "ember"], args, {**context, "argv": []})
    table = "| program | raw loop | Ember | Ember's extra | ratio |\n|---|---|---|---|---|\n| tiny | 1 µs | 2 µs | +1 µs | 2.000× |"
    report = runner.render_report(rows, ["raw", "ember"], args, {**context, "argv": [], "step_time": table})
    assert "`bench/step_time.py`" in report and report.rstrip().endswith("| tiny | 1 µs | 2 µs | +1 µs | 2.000× |")
    calls = (
        "| program | calls: raw loop | Ember | Ember's extra | bytecodes: raw loop | Ember | Ember's extra |\n"
        "|---|---|---|---|---|---|---|\n| tiny | 796.0 | 812.0 | +16.0 | 7276 | 7762 | +486 (+6.7%) |"
    )
    report = runner.render_report(
        rows, ["raw", "ember"], args, {**context, "argv": [], "step_time": table, "calls": calls}
    )
    assert report.rstrip().endswith(calls) and "| tiny | 1 µs | 2 µs |" in report


def test_report_pairs_each_run_with_the_raw_loops_run_of_the_same_round():
    """A machine that slows down between rounds moves both runs of a round: the paired ratios see through it."""
    samples = {"raw": [1.0, 2.0, 1.1], "ember": [1.05, 2.02, 1.21]}  # the second round ran on a slow machine
    rows = [
        {"case": "tiny", "samples": samples, "medians": {"raw": 1.1, "ember": 1.21}, "steps": {"raw": 9, "ember": 9}},
        {"case": "first_step", "samples": samples, "medians": {"raw": 1.1, "ember": 1.21}},
    ]
    context = {
        k: "x" for k in ("when", "commit", "machine", "device", "torch", "lightning", "load_before", "load_after")
    }
    args = runner.parse_args(["--cases", "tiny,first_step"])
    report = runner.render_report(rows, ["raw", "ember"], args, {**context, "argv": []})
    paired = [line for line in report.splitlines() if line.startswith("- paired:")]
    # 1.05, 1.01, 1.10: median 1.050, where the medians of the two sides say 1.100; first_step as differences
    assert len(paired) == 1, paired
    assert paired[0].endswith("tiny/ember 1.050× (1.010-1.100); first_step/ember +0.050 s (+0.020 to +0.110)."), paired
