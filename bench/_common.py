"""What the process-level benchmarks (serve.py, stream.py) share: ports, readiness, RSS, CPU.

Strategy: both scripts start real servers as child processes on 127.0.0.1 and wait for
them to answer before measuring; the helpers for that are written once here. The scripts
run as ``python3 bench/<name>.py``, so this directory is on ``sys.path`` and they import
it as ``_common``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

__all__ = ["cpu_seconds", "free_port", "peak_rss_mb", "process", "rss_mb", "wait_http"]


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a child process to bind."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> float:
    """Seconds until ``url`` answers 2xx; raises after ``timeout``."""
    start = time.perf_counter()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if 200 <= r.status < 300:
                    return time.perf_counter() - start
        except OSError:
            pass
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"{url} did not come up in {timeout}s")
        time.sleep(0.005)


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` so far (``/proc/<pid>/stat``), in seconds: what a process
    spent, whatever else the machine was running meanwhile."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """The resident memory of ``pid`` now, in MB (``VmRSS`` of /proc/<pid>/status)."""
    return _status_mb(pid, "VmRSS")


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory of ``pid`` so far, in MB (``VmHWM``)."""
    return _status_mb(pid, "VmHWM")


@contextlib.contextmanager
def process(cmd: list[str], env: dict[str, str] | None = None,
            cwd: Path | None = None,
            stderr: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` for the block (stdout discarded, stderr to the file ``stderr`` or
    discarded); terminate it after, kill if it lingers."""
    with contextlib.ExitStack() as files:
        err = files.enter_context(stderr.open("wb")) if stderr else subprocess.DEVNULL
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                stderr=err)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
