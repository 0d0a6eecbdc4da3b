"""The benchmark upstream: the project's dev server, plus a record of when each API key was
first presented (for the key-rotation case).

    python -m bench.upstream --port P [--stream-frames N] [--frame-delay S] [--key-prefix bench-]

Every key that starts with ``--key-prefix`` is accepted (so a rotation to a fresh key never
fails on the upstream's side: the upstream accepts the old and the new key, step 1 of the
documented procedure). ``GET /_bench/keys`` answers ``{key: [first_seen, count]}`` with
``first_seen`` a ``time.monotonic()`` value, comparable with the driver's clock on Linux.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time

from aiohttp import web

from chatprovider_tools.devserver import Behaviour, Journal, KeyRing, ServerState, build_app
from chatprovider_tools.devserver.flavour import get_flavour

__all__ = ["RecordingKeyRing", "main"]


class RecordingKeyRing(KeyRing):
    """Accepts any bearer key with the prefix; notes when each key was first seen."""

    __slots__ = ("_prefix", "seen")

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = f"Bearer {prefix}"
        self.seen: dict[str, list[float]] = {}

    @property
    def enabled(self) -> bool:
        return True

    def allows(self, authorization: str | None) -> bool:
        if authorization is None or not authorization.startswith(self._prefix):
            return False
        entry = self.seen.get(authorization)
        if entry is None:
            self.seen[authorization] = [time.monotonic(), 1]
        else:
            entry[1] += 1
        return True


async def _serve(args: argparse.Namespace) -> None:
    keyring = RecordingKeyRing(args.key_prefix)
    state = ServerState(
        flavour=get_flavour("generic"),
        behaviour=Behaviour(stream_frames=args.stream_frames, frame_delay=args.frame_delay),
        keyring=keyring, journal=Journal(limit=args.journal_limit),
    )
    app = build_app(state)

    async def keys(request: web.Request) -> web.Response:
        data = {k[len("Bearer "):]: v for k, v in keyring.seen.items()}
        return web.Response(body=json.dumps(data), content_type="application/json")

    app.router.add_get("/_bench/keys", keys)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=4096)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"bench upstream listening on http://127.0.0.1:{args.port}", flush=True)
    try:
        await stop.wait()
    finally:
        state.stopping.set()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stream-frames", type=int, default=8)
    parser.add_argument("--frame-delay", type=float, default=0.0)
    parser.add_argument("--key-prefix", default="bench-")
    parser.add_argument("--journal-limit", type=int, default=100)
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
