"""Real 2-process jobs on CPU (gloo): the user's script runs as Ember, torchrun or torch.multiprocessing
starts it, and the tests read what every rank wrote (see programs/ddp_program.py). Preemption and
the collectives are tested with cheaper forked jobs in test_fork_jobs.py."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

PROGRAM = Path(__file__).parent / "programs" / "ddp_program.py"
TORCHRUN = Path(sys.executable).parent / "torchrun"
pytestmark = [
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available"),
]

_RANK_VARS = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "NODE_RANK",
    "GROUP_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
    "EMBER_FAILURE_DIR",
)


def _program():
    spec = importlib.util.spec_from_file_location("ddp_program", PROGRAM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(
    mode: str, out: Path, *extra: str, torchrun: bool = False, timeout: float = 150, omp: str | None = "1"
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in _RANK_VARS and not k.startswith(("SLURM_", "PL_"))}
    env["PYTHONWARNINGS"] = "ignore"
    env.pop("OMP_NUM_THREADS", None)
    if omp is not None:
        env["OMP_NUM_THREADS"] = omp
    env["TMPDIR"] = str(out / "tmp")  # the job's temporary folder, for `left_in_temp`
    (out / "tmp").mkdir(exist_ok=True)
    command = [sys.executable, str(PROGRAM), mode, str(out), *extra]
    if torchrun:
        command = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", *command[1:]]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=out)


def left_in_temp(out: Path) -> list[str]:
    """What the job left in its temporary folder: the ranks' failure records, torch's traceback files."""
    return sorted(p.name for p in (out / "tmp").iterdir() if p.name.startswith(("ember-", "pytorch-errorfile-")))


class ReferenceRun:
    """The program's model trained in this process, batch 8: what 2 ranks of batch 4 must give (same samples)."""

    def __init__(self, program) -> None:
        self.program = program
        torch.manual_seed(0)
        self.model = program.Model()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05)

    def epoch(self) -> torch.nn.Module:
        for x, y in DataLoader(self.program.dataset(), batch_size=8):
            self.optimizer.zero_grad()
            torch.nn.functional.mse_loss(self.model.layer(x), y).backward()
            self.optimizer.step()
        return self.model


def load(out: Path, name: str, rank: int) -> dict:
    return torch.load(out / f"{name}-rank{rank}.pt", weights_only=False)


def assert_ended_cleanly(out: Path, name: str, since: str, ended: float) -> None:
    """The failed job ended within 30 s of the event recorded in ``out/since``, and left no file in its
    temporary folder and no rank's process running."""
    assert ended - float((out / since).read_text()) < 30
    assert left_in_temp(out) == []
    for rank in (0, 1):
        with pytest.raises(ProcessLookupError):
            os.kill(load(out, name, rank)["pid"], 0)


def _check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@pytest.mark.timeout(200)
def test_fit_validate_test_predict_match_single_process_training(tmp_path):
    proc = run("fit", tmp_path)
    _check(proc)
    ranks = [load(tmp_path, "fit", r) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["global_rank"] for r in ranks] == [0, 1]
    assert [r["global_step"] for r in ranks] == [8, 8]  # 32 samples / (2 ranks x 4) = 4 steps an epoch

    # batch 4 on each of 2 ranks == batch 8 in one process on the same samples
    program = _program()
    single = ReferenceRun(program)
    single.epoch()
    reference = single.epoch()
    for key, value in reference.state_dict().items():
        assert torch.equal(ranks[0]["weights"][key], ranks[1]["weights"][key])
        torch.testing.assert_close(ranks[0]["weights"][key], value, atol=1e-6, rtol=1e-5)

    # sync_dist: the mean over ranks on every rank; without it, each rank keeps its own value
    for rank, record in enumerate(ranks):
        assert record["callback_metrics"]["rank_synced"].item() == 0.5
        assert record["callback_metrics"]["rank_local"].item() == rank
        assert record["validate"][0]["rank_synced"] == 0.5 and record["validate"][0]["rank_local"] == rank
    assert ranks[0]["validate"][0]["val_loss"] == ranks[1]["validate"][0]["val_loss"]
    reference.eval()
    data = program.dataset()
    with torch.no_grad():
        # reduce_fx="sum" with sync_dist: every batch-mean loss of both ranks, added
        batch_losses = [
            torch.nn.functional.mse_loss(reference.layer(x), y)
            for rank in (0, 1)
            for x, y in DataLoader(torch.utils.data.Subset(data, range(rank, 32, 2)), batch_size=4)
        ]
        expected_sum = torch.stack(batch_losses).sum().item()
        predictions = {rank: reference.layer(data.tensors[0][rank::2]) for rank in (0, 1)}
    for rank, record in enumerate(ranks):
        assert record["test"][0]["test_sum"] == pytest.approx(expected_sum, rel=1e-5)
        torch.testing.assert_close(torch.cat(record["predict"]), predictions[rank], atol=1e-5, rtol=1e-5)

    # one checkpoint file for the job (written by rank 0), the same path on both ranks; resumed in DDP
    assert ranks[0]["ckpt_files"] == ranks[1]["ckpt_files"] == ["epoch=1-step=8.ckpt"]
    assert ranks[0]["best"] == ranks[1]["best"]
    assert [r["resumed_step"] for r in ranks] == [12, 12]
    for key in reference.state_dict():
        assert torch.equal(ranks[0]["resumed_weights"][key], ranks[1]["resumed_weights"][key])
        assert not torch.equal(ranks[0]["resumed_weights"][key], ranks[0]["weights"][key])


