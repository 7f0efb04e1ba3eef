"""Instruction counts of the ``tiny`` programs under valgrind's callgrind: the noise-free side of ``make bench``.

On a shared machine the wall-clock ratios of ``make bench`` move by more than the framework's overhead
(the spread line of ``bench/results.md``). A count of executed instructions does not move: callgrind
simulates the CPU, so the same program gives the same count from run to run. It is not time (an
instruction that misses the cache costs more), but it shows what the framework adds, and where.

Every program of ``tiny`` and ``tiny_defaults`` (``bench/workloads.py``: the hand-written loop and
Ember, one torch thread) runs twice, for a short and a longer epoch. The difference of the two counts
over the extra steps is the count of one step; what is left at the short epoch is the fixed count.
The progress bar redraws by the clock (at most ten times a second), and callgrind runs a program about
fifty times slower than the CPU does, so its time-based redraws are turned off for the count
(``TQDMProgressBar.min_refresh_interval``): a real ``tiny_defaults`` run redraws about 30 times.

Example::

    python bench/instructions.py             # needs valgrind; about 15 minutes on 2 cores
    python bench/instructions.py --steps 100,300
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROGRAMS = [("raw", "lean"), ("ember", "lean"), ("raw", "defaults"), ("ember", "defaults")]


def run_child(impl: str, mode: str, steps: int) -> None:
    """The measured program: one epoch of ``steps`` batches of ``tiny`` (lean) or ``tiny_defaults``."""
    sys.path.insert(0, str(HERE))
    import workloads

    workloads.one_thread_process()
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (the progress bar's output, for the whole process)
    if impl == "ember":
        import ember.callbacks.tqdm_progress as tqdm_progress

        tqdm_progress.TQDMProgressBar.min_refresh_interval = float("inf")
    workloads.tiny_epoch(impl, mode == "defaults", steps, val_batches=4)


def count(impl: str, mode: str, steps: int) -> int:
    """Instructions the whole process executes (callgrind's ``Collected``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    # one thread everywhere: numpy's OpenBLAS threads would otherwise spin while they wait, and their
    # count would change with how valgrind happens to schedule them
    one = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    # one hash seed: str hashes order sets and place dict keys, which moves counts by tens of thousands
    env.update(one, PYTHONPATH=str(HERE.parent / "src"), PYTHONWARNINGS="ignore", PYTHONHASHSEED="0")
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__]
    command += ["--child", impl, mode, str(steps)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{impl} {mode} {steps} steps failed under valgrind:\n{done.stderr[-3000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="200,600", help="the short and the long epoch, in batches")
    parser.add_argument("--jobs", type=int, default=2, help="valgrind processes at once")
    parser.add_argument("--child", nargs=3, metavar=("IMPL", "MODE", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child[0], args.child[1], int(args.child[2]))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("bench/instructions.py needs valgrind (e.g. `apt-get install valgrind`).")
    short, long = (int(n) for n in args.steps.split(","))
    jobs = [(impl, mode, n) for impl, mode in PROGRAMS for n in (short, long)]
    with ThreadPoolExecutor(args.jobs) as pool:
        counts = dict(zip(jobs, pool.map(lambda job: count(*job), jobs)))
    print(f"instructions, one torch thread; one step = (count at {long} - count at {short}) / {long - short}")
    print("| program | raw loop, per step | Ember, per step | Ember's extra per step | Ember's extra fixed |")
    print("|---|---|---|---|---|")
    for mode in ("lean", "defaults"):
        per_step = {
            impl: (counts[impl, mode, long] - counts[impl, mode, short]) / (long - short) for impl in ("raw", "ember")
        }
        fixed = (
            counts["ember", mode, short] - counts["raw", mode, short] - short * (per_step["ember"] - per_step["raw"])
        )
        extra = per_step["ember"] - per_step["raw"]
        name = "tiny" if mode == "lean" else "tiny_defaults (bar redraws off)"
        print(
            f"| {name} | {per_step['raw'] / 1e6:.3f} M | {per_step['ember'] / 1e6:.3f} M"
            f" | {extra / 1e3:+.0f} k ({extra / per_step['raw']:+.1%}) | {fixed / 1e6:+.0f} M |"
        )


if __name__ == "__main__":
    main()
