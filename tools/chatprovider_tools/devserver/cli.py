"""Command line: ``python -m chatprovider_tools.devserver --flavour ollama --port 11434``.

Serves until SIGINT or SIGTERM. Prints one line ``devserver <flavour> listening on <url>`` on
stdout once the port is bound (useful with ``--port 0``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys
from collections.abc import Sequence

from .behaviour import Behaviour
from .flavour import FLAVOURS, get_flavour
from .journal import Journal
from .keyring import KeyRing
from .server import start_runner
from .state import ServerState

__all__ = ["main", "parse_args"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m chatprovider_tools.devserver",
        description="A small, fast OpenAI-compatible server (demo, test and benchmark upstream).",
    )
    parser.add_argument("--flavour", choices=sorted(FLAVOURS), default="generic",
                        help="look like this kind of server (default: generic)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None,
                        help="port to bind (default: the flavour's; 0 picks a free one)")
    parser.add_argument("--api-key", action="append", default=[], dest="api_keys",
                        help="accepted API key (repeat for several; none: no auth)")
    parser.add_argument("--models", default=None,
                        help="comma-separated model ids (default: the flavour's)")
    parser.add_argument("--stream-frames", type=int, default=8,
                        help="content frames per streamed answer (default 8)")
    parser.add_argument("--frame-delay", type=float, default=0.0,
                        help="seconds between streamed frames (default 0)")
    models_route = parser.add_mutually_exclusive_group()
    models_route.add_argument("--no-models-route", action="store_const", const=404,
                              dest="models_status", help="answer 404 to GET /v1/models")
    models_route.add_argument("--models-405", action="store_const", const=405,
                              dest="models_status", help="answer 405 to GET /v1/models")
    parser.add_argument("--tls-cert", default=None, help="PEM certificate chain: serve HTTPS")
    parser.add_argument("--tls-key", default=None, help="PEM private key for --tls-cert")
    parser.add_argument("--journal-limit", type=int, default=1000,
                        help="requests kept in the in-memory journal (default 1000)")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    return args


def _ssl_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def _serve(args: argparse.Namespace) -> None:
    flavour = get_flavour(args.flavour)
    models = tuple(m.strip() for m in args.models.split(",") if m.strip()) if args.models else None
    state = ServerState(
        flavour=flavour,
        behaviour=Behaviour(
            stream_frames=args.stream_frames, frame_delay=args.frame_delay, models=models,
            models_status=args.models_status,
        ),
        keyring=KeyRing(args.api_keys),
        journal=Journal(limit=args.journal_limit),
    )
    port = flavour.default_port if args.port is None else args.port
    context = _ssl_context(args.tls_cert, args.tls_key)
    runner, bound = await start_runner(state, args.host, port, context)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    scheme = "https" if context else "http"
    print(f"devserver {flavour.name} listening on {scheme}://{args.host}:{bound}", flush=True)
    try:
        await stop.wait()
    finally:
        state.stopping.set()
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the dev server until interrupted; return the exit status."""
    args = parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except OSError as exc:
        print(f"devserver: {exc}", file=sys.stderr)
        return 1
    return 0
