"""A model of the S3 link for the benchmark: an HTTP proxy between a loader and the moto server.

usage: python benchmarks/s3link.py --upstream http://127.0.0.1:PORT [--port 0] [--latency-ms 30]
                                   [--mbps 90] [--host 127.0.0.1]
prints its URL on the first line, then serves until killed. Or, from Python:
``url, stop = start_link("http://127.0.0.1:PORT", latency=0.03, mbps=90)``.

What it models (stdlib only, one thread per client connection, keep-alive):
- first-byte latency: no response starts before ``latency`` after its request was read in full
  (the upstream's own time counts towards it);
- bandwidth per connection, both directions: request bodies are read from the client and responses
  written to it at most ``mbps`` MB/s (10**6 bytes) each (0 = no cap);
- ranged reads at the price of the range: an object GET or HEAD (path style ``/bucket/key``, with or
  without ``Range``, ``If-Match``, ``If-None-Match``) is served from a copy of the object the link
  fetched once from the upstream per (bucket, key) and keeps in a temporary file; a range costs its
  own bytes (``os.sendfile`` from that file), never the upstream's whole-object read.
- everything else (PUT, POST, DELETE, listings, multipart, Glue's JSON calls, versioned or part reads)
  is forwarded to the upstream as it came, bodies streamed both ways. A write or delete through the
  link drops the copies it may change (the key; on a bucket's multi-object delete, the bucket's).

``GET /__s3link__/stats`` answers the counts since the last such call (requests, object GETs with
and without Range, HEADs, forwarded requests, bytes each way) and starts them again.

Writes made straight to the upstream (not through the link) after the link copied a key are not seen:
the benchmark stages its source before the link reads it.
"""

from __future__ import annotations

import argparse
import email.utils
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

CHUNK = 256 * 1024
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
}
# object headers replayed from the upstream's answer on every cached GET/HEAD
KEPT = {
    "etag",
    "last-modified",
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
}
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CACHEABLE_QUERY = {"x-id"}
# not an S3 path (no bucket name starts with "_"): the counts since the last read, as JSON
STATS_PATH = "/__s3link__/stats"


class Pacer:
    """Holds one connection's direction to ``rate`` bytes per second (None: no cap)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.clock = 0.0

    def pace(self, n: int) -> None:
        if not self.rate:
            return
        now = time.monotonic()
        self.clock = max(self.clock, now) + n / self.rate
        if self.clock > now:
            time.sleep(self.clock - now)


class Copy:
    """One object's bytes in a temporary file, with the headers to answer with."""

    def __init__(self, fd: int, size: int, headers: dict[str, str]) -> None:
        self.fd = fd
        self.size = size
        self.headers = headers
        self.users = 0
        self.dropped = False
        self.lock = threading.Lock()

    def acquire(self) -> bool:
        with self.lock:
            if self.dropped:
                return False
            self.users += 1
            return True

    def release(self) -> None:
        with self.lock:
            self.users -= 1
            close = self.dropped and self.users == 0
        if close:
            os.close(self.fd)

    def drop(self) -> None:
        with self.lock:
            self.dropped = True
            close = self.users == 0
        if close:
            os.close(self.fd)


