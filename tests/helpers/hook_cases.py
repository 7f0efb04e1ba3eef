"""Hook-order cases that run unchanged on Lightning and on Ember.

``run_hook_case(pl, name, tmp_path)`` runs one entry of ``HOOK_CASES`` with a ``RecordingModule``
and a ``RecordingCallback`` (``hook_recording.py``) and returns the calls as JSON-shaped lists
``[owner, hook, args]``. An exception from the trainer is recorded as a last entry
``["Trainer", "raised", {"type", "message"}]``.

Example::

    import ember as pl
    calls = run_hook_case(pl, "fit", tmp_path)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:  # imported as tests.helpers.hook_cases, or by path with tests/helpers on sys.path
    from .hook_recording import as_lists, make_recording_classes
except ImportError:
    from hook_recording import as_lists, make_recording_classes

QUIET = {
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "logger": False,
    "enable_checkpointing": False,
}
FIT_ARGS = {"max_epochs": 2, "limit_train_batches": 2, "limit_val_batches": 1, "num_sanity_val_steps": 1, **QUIET}
EVAL_ARGS = {"limit_val_batches": 1, "limit_test_batches": 1, "limit_predict_batches": 1, **QUIET}

HOOK_CASES: dict[str, dict] = {
    "fit": {"trainer_args": FIT_ARGS, "method": "fit"},
    "validate": {"trainer_args": EVAL_ARGS, "method": "validate"},
    "test": {"trainer_args": EVAL_ARGS, "method": "test"},
    "predict": {"trainer_args": EVAL_ARGS, "method": "predict"},
    "fit_resumed": {
        "trainer_args": FIT_ARGS,
        "method": "fit",
        "trainer_args_first_run": {**FIT_ARGS, "max_epochs": 1},
        "notes": "ckpt_path = trainer.save_checkpoint(path) after a fit with "
        "trainer_args_first_run (RecordingCallback([]) attached); only the resumed "
        "fit is recorded",
    },
    "fit_with_model_checkpoint": {
        "trainer_args": {**FIT_ARGS, "enable_checkpointing": True},
        "method": "fit",
        "callbacks": "[RecordingCallback(calls), ModelCheckpoint(dirpath=tmp_path / 'mc', "
        "monitor='val_loss', save_top_k=1, save_last=True)]",
    },
    "fit_accumulate_2": {
        "trainer_args": {
            "max_epochs": 1,
            "limit_train_batches": 3,
            "limit_val_batches": 1,
            "num_sanity_val_steps": 0,
            "accumulate_grad_batches": 2,
            **QUIET,
        },
        "method": "fit",
    },
    "fit_exception": {
        "trainer_args": FIT_ARGS,
        "method": "fit",
        "model_args": {"fail_at_batch": 1},
        "notes": "training_step raises RuntimeError('planned failure') at batch 1",
    },
}


def record_calls(
    pl: Any,
    trainer_args: dict,
    method: str,
    *,
    ckpt_path: str | None = None,
    extra_callbacks: tuple = (),
    model_args: dict | None = None,
) -> list:
    """Run ``trainer.<method>`` on a RecordingModule with a RecordingCallback; return the calls."""
    calls: list = []
    callback_cls, module_cls = make_recording_classes(pl)
    trainer = pl.Trainer(callbacks=[callback_cls(calls), *extra_callbacks], **trainer_args)
    kwargs = {"ckpt_path": ckpt_path} if ckpt_path else {}
    try:
        getattr(trainer, method)(module_cls(calls, **(model_args or {})), **kwargs)
    except RuntimeError as error:
        calls.append(("Trainer", "raised", {"type": type(error).__name__, "message": str(error)}))
    return as_lists(calls)


def run_hook_case(pl: Any, name: str, tmp_path: Path) -> list:
    """Run ``HOOK_CASES[name]`` on framework ``pl``; files go under ``tmp_path``."""
    case = HOOK_CASES[name]
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    kwargs: dict = {"model_args": case.get("model_args")}
    if name == "fit_resumed":
        callback_cls, module_cls = make_recording_classes(pl)
        trainer = pl.Trainer(callbacks=[callback_cls([])], **case["trainer_args_first_run"])
        trainer.fit(module_cls([]))
        kwargs["ckpt_path"] = str(tmp_path / "epoch1.ckpt")
        trainer.save_checkpoint(kwargs["ckpt_path"])
    if name == "fit_with_model_checkpoint":
        kwargs["extra_callbacks"] = (
            pl.callbacks.ModelCheckpoint(
                dirpath=str(tmp_path / "mc"), monitor="val_loss", save_top_k=1, save_last=True
            ),
        )
    return record_calls(pl, case["trainer_args"], case["method"], **kwargs)
