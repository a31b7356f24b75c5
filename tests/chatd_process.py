"""A real ``python -m server serve`` process for tests that need one (signals, workers,
file descriptors, what reaches stderr).

:func:`launch` writes a lakehouse.toml, starts chatd on 127.0.0.1:0 in dev mode (no key in
its environment, every key file missing), reads the real port from the startup line, and
collects stderr in a thread. The caller stops it (:meth:`Chatd.stop`) or the block does,
with SIGTERM; the exit code and the whole log are then on the object.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEY_VARS = ("OLLAMA_API_KEY", "OPENROUTER_API_KEY", "OPENCODE_API_KEY", "KIMI_API_KEY")
STARTUP_TIMEOUT = 20.0

__all__ = ["Chatd", "launch"]


@dataclass
class Chatd:
    url: str
    process: subprocess.Popen[str]
    lines: queue.Queue[str | None]
    log: list[str] = field(default_factory=list)
    code: int | None = None
    workers: int = 1

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def text(self) -> str:
        """Everything logged so far."""
        self._collect(0.0)
        return "".join(self.log)

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> str:
        """The first log line (so far or to come) matching ``pattern``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for line in self.log[seen:]:
                if re.search(pattern, line):
                    return line
            seen = len(self.log)
            left = deadline - time.monotonic()
            if left <= 0 or not self._collect(left, one=True):
                raise AssertionError(f"no log line matched {pattern!r}:\n{''.join(self.log)}")

    def wait_ready(self, workers: int = 1, timeout: float = 20.0) -> None:
        """Until every worker accepts: hypercorn logs "Running on" once each is serving
        (the supervisor's startup line comes before its workers have started)."""
        deadline = time.monotonic() + timeout
        while sum("Running on http" in line for line in self.log) < workers:
            left = deadline - time.monotonic()
            if left <= 0 or not self._collect(left, one=True):
                raise AssertionError(f"{workers} workers never all started:\n{self.text()}")

    def _collect(self, timeout: float, *, one: bool = False) -> bool:
        """Move lines from the reader thread into :attr:`log`; False at the end of stderr."""
        try:
            while True:
                line = self.lines.get(timeout=timeout) if timeout else self.lines.get_nowait()
                if line is None:
                    self.lines.put(None)  # keep the end visible to later calls
                    return False
                self.log.append(line)
                if one:
                    return True
        except queue.Empty:
            return True

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Send ``signum`` (unless already exited) and wait; the exit code, None if killed."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            self.code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            self.code = None
        # stderr ends when every process holding it (workers too) has exited.
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and self._collect(0.2):
            pass
        return self.code


def _read(stream: object, lines: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)
    lines.put(None)


@contextmanager
def launch(tmp: Path, config: str = "", *args: str,
           env: dict[str, str] | None = None) -> Iterator[Chatd]:
    """Run ``python -m server serve --bind 127.0.0.1:0 --config <tmp>/lakehouse.toml ARGS``.

    ``config`` is prepended to tables that point every key file at a missing path.
    """
    path = tmp / "lakehouse.toml"
    path.write_text(config + "".join(
        f'\n[chatd.providers.{name}]\nkey_file = "{tmp / "missing" / name}.env"\n'
        for name in ("ollama_cloud", "openrouter", "opencode", "kimi")
    ))
    environ = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
    environ.pop("LAKEHOUSE_CONFIG", None)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environ.get("PYTHONPATH")]))
    environ.update(env or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--bind", "127.0.0.1:0",
         "--config", str(path), *args],
        cwd=tmp, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read, args=(process.stderr, lines), daemon=True).start()
    chatd = Chatd(url="", process=process, lines=lines)
    try:
        line = chatd.wait_for_log(r"serving on http://127\.0\.0\.1:\d+", STARTUP_TIMEOUT)
        m = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
        assert m is not None
        chatd.url = m.group(1)
        yield chatd
    finally:
        if chatd.code is None:
            chatd.stop()
        assert process.stderr is not None
        process.stderr.close()
