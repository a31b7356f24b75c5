"""The ``chatd`` command: ``serve``, ``providers``, ``resolve MODEL``, ``--version``.

Strategy: argparse in, one of four small functions out. Configuration problems are one
line on stderr and exit status 2 (the usage-error convention argparse also follows);
``resolve`` failures are exit 1. Startup speed matters (target: launch to serving within
0.5 s), so hypercorn, the transport and prometheus_client are imported only by the command
that needs them.

``serve`` binds the listening socket itself, before hypercorn starts, and hands it over as
``fd://N``. The startup log line then names the real address even for ``--bind
127.0.0.1:0`` (tests use that instead of guessing a free port), and connections that arrive
while the app is still starting wait in the listen backlog instead of being refused. The
serving process itself (workers, signals, the drain, the connection cap) is
:mod:`server.process`.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from chatproto import ChatError, __version__, redact_userinfo, resolve

from .config import (
    Config,
    ConfigError,
    find_config,
    parse_bind,
    read_config,
    register_providers,
    registered,
    resolve_auth_token,
)

__all__ = ["main"]

logger = logging.getLogger("chatd")

#: Exit status for a configuration error (as argparse uses for bad usage).
EXIT_CONFIG = 2


def _setup_logging(config: Config) -> None:
    from .logs import setup

    setup(logging.INFO, sys.stderr, json=config.chatd.log_format == "json")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatd", description="An LLM router: the provider is chosen from the model name."
    )
    parser.add_argument("--version", action="version", version=f"chatd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config", metavar="PATH",
            help="lakehouse.toml (default: $LAKEHOUSE_CONFIG, else ./lakehouse.toml, "
            "else built-in defaults)",
        )
        return p

    serve = with_config(sub.add_parser("serve", help="serve HTTP (default 127.0.0.1:3220)"))
    serve.add_argument("--bind", metavar="HOST:PORT", help="overrides chatd.bind")
    serve.add_argument("--workers", type=int, default=1, metavar="N")
    serve.add_argument("--worker-class", choices=("asyncio", "trio"), default="asyncio")
    serve.add_argument("--transport", choices=("h11", "httpx"), default="h11")
    with_config(sub.add_parser(
        "providers", help="list the providers and where their keys come from (never a key)"
    ))
    resolve_p = with_config(sub.add_parser(
        "resolve", help="show where a model name routes (no network)"
    ))
    resolve_p.add_argument("model")
    return parser


def _load(explicit: str | None, environ: Mapping[str, str]) -> tuple[Path | None, Config]:
    path = find_config(explicit, environ)
    return path, read_config(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``chatd`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        path, config = _load(args.config, os.environ)
        if args.command == "serve":
            return _serve(args, path, config)
        if args.command == "providers":
            return _providers(config)
        return _resolve(args.model, config)
    except ConfigError as exc:
        print(f"chatd: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:  # a signal before the handlers were installed
        return 130


def _providers(config: Config) -> int:
    rows = [
        (
            r.name,
            redact_userinfo(r.provider.base_url) if r.provider else "",
            r.provider.api if r.provider else "",
            ("registered: " if r.registered else "not registered: ") + r.source,
        )
        for r in register_providers(config, os.environ)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[3]]).rstrip())
    return 0


def _resolve(model: str, config: Config) -> int:
    providers = registered(register_providers(config, os.environ))
    try:
        # The server's rows: the built-in ones and every provider defined in configuration
        # (SPEC §1: a configured provider adds ``<prefix><m>`` -> NAME).
        routes = resolve(model, providers, config.tiers, profiles=config.profiles)
    except ChatError as exc:
        print(f"chatd: {exc.type} ({exc.status}): {exc.message}", file=sys.stderr)
        return 1
    for route in routes:
        print(f"{route.provider}\t{route.upstream_model}")
    return 0


def _listen(bind: str, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``bind`` (port 0: any free port); with ``reuse_port``
    (several workers, on Linux) the first of a ``SO_REUSEPORT`` group the workers join
    with sockets of their own (server/process.py)."""
    host, port = parse_bind(bind)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    reuse_port = reuse_port and sys.platform.startswith("linux") and hasattr(
        socket, "SO_REUSEPORT")
    if reuse_port:
        # SO_REUSEPORT would let this bind join another process's listener on the port
        # (an older chatd still running): it must fail as a plain bind would.
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            port = probe.getsockname()[1]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def _raise_file_limit() -> None:
    """Lift the soft open-file limit to the hard one.

    Each streamed call holds two sockets (client and upstream), and the common soft limit
    of 1,024 would refuse connections at about 500 concurrent streams.
    """
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            except (ValueError, OSError) as exc:
                logger.warning("could not raise the open-file limit from %d: %s", soft, exc)


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _serve(args: argparse.Namespace, path: Path | None, config: Config) -> int:
    bind = args.bind or config.chatd.bind
    try:
        parse_bind(bind)
    except ValueError as exc:
        raise ConfigError(f"--bind: {exc}") from None
    if args.workers < 1:
        raise ConfigError(f"--workers: must be at least 1, got {args.workers}")
    # Before listening: a named but unset client token is a config error (fail closed),
    # and with several workers it would otherwise surface only inside each worker.
    resolve_auth_token(config, os.environ)
    from .process import Worker, block_signals, run_worker, supervise

    block_signals()  # until the workers are ready for them (server/process.py)
    _setup_logging(config)
    _raise_file_limit()
    try:
        sock = _listen(bind, reuse_port=args.workers > 1)
    except OSError as exc:
        print(f"chatd: cannot listen on {bind}: {exc}", file=sys.stderr)
        return 1
    where = str(path) if path is not None else "built-in defaults"

    if args.workers == 1:
        from .app import create_app

        app = create_app(config, environ=os.environ, transport=args.transport)
        logger.info(
            "chatd %s serving on http://%s (%s, 1 worker, %s transport, config %s); "
            "providers: %s",
            __version__, _address(sock), args.worker_class, args.transport, where,
            ", ".join(app.providers),
        )
        code = run_worker(app, sock.detach(), args.worker_class)
        if code == 0:
            logger.info("chatd stopped")
        return code

    providers = registered(register_providers(config, os.environ))
    logger.info(
        "chatd %s serving on http://%s (%s, %d workers, %s transport, config %s); "
        "providers: %s",
        __version__, _address(sock), args.worker_class, args.workers, args.transport, where,
        ", ".join(providers),
    )
    worker = Worker(
        config_path=str(path.resolve()) if path is not None else None,
        transport=args.transport,
        worker_class=args.worker_class,
    )
    code = supervise(sock, args.workers, worker)
    if code == 0:
        logger.info("chatd stopped")
    return code
