"""Checkpoint files: atomic writes, safe loads, clear errors."""

import argparse
import enum
import errno
import json
import os
import pickle
import shutil
import textwrap
import warnings

import pytest
import torch

from ember.checkpoint import (
    CheckpointLoadError,
    atomic_link,
    atomic_save,
    get_filesystem,
    is_local,
    is_sharded_checkpoint,
    load_checkpoint,
    remove_checkpoint,
    safe_load,
    unsafe_hparam_values,
)
from ember.checkpoint import files as checkpoint_files


def _leftovers(folder):
    return [name for name in os.listdir(folder) if ".tmp-" in name]


def test_atomic_save_round_trip_and_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "dir" / "model.ckpt"
    atomic_save({"epoch": 3, "w": torch.arange(4.0)}, path)
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3
    assert torch.equal(loaded["w"], torch.arange(4.0))
    assert _leftovers(path.parent) == []
    # the file has the permissions a plain open() would give, not mkstemp's 0600
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)


def test_atomic_save_overwrites_in_place(tmp_path):
    path = tmp_path / "a.ckpt"
    atomic_save({"v": 1}, path)
    atomic_save({"v": 2}, str(path))
    assert load_checkpoint(path)["v"] == 2
    assert _leftovers(tmp_path) == []


def test_failing_save_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "a.ckpt"
    atomic_save({"v": 1}, path)
    real_save = torch.save

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")  # some bytes reach the temp file first
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"v": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(path)["v"] == 1
    assert _leftovers(tmp_path) == []


def test_a_full_disk_is_an_enospc_error_naming_the_file_the_size_and_the_free_space(tmp_path, monkeypatch):
    path = tmp_path / "a.ckpt"
    atomic_save({"v": 1}, path)

    def full_disk(obj, f, *args, **kwargs):
        # what torch's zip writer does when the Python file it writes to runs out of space
        f.write(b"PK\x03\x04 the first records")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None

    monkeypatch.setattr(torch, "save", full_disk)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage._replace(free=3 * 1024 + 512))
    with pytest.raises(OSError) as info:
        atomic_save({"v": 2, "w": torch.zeros(1024)}, path)
    monkeypatch.undo()
    error = info.value
    assert error.errno == errno.ENOSPC and error.filename == str(path)
    assert f"save the checkpoint {path}: it needs about 4.0 KiB, and {tmp_path} has 3.5 KiB free" in str(error)
    assert load_checkpoint(path)["v"] == 1  # the previous file is intact
    assert _leftovers(tmp_path) == []


@pytest.mark.timeout(120)
def test_a_real_full_disk_during_fit_names_the_checkpoint_and_keeps_the_previous_one(tmp_path):
    from tests.helpers.small_disks import run_on_small_disk

    script = textwrap.dedent(
        """
        import errno, json, os, torch
        from torch import nn
        import ember
        from ember.callbacks import ModelCheckpoint
        from ember.checkpoint import atomic_save, load_checkpoint
        from tests.helpers.core_models import CoreModel, loader, quiet_trainer

        report = {}
        atomic_save({"v": 1}, "small.ckpt")
        try:
            atomic_save({"v": 2, "w": torch.zeros(256, 1024)}, "small.ckpt")  # 1 MiB on a 512 KiB disk
        except OSError as error:
            report["save"] = [error.errno, str(error)]
        report["kept"] = load_checkpoint("small.ckpt")["v"]

        class Big(CoreModel):
            def __init__(self):
                super().__init__()
                self.extra = nn.Parameter(torch.zeros(256, 1024))

        checkpoint = ModelCheckpoint(dirpath="ckpts")
        trainer = quiet_trainer(max_epochs=1, enable_checkpointing=True, callbacks=[checkpoint])
        try:
            trainer.fit(Big(), loader(8))
        except OSError as error:
            report["fit"] = [error.errno, str(error)]
        report["files"] = sorted(os.listdir(".")) + sorted(os.listdir("ckpts"))
        print(json.dumps(report))
        """
    )
    proc = run_on_small_disk(script, size_kib=512, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    code, message = report["save"]
    assert code == errno.ENOSPC
    assert "save the checkpoint small.ckpt: it needs about 1.0 MiB" in message and "KiB free" in message
    assert report["kept"] == 1
    code, message = report["fit"]
    assert code == errno.ENOSPC and "epoch=0-step=2.ckpt: it needs about 1.0 MiB" in message
    assert report["files"] == ["ckpts", "small.ckpt"]  # no temp file left behind


def test_interrupt_during_save_cleans_up(tmp_path, monkeypatch):
    def interrupted(obj, f, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"v": 2}, tmp_path / "a.ckpt")
    assert os.listdir(tmp_path) == []