class Store:
    """The link's object copies, filled once per (bucket, key) and dropped on writes."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.copies: dict[tuple[str, str], Copy] = {}
        self.filling: dict[tuple[str, str], threading.Lock] = {}
        self.lock = threading.Lock()
        self.fills = 0

    def get(self, key: tuple[str, str]) -> Copy | None:
        with self.lock:
            copy = self.copies.get(key)
        return copy if copy is not None and copy.acquire() else None

    def fill_lock(self, key: tuple[str, str]) -> threading.Lock:
        with self.lock:
            return self.filling.setdefault(key, threading.Lock())

    def put(self, key: tuple[str, str], copy: Copy) -> None:
        with self.lock:
            old = self.copies.pop(key, None)
            self.copies[key] = copy
            self.fills += 1
        if old is not None:
            old.drop()

    def drop(self, bucket: str, key: str | None) -> None:
        with self.lock:
            gone = [k for k in self.copies if k[0] == bucket and (key is None or k[1] == key)]
            copies = [self.copies.pop(k) for k in gone]
        for c in copies:
            c.drop()

    def drop_all(self) -> None:
        with self.lock:
            copies = list(self.copies.values())
            self.copies.clear()
        for c in copies:
            c.drop()

    def close(self) -> None:
        self.drop_all()
        shutil.rmtree(self.workdir, ignore_errors=True)


class Link(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], upstream: str, latency: float, mbps: float) -> None:
        super().__init__(addr, Handler)
        up = urlsplit(upstream)
        if up.scheme != "http" or not up.hostname:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.up_host = up.hostname
        self.up_port = up.port or 80
        self.latency = latency
        self.rate = mbps * 1e6 if mbps > 0 else None
        self.store = Store(tempfile.mkdtemp(prefix="s3link-"))
        self.stats: dict[str, int] = {}
        self.stats_lock = threading.Lock()

    def count(self, **add: int) -> None:
        with self.stats_lock:
            for k, v in add.items():
                self.stats[k] = self.stats.get(k, 0) + v

    def take_stats(self) -> dict[str, int]:
        """The counts since the last call (requests by kind, bytes each way), then zero."""
        with self.stats_lock:
            stats, self.stats = self.stats, {}
        return stats

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up mid-answer is routine (a reader that stops early); others print."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)  # type: ignore[arg-type]

    def upstream(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.up_host, self.up_port, timeout=600)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Link

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.up_pacer = Pacer(self.server.rate)  # client -> link (request bodies)
        self.down_pacer = Pacer(self.server.rate)  # link -> client (responses)

    def log_message(self, format: str, *args: object) -> None:
        pass

    # one entry point for every method
    def do_GET(self) -> None:
        self.dispatch()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = do_PATCH = do_GET

    def dispatch(self) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        bucket, _, key = path.lstrip("/").partition("/")
        if path == STATS_PATH:
            self.answer_stats()
            return
        if self.command in ("GET", "HEAD") and bucket and key and set(query) <= CACHEABLE_QUERY:
            kind = "head" if self.command == "HEAD" else ("ranged_get" if "Range" in self.headers else "get")
            self.server.count(requests=1, **{kind: 1})
            self.serve_object(bucket, key)
            return
        self.server.count(requests=1, forwarded=1)
        writes = self.command not in ("GET", "HEAD")
        if writes and bucket == "moto-api":  # the emulator's reset: nothing copied is current
            self.server.store.drop_all()
        elif writes and bucket:
            self.server.store.drop(bucket, key if key else None)
        self.forward()
        if writes and bucket and bucket != "moto-api":  # a read that raced the write copied the old bytes
            self.server.store.drop(bucket, key if key else None)

    def answer_stats(self) -> None:
        body = json.dumps(self.server.take_stats()).encode()
        self.send_response_only(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.stamp_headers()
        self.end_headers()
        self.wfile.write(body)

    # ---- forwarding -------------------------------------------------------------------------
    def forward(self) -> None:
        ready = time.monotonic()
        conn = self.server.upstream()
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    conn.putheader(name, value)
            chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            if chunked:
                self.relay_chunked_body(conn)
            else:
                self.relay_body(conn, int(self.headers.get("Content-Length") or 0))
            ready = time.monotonic()
            resp = conn.getresponse()
            self.wait_first_byte(ready)
            self.relay_response(resp)
        finally:
            conn.close()

    def relay_body(self, conn: http.client.HTTPConnection, length: int) -> None:
        while length > 0:
            data = self.rfile.read(min(CHUNK, length))
            if not data:
                raise ConnectionError("client closed mid-body")
            self.up_pacer.pace(len(data))
            conn.send(data)
            self.server.count(bytes_in=len(data))
            length -= len(data)

    def relay_chunked_body(self, conn: http.client.HTTPConnection) -> None:
        """Pass a chunked request body through as it came (framing included)."""
        while True:
            line = self.rfile.readline(65537)
            conn.send(line)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    trailer = self.rfile.readline(65537)
                    conn.send(trailer)
                    if trailer in (b"\r\n", b"\n", b""):
                        return
            left = size + 2  # the data and its CRLF
            while left > 0:
                data = self.rfile.read(min(CHUNK, left))
                if not data:
                    raise ConnectionError("client closed mid-body")
                self.up_pacer.pace(len(data))
                conn.send(data)
                self.server.count(bytes_in=len(data))
                left -= len(data)

    def relay_response(self, resp: http.client.HTTPResponse) -> None:
        self.send_response_only(resp.status, resp.reason)
        length = resp.getheader("Content-Length")
        for name, value in resp.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() not in ("date", "server"):
                self.send_header(name, value)
        no_body = self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        chunked = length is None and not no_body
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.stamp_headers()
        self.end_headers()
        if no_body:
            resp.read()
            return
        while data := resp.read(CHUNK):
            self.down_pacer.pace(len(data))
            self.server.count(bytes_out=len(data))
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self.wfile.write(data)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def stamp_headers(self) -> None:
        self.send_header("Date", email.utils.formatdate(usegmt=True))
        self.send_header("Server", "s3link")
        if self.close_connection:
            self.send_header("Connection", "close")

    def wait_first_byte(self, ready: float) -> None:
        left = ready + self.server.latency - time.monotonic()
        if left > 0:
            time.sleep(left)

    # ---- object reads from the copy ---------------------------------------------------------
    def serve_object(self, bucket: str, key: str) -> None:
        ready = time.monotonic()
        copy = self.server.store.get((bucket, key)) or self.fill(bucket, key, ready)
        if copy is None:  # the upstream answered with an error, already relayed
            return
        try:
            self.answer_from(copy, ready)
        finally:
            copy.release()

    def fill(self, bucket: str, key: str, ready: float) -> Copy | None:
        """Fetch the object once (one fetch at a time per key); None when the upstream refused it
        (its answer is relayed to the client)."""
        store = self.server.store
        with store.fill_lock((bucket, key)):
            copy = store.get((bucket, key))
            if copy is not None:
                return copy
            conn = self.server.upstream()
            try:
                conn.putrequest("GET", self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in HOP_BY_HOP and not name.lower().startswith(("range", "if-")):
                        conn.putheader(name, value)
                if "x-amz-checksum-mode" not in self.headers:
                    conn.putheader("x-amz-checksum-mode", "ENABLED")  # kept for the readers that ask
                conn.endheaders()
                resp = conn.getresponse()
                if resp.status != 200:
                    self.wait_first_byte(ready)
                    self.relay_response(resp)
                    return None
                copy = self.keep(resp)
            finally:
                conn.close()
            copy.acquire()
            store.put((bucket, key), copy)
            return copy

    def keep(self, resp: http.client.HTTPResponse) -> Copy:
        fd, path = tempfile.mkstemp(dir=self.server.store.workdir)
        os.unlink(path)
        size = 0
        while data := resp.read(1 << 20):
            os.write(fd, data)
            size += len(data)
        headers = {}
        for name, value in resp.getheaders():
            low = name.lower()
            if low in KEPT or (low.startswith("x-amz-") and low not in ("x-amz-request-id", "x-amz-id-2")):
                headers[name] = value
        return Copy(fd, size, headers)

    def answer_from(self, copy: Copy, ready: float) -> None:
        etag = next((v for k, v in copy.headers.items() if k.lower() == "etag"), "")
        failed = self.precondition(etag)
        if failed:
            self.wait_first_byte(ready)
            self.error(*failed)
            return
        start, end, status = 0, copy.size - 1, 200
        asked = self.headers.get("Range")
        if asked and RANGE.match(asked.strip()):  # another form (several ranges): S3 sends it all
            span = self.span(asked, copy.size)
            if span is None:
                self.wait_first_byte(ready)
                self.error(416, "InvalidRange", "The requested range is not satisfiable")
                return
            start, end = span
            status = 206
        self.wait_first_byte(ready)
        self.send_response_only(status)
        checksums = status == 200 and self.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"
        for name, value in copy.headers.items():
            if checksums or not name.lower().startswith("x-amz-checksum"):  # S3 sends none for a range
                self.send_header(name, value)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1 if copy.size else 0))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{copy.size}")
        self.send_header("x-amz-request-id", uuid.uuid4().hex[:16].upper())
        self.stamp_headers()
        self.end_headers()
        if self.command == "HEAD" or copy.size == 0:
            return
        self.send_range(copy.fd, start, end - start + 1)

    def precondition(self, etag: str) -> tuple[int, str, str] | None:
        match = self.headers.get("If-Match")
        if match is not None and not tag_in(etag, match):
            return 412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold"
        none = self.headers.get("If-None-Match")
        if none is not None and tag_in(etag, none):
            return 304, "NotModified", "Not Modified"
        return None

    @staticmethod
    def span(asked: str, size: int) -> tuple[int, int] | None:
        """The inclusive byte span of a single ``bytes=`` range; None when it cannot be satisfied."""
        m = RANGE.match(asked.strip())
        if not m or (not m[1] and not m[2]):
            return None
        if not m[1]:
            n = int(m[2])
            return (max(0, size - n), size - 1) if n > 0 and size > 0 else None
        first = int(m[1])
        last = int(m[2]) if m[2] else size - 1
        if first >= size or last < first:
            return None
        return (first, min(last, size - 1))

    def send_range(self, fd: int, offset: int, count: int) -> None:
        sock = self.connection.fileno()
        step = CHUNK if self.server.rate else 8 << 20
        while count > 0:
            n = min(step, count)
            self.down_pacer.pace(n)
            while n > 0:
                sent = os.sendfile(sock, fd, offset, n)
                if sent == 0:
                    raise ConnectionError("client closed mid-response")
                offset += sent
                count -= sent
                n -= sent
                self.server.count(bytes_out=sent)

    def error(self, status: int, code: str, message: str) -> None:
        body = b""
        if self.command != "HEAD" and status != 304:
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>{message}</Message>"
                f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
            ).encode()
        self.send_response_only(status)
        if body:
            self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.stamp_headers()
        self.end_headers()
        if body:
            self.wfile.write(body)


def tag_in(etag: str, header: str) -> bool:
    """Whether an If-Match / If-None-Match list names this ETag (``*`` names any)."""
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag.strip() in tags or etag.strip().strip('"') in [t.strip('"') for t in tags]


def start_link(
    upstream: str, latency: float = 0.03, mbps: float = 90, host: str = "127.0.0.1", port: int = 0
) -> tuple[str, Callable[[], None]]:
    """Serve the link in a background thread; returns its URL and a function that stops it.
    ``latency`` in seconds; ``mbps`` in MB/s (10**6 bytes) per connection and direction, 0 = no cap."""
    link = Link((host, port), upstream, latency, mbps)
    thread = threading.Thread(target=link.serve_forever, name="s3link", daemon=True)
    thread.start()

    def stop() -> None:
        link.shutdown()
        link.server_close()
        link.store.close()
        thread.join(10)

    return f"http://{host}:{link.server_address[1]}", stop


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", required=True, help="the emulator, http://host:port")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency-ms", type=float, default=30.0, help="first-byte latency per request")
    ap.add_argument("--mbps", type=float, default=90.0, help="MB/s per connection and direction; 0 = no cap")
    a = ap.parse_args(argv)
    link = Link((a.host, a.port), a.upstream, a.latency_ms / 1000, a.mbps)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"http://{a.host}:{link.server_address[1]}", flush=True)
    try:
        link.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        link.server_close()
        link.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
