"""End-to-end HTTP benchmark: chatd against its ceilings, in one invocation.

Strategy: every figure this prints is a ratio against a baseline measured in the same run,
because these machines are noisy. nginx plays the upstream (a fixed Ollama /api/chat
answer, so the upstream costs next to nothing), wrk drives load over loopback, and each
configuration is measured at concurrency 1 and 50:

- ``upstream``: wrk straight at nginx (the floor of any latency);
- ``hypercorn``: a bare hypercorn ASGI app that answers at once (chatd's serving ceiling);
- ``chatd-h11`` / ``chatd-httpx``: one ``chatd serve`` process with each transport;
- ``litellm`` (with ``--litellm``): the LiteLLM proxy in its own virtualenv, same upstream.

It also reports chatd's idle RSS and the time from launch to the first answered /healthz.
Needs ``wrk`` and ``nginx`` (Debian packages). Traffic goes to 127.0.0.1 only, bounded by
``--duration``. Run: ``python3 bench/serve.py [--duration 5] [--litellm]``.

``--only chatd-h11`` measures a subset (the ceilings are always measured: every ratio needs
them); ``--worker-class asyncio,trio`` adds ``-trio`` rows for chatd and the bare app;
``--profile DIR`` records a py-spy profile of each chatd process during the c=50 runs.

``--workers 1,2`` runs each chatd row with every worker count (``-w2`` rows) and prints,
for every c=50 repeat, the throughput of N workers over one worker, how the CPU time was
split between the worker processes, and how many of wrk's connections each held mid-run
(``ss``: SO_REUSEPORT should give each a share). With 2
among the counts, an ``-x2`` control row runs two separate one-worker processes, each
loaded by its own wrk at once: what two processes can get from the machine at all. Its two
wrk share ``--wrk-threads`` between them, so keep that even (the default 2) for the
control to have the client threads of the other rows: on a busy machine a row with more
client threads wins CPU for its client, not for chatd.
``--observe`` adds two rows on the same chatd settings otherwise: ``-quiet`` (``metrics =
false``, ``log_requests = false``) and ``-observed`` (``metrics = true``, ``log_format =
"json"``, a request line per call written to a file), and prints what observing costs.
Every server is started first and the wrk runs are interleaved across them (see
:func:`measure_all`), so a ratio compares runs made under the same background load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from _common import cpu_seconds, free_port, process, rss_mb, wait_http

ROOT = Path(__file__).resolve().parent.parent

OLLAMA_ANSWER = json.dumps({
    "model": "qwen3:4b", "created_at": "2026-11-29T00:00:00.000000Z",
    "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
    "done": True, "done_reason": "stop", "total_duration": 1, "load_duration": 1,
    "prompt_eval_count": 12, "prompt_eval_duration": 1, "eval_count": 9, "eval_duration": 1,
})
OPENAI_ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1795915781,
    "model": "bench/model",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant",
                             "content": "Hello! How can I help you today?"}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
})
CHAT_BODY = json.dumps({
    "model": "ollama/qwen3:4b",
    "messages": [{"role": "system", "content": "You are terse."},
                 {"role": "user", "content": "Say hello."}],
    "max_tokens": 10,
})
CHAT_BODY_OPENAI = CHAT_BODY.replace("ollama/qwen3:4b", "openrouter/bench/model")
OPENAI_BODY = json.dumps({
    "model": "bench",
    "messages": [{"role": "system", "content": "You are terse."},
                 {"role": "user", "content": "Say hello."}],
    "max_tokens": 10,
})

BARE_APP = textwrap.dedent(f"""
    BODY = {OLLAMA_ANSWER.encode()!r}
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                kind = (await receive())["type"]
                await send({{"type": kind + ".complete"}})
                if kind == "lifespan.shutdown":
                    return
        while (await receive()).get("more_body"):
            pass
        await send({{"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]}})
        await send({{"type": "http.response.body", "body": BODY}})
""")


@contextlib.contextmanager
def nginx_upstream(tmp: Path) -> Iterator[int]:
    port = free_port()
    (tmp / "nginx").mkdir()
    conf = tmp / "nginx" / "nginx.conf"
    conf.write_text(textwrap.dedent(f"""
        worker_processes 1;
        pid {tmp}/nginx/nginx.pid;
        error_log {tmp}/nginx/error.log;
        events {{ worker_connections 4096; }}
        http {{
            access_log off;
            client_body_temp_path {tmp}/nginx;
            keepalive_requests 1000000;
            server {{
                listen 127.0.0.1:{port};
                location / {{
                    default_type application/json;
                    return 200 '{OLLAMA_ANSWER}';
                }}
                location /v1/chat/completions {{
                    default_type application/json;
                    return 200 '{OPENAI_ANSWER}';
                }}
            }}
        }}
    """))
    with process(["nginx", "-c", str(conf), "-p", str(tmp / "nginx"), "-g", "daemon off;"]):
        wait_http(f"http://127.0.0.1:{port}/api/tags")
        yield port


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


#: wrk threads at c > 1 (``--wrk-threads``); on a two-core machine one thread leaves more
#: of the second core to a second chatd worker.
WRK_THREADS = [2]


def wrk(url: str, body: str, connections: int, duration: int, tmp: Path,
        also: str = "") -> Result:
    """wrk at ``url``. With ``also`` (the ``-x2`` control) and ``connections`` > 1, a second
    wrk at ``also`` at the same time, the connections and wrk threads split between the two
    so the client side is the same as one wrk's; the throughputs are added, the latencies
    are the worse of the two. At c=1 only ``url`` is loaded (one connection is one
    process's)."""
    script = tmp / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    urls = [url, also] if also and connections > 1 else [url]
    each = connections // len(urls)
    threads = 1 if each == 1 else max(1, WRK_THREADS[0] // len(urls))
    procs = [subprocess.Popen(
        ["wrk", f"-t{threads}", f"-c{each}", f"-d{duration}s", "--latency",
         "-s", str(script), u], stdout=subprocess.PIPE, text=True) for u in urls]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"wrk failed: {outs}")
    if len(urls) > 1:
        parts = [_parse(o, u) for o, u in zip(outs, urls, strict=True)]
        return Result(sum(p.rps for p in parts), max(p.p50_ms for p in parts),
                      max(p.p99_ms for p in parts))
    return _parse(outs[0], url)


def _parse(out: str, url: str) -> Result:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"  ! {url}: {errors.group(1)} non-2xx responses", file=sys.stderr)
    return Result(rps, pct("50"), pct("99"))


@dataclass
class Target:
    name: str
    url: str
    body: str
    pid: int | None = None  # profiled with --profile (chatd rows)
    also: str = ""
    """A second server loaded at the same time (the ``-x2`` control rows)."""
    also_pid: int | None = None


def profile_start(targets: list[Target], args: argparse.Namespace) -> list[subprocess.Popen[bytes]]:
    """py-spy (raw folded stacks, busy samples only) on each chatd row, if ``--profile``."""
    spies = []
    for t in targets:
        if t.pid is None or not args.profile:
            continue
        out = Path(args.profile) / f"{t.name}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        spies.append(subprocess.Popen(
            ["py-spy", "record", "-p", str(t.pid), "-r", "250", "-f", "raw", "-o", str(out),
             "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        print(f"  profiling {t.name} into {out}", file=sys.stderr)
    time.sleep(0.5 if spies else 0)  # let py-spy attach before the load starts
    return spies


def profile_stop(spies: list[subprocess.Popen[bytes]]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
    for spy in spies:
        spy.wait()


def _machine_busy() -> float:
    """CPU seconds every core has spent busy since boot (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _workers_of(pid: int) -> list[int]:
    """The worker processes of a chatd supervisor (itself when it has none)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [int(p) for p in children.read_text().split()] if children.exists() else []
    # Not multiprocessing's resource tracker, a child too: the spawned workers.
    found = [p for p in found
             if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
    return found or [pid]


def _connections_of(pids: list[int], urls: list[str]) -> list[int]:
    """How many established client connections each of ``pids`` holds on the ports of
    ``urls`` now (``ss``): where the kernel put wrk's connections."""
    ports = {int(u.split(":")[2].split("/")[0]) for u in urls if u}
    counts = dict.fromkeys(pids, 0)
    try:
        out = subprocess.run(["ss", "-tnpH", "state", "established"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 4 or int(fields[2].rsplit(":", 1)[1]) not in ports:
            continue
        for pid in re.findall(r"pid=(\d+)", line):
            if int(pid) in counts:
                counts[int(pid)] += 1
    return [counts[p] for p in pids]


def measure_all(targets: list[Target], args: argparse.Namespace, tmp: Path,
                table: dict[str, dict[int, Result]],
                every: dict[str, dict[int, list[Result]]] | None = None,
                cpu: dict[str, list[list[float]]] | None = None,
                conns: dict[str, list[list[int]]] | None = None) -> None:
    """Every target at c=1 then c=50, the repeats interleaved (A B C C B A ...) so that a
    noisy neighbour slows every row alike instead of whichever ran at the wrong time."""
    for t in targets:
        wrk(t.url, t.body, 10, 1, tmp, t.also)  # warm up connections and caches
        table[t.name] = {}
    for c in (1, 50):
        spies = profile_start(targets, args) if c == 50 else []
        runs: dict[str, list[Result]] = {t.name: [] for t in targets}
        for i in range(args.repeat):
            # A B C, then C B A: no row is always the one that runs first or last.
            for t in (targets if i % 2 == 0 else targets[::-1]):
                pids = _workers_of(t.pid) if (t.pid is not None and c == 50) else []
                if t.also_pid is not None and c == 50:
                    pids.append(t.also_pid)
                before = [cpu_seconds(p) for p in pids]
                machine, client = _machine_busy(), _children_cpu()
                if pids and conns is not None:
                    # Mid-run, once wrk has opened every connection.
                    threading.Timer(min(1.0, args.duration / 2), lambda t=t, pids=pids: (
                        conns.setdefault(t.name, []).append(
                            _connections_of(pids, [t.url, t.also])))).start()
                runs[t.name].append(wrk(t.url, t.body, c, args.duration, tmp, t.also))
                if pids and cpu is not None:
                    # Per chatd process, then wrk, then everything else on the machine
                    # (nginx, other work): a second worker can only go as fast as the CPU
                    # the rest leaves it.
                    used = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
                    load = _children_cpu() - client
                    rest = _machine_busy() - machine - sum(used) - load
                    cpu.setdefault(t.name, []).append([*used, load, rest])
        profile_stop(spies)
        if every is not None:
            for name, rs in runs.items():
                every.setdefault(name, {})[c] = rs
        for t in targets:
            rs = runs[t.name]
            r = table[t.name][c] = Result(
                statistics.median(x.rps for x in rs),
                statistics.median(x.p50_ms for x in rs),
                statistics.median(x.p99_ms for x in rs),
            )
            print(f"  {t.name:23} c={c:<3} {r.rps:9.0f} req/s  p50 {r.p50_ms:7.3f} ms  "
                  f"p99 {r.p99_ms:7.3f} ms", file=sys.stderr)


#: ``--observe``: the settings of the -quiet and -observed rows.
QUIET = "metrics = false\nlog_requests = false\n"
OBSERVED = 'metrics = true\nlog_requests = true\nlog_format = "json"\n'


def chatd_config(tmp: Path, upstream: int, name: str = "lakehouse", settings: str = "") -> Path:
    """Local Ollama and OpenRouter both pointed at nginx (OpenRouter's key comes from the
    environment the chatd rows are started with); ``settings`` go in ``[chatd]``."""
    cfg = tmp / f"{name}.toml"
    cfg.write_text(f'[chatd]\nollama_url = "http://127.0.0.1:{upstream}"\n{settings}'
                   f'[chatd.providers.openrouter]\nbase_url = "http://127.0.0.1:{upstream}/v1"\n')
    return cfg


def report_ratios(every: dict[str, dict[int, list[Result]]],
                  cpu: dict[str, list[list[float]]], counts: list[int],
                  duration: int, conns: dict[str, list[list[int]]]) -> None:
    """Per c=50 repeat: N workers over one worker, and what observing costs. Repeat i of
    every row ran back to back (measure_all interleaves them), so each ratio compares two
    runs made under the same background load."""
    def per_repeat(a: str, b: str) -> list[float]:
        return [x.rps / y.rps for x, y in zip(every[a][50], every[b][50], strict=True)]

    for name in every:
        for n in counts:
            base = name.replace(f"-w{n}", "")
            if n == 1 or not name.endswith(f"-w{n}") or base not in every:
                continue
            ratios = per_repeat(name, base)
            print(f"\nworkers: {name} / {base} at c=50, each repeat: "
                  + " ".join(f"{r:.2f}" for r in ratios) + f"  (min {min(ratios):.2f})")
            # Throughput per CPU second chatd got: what N workers would reach over one if
            # each had a core of its own, whatever else the machine was running.
            if name in cpu and base in cpu:
                def per_cpu(label: str) -> list[float]:
                    return [r.rps * duration / sum(run[:-2])
                            for r, run in zip(every[label][50], cpu[label], strict=True)]
                efficiency = [a / b for a, b in zip(per_cpu(name), per_cpu(base), strict=True)]
                print(f"  requests per chatd CPU second, {name} / {base}, each repeat: "
                      + " ".join(f"{r:.2f}" for r in efficiency)
                      + f"  (median {statistics.median(efficiency):.2f}; x{n} of it is the "
                      f"ratio with {n} cores free for chatd)")
            control = base + "-x2"
            labels = [base, name]
            if n == 2 and control in every:
                ceiling = per_repeat(control, base)
                print(f"  control: {control} / {base} (two separate processes, nothing "
                      "shared), each repeat: " + " ".join(f"{r:.2f}" for r in ceiling))
                labels.append(control)
            for label in labels:
                splits = [" / ".join(f"{s:.2f}" for s in run[:-2])
                          + f" (wrk {run[-2]:.2f}, the rest {run[-1]:.2f})"
                          for run in cpu.get(label, [])]
                print(f"  CPU s per chatd process, {label}: " + "; ".join(splits))
                held = [" / ".join(map(str, run)) for run in conns.get(label, [])]
                if held:
                    print(f"  connections per chatd process, {label}: " + "; ".join(held))
    for name in every:
        if not name.endswith("-observed"):
            continue
        quiet = name.replace("-observed", "-quiet")
        if quiet not in every:
            continue
        ratios = per_repeat(name, quiet)
        median = statistics.median(ratios)
        print(f"\nobserve: {name} / {quiet} at c=50, each repeat: "
              + " ".join(f"{r:.3f}" for r in ratios)
              + f"  (median {median:.3f}: metrics + JSON request lines cost "
              f"{(1 - median) * 100:.1f} % of throughput)")

        # CPU time per request does not depend on what else the machine ran meanwhile,
        # as throughput does: the steadier measure of what observing costs.
        def per_request_us(label: str) -> list[float]:
            return [sum(run[:-2]) / (r.rps * duration) * 1e6
                    for run, r in zip(cpu[label], every[label][50], strict=True)]

        if name in cpu and quiet in cpu:
            on, off = per_request_us(name), per_request_us(quiet)
            print(f"  chatd CPU per request, each repeat: {quiet} "
                  + " ".join(f"{x:.0f}" for x in off) + f" µs; {name} "
                  + " ".join(f"{x:.0f}" for x in on)
                  + f" µs (medians {statistics.median(off):.0f} → {statistics.median(on):.0f}"
                  f" µs: {(statistics.median(on) / statistics.median(off) - 1) * 100:+.1f} %)")


def litellm_python(args: argparse.Namespace) -> Path:
    venv = Path(args.litellm_venv)
    py = venv / "bin" / "python"
    if not py.exists():
        print(f"installing LiteLLM into {venv} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "litellm[proxy]"], check=True)
    return py


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=5, help="whole seconds per wrk run")
    ap.add_argument("--repeat", type=int, default=3, help="wrk runs per cell (median)")
    ap.add_argument("--litellm", action="store_true", help="also measure the LiteLLM proxy")
    ap.add_argument("--litellm-venv", default="/tmp/chatd-bench-litellm")
    ap.add_argument("--openai", action="store_true",
                    help="also measure an OpenAI-family upstream (chatd via openrouter/, "
                    "LiteLLM via openai/), both answered by the same nginx")
    ap.add_argument("--only", default="", metavar="NAMES",
                    help="comma-separated rows to measure besides the ceilings "
                    "(e.g. chatd-h11,chatd-h11-trio); default: all")
    ap.add_argument("--worker-class", default="asyncio", metavar="CLASSES",
                    help="comma-separated hypercorn worker classes (asyncio,trio)")
    ap.add_argument("--profile", default="", metavar="DIR",
                    help="write a py-spy profile of each chatd row's c=50 runs to DIR")
    ap.add_argument("--workers", default="1", metavar="COUNTS",
                    help="comma-separated worker counts for each chatd row (e.g. 1,2)")
    ap.add_argument("--wrk-threads", type=int, default=2, metavar="N",
                    help="wrk threads at c=50 (default 2)")
    ap.add_argument("--observe", action="store_true",
                    help="add -quiet and -observed rows (metrics and JSON request lines "
                    "off / on)")
    args = ap.parse_args()
    only = {n for n in args.only.split(",") if n}
    classes = [c for c in args.worker_class.split(",") if c]
    counts = [int(n) for n in args.workers.split(",") if n]
    WRK_THREADS[0] = args.wrk_threads

    def wanted(name: str) -> bool:
        return not only or name in only
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install -y wrk nginx")

    table: dict[str, dict[int, Result]] = {}
    every: dict[str, dict[int, list[Result]]] = {}
    cpu: dict[str, list[list[float]]] = {}
    conns: dict[str, list[list[int]]] = {}
    logs: dict[str, Path] = {}
    extra: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as d, contextlib.ExitStack() as stack:
        tmp = Path(d)
        up = stack.enter_context(nginx_upstream(tmp))
        targets = [Target("upstream", f"http://127.0.0.1:{up}/api/chat", CHAT_BODY)]

        (tmp / "bare_app.py").write_text(BARE_APP)
        for wc in classes:
            name = "hypercorn" + ("" if wc == "asyncio" else f"-{wc}")
            if name != "hypercorn" and not wanted(name):
                continue
            port = free_port()
            stack.enter_context(process(
                [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}",
                 "--worker-class", wc, "bare_app:app"], cwd=tmp))
            wait_http(f"http://127.0.0.1:{port}/")
            targets.append(Target(name, f"http://127.0.0.1:{port}/", CHAT_BODY))

        variants = [("", chatd_config(tmp, up))]
        if args.observe:
            variants += [("-quiet", chatd_config(tmp, up, "quiet", QUIET)),
                         ("-observed", chatd_config(tmp, up, "observed", OBSERVED))]
        for transport in ("h11", "httpx"):
            for wc in classes:
                for n in counts:
                    for suffix, cfg in variants:
                        name = (f"chatd-{transport}" + ("" if wc == "asyncio" else f"-{wc}")
                                + ("" if n == 1 else f"-w{n}"))
                        if not wanted(name):
                            continue
                        name += suffix
                        port = free_port()
                        cmd = [sys.executable, "-m", "server", "serve", "--config", str(cfg),
                               "--bind", f"127.0.0.1:{port}", "--transport", transport,
                               "--worker-class", wc, "--workers", str(n)]
                        env = {k: v for k, v in os.environ.items()
                               if not k.endswith("_API_KEY")}
                        env["OPENROUTER_API_KEY"] = "bench-key"
                        launched = time.perf_counter()
                        log = tmp / f"{name}.log" if suffix == "-observed" else None
                        proc = stack.enter_context(process(cmd, env=env, stderr=log))
                        wait_http(f"http://127.0.0.1:{port}/healthz")
                        ready = time.perf_counter() - launched
                        time.sleep(0.5 + 0.5 * n)  # every worker up, not just the first
                        extra[name] = (f"launch→serving {ready * 1000:.0f} ms, "
                                       f"idle RSS {rss_mb(proc.pid):.1f} MB")
                        if log is not None:
                            logs[name] = log
                        targets.append(Target(name, f"http://127.0.0.1:{port}/v1/chat",
                                              CHAT_BODY, pid=proc.pid))
                        if args.openai and not suffix:
                            targets.append(Target(f"{name}-openai",
                                                  f"http://127.0.0.1:{port}/v1/chat",
                                                  CHAT_BODY_OPENAI))
                # The control for --workers 2: two separate one-worker processes, each with
                # its own wrk and half the connections, at the same time. No sharing at all:
                # what two processes can get out of this machine.
                name = f"chatd-{transport}" + ("" if wc == "asyncio" else f"-{wc}") + "-x2"
                if 2 in counts and wanted(name):
                    pair = []
                    for _ in range(2):
                        port = free_port()
                        cmd = [sys.executable, "-m", "server", "serve", "--config",
                               str(variants[0][1]), "--bind", f"127.0.0.1:{port}",
                               "--transport", transport, "--worker-class", wc]
                        env = {k: v for k, v in os.environ.items()
                               if not k.endswith("_API_KEY")}
                        env["OPENROUTER_API_KEY"] = "bench-key"
                        proc = stack.enter_context(process(cmd, env=env))
                        wait_http(f"http://127.0.0.1:{port}/healthz")
                        pair.append((port, proc.pid))
                    targets.append(Target(
                        name, f"http://127.0.0.1:{pair[0][0]}/v1/chat", CHAT_BODY,
                        pid=pair[0][1], also=f"http://127.0.0.1:{pair[1][0]}/v1/chat",
                        also_pid=pair[1][1]))
                    extra[name] = ("two one-worker processes, each its own wrk at c=25 with "
                                   f"{max(1, WRK_THREADS[0] // 2)} thread(s) (c=1: the "
                                   "first alone)")

        if args.litellm and wanted("litellm"):
            py = litellm_python(args)
            lcfg = tmp / "litellm.yaml"
            lcfg.write_text(textwrap.dedent(f"""
                model_list:
                  - model_name: bench
                    litellm_params:
                      model: ollama_chat/qwen3:4b
                      api_base: http://127.0.0.1:{up}
                  - model_name: bench-openai
                    litellm_params:
                      model: openai/bench/model
                      api_base: http://127.0.0.1:{up}/v1
                      api_key: bench-key
            """))
            port = free_port()
            # Its proxy refuses to start without a master key unless told this is local
            # development, and fetches a cost map from the internet unless told not to.
            lenv = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                    "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true"}
            proc = stack.enter_context(process(
                [str(py.parent / "litellm"), "--config", str(lcfg), "--host", "127.0.0.1",
                 "--port", str(port), "--num_workers", "1"], env=lenv))
            wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=120)
            targets.append(Target("litellm", f"http://127.0.0.1:{port}/chat/completions",
                                  OPENAI_BODY, pid=proc.pid))
            extra["litellm"] = "1 worker, its default logging"
            if args.openai:
                targets.append(Target("litellm-openai",
                                      f"http://127.0.0.1:{port}/chat/completions",
                                      OPENAI_BODY.replace('"bench"', '"bench-openai"')))

        measure_all(targets, args, tmp, table, every, cpu, conns)
        for t in targets:
            if t.pid is not None:
                extra[t.name] += f", RSS after load {rss_mb(t.pid):.1f} MB"
        for name, log in logs.items():
            lines = log.read_text(errors="replace").splitlines()
            requests = sum('"msg":"request"' in line for line in lines)
            extra[name] += f", {requests} JSON request lines logged"

    base_up, base_hc = table["upstream"], table["hypercorn"]
    print(f"\n{'config':23} {'c':>3} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'x hypercorn':>11} {'x litellm':>9} {'+p50 up':>8} {'+p50 hc':>8}")
    for name, row in table.items():
        # Each row against the bare app on the same worker class (its own ceiling).
        wc = next((w for w in classes if w != "asyncio" and f"-{w}" in name), "")
        hc = table.get(f"hypercorn-{wc}", base_hc) if wc else base_hc
        for c, r in row.items():
            vs_hc = r.rps / hc[c].rps
            # Against LiteLLM calling the same upstream family (Ollama, or OpenAI-style).
            ll = table.get("litellm-openai" if name.endswith("-openai") else "litellm")
            vs_ll = f"{r.rps / ll[c].rps:9.1f}" if ll else f"{'-':>9}"
            print(f"{name:23} {c:>3} {r.rps:9.0f} {r.p50_ms:8.3f} {r.p99_ms:8.3f} "
                  f"{vs_hc:11.2f} {vs_ll} {r.p50_ms - base_up[c].p50_ms:8.3f} "
                  f"{r.p50_ms - hc[c].p50_ms:8.3f}")
    for name, text in extra.items():
        print(f"{name}: {text}")
    report_ratios(every, cpu, counts, args.duration, conns)
    print("\nx hypercorn: throughput over a bare hypercorn app on the same worker class "
          "(the serving ceiling); "
          "+p50 up / hc: median latency added over the upstream alone / over the bare "
          f"hypercorn app. Medians of {args.repeat} runs of {args.duration}s.")


if __name__ == "__main__":
    main()