@pytest.mark.timeout(200)
def test_the_ranks_ddp_starts_share_the_cpus_as_lightnings_do(tmp_path):
    # cpus // ranks intra-op threads in every rank, exported; the rank Ember starts sets its own (before,
    # only the launching rank did, and the other ran torch's default: numbers differed from Lightning's)
    _check(run("threads", tmp_path, omp=None))
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert [load(tmp_path, "threads", rank) for rank in (0, 1)] == [{"threads": share, "omp": str(share)}] * 2


@pytest.mark.timeout(200)
def test_a_job_says_how_its_ranks_start_as_lightnings_does(tmp_path):
    proc = run("startup", tmp_path)
    _check(proc)
    lines = (proc.stdout + proc.stderr).splitlines()
    # the launching process seeds before it knows its rank; the started one says its rank
    assert lines.count("Seed set to 3") == 1 and lines.count("[rank: 1] Seed set to 3") == 1
    assert "Initializing distributed: GLOBAL_RANK: 0, MEMBER: 1/2" in lines
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in lines
    banner = ["-" * 100, "distributed_backend=gloo", "All distributed processes registered. Starting with 2 processes"]
    start = lines.index(banner[1]) - 1
    assert lines[start : start + 4] == [*banner, "-" * 100]  # rank 0 only, once
    assert lines.count(banner[1]) == 1


@pytest.mark.timeout(200)
def test_a_torchrun_job_joins_its_environment(tmp_path):
    _check(run("plain", tmp_path, torchrun=True))
    ranks = [load(tmp_path, "plain", r) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["global_step"] for r in ranks] == [16, 16]
    assert all(torch.equal(ranks[0]["weights"][k], ranks[1]["weights"][k]) for k in ranks[0]["weights"])


@pytest.mark.timeout(200)
def test_a_raising_rank_ends_the_job_promptly_with_one_traceback(tmp_path):
    proc = run("raise", tmp_path)
    ended = time.time()
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    raised = float((tmp_path / "raised_at").read_text())
    assert ended - raised < 30
    assert output.count("ValueError: boom on rank 1") == 1, output[-4000:]
    assert "stopped because rank 1 failed" in output
    assert left_in_temp(tmp_path) == []
    for rank in (0, 1):
        pid = load(tmp_path, "raise", rank)["pid"]
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # no process left behind