def test_memory_filesystem_round_trip():
    path = "memory://ember-tests/run/model.ckpt"
    atomic_save({"w": torch.ones(2)}, path)
    fs = get_filesystem(path)
    assert fs.exists(path)
    assert not any(".tmp-" in p for p in fs.ls("memory://ember-tests/run", detail=False))
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(2))
    remove_checkpoint(path)
    assert not fs.exists(path)
    remove_checkpoint(path)  # already gone: not an error


def test_memory_filesystem_failed_save_leaves_nothing(monkeypatch):
    path = "memory://ember-tests/fail/model.ckpt"
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"w": 1}, path)
    fs = get_filesystem(path)
    assert not fs.exists(path)
    assert not fs.exists("memory://ember-tests/fail") or fs.ls("memory://ember-tests/fail") == []


def test_is_local():
    assert is_local("/a/b.ckpt")
    assert is_local("rel/b.ckpt")
    assert is_local("file:///a/b.ckpt")
    assert not is_local("memory://a/b.ckpt")
    assert not is_local("s3://bucket/b.ckpt")


def test_missing_file_error_names_the_file(tmp_path):
    path = tmp_path / "nope.ckpt"
    with pytest.raises(FileNotFoundError, match="Checkpoint file not found: .*nope.ckpt") as info:
        load_checkpoint(path)
    assert info.value.errno == errno.ENOENT  # as the operating system's error (Lightning's) has it
    with pytest.raises(FileNotFoundError, match="Checkpoint file not found: memory://x/nope.ckpt"):
        load_checkpoint("memory://x/nope.ckpt")


@pytest.mark.parametrize("weights_only", [True, False])
def test_truncated_file_error_names_the_file(tmp_path, weights_only):
    path = tmp_path / "cut.ckpt"
    atomic_save({"w": torch.zeros(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointLoadError, match="cut.ckpt is not a readable checkpoint \\(truncated or corrupt\\)"):
        load_checkpoint(path, weights_only=weights_only)
    path.write_bytes(b"")
    with pytest.raises(CheckpointLoadError, match="cut.ckpt"):
        load_checkpoint(path)
    assert issubclass(CheckpointLoadError, RuntimeError)


@pytest.mark.parametrize(
    "content",
    [
        b"a",  # the weights-only unpickler: IndexError: pop from empty list
        b"hello world\nthis is not a checkpoint\n",  # KeyError
        b"model: resnet\nlr: 0.1\n",  # an UnpicklingError that reads like a refusal
        b"\x80\x04\x95garbage",  # a pickle header, then nothing that loads
        b"\x00" * 64,
    ],
)
@pytest.mark.parametrize("weights_only", [True, False])
def test_a_file_that_is_not_a_checkpoint_gets_the_same_clear_error(tmp_path, content, weights_only):
    path = tmp_path / "notes.ckpt"
    path.write_bytes(content)
    with pytest.raises(
        CheckpointLoadError, match=r"notes\.ckpt is not a readable checkpoint \(not a checkpoint file"
    ) as info:
        load_checkpoint(path, weights_only=weights_only)
    assert "weights_only=False" not in str(info.value)  # never suggest unsafe loading for junk
    with open(path, "rb") as file:  # an open file too
        with pytest.raises(CheckpointLoadError, match="not a checkpoint file"):
            load_checkpoint(file)


def test_a_refused_class_keeps_its_own_error_in_either_file_format(tmp_path):
    for new_format in (True, False):
        path = tmp_path / f"ns-{new_format}.ckpt"
        torch.save({"args": argparse.Namespace(lr=0.1)}, path, _use_new_zipfile_serialization=new_format)
        with pytest.raises(pickle.UnpicklingError, match=r"needs `argparse.Namespace`, which safe loading") as info:
            load_checkpoint(path)
        # torch's (and so Lightning's) message opens so; a filter on those words still matches
        assert str(info.value).startswith("Weights only load failed: checkpoint ")


class _Malicious:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Malicious(marker)}, path)
    with pytest.raises(pickle.UnpicklingError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "weights_only=False" in message
    assert "trust" in message
    assert "evil.ckpt" in message
    assert "system" in message  # names the blocked global
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)
    assert not marker.exists()


