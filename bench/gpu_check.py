"""``make gpu-check``: everything that needs a GPU, in one command, into one report.

1. The card, the driver and the versions.
2. Every test marked ``gpu`` (mixed precision bf16/fp16 with the GradScaler, the no-sync test under
   ``torch.cuda.set_sync_debug_mode("error")``, NCCL, FSDP on CUDA; the two-GPU DDP and FSDP jobs
   run when two devices are present).
3. The ``tiny`` and ``digits`` benchmark rows on CUDA: a hand-written loop, Ember, and Lightning
   when the interpreter has it.

It uses the interpreter it runs under (a GPU machine's own PyTorch) and Ember from this checkout;
it installs nothing. The report goes to ``$OUT/gpu-report.md`` when ``OUT`` is set, else to
``bench/gpu-report.md``; the benchmark table also to ``bench/results-cuda.md``. Budget: under 8
minutes on one GPU.

Example::

    make gpu-check                       # or: python bench/gpu_check.py --repeats 3
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    start = time.perf_counter()
    try:
        done = subprocess.run(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
        )
        code, output = done.returncode, done.stdout
    except subprocess.TimeoutExpired as expired:
        code, output = (
            124,
            (expired.stdout or b"").decode(errors="replace") if isinstance(expired.stdout, bytes) else "",
        )
        output += f"\n[stopped after {timeout:.0f} s]"
    return code, output, time.perf_counter() - start


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def device_section() -> list[str]:
    import torch

    lines = ["## Device", ""]
    lines.append(f"- Python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    if not torch.cuda.is_available():
        lines.append("- **no CUDA device visible**: the GPU tests skip and the CUDA bench does not run")
        return lines
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        lines.append(
            f"- cuda:{index}: {props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs"
        )
    code, output, _ = _run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], 30)
    if code == 0:
        lines.append(f"- nvidia-smi: {output.strip()}")
    lines.append(f"- NCCL available: {torch.distributed.is_nccl_available()}")
    return lines


def test_section(timeout: float) -> tuple[list[str], bool]:
    report = REPO / "bench" / ".gpu-tests.xml"
    # Only the files that hold a ``gpu`` mark: collecting the whole suite would import the optional
    # libraries other tests use, which a GPU machine's own environment may lack.
    files = sorted(
        str(path.relative_to(REPO)) for path in (REPO / "tests").rglob("test_*.py") if "mark.gpu" in path.read_text()
    )
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rA", f"--junitxml={report}", *files]
    code, output, seconds = _run(cmd, timeout, _env())
    lines = ["## Tests marked `gpu`", "", f"`{' '.join(cmd[1:])}`: exit {code}, {seconds:.0f} s", ""]
    if report.exists():
        lines += ["| test | result | seconds |", "|---|---|---|"]
        for case in ElementTree.parse(report).getroot().iter("testcase"):
            result = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    result = f"**{child.tag}**: {(child.get('message') or '')[:160]}"
                elif child.tag == "skipped":
                    result = f"skipped: {(child.get('message') or '')[:120]}"
            name = f"{case.get('classname', '')}::{case.get('name', '')}".split("tests.", 1)[-1]
            lines.append(f"| `{name}` | {result} | {float(case.get('time', 0)):.1f} |")
        report.unlink()
    lines += ["", "<details><summary>pytest output (end)</summary>", "", "```", output[-6000:], "```", "</details>"]
    return lines, code == 0


def bench_section(repeats: int, timeout: float) -> tuple[list[str], bool]:
    table = HERE / "results-cuda.md"
    cmd = [sys.executable, str(HERE / "run.py"), "--cases", "tiny,digits", "--accelerator", "cuda"]
    cmd += ["--repeats", str(repeats), "--out", str(table), "--threads", "0"]
    if importlib.util.find_spec("pytorch_lightning") is not None:
        cmd += ["--peers-python", sys.executable]  # Lightning beside Ember, in the same interpreter
    else:
        cmd.append("--no-peers")
    code, output, seconds = _run(cmd, timeout, _env())
    lines = ["## Benchmark on CUDA", "", f"`{' '.join(cmd[1:])}`: exit {code}, {seconds:.0f} s", ""]
    if code == 0 and table.exists():
        lines += table.read_text().splitlines()[2:]
    else:
        lines += ["```", output[-4000:], "```"]
    return lines, code == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per implementation in the CUDA bench")
    parser.add_argument("--test-timeout", type=float, default=300, help="seconds for the gpu-marked tests")
    parser.add_argument("--bench-timeout", type=float, default=300, help="seconds for the CUDA bench")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    lines = [
        "# GPU check",
        "",
        f"`python bench/gpu_check.py`, {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        *device_section(),
        "",
    ]
    import torch

    ok = True
    test_lines, tests_ok = test_section(args.test_timeout)
    lines += test_lines + [""]
    ok &= tests_ok
    if torch.cuda.is_available():
        bench_lines, bench_ok = bench_section(args.repeats, args.bench_timeout)
        lines += bench_lines + [""]
        ok &= bench_ok
    if not torch.cuda.is_available():
        ok = False  # nothing GPU-specific ran: not a pass
    lines.append(
        f"Total: {time.perf_counter() - started:.0f} s; {'all passed' if ok else 'FAILURES or no GPU: see above'}."
    )
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else HERE
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nreport written to {out / 'gpu-report.md'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