@pytest.mark.timeout(200)
def test_ranks_that_fail_by_themselves_each_show_their_traceback(tmp_path):
    # rank 0's error is its own, not a lost peer: it is shown, and rank 1, which failed first, is let
    # finish printing its traceback before the job is ended (it used to be stopped before it could)
    proc = run("raise_both", tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert output.count("ValueError: boom on rank 1") == 1, output[-4000:]
    assert output.count("ValueError: boom on rank 0") == 1, output[-4000:]
    assert "stopped because rank 1 failed" not in output
    assert left_in_temp(tmp_path) == []


@pytest.mark.timeout(200)
@pytest.mark.parametrize(
    ("mode", "error"),
    [("raise_both_rank0_first", "boom on rank {}"), ("raise_after_fit", "evaluation failed on rank {}")],
    ids=["in_fit", "after_fit"],
)
def test_a_rank_about_to_fail_when_rank_0_fails_first_still_shows_its_traceback(tmp_path, mode, error):
    # rank 0's error (in `fit`, or uncaught after it) ends the job, but the other ranks get a moment to end
    # by themselves first: rank 1, failing half a second later with an error of its own, prints its last
    # line and its traceback
    proc = run(mode, tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert output.count(f"ValueError: {error.format(0)}") == 1, output[-4000:]
    assert "rank 1 is about to fail too" in output, output[-4000:]
    assert output.count(f"ValueError: {error.format(1)}") == 1, output[-4000:]
    assert left_in_temp(tmp_path) == []


@pytest.mark.timeout(200)
def test_a_failure_every_rank_catches_leaves_the_ranks_running_for_the_next_fit(tmp_path):
    # every rank raises in on_train_start and the program catches it: no rank is stopped (rank 0 stopped
    # rank 1, so the next fit failed in its first barrier), and a second fit trains on both ranks, as in
    # Lightning; the failure records are the call's, so the third fit's failure is rank 1's
    proc = run("catch_and_fit_again", tmp_path)
    output = proc.stdout + proc.stderr
    ranks = [load(tmp_path, "catch_and_fit_again", rank) for rank in (0, 1)]
    assert [r["caught"] for r in ranks] == ["bad config on rank 0", "bad config on rank 1"], output[-4000:]
    assert [r["global_step"] for r in ranks] == [4, 4]  # 16 samples / (2 ranks x 2)
    for key, value in ranks[0]["weights"].items():
        assert torch.equal(value, ranks[1]["weights"][key])
    assert proc.returncode != 0
    assert output.count("ValueError: late failure on rank 1") == 1, output[-4000:]
    assert "[rank 0] stopped because rank 1 failed (its traceback is shown above)." in output, output[-4000:]
    assert left_in_temp(tmp_path) == []


@pytest.mark.timeout(200)
def test_a_rank_0_error_ends_the_job_promptly_when_the_others_wait_for_it(tmp_path):
    # rank 1 waits in a collective for rank 0, which failed: it is stopped after the grace period
    proc = run("raise_rank0", tmp_path)
    assert_ended_cleanly(tmp_path, "raise_rank0", "raised_at", time.time())
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert output.count("ValueError: boom on rank 0") == 1, output[-4000:]
    assert output.count("Traceback") == 1, output[-4000:]  # rank 1 had nothing to say


@pytest.mark.timeout(200)
def test_a_rank_killed_by_sigkill_is_named_and_ends_the_job_promptly(tmp_path):
    # what the out-of-memory killer does: no exception, no traceback in that rank
    proc = run("sigkill", tmp_path)
    assert_ended_cleanly(tmp_path, "sigkill", "killed_at", time.time())
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "[rank 0] stopped because rank 1 was killed by signal SIGKILL (9)" in output, output[-4000:]
    assert "the other ranks were stopped because of it" in output
    assert "Traceback" not in output  # gloo's "Connection reset by peer" is not what the user reads


@pytest.mark.timeout(200)
def test_a_killed_rank_ends_the_job_even_when_rank_0_never_hears_of_it(tmp_path):
    # rank 0 is busy outside any collective, so no error reaches it: its launcher notices the dead
    # child, gives the run a grace period, and ends the job rather than leave it hanging
    proc = run("stuck", tmp_path)
    ended = time.time()
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert ended - float((tmp_path / "killed_at").read_text()) < 60
    assert "[rank 0] rank 1 was killed by signal SIGKILL (9); ending the job." in output, output[-4000:]
    assert left_in_temp(tmp_path) == []


@pytest.mark.timeout(200)
def test_an_unguarded_script_that_catches_its_errors_still_trains_with_ddp_spawn(tmp_path):
    # each spawned process imports the script again and runs its `fit` there, which fails and is caught;
    # that launch used to leave the process without the job's MASTER_PORT, and the ranks never met
    env = {k: v for k, v in os.environ.items() if k not in _RANK_VARS}
    env["PYTHONWARNINGS"] = "ignore"
    program = PROGRAM.parent / "unguarded_spawn_program.py"
    proc = subprocess.run(
        [sys.executable, str(program), str(tmp_path)], capture_output=True, text=True, timeout=90, env=env, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    lines = proc.stdout.splitlines()
    assert lines.count("fit returned at step 4") == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # 32 / (2 x 4)
    assert sum(line.startswith("fit raised RuntimeError") for line in lines) == 2  # the processes' own `fit`
    # in Lightning's words, which name the missing guard (Python's speak of its bootstrapping phase)
    assert proc.stdout.count("requires that your script guards the main\nfunction with an `if __name__") == 2


@pytest.mark.timeout(200)
def test_ddp_spawn_returns_weights_metrics_and_results_to_the_main_process(tmp_path):
    proc = run("spawn", tmp_path)
    _check(proc)
    assert left_in_temp(tmp_path) == []
    record = load(tmp_path, "spawn", 0)
    assert record["global_step"] == 4 and record["state"] == "finished"
    # the spawned ranks start from this process's RNG states and deterministic flag, as forked ones would
    for rank in (0, 1):
        start = load(tmp_path, "spawn-start", rank)
        assert start["deterministic"] is True
        assert torch.equal(start["draws"][0], record["parent_draws"][0])
        assert start["draws"][1:] == record["parent_draws"][1:]
    assert any(not torch.equal(record["before"][k], v) for k, v in record["weights"].items())
    # the weights of one epoch in one process on the same samples (batch 4 on each of 2 ranks == batch 8):
    # each rank trained its own copy, not the one torch put in shared memory to send it
    program = _program()
    single = ReferenceRun(program)
    for key, value in single.epoch().state_dict().items():
        torch.testing.assert_close(record["weights"][key], value, atol=1e-6, rtol=1e-5)
    # and an epoch more in forked processes, whose weights the spawn left in shared memory
    for key, value in single.epoch().state_dict().items():
        torch.testing.assert_close(record["weights_after_forked_fit"][key], value, atol=1e-6, rtol=1e-5)
    assert record["callback_metrics"]["rank_synced"].item() == 0.5
    assert record["best"].endswith("epoch=0-step=4.ckpt") and os.path.isfile(record["best"])
    # Lightning leaves these as they were before the call (docs/compat.md)
    assert record["logged_metrics"]["rank_synced"].item() == 0.5
    assert record["batches_counted"] == 4  # a callback's own state, from rank 0
    # known where the data was set up; here a clear error (Lightning: a bare AssertionError; Ember said no
    # training data was passed or defined, and asked the module's `train_dataloader` for it)
    assert "this process set none up: the last call ran in the processes its strategy started" in str(
        record["estimated_stepping_batches"]
    )
    assert record["validate"][0]["rank_synced"] == 0.5 and record["validate"][0]["rank_local"] == 0.0
    # predict in forked workers returns nothing (as in Lightning); rank 0's writer saved the even samples
    assert record["predict"] is None
    predictions = torch.load(tmp_path / "predictions-rank0.pt", weights_only=True)
    program = _program()
    model = program.Model()
    model.load_state_dict(record["weights"])
    with torch.no_grad():
        expected = model.layer(program.dataset().tensors[0][0::2])
    torch.testing.assert_close(torch.cat(predictions), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.timeout(200)
def test_an_srun_job_joins_its_environment(tmp_path):
    from ember.distributed.environments import find_free_network_port

    env = {k: v for k, v in os.environ.items() if k not in _RANK_VARS and not k.startswith(("SLURM_", "PL_"))}
    env.update(
        PYTHONWARNINGS="ignore",
        OMP_NUM_THREADS="1",
        SLURM_NTASKS="2",
        SLURM_NNODES="1",
        SLURM_NODEID="0",
        SLURM_JOB_ID="4242",
        SLURM_JOB_NAME="train",
        SLURM_NODELIST="127.0.0.1",
        MASTER_PORT=str(find_free_network_port()),
    )
    # what `srun --ntasks=2` does: start both tasks, each with its own SLURM_PROCID / SLURM_LOCALID
    procs = [
        subprocess.Popen(
            [sys.executable, str(PROGRAM), "plain", str(tmp_path)],
            cwd=tmp_path,
            env={**env, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in (0, 1)
    ]
    outputs = [p.communicate(timeout=150)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    ranks = [load(tmp_path, "plain", r) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["global_step"] for r in ranks] == [16, 16]


@pytest.mark.timeout(200)
def test_the_ranks_of_a_hydra_app_run_in_rank_0s_run_folder(tmp_path):
    # as Lightning's launcher: from the original folder, told rank 0's run folder, writing no second config
    pytest.importorskip("hydra")
    shutil.copy(Path(__file__).parent / "programs" / "hydra_ddp_program.py", tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in _RANK_VARS and not k.startswith(("SLURM_", "PL_"))}
    env["PYTHONWARNINGS"] = "ignore"
    proc = subprocess.run(
        [sys.executable, "hydra_ddp_program.py"], capture_output=True, text=True, timeout=150, env=env, cwd=tmp_path
    )
    _check(proc)
    written = sorted(tmp_path.glob("outputs/*/*/rank*.json"))
    assert [path.name for path in written] == ["rank0.json", "rank1.json"], sorted(map(str, tmp_path.rglob("*")))
    ranks = [json.loads(path.read_text()) for path in written]
    assert ranks[0]["cwd"] == ranks[1]["cwd"] == str(written[0].parent)
    assert ranks[0]["original"] == ranks[1]["original"] == str(tmp_path)
    assert [rank["global_step"] for rank in ranks] == [2, 2]
    assert [path.name for path in written[0].parent.glob(".hydra/*.yaml")] != []  # rank 0's, kept
