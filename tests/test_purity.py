"""The core is sans-IO: importing all of it pulls in no network or event-loop module.

Checked in a fresh interpreter, since this test process has long since imported anyio,
trio and friends through pytest plugins.
"""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = (
    "socket", "_socket", "ssl", "select", "selectors", "asyncio", "trio", "anyio",
    "httpx", "h11", "httpcore",
)

SCRIPT = r"""
%s
import json, pkgutil, sys, time, importlib
t0 = time.perf_counter()
import chatproto
t1 = time.perf_counter()
names = ["chatproto"]
for info in pkgutil.walk_packages(chatproto.__path__, "chatproto."):
    importlib.import_module(info.name)
    names.append(info.name)
forbidden = %r
print(json.dumps({
    "modules": names,
    "loaded": sorted(m for m in forbidden if m in sys.modules),
    "import_ms": (t1 - t0) * 1000,
}))
"""


def _probe(prelude: str = "") -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT % (prelude, FORBIDDEN)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_no_io_or_event_loop_module_is_imported() -> None:
    result = _probe()
    modules = result["modules"]
    assert isinstance(modules, list)
    # The walk really found the package's modules, so the check covers them.
    for expected in ("chatproto._routing", "chatproto._request", "chatproto._decoders",
                     "chatproto.dialects"):
        assert expected in modules
    assert result["loaded"] == [], f"chatproto imported {result['loaded']}"
    # Reported, not asserted: import time depends on the machine.
    print(f"import chatproto: {result['import_ms']:.1f} ms; modules: {len(modules)}")


def test_probe_detects_a_forbidden_import() -> None:
    """The check can fail: the same probe with ``import socket`` first reports it."""
    loaded = _probe("import socket")["loaded"]
    assert isinstance(loaded, list)
    assert "socket" in loaded
