"""``liverec train --nproc N``: the same command under torchrun on this machine.

The launcher's output passes through (rank 0 prints the usual lines); everything it writes to
stderr is also kept in ``<run dir>/torchrun.log``. When a worker dies, torchrun's multi-line
failure report is summarised as one error (which rank, exit code or signal, where the log and
the last checkpoint are) instead of being echoed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from liverec.errors import LiverecError

# torchrun's agent logs this line when a worker fails; its failure report follows
_FAILED = re.compile(r"failed \(exitcode: (-?\d+)\) local_rank: (\d+)")


class WorkerFailed(LiverecError):
    """A data-parallel worker died or raised; the run directory keeps its last checkpoint."""


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m liverec ARGV``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", str(nproc), "-m", "liverec", *argv]


def strip_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N`` (the workers must not relaunch)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def failure_summary(log_text: str) -> str:
    """One line from torchrun's failure report: the root-cause rank and how it ended."""
    root = log_text.split("Root Cause", 1)[-1]
    rank = re.search(r"rank\s*:\s*(\d+)", root)
    code = re.search(r"exitcode\s*:\s*(-?\d+)[^\n]*?(?:\((SIG\w+)\))?\s*$", root, re.M)
    if rank and code:
        how = f"was killed by {code.group(2)}" if code.group(2) else \
            f"exited with code {code.group(1)}"
        return f"worker rank {rank.group(1)} {how}"
    match = _FAILED.search(log_text)
    if match:
        return f"worker local_rank {match.group(2)} exited with code {match.group(1)}"
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    return lines[-1] if lines else "torchrun failed without output"


def launch_local(nproc: int, argv: list[str], run_dir: Path) -> int:
    """Run ``liverec ARGV`` as ``nproc`` data-parallel workers; raise WorkerFailed on failure."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "torchrun.log"
    cmd = torchrun_command(nproc, strip_nproc(argv))
    echo = True
    with open(log_path, "w") as log_file, subprocess.Popen(
        cmd, stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1
    ) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            log_file.write(line)
            echo = echo and not _FAILED.search(line)
            if echo:
                sys.stderr.write(line)
        rc = proc.wait()
    if rc == 0:
        return 0
    checkpoint = run_dir / "checkpoint.safetensors"
    kept = f"; last checkpoint kept: {checkpoint}" if checkpoint.is_file() else ""
    raise WorkerFailed(f"distributed training failed: {failure_summary(log_path.read_text())}"
                       f" (torchrun exit {rc}; full log: {log_path}{kept})")