def test_blocked_class_error_names_it_and_weights_only_false_loads(tmp_path):
    path = tmp_path / "ns.ckpt"
    torch.save({"hyper_parameters": {"args": argparse.Namespace(lr=0.1)}}, path)
    with pytest.raises(pickle.UnpicklingError, match="argparse.Namespace"):
        load_checkpoint(path)
    assert load_checkpoint(path, weights_only=False)["hyper_parameters"]["args"].lr == 0.1


def test_default_map_location_moves_unavailable_devices_to_cpu():
    storage = torch.zeros(1).untyped_storage()
    if not torch.cuda.is_available():
        assert safe_load.default_map_location(storage, "cuda:0").device.type == "cpu"
    assert safe_load.default_map_location(storage, "cpu") is None


def test_map_location_is_passed_through(tmp_path):
    path = tmp_path / "m.ckpt"
    atomic_save({"w": torch.ones(1)}, path)
    assert load_checkpoint(path, map_location="cpu")["w"].device.type == "cpu"


@pytest.mark.parametrize(
    ("map_location", "error", "start"),
    [
        (5, TypeError, "`map_location=5` (int) is not a device: pass a device ('cpu', 'cuda', 'cuda:1'"),
        ("gpu9", safe_load.MapLocationError, "`map_location='gpu9'` names no device: "),
        ({"cpu": "gpu9"}, safe_load.MapLocationError, "`map_location={'cpu': 'gpu9'}` names no device: "),
    ],
)
def test_a_map_location_that_is_no_device_is_named_not_blamed_on_the_file(tmp_path, map_location, error, start):
    # (these were "not a readable checkpoint (truncated or corrupt)": the file is fine)
    path = tmp_path / "m.ckpt"
    atomic_save({"w": torch.ones(1)}, path)
    with pytest.raises(error) as raised:
        load_checkpoint(path, map_location=map_location)
    assert str(raised.value).startswith(start)
    assert not isinstance(raised.value, CheckpointLoadError)


