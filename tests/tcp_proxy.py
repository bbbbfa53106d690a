"""A test-owned TCP proxy that cuts connections, or goes silent: the network faults a stream
must survive (a resume) or be freed from (server keepalive).

    with CuttingProxy(upstream="127.0.0.1:50051", cuts=[3_000]) as proxy:
        client = SpotClient(proxy.target)   # 1st connection dies after 3,000 bytes came back

Connection i is cut (both sockets reset, no goodbye) once `cuts[i]` bytes went from the server
to the client (counting answers, not requests, puts the cut among the results, wherever the
client's sending is); connections after the last cut are forwarded untouched. Plain threads
and sockets: what the client and server see is a real dropped TCP connection.

`go_silent()` turns every connection into a black hole: bytes are still read (so neither side's
TCP stack notices anything) but never forwarded, and a side that closes is not told to the
other: a network that stopped forwarding without closing. Only a ping that is never answered
(gRPC keepalive) can find it.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class CuttingProxy:
    def __init__(self, upstream: str, cuts: list[int]) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.cuts = list(cuts)
        self.connections = 0
        self.cut_count = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._closing = threading.Event()
        self.silent = threading.Event()
        self._pairs: list[_Pair] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> CuttingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._listener.close()
        for pair in self._pairs:  # silent connections are still open: the test ends them
            pair.close()

    def go_silent(self) -> None:
        """From now on forward nothing, in either direction, and close nothing."""
        self.silent.set()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            limit = self.cuts[self.connections] if self.connections < len(self.cuts) else None
            self.connections += 1
            server = socket.create_connection(self.upstream)
            pair = _Pair(client, server, limit, self)
            self._pairs.append(pair)
            threading.Thread(target=pair.pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=pair.pump, args=(server, client, True), daemon=True).start()


class _Pair:
    def __init__(self, client: socket.socket, server: socket.socket, limit: int | None,
                 proxy: CuttingProxy) -> None:
        self.sockets = (client, server)
        self.limit = limit
        self.sent = 0
        self.proxy = proxy
        self.lock = threading.Lock()

    def pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while data := source.recv(65536):
                if self.proxy.silent.is_set():
                    continue  # swallowed: the network went silent
                if counted and self.limit is not None:
                    with self.lock:
                        room = self.limit - self.sent
                        self.sent += len(data)
                    if room <= len(data):
                        sink.sendall(data[:max(room, 0)])
                        self.cut()
                        return
                sink.sendall(data)
        except OSError:
            pass
        if not self.proxy.silent.is_set():  # a silent network does not carry the goodbye
            self.close()

    def cut(self) -> None:
        self.proxy.cut_count += 1
        for sock in self.sockets:  # no lingering: the connection dies as in a network drop
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        for sock in self.sockets:
            # shutdown first: close() alone does not wake the other pump blocked in recv() on
            # this socket, so the connection would stay open and the client would wait forever.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
