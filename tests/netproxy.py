"""A loopback TCP proxy that can hold one direction of traffic: a real network fault for tests."""

from __future__ import annotations

import contextlib
import socket
import threading

# PostgreSQL's CommandComplete message for COMMIT: 'C', length 11, "COMMIT\0".
PG_COMMIT_DONE = b"C\x00\x00\x00\x0bCOMMIT\x00"


class Proxy:
    """Forwards 127.0.0.1:<port> to an upstream port; `hold_upstream` stops client→server bytes;
    `cut_reply_after` loses one reply on the way back and drops that connection."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.hold_upstream = threading.Event()
        self.held_bytes = 0
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        # (request marker, reply marker): armed by cut_reply_after, one shot.
        self._trap: tuple[bytes, bytes] | None = None
        self._primed: set[int] = set()  # ids of client sockets that sent the request marker
        self.tripped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_reply_after(self, request: bytes, reply: bytes = PG_COMMIT_DONE) -> None:
        """Once a client has sent `request`, swallow the next server chunk holding `reply` on
        that connection and drop it: the server did the work, the client never hears so (a
        commit whose answer was lost). One shot; `tripped` is set when it happened."""
        self._trap = (request, reply)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()  # upstream down: the client sees its connection closed
                continue
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, is_upstream: bool) -> None:
        client = src if is_upstream else dst
        tail = b""  # the end of the previous chunk: a marker may straddle two reads
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            if is_upstream and self.hold_upstream.is_set():
                self.held_bytes += len(data)  # swallowed: as if the link died mid-way
                continue
            trap = self._trap
            if trap is not None:
                seen = tail + data
                tail = seen[-64:]
                if is_upstream and trap[0] in seen:
                    self._primed.add(id(client))
                elif not is_upstream and id(client) in self._primed and trap[1] in seen:
                    self._trap = None
                    self.tripped.set()
                    break  # the reply is lost and the connection dies with it
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        # Each socket is the source of one pump, which closes it: thousands of short
        # connections (an HTTP client retrying) must not run out of file descriptors.
        with self._lock:
            if src in self._socks:
                self._socks.remove(src)
        with contextlib.suppress(OSError):
            src.close()

    def cut(self) -> None:
        """Drop every connection at once (what a dead link looks like to both sides)."""
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            # close() alone does not end a recv() blocked in the pump's thread (the kernel
            # keeps the socket until it returns), so an idle connection would stay up until
            # its next byte; shutdown wakes it now.
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        """Stop accepting and drop every connection."""
        self._closed = True
        self.listener.close()
        self.cut()