def test_an_error_of_a_map_location_function_is_its_own(tmp_path):
    path = tmp_path / "m.ckpt"
    atomic_save({"w": torch.ones(1)}, path)

    def to_the_gpu(storage, location):
        raise ValueError("no GPU here")

    with pytest.raises(
        safe_load.MapLocationError, match=r"^The `map_location` function failed on tensors saved on 'cpu': no GPU here$"
    ):
        load_checkpoint(path, map_location=to_the_gpu)
    assert load_checkpoint(path, map_location=lambda storage, location: storage)["w"].tolist() == [1.0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_tensors_sent_to_a_device_this_machine_lacks_get_torchs_words_not_a_damaged_file(tmp_path):
    path = tmp_path / "m.ckpt"
    atomic_save({"w": torch.ones(1)}, path)
    with pytest.raises(RuntimeError, match="Attempting to deserialize object on a CUDA device") as raised:
        load_checkpoint(path, map_location="cuda:0")
    assert not isinstance(raised.value, CheckpointLoadError)


@pytest.mark.parametrize("path", [None, 5])
def test_a_checkpoint_path_that_is_neither_a_path_nor_a_file_is_named(path):
    # (it was "Checkpoint <file object> is not a readable checkpoint (truncated or corrupt)")
    with pytest.raises(TypeError, match=rf"^A checkpoint is read from a path or an open binary file, not {path} "):
        load_checkpoint(path)


def test_load_from_open_file(tmp_path):
    path = tmp_path / "f.ckpt"
    atomic_save({"a": 1}, path)
    with open(path, "rb") as file:
        assert load_checkpoint(file) == {"a": 1}


def test_atomic_link_is_relative_and_replaces(tmp_path):
    target = tmp_path / "epoch=0.ckpt"
    atomic_save({"v": 0}, target)
    link = tmp_path / "last.ckpt"
    atomic_save({"v": "old"}, link)
    atomic_link(target, link)
    assert link.is_symlink()
    assert os.readlink(link) == "epoch=0.ckpt"
    assert load_checkpoint(link)["v"] == 0
    assert _leftovers(tmp_path) == []


def test_atomic_link_falls_back_to_copy(tmp_path, monkeypatch):
    target = tmp_path / "epoch=0.ckpt"
    atomic_save({"v": 0}, target)

    def no_symlinks(*args, **kwargs):
        raise OSError("symlinks not permitted")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    atomic_link(target, tmp_path / "last.ckpt")
    assert not (tmp_path / "last.ckpt").is_symlink()
    assert load_checkpoint(tmp_path / "last.ckpt")["v"] == 0


def test_remove_checkpoint_ignores_missing(tmp_path):
    path = tmp_path / "x.ckpt"
    atomic_save({}, path)
    remove_checkpoint(path)
    assert not path.exists()
    remove_checkpoint(path)


class _Color(enum.Enum):
    RED = 1


def test_unsafe_hparam_values():
    hparams = {
        "lr": 0.1,
        "layers": [1, 2, (3, 4)],
        "name": "x",
        "flag": None,
        "t": torch.ones(2),
        "dtype": torch.float16,
        "device": torch.device("cpu"),
        "nested": {"ok": {1, 2}, "bad": argparse.Namespace(a=1)},
        "color": _Color.RED,
        "obj": object(),
        "in_list": [1, object()],
    }
    assert unsafe_hparam_values(hparams) == [
        "nested.bad (Namespace)",
        "color (_Color)",
        "obj (object)",
        "in_list[1] (object)",
    ]
    assert unsafe_hparam_values({"a": 1, "b": {"c": [1.0, "s"]}}) == []


def test_unsafe_hparam_values_agrees_with_torch_load(tmp_path):
    """Whatever the helper calls safe does load with weights_only=True, and vice versa."""
    values = [
        1,
        2.5,
        True,
        "s",
        None,
        b"x",
        [1],
        (1,),
        {"a": 1},
        {1},
        torch.ones(1),
        torch.float32,
        torch.device("cpu"),
        torch.Size([2]),
        frozenset([1]),
        argparse.Namespace(a=1),
        _Color.RED,
    ]
    for value in values:
        path = tmp_path / "h.ckpt"
        torch.save({"v": value}, path)
        try:
            torch.load(path, weights_only=True)
            loads = True
        except pickle.UnpicklingError:
            loads = False
        assert (unsafe_hparam_values({"v": value}) == []) == loads, value


def test_cut_pickle_inside_valid_zip_is_corrupt_not_unsafe(tmp_path):
    import io
    import zipfile

    buffer = io.BytesIO()
    torch.save({"a": list(range(100)), "t": torch.ones(3)}, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    path = tmp_path / "cut.ckpt"
    with zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            target.writestr(info, data[: len(data) // 2] if info.filename.endswith("data.pkl") else data)
    with pytest.raises(CheckpointLoadError, match="cut.ckpt is not a readable checkpoint"):
        load_checkpoint(path)


# ---- sharded checkpoint folders (FSDPStrategy(state_dict_type="sharded")) --------------------------
def _save_sharded(path, value, **extra):
    """A sharded checkpoint written in one process (no process group): the layout of a 1-rank FSDP save."""
    from ember.checkpoint import sharded as sharded_checkpoint
    from ember.distributed.strategy import Strategy

    weights = {"layer.weight": torch.full((2, 3), float(value)), "layer.bias": torch.arange(3.0), **extra}
    checkpoint = {"epoch": value, "global_step": value, "state_dict": weights}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DCP notes that it saves without a process group
        sharded_checkpoint.save(Strategy(), checkpoint, path)


def _hidden_leftovers(folder):
    return [name for name in os.listdir(folder) if name.startswith(".")]


def test_sharded_folder_layout_round_trip_and_atomic_replace(tmp_path):
    path = tmp_path / "epoch=0-step=8.ckpt"
    _save_sharded(path, 1)
    assert sorted(os.listdir(path)) == [".metadata", "__0_0.distcp", "meta.pt"]
    assert is_sharded_checkpoint(path)
    assert torch.load(path / "meta.pt", weights_only=True) == {"epoch": 1, "global_step": 1}
    _save_sharded(path, 2)  # over the existing folder: swapped in, the old one deleted
    loaded = load_checkpoint(path)
    assert loaded["global_step"] == 2 and "optimizer_states" not in loaded
    assert torch.equal(loaded["state_dict"]["layer.weight"], torch.full((2, 3), 2.0))
    assert torch.equal(loaded["state_dict"]["layer.bias"], torch.arange(3.0))
    assert _hidden_leftovers(tmp_path) == []


def test_sharded_folder_replaces_files_and_links_and_a_file_replaces_it(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_save({"v": "file"}, path)
    _save_sharded(path, 1)  # a file at the path (e.g. an earlier full checkpoint) gives way
    assert load_checkpoint(path)["epoch"] == 1
    monkeypatch.setattr(checkpoint_files, "_exchange", lambda first, second: False)  # no renameat2
    _save_sharded(path, 2)
    assert load_checkpoint(path)["epoch"] == 2
    atomic_save({"v": "file"}, path)  # and a full checkpoint replaces a sharded folder
    assert load_checkpoint(path) == {"v": "file"}
    assert _hidden_leftovers(tmp_path) == []


def test_failing_sharded_save_keeps_the_previous_folder_and_leaves_no_temp(tmp_path, monkeypatch):
    from torch.distributed.checkpoint import FileSystemWriter

    path = tmp_path / "last.ckpt"
    _save_sharded(path, 1)

    def disk_full(self, *args, **kwargs):
        raise OSError("disk full")  # the shards are written, the index is not

    monkeypatch.setattr(FileSystemWriter, "finish", disk_full)
    with pytest.raises(OSError, match="disk full"):
        _save_sharded(path, 2)
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == ["last.ckpt"]


def test_a_folder_that_is_not_a_checkpoint_is_never_replaced(tmp_path):
    folder = tmp_path / "data.ckpt"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(IsADirectoryError, match="not a checkpoint"):
        atomic_save({"v": 1}, folder)
    with pytest.raises(IsADirectoryError, match="not a checkpoint"):
        _save_sharded(folder, 1)
    assert sorted(os.listdir(folder)) == ["keep.txt"]
    assert sorted(os.listdir(tmp_path)) == ["data.ckpt"]


def test_remove_and_link_a_sharded_folder(tmp_path, monkeypatch):
    target = tmp_path / "epoch=0.ckpt"
    _save_sharded(target, 3)
    atomic_link(target, tmp_path / "last.ckpt")
    assert (tmp_path / "last.ckpt").is_symlink() and load_checkpoint(tmp_path / "last.ckpt")["epoch"] == 3
    monkeypatch.setattr(os, "symlink", lambda *args, **kwargs: (_ for _ in ()).throw(OSError("no symlinks")))
    atomic_link(target, tmp_path / "copy.ckpt")  # copied, folder and all
    assert not (tmp_path / "copy.ckpt").is_symlink() and load_checkpoint(tmp_path / "copy.ckpt")["epoch"] == 3
    remove_checkpoint(tmp_path / "last.ckpt")  # the link only
    assert load_checkpoint(target)["epoch"] == 3
    remove_checkpoint(target)
    remove_checkpoint(tmp_path / "copy.ckpt")
    remove_checkpoint(target)  # already gone: not an error
    assert os.listdir(tmp_path) == []


def test_sharded_load_errors_name_the_folder(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(IsADirectoryError, match=r"plain is a folder but not a sharded checkpoint.*meta\.pt"):
        load_checkpoint(plain)
    damaged = tmp_path / "damaged.ckpt"
    _save_sharded(damaged, 1)
    os.remove(damaged / "__0_0.distcp")
    with pytest.raises(CheckpointLoadError, match=r"damaged\.ckpt cannot be read.*missing or damaged"):
        load_checkpoint(damaged)


def test_sharded_folder_whose_pickles_run_code_does_not_run_them(tmp_path):
    marker = tmp_path / "pwned"
    entry = tmp_path / "entry.ckpt"
    _save_sharded(entry, 1, evil=_Malicious(marker))  # a non-tensor entry, pickled inside a shard
    with pytest.raises(pickle.UnpicklingError, match=r"entry\.ckpt: The entry `model\.evil`.*weights_only=False"):
        load_checkpoint(entry)
    index = tmp_path / "index.ckpt"
    _save_sharded(index, 1)
    (index / ".metadata").write_bytes(pickle.dumps(_Malicious(marker)))
    with pytest.raises(pickle.UnpicklingError, match=r"index\.ckpt needs `(posix|nt)\.system`.*weights_only=False"):
        load_checkpoint(index)
    assert not marker.exists()


def test_a_tilde_in_a_loggers_save_dir_puts_the_checkpoints_in_the_home_folder(tmp_path, monkeypatch):
    """fsspec, which writes Lightning's files, expands ``~``: the checkpoints go beside ``metrics.csv``, not into a
    folder named ``~`` in the working directory."""
    from tests.helpers.core_models import CoreModel, loader

    import ember

    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    trainer = ember.Trainer(
        max_epochs=1,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=ember.loggers.CSVLogger("~/logs"),
    )
    trainer.fit(CoreModel(), loader(n=4), loader(n=4))  # its validation logs `val_loss`
    folder = home / "logs" / "lightning_logs" / "version_0"
    assert (folder / "metrics.csv").is_file()
    assert [p.name for p in (folder / "checkpoints").iterdir()] == ["epoch=0-step=1.ckpt"]
    assert not (work / "~").exists()
