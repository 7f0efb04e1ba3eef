"""Crash safety: SIGKILL a training run at random instants; every checkpoint left must load.

One driver subprocess imports torch once, then forks a training child per trial and kills it with
SIGKILL after a seeded random delay spread over the length of a full run (measured first). The
child saves a top-2 checkpoint and ``last.ckpt`` at every optimizer step. Before each batch it
appends the global step to ``progress.log``: every save for that step has then returned, so
``last.ckpt`` must exist and be at least that recent, whatever instant the kill hits.

With ``AsyncCheckpointIO`` (layout ``"async"``) a save returns before its file is written, so the
writer appends each completed write to ``writes.log``: ``last.ckpt`` is never behind the last
completed write of it, and evictions never leave fewer top-k files than were completed (up to
two). The model carries 1 MB of ballast so that writes take longer than steps: the kills land
while writes are in flight.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ember.checkpoint import load_checkpoint
from ember.checkpoint.files import sweep_stale_temporaries

TRIALS = 20
SEED = 1234

DRIVER = textwrap.dedent(
    r'''
    import json, os, random, signal, sys, time
    import torch
    torch.set_num_threads(1)  # no thread pool in the parent: forking stays safe
    import ember
    from ember.callbacks.model_checkpoint import ModelCheckpoint
    from ember.callbacks.callback import Callback
    from tests.helpers.checkpoint_models import QUIET, FakeTrainer, SequenceModel

    base, trials, seed, layout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    STEPS = 50
    rng = random.Random(seed)
    metrics = [rng.random() for _ in range(STEPS + 1)]  # not monotonic: some steps evict, some don't


    if layout == "sharded":
        import warnings
        from ember.checkpoint import sharded as sharded_checkpoint
        from ember.distributed.strategy import SingleDeviceStrategy

        warnings.filterwarnings("ignore")  # DCP notes that it saves without a process group

        class ShardedOnOneDevice(SingleDeviceStrategy):
            """FSDP's sharded folders, written by one process: the same write, swap and eviction path."""

            def save_checkpoint(self, checkpoint, filepath, storage_options=None):
                sharded_checkpoint.save(self, checkpoint, filepath)


    if layout == "async":
        from ember.plugins.io import AsyncCheckpointIO, TorchCheckpointIO

        class LoggedWrites(TorchCheckpointIO):
            def __init__(self, folder):
                self.fd = os.open(os.path.join(folder, "writes.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)

            def save_checkpoint(self, checkpoint, path, storage_options=None):
                super().save_checkpoint(checkpoint, path, storage_options=storage_options)
                os.write(self.fd, b"%s %d\n" % (os.path.basename(path).encode(), checkpoint["global_step"]))

            def remove_checkpoint(self, path):
                super().remove_checkpoint(path)
                os.write(self.fd, b"%s removed\n" % os.path.basename(path).encode())

        class BallastModel(SequenceModel):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.register_buffer("ballast", torch.zeros(1 << 18))  # 1 MB in every checkpoint


    class Progress(Callback):
        def __init__(self, folder):
            self.fd = os.open(os.path.join(folder, "progress.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            # every save triggered at this step's predecessors has returned
            os.write(self.fd, b"%d\n" % trainer.global_step)


    def checkpoint_callback(folder):
        return ModelCheckpoint(dirpath=os.path.join(folder, "ckpts"), filename="{step}", monitor="train_metric", save_top_k=2,
                               every_n_train_steps=1, save_last=True)


    def train(folder, steps=STEPS):
        os.makedirs(folder)
        torch.manual_seed(0)
        if hasattr(ember, "Trainer"):
            model_class = BallastModel if layout == "async" else SequenceModel
            model = model_class(train_metrics=metrics, train_batches=steps)
            strategy = ShardedOnOneDevice() if layout == "sharded" else "auto"
            plugins = [AsyncCheckpointIO(LoggedWrites(folder))] if layout == "async" else None
            trainer = ember.Trainer(max_epochs=1, limit_val_batches=0, strategy=strategy, plugins=plugins,
                                    callbacks=[Progress(folder), checkpoint_callback(folder)], **QUIET)
            trainer.fit(model)
            return
        # Without the trainer, drive the callback the way the loop does.
        trainer = FakeTrainer(folder)
        callback, progress = checkpoint_callback(folder), Progress(folder)
        trainer.callbacks = [callback]
        callback.setup(trainer, None, "fit")
        callback.on_train_start(trainer, None)
        for step in range(steps):
            progress.on_train_batch_start(trainer, None, None, step)
            trainer.advance(steps=1, metrics={"train_metric": metrics[trainer.global_step]})
            callback.on_train_batch_end(trainer, None, None, None, step)


    def run_child(folder):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                train(folder)
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            os._exit(code)
        return pid


    # Warm up in this process (lazy imports, first-call costs), so the children only train and
    # the kill window below covers the saving, not start-up.
    start = time.monotonic()
    train(os.path.join(base, "warmup"), steps=3)
    warmup = time.monotonic() - start
    start = time.monotonic()
    pid = run_child(os.path.join(base, "full"))
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    duration = time.monotonic() - start

    def steps_done(folder):
        try:
            with open(os.path.join(folder, "progress.log")) as log:
                return len(log.read().split())
        except FileNotFoundError:
            return 0

    results = []
    step_time = duration / STEPS
    for trial in range(trials):
        # Kill at a random point of the run, located by progress rather than by the clock, so a
        # busy machine cannot push every kill before the first save: wait for a random step,
        # then for a random part of a step, so the kill also lands inside a save.
        target, jitter = rng.randint(1, STEPS - 2), rng.uniform(0.0, step_time)
        folder = os.path.join(base, f"trial{trial:02d}")
        pid = run_child(folder)
        deadline = time.monotonic() + 60
        while steps_done(folder) < target and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(jitter)
        delay = time.monotonic() - start
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        assert killed or (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0), status
        results.append({"trial": trial, "delay": delay, "killed": killed})
    print(json.dumps({"warmup": warmup, "duration": duration, "results": results}))
    '''
)


def _check_folder(folder: Path, layout: str) -> int:
    """Every ``.ckpt`` (file or sharded folder) loads; ``last.ckpt`` exists once a step's saves
    returned (or, written asynchronously, is as recent as the last completed write of it). Returns
    that step."""
    ckpts = folder / "ckpts"
    names = [name for name in os.listdir(ckpts) if name.endswith(".ckpt")] if ckpts.exists() else []
    for name in names:
        checkpoint = load_checkpoint(ckpts / name)  # raises on a partial file
        assert "state_dict" in checkpoint, name
    progress = (folder / "progress.log").read_text().split() if (folder / "progress.log").exists() else []
    completed = max((int(step) for step in progress), default=0)
    top_k = [name for name in names if name != "last.ckpt"]
    # two kept files, plus at most one new file whose evicted predecessor is not yet deleted
    assert len(top_k) <= 3, top_k
    if layout == "async":
        return _check_async_writes(folder, names, top_k, completed)
    if completed >= 1:
        assert "last.ckpt" in names, f"{folder}: last.ckpt missing after step {completed} was saved"
        assert load_checkpoint(ckpts / "last.ckpt")["global_step"] >= completed
    return completed


def _check_async_writes(folder: Path, names: list[str], top_k: list[str], completed: int) -> int:
    log = (folder / "writes.log").read_text().split("\n") if (folder / "writes.log").exists() else []
    entries = [line.split() for line in log if line.strip()]
    writes = [(name, int(step)) for name, step in entries if step != "removed"]
    last_written = max((step for name, step in writes if name == "last.ckpt"), default=0)
    if last_written:
        assert "last.ckpt" in names, f"{folder}: last.ckpt missing after its write for step {last_written} completed"
        last_step = load_checkpoint(folder / "ckpts" / "last.ckpt")["global_step"]
        assert last_step >= last_written, (
            f"{folder}: last.ckpt at step {last_step}, behind its write for {last_written}"
        )
        # at most two snapshots wait (e.g. last.ckpt of the two steps before): none older than that
        assert last_step >= completed - 2, f"{folder}: last.ckpt at step {last_step} while step {completed} ran"
    # replay the writes and removals: an evicted file goes only once its replacement is on disk, so
    # two top-k files are left after every removal
    alive: set[str] = set()
    for name, step in entries:
        if step == "removed":
            alive.discard(name)
            assert len(alive) >= 2, f"{folder}: {name} removed while only {sorted(alive)} were written"
        elif name != "last.ckpt":
            alive.add(name)
    assert len(top_k) >= min(2, len(alive)), (top_k, sorted(alive))
    return last_written


@pytest.mark.timeout(120)
@pytest.mark.parametrize("layout, trials", [("file", TRIALS), ("sharded", TRIALS // 2), ("async", TRIALS // 2)])
def test_sigkill_at_random_instants_leaves_loadable_checkpoints(tmp_path, layout, trials):
    # "sharded": every checkpoint is a folder of DCP shards and meta.pt (FSDPStrategy's sharded layout)
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), str(repo / "src"), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp_path), str(trials), str(SEED), layout],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    full = _check_folder(tmp_path / "full", layout)
    assert full >= 45  # the uninterrupted run saved at every step
    assert (tmp_path / "full" / "ckpts" / "last.ckpt").is_dir() == (layout == "sharded")
    killed_mid_run = 0
    for result in report["results"]:
        completed = _check_folder(tmp_path / f"trial{result['trial']:02d}", layout)
        killed_mid_run += result["killed"] and completed >= 1
    # the kills are spread over the run: most land after the first save and before the end
    assert killed_mid_run >= trials // 2, report

    # What the kills left in the folders (temp files, half-written shard folders) is what a new run
    # sweeps when it starts; every checkpoint still loads afterwards, and last.ckpt is untouched.
    left_behind = 0
    for result in report["results"]:
        ckpts = tmp_path / f"trial{result['trial']:02d}" / "ckpts"
        if not ckpts.exists():
            continue
        before = set(os.listdir(ckpts))
        temporaries = {name for name in before if name.startswith(".")}
        left_behind += bool(temporaries)
        last = load_checkpoint(ckpts / "last.ckpt")["global_step"] if "last.ckpt" in before else None
        removed = sweep_stale_temporaries(ckpts, older_than=0)  # the killed writers hold no lock
        assert {os.path.basename(path) for path in removed} <= temporaries
        after = set(os.listdir(ckpts))
        assert after == before - {os.path.basename(path) for path in removed}
        assert not [name for name in after if name.startswith(".") and ".old-" not in name], after
        _check_folder(ckpts.parent, layout)
        if last is not None:
            assert load_checkpoint(ckpts / "last.ckpt")["global_step"] == last
    print(f"{left_behind} of {len(report['results'])} killed runs left temporaries behind")


LIVE_WRITER = textwrap.dedent(
    r"""
    import os, sys, time
    import torch
    from ember.checkpoint import atomic_save

    folder = sys.argv[1]
    real_save = torch.save

    def slow_save(obj, file, *args, **kwargs):
        file.write(b"PK the first half")
        file.flush()
        open(os.path.join(folder, "writing"), "w").close()
        while not os.path.exists(os.path.join(folder, "go on")):  # a save that takes its time
            time.sleep(0.01)
        file.seek(0)
        file.truncate()
        real_save(obj, file, *args, **kwargs)

    torch.save = slow_save
    atomic_save({"step": 7}, os.path.join(folder, "last.ckpt"))
    """
)


@pytest.mark.timeout(60)
def test_a_sweep_never_removes_the_temp_file_of_a_live_writer_in_another_process(tmp_path):
    # two trainers writing to one folder: one starts (and sweeps) while the other is mid-save
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo / "src"), os.environ.get("PYTHONPATH", "")]))
    writer = subprocess.Popen([sys.executable, "-c", LIVE_WRITER, str(tmp_path)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 45
        while not (tmp_path / "writing").exists():
            assert writer.poll() is None and time.monotonic() < deadline, writer.stderr.read() if writer.stderr else ""
            time.sleep(0.01)
        (temp,) = [path for path in tmp_path.iterdir() if path.name.startswith(".last.ckpt.tmp-")]
        os.utime(temp, (time.time() - 7200, time.time() - 7200))  # however old it looks
        assert sweep_stale_temporaries(tmp_path, older_than=60) == []
        assert temp.exists()
        (tmp_path / "go on").touch()
        assert writer.wait(timeout=30) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
    assert load_checkpoint(tmp_path / "last.ckpt") == {"step": 7}
    assert not temp.exists()
