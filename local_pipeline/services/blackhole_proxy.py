"""A TCP proxy that can black-hole its connections, for fault tests (issue 10, item 3).

``BlackHoleProxy(target_host, target_port)`` forwards each accepted connection to the
target. :meth:`BlackHoleProxy.blackhole` makes every open connection stop
forwarding *without closing*: bytes are still read (the client's kernel sees them
acknowledged, as with a middlebox that drops or a frozen server) and thrown away,
and nothing comes back. Connections accepted while black-holed are held the same
way. :meth:`BlackHoleProxy.restore` forwards *new* connections again, as a failed-over
endpoint does; the black-holed ones stay open and silent until :meth:`close`, so a
client recovers only by giving up on them (its timeouts are what the tests check).
Threads, not asyncio: a few connections, and no event loop for the tests to own.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field
from typing import Final

from local_pipeline.services.network import LOOPBACK

_CHUNK: Final = 65_536


@dataclass(eq=False)
class _Pair:
    client: socket.socket
    upstream: socket.socket | None
    frozen: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()


class BlackHoleProxy:
    """Forwarding TCP proxy on loopback with a black-hole switch."""

    def __init__(self, target_host: str, target_port: int, host: str = LOOPBACK) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self._listener = socket.create_server((host, 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._black = False
        self._closed = False
        #: Connections accepted so far, and of those, how many were black-holed.
        self.accepted = 0
        self.black_holed = 0

    def start(self) -> BlackHoleProxy:
        threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True).start()
        return self

    def __enter__(self) -> BlackHoleProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def blackhole(self) -> None:
        """Stop forwarding on every open connection and hold new ones silently."""
        with self._lock:
            self._black = True
            for pair in self._pairs:
                if not pair.frozen.is_set():
                    pair.frozen.set()
                    self.black_holed += 1

    def restore(self) -> None:
        """Forward new connections again; black-holed ones stay silent."""
        with self._lock:
            self._black = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pairs, self._pairs = self._pairs, []
        with contextlib.suppress(OSError):
            self._listener.close()
        for pair in pairs:
            pair.close()

    # -- internals ----------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._closed:
                    client.close()
                    return
                black = self._black
                self.accepted += 1
            upstream = None
            if not black:
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                    upstream.settimeout(None)
                except OSError:
                    client.close()
                    continue
            pair = _Pair(client, upstream)
            if black:
                pair.frozen.set()
            with self._lock:
                self._pairs.append(pair)
                if black:
                    self.black_holed += 1
            threading.Thread(target=self._pump, args=(pair, client, upstream), daemon=True).start()
            if upstream is not None:
                threading.Thread(
                    target=self._pump, args=(pair, upstream, client), daemon=True
                ).start()

    def _pump(self, pair: _Pair, source: socket.socket, sink: socket.socket | None) -> None:
        while True:
            try:
                data = source.recv(_CHUNK)
            except OSError:
                data = b""
            if not data:
                if not pair.frozen.is_set():
                    pair.close()  # a real close is forwarded as one
                return
            if pair.frozen.is_set() or sink is None:
                continue  # swallowed: acknowledged by our kernel, never delivered
            try:
                sink.sendall(data)
            except OSError:
                if not pair.frozen.is_set():
                    pair.close()
                return
