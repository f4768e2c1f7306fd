"""Object storage for notebook 07: a real HTTP server on 127.0.0.1 standing in for S3 or GCS.

Object stores are read over HTTP: every read is a request (a GET, often with a `Range` header
asking for some bytes of one object), and both the number of requests and the bytes they carry
cost time and, in a cloud, money. `HTTPStore` serves the files under a folder from a background
thread of this process and counts every request and every byte of body it sends, so a cell can
say exactly what reading some samples cost. DataLoader workers (forked or spawned) reach it over
TCP like any client, so their requests are counted too.

The measurement helpers return frozen dataclasses with a `line()` to print:

- `measure` times one read function and takes the store's counters (`ReadCost`);
- `write_zarr_variants` / `zarr_read_costs`: Zarr v3 arrays with one sample per chunk, 16 per
  chunk, and one-sample chunks inside 64-sample shards, read over HTTP and from disk;
- `write_raw_images` / `block_cache_costs`: fsspec's block caches on a plain `.npy` file (they
  do not work under Zarr, zarr-python#2988), for sequential and random reads;
- `chunk_sweep`: requests and bytes per sample against the chunk size (`SweepPoint`).
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import TCPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

import fsspec
import h5py
import numpy as np

from memcourse.forksafe import protect_event_loops_across_fork

if TYPE_CHECKING:
    import zarr

protect_event_loops_across_fork()

# Bytes read from a file and written to the socket at a time: a response never holds more.
STREAM_BLOCK = 256 * 2**10
# How long `traffic()` and `reset()` wait for requests in flight before giving up (seconds).
SETTLE_TIMEOUT_S = 10.0
_RANGE = re.compile(r"\s*(\d*)\s*-\s*(\d*)\s*")


class RangeError(Exception):
    """A `Range` header the server answers with an error status (400 or 416)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The bytes `[start, stop)` one HTTP `Range` header asks of a `size`-byte file.

    None means "send the whole file" (no header, or a unit other than `bytes`, which RFC 9110
    says to ignore). `bytes=a-b` is clipped to the file, `bytes=a-` runs to its end and
    `bytes=-n` is its last n bytes (all of it when n >= size). Raises `RangeError` with status
    416 when nothing of the file is asked for (a start at or past the end, `-0`, `b < a`, an
    empty file) and 400 for a multi-range (`bytes=0-1,5-9`) or a malformed header.
    """
    if header is None:
        return None
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        raise RangeError(400, "multiple ranges are not supported")
    m = _RANGE.fullmatch(spec)
    if m is None or m.group(1) == m.group(2) == "":
        raise RangeError(400, f"malformed Range header {header!r}")
    first, last = m.group(1), m.group(2)
    if first == "":  # suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeError(416, "empty suffix range")
        return max(0, size - n), size
    start = int(first)
    if start >= size:
        raise RangeError(416, f"range starts at {start}, file has {size} bytes")
    if last == "":
        return start, size
    if int(last) < start:
        raise RangeError(416, f"range ends before it starts: {header!r}")
    return start, min(int(last) + 1, size)


@dataclass(frozen=True)
class Request:
    """One request the store answered: method, path relative to the root, status, body bytes."""

    method: str
    path: str
    status: int
    bytes_sent: int
    range: str | None  # the Range header as sent, or None


@dataclass(frozen=True)
class Traffic:
    """What an `HTTPStore` served since its last `reset()`.

    `requests` counts every request (GET, HEAD, errors), `gets` the GETs, `bytes_sent` the bytes
    of response bodies; `by_path` maps a path relative to the root to (requests, bytes).
    """

    requests: int
    gets: int
    bytes_sent: int
    by_path: dict[str, tuple[int, int]]

    def line(self) -> str:
        """One sentence: requests, GETs, MiB sent and how many paths."""
        return (f"{self.requests} requests ({self.gets} GET), {self.bytes_sent / 2**20:.2f} MiB "
                f"sent, {len(self.by_path)} paths")


class _Handler(BaseHTTPRequestHandler):
    """Serves files under the store's root with single byte ranges, and reports each request."""

    # HTTP/1.1 keeps connections open between requests, as cloud clients do.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm a small body then
    # waits for the client's delayed ACK of the headers (~40 ms a request on Linux).
    disable_nagle_algorithm = True
    server: HTTPStore

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass  # quiet: a notebook cell must not fill with access-log lines

    def setup(self) -> None:
        super().setup()
        self.server._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server._untrack(self.connection)

    def do_GET(self) -> None:  # noqa: N802 (the name http.server dispatches to)
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        rel = unquote(urlsplit(self.path).path).lstrip("/")
        status, sent = 500, 0
        self.server._begin()
        try:
            status, sent = self._send(rel, body)
        finally:
            self.server._end(Request(self.command, rel, status, sent,
                                     self.headers.get("Range")))

    def _empty(self, status: int, **headers: str) -> tuple[int, int]:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return status, 0

    def _send(self, rel: str, body: bool) -> tuple[int, int]:
        root = self.server.root
        target = (root / rel).resolve()
        if not target.is_relative_to(root):
            return self._empty(403)
        if not target.is_file():
            return self._empty(404)
        try:
            f = open(target, "rb")  # noqa: SIM115 (closed below, after the body is streamed)
        except OSError:
            return self._empty(404)
        with f:
            size = os.fstat(f.fileno()).st_size
            try:
                wanted = parse_range(self.headers.get("Range"), size)
            except RangeError as e:
                extra = {"Content_Range": f"bytes */{size}"} if e.status == 416 else {}
                return self._empty(e.status, Accept_Ranges="bytes", **extra)
            start, stop = wanted if wanted is not None else (0, size)
            status = 200 if wanted is None else 206
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(stop - start))
            if wanted is not None:
                self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
            self.end_headers()
            if not body:
                return status, 0
            f.seek(start)
            sent, left = 0, stop - start
            try:
                while left > 0:
                    block = f.read(min(STREAM_BLOCK, left))
                    if not block:  # the file shrank: the promised length cannot be kept
                        self.close_connection = True
                        break
                    self.wfile.write(block)
                    sent += len(block)
                    left -= len(block)
            except (BrokenPipeError, ConnectionResetError):  # the client went away
                self.close_connection = True
            return status, sent


class HTTPStore(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 serving the files under `root`, counting requests and bytes.

    GET and HEAD; one `Range` per request (`bytes=a-b`, `bytes=a-`, `bytes=-n`) is answered
    206 with `Content-Range`, a range outside the file 416, a multi-range or malformed one 400
    (not the whole file: a client asking for pieces should learn they are not coming). No
    `Range`: 200 and the whole file. Every response has `Content-Length` and
    `Accept-Ranges: bytes`; a missing file is 404, a path outside `root` 403. Files are
    streamed `STREAM_BLOCK` bytes at a time. Nothing is logged.

    `HTTPStore(root)` binds a free port (`port=0`); `start()` (or `with`, or `serve(root)`)
    runs it in a daemon thread of this process, `close()` stops it. Give DataLoader workers
    `url_for(...)` strings, not the store: it holds sockets, and only this process's copy
    counts. Raises NotADirectoryError when `root` is not a folder.
    """

    daemon_threads = True
    # Connections are closed by close() itself; waiting on their threads could hang on a
    # client that keeps an idle keep-alive connection open.
    block_on_close = False
    # Zarr and fsspec open many connections at once; a short backlog would drop some.
    request_queue_size = 128

    def __init__(self, root: str | os.PathLike, port: int = 0) -> None:
        root = Path(root).resolve()
        if not root.is_dir():
            raise NotADirectoryError(f"HTTPStore root {root} is not a folder")
        self.root = root
        self._cond = threading.Condition()
        self._in_flight = 0
        self._log: list[Request] = []
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._thread: threading.Thread | None = None
        self._closed = False
        super().__init__(("127.0.0.1", port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that drops its connection is normal (a timeout, a closed pool); only
        # other errors are worth the traceback socketserver prints to stderr.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host's name up (socket.getfqdn), which can stall.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    # ---------------------------------------------------------------- life cycle

    def start(self) -> HTTPStore:
        """Serve from a daemon thread (once; later calls do nothing). Returns self."""
        if self._closed:
            raise RuntimeError("this HTTPStore is closed; start a new one")
        if self._thread is None:
            self._thread = threading.Thread(target=self.serve_forever, kwargs={
                "poll_interval": 0.05}, name=f"HTTPStore {self.url}", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, drop open connections, close the socket and join the threads."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
        with self._cond:
            connections = dict(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes a handler waiting on a keep-alive read
            except OSError:
                pass
        self.server_close()
        for thread in connections.values():
            thread.join(timeout=5.0)

    def __enter__(self) -> HTTPStore:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HTTPStore({str(self.root)!r}, url={self.url!r})"

    # ---------------------------------------------------------------- addresses

    @property
    def url(self) -> str:
        """The server's base URL, `http://127.0.0.1:PORT` (no trailing slash)."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def url_for(self, path: str | os.PathLike) -> str:
        """The URL of `path`: relative to the root, or absolute inside it.

        Raises ValueError for a path outside the root.
        """
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root):
            raise ValueError(f"{path} is not under the store's root {self.root}")
        return f"{self.url}/{quote(target.relative_to(self.root).as_posix())}"

    # ---------------------------------------------------------------- counters

    def _track(self, conn: socket.socket) -> None:
        with self._cond:
            self._connections[conn] = threading.current_thread()

    def _untrack(self, conn: socket.socket) -> None:
        with self._cond:
            self._connections.pop(conn, None)

    def _begin(self) -> None:
        # Called before any byte of the response is sent, so a client that has its answer
        # either sees the request recorded or still in flight, never neither.
        with self._cond:
            self._in_flight += 1

    def _end(self, request: Request) -> None:
        with self._cond:
            self._log.append(request)
            self._in_flight -= 1
            self._cond.notify_all()

    def _settle(self, timeout: float) -> None:
        if not self._cond.wait_for(lambda: self._in_flight == 0, timeout):
            raise TimeoutError(f"{self._in_flight} request(s) still in flight after {timeout} s "
                               "(a stream left open, or a reader still running?)")

    def log(self, timeout: float = SETTLE_TIMEOUT_S) -> tuple[Request, ...]:
        """Every request since the last `reset()`, in the order they finished."""
        with self._cond:
            self._settle(timeout)
            return tuple(self._log)

    def traffic(self, timeout: float = SETTLE_TIMEOUT_S) -> Traffic:
        """The counters since the last `reset()`, once no request is in flight.

        Waits up to `timeout` seconds for requests being answered to finish, so a snapshot taken
        right after a read includes all of it. Raises TimeoutError when they do not.
        """
        with self._cond:
            self._settle(timeout)
            log = list(self._log)
        by_path: dict[str, tuple[int, int]] = {}
        for r in log:
            n, b = by_path.get(r.path, (0, 0))
            by_path[r.path] = (n + 1, b + r.bytes_sent)
        return Traffic(requests=len(log), gets=sum(r.method == "GET" for r in log),
                       bytes_sent=sum(r.bytes_sent for r in log), by_path=by_path)

    def reset(self, timeout: float = SETTLE_TIMEOUT_S) -> None:
        """Zero the counters, after waiting (like `traffic`) for requests in flight."""
        with self._cond:
            self._settle(timeout)
            self._log.clear()


def serve(root: str | os.PathLike) -> HTTPStore:
    """Start an `HTTPStore` serving `root` on a free port of 127.0.0.1; `close()` it when done."""
    return HTTPStore(root).start()


# ==================================================================== measuring reads


@dataclass(frozen=True)
class ReadCost:
    """What reading `samples` samples cost: requests, bytes of response bodies and seconds.

    `sample_bytes` is the size of one sample as stored (76,800 for a 3x160x160 uint8 image), so
    `amplification` = bytes transferred / bytes of the samples asked for (1.0: nothing wasted).
    A local read has 0 requests and 0 bytes; only its time counts.
    """

    label: str
    samples: int
    requests: int
    bytes_sent: int
    seconds: float
    sample_bytes: int

    @property
    def requests_per_sample(self) -> float:
        return self.requests / self.samples

    @property
    def bytes_per_sample(self) -> float:
        return self.bytes_sent / self.samples

    @property
    def amplification(self) -> float:
        return self.bytes_sent / (self.samples * self.sample_bytes)

    @property
    def ms_per_sample(self) -> float:
        return 1000 * self.seconds / self.samples

    def line(self) -> str:
        """One aligned row: label, requests and KiB per sample, amplification, ms per sample."""
        if self.requests == 0 and self.bytes_sent == 0:
            http = f"{'local file, no requests':>50}"
        else:
            http = (f"{self.requests_per_sample:6.2f} req/sample "
                    f"{self.bytes_per_sample / 1024:9.1f} KiB/sample  x{self.amplification:6.2f}")
        return f"{self.label:<38} {http} {self.ms_per_sample:8.2f} ms/sample"


def measure(store: HTTPStore | None, label: str, read_fn: Callable[[], Any], samples: int,
            sample_bytes: int) -> ReadCost:
    """Reset the store's counters, time `read_fn()`, and return what it cost.

    `samples` is how many samples `read_fn` reads and `sample_bytes` the size of one. With
    `store=None` (a local read) only the time is measured.
    """
    if store is not None:
        store.reset()
    start = time.perf_counter()
    read_fn()
    seconds = time.perf_counter() - start
    t = store.traffic() if store is not None else Traffic(0, 0, 0, {})
    return ReadCost(label, int(samples), t.requests, t.bytes_sent, seconds, int(sample_bytes))


def print_costs(costs: Sequence[ReadCost]) -> None:
    """Print one `line()` per cost."""
    for cost in costs:
        print(cost.line())


# ==================================================================== Zarr over HTTP

# name -> (samples per chunk, samples per shard or None): uncompressed, so bytes compare.
ZARR_VARIANTS: dict[str, tuple[int, int | None]] = {
    "chunk 1": (1, None),
    "chunk 16": (16, None),
    "chunk 1, shard 64": (1, 64),
}


def _h5_images(h5_path: str | os.PathLike, n: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start, images) blocks of 64 of the first n images of a course file."""
    with h5py.File(h5_path, "r") as f:
        images = f["images"]
        n = min(int(n), images.shape[0])
        for start in range(0, n, 64):
            yield start, images[start:min(n, start + 64)]


def write_zarr(h5_path: str | os.PathLike, path: str | os.PathLike, n: int, chunk_samples: int,
               shard_samples: int | None = None) -> Path:
    """Write the first `n` images of a course file as an uncompressed Zarr v3 array at `path`.

    Shape (n, 3, H, W) uint8; a chunk holds `chunk_samples` images, and with `shard_samples`
    the chunks sit inside shards of that many images (one file per shard). Memory stays at 64
    images. Replaces what is at `path`; returns it.
    """
    import zarr  # lazy: only the Zarr helpers need it; the server and raw reads start without

    path = Path(path)
    with h5py.File(h5_path, "r") as f:
        shape = (min(int(n), f["images"].shape[0]), *f["images"].shape[1:])
    chunks = (int(chunk_samples), *shape[1:])
    shards = None if shard_samples is None else (int(shard_samples), *shape[1:])
    z = zarr.create_array(store=str(path), shape=shape, dtype="uint8", chunks=chunks,
                          shards=shards, compressors=None, fill_value=0, overwrite=True)
    for start, block in _h5_images(h5_path, n):
        z[start:start + len(block)] = block
    return path


def write_zarr_variants(h5_path: str | os.PathLike, folder: str | os.PathLike,
                        n: int) -> dict[str, Path]:
    """Write the first `n` images once per `ZARR_VARIANTS` entry under `folder`.

    Returns name -> array path (`folder/chunks1.zarr`, `chunks16.zarr`, `shards64.zarr`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (chunk, shard) in ZARR_VARIANTS.items():
        file = f"shards{shard}.zarr" if shard else f"chunks{chunk}.zarr"
        out[name] = write_zarr(h5_path, folder / file, n, chunk, shard)
    return out


def open_zarr_http(url: str) -> zarr.Array:
    """Open a Zarr v3 array over HTTP, read-only.

    Naming the format costs one request (its `zarr.json`) where letting Zarr guess costs three.
    """
    import zarr  # lazy: only the Zarr helpers need it

    return zarr.open_array(url, mode="r", zarr_format=3)


def _sample_bytes(z: Any) -> int:
    return int(np.prod(z.shape[1:])) * np.dtype(z.dtype).itemsize


def zarr_read_costs(store: HTTPStore, variants: dict[str, Path], reads: int = 32,
                    batch: int = 64, seed: int = 0) -> list[ReadCost]:
    """Read each Zarr variant over HTTP and from disk: `reads` random single samples
    (`z[i]`, one call each, as a map-style Dataset does), then one batch `z[0:batch]`.

    Arrays are opened before timing, so the open's request is not counted. The same random
    indices are used for every variant. Returns, per variant, four `ReadCost`s: HTTP random,
    HTTP batch, local random, local batch.
    """
    import zarr  # lazy: only the Zarr helpers need it

    costs = []
    for name, path in variants.items():
        remote = open_zarr_http(store.url_for(path))
        local = zarr.open_array(str(path), mode="r", zarr_format=3)
        n, sample = remote.shape[0], _sample_bytes(remote)
        idx = np.random.default_rng(seed).choice(n, size=min(reads, n), replace=False)
        b = min(batch, n)
        for where, z, st in (("HTTP", remote, store), ("local", local, None)):
            costs.append(measure(st, f"{name}: {len(idx)} random ({where})",
                                 lambda z=z, idx=idx: [z[int(i)] for i in idx], len(idx), sample))
            costs.append(measure(st, f"{name}: batch of {b} ({where})",
                                 lambda z=z, b=b: z[0:b], b, sample))
    return costs


# ==================================================================== block caches


@dataclass(frozen=True)
class RawImages:
    """A `.npy` file of images laid end to end: sample i is `sample_bytes` bytes at
    `offset + i * sample_bytes`."""

    path: Path
    offset: int
    count: int
    sample_shape: tuple[int, ...]

    @property
    def sample_bytes(self) -> int:
        return int(np.prod(self.sample_shape))


def raw_images(path: str | os.PathLike) -> RawImages:
    """The layout of an existing uint8 `.npy` file of shape (N, ...) (reads only its header).

    Raises ValueError for another dtype or a Fortran-ordered array.
    """
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if dtype != np.uint8 or fortran:
        raise ValueError(f"{path}: expected a C-ordered uint8 array, found {dtype} "
                         f"{'Fortran' if fortran else 'C'}-ordered")
    return RawImages(Path(path), offset, int(shape[0]), tuple(int(s) for s in shape[1:]))


def write_raw_images(h5_path: str | os.PathLike, path: str | os.PathLike, n: int) -> RawImages:
    """Write the first `n` images of a course file to one `.npy` file, 64 images at a time."""
    with h5py.File(h5_path, "r") as f:
        shape = (min(int(n), f["images"].shape[0]), *f["images"].shape[1:])
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    for start, block in _h5_images(h5_path, n):
        out[start:start + len(block)] = block
    out.flush()
    del out
    return raw_images(path)


def read_raw_samples(url: str, raw: RawImages, indices: Sequence[int], cache_type: str = "none",
                     block_size: int = 2**20) -> np.ndarray:
    """Read samples `indices` of `raw` through one fsspec HTTP file, in that order.

    The file is opened with `cache_type` ("none": one range GET per sample; "blockcache":
    whole `block_size` blocks, kept; "readahead": each miss fetches the sample plus
    `block_size` bytes after it) and costs one HEAD to learn its size. Returns
    (len(indices), *sample_shape) uint8.
    """
    out = np.empty((len(indices), *raw.sample_shape), dtype=np.uint8)
    fs = fsspec.filesystem("http")
    with fs.open(url, "rb", block_size=block_size, cache_type=cache_type) as f:
        for k, i in enumerate(indices):
            f.seek(raw.offset + int(i) * raw.sample_bytes)
            out[k] = np.frombuffer(f.read(raw.sample_bytes), np.uint8).reshape(raw.sample_shape)
    return out


def block_cache_costs(store: HTTPStore, raw: RawImages, reads: int = 32,
                      block_size: int = 2**20, seed: int = 0) -> list[ReadCost]:
    """Read `reads` samples of `raw` in order (0, 1, 2, ...) and at random, through each cache.

    For "none", "blockcache" and "readahead" (see `read_raw_samples`), sequential then random.
    Requests include the HEAD of the open. Sequential reads through a cache need few requests;
    random ones fetch a block per sample, mostly wasted (`amplification`).
    """
    k = min(reads, raw.count)
    orders = {"sequential": np.arange(k),
              "random": np.random.default_rng(seed).choice(raw.count, size=k, replace=False)}
    url = store.url_for(raw.path)
    costs = []
    for order, idx in orders.items():
        for cache in ("none", "blockcache", "readahead"):
            label = f"{order}, {cache}" + ("" if cache == "none" else
                                           f" {block_size / 2**20:g} MiB")
            costs.append(measure(store, label, lambda c=cache, i=idx: read_raw_samples(
                url, raw, i, c, block_size), k, raw.sample_bytes))
    return costs


# ==================================================================== chunk-size sweep


@dataclass(frozen=True)
class SweepPoint:
    """Reading a batch of B consecutive and B random samples from a Zarr array of one chunk
    size (samples per chunk), over HTTP."""

    chunk_samples: int
    consecutive: ReadCost
    random: ReadCost

    def line(self) -> str:
        """Requests and KiB per sample for both reads."""
        c, r = self.consecutive, self.random
        return (f"chunk {self.chunk_samples:3d}: consecutive {c.requests_per_sample:5.2f} req "
                f"{c.bytes_per_sample / 1024:7.1f} KiB per sample | random "
                f"{r.requests_per_sample:5.2f} req {r.bytes_per_sample / 1024:7.1f} KiB per sample")


def chunk_sweep(store: HTTPStore, h5_path: str | os.PathLike, folder: str | os.PathLike,
                chunk_sizes: Sequence[int] = (1, 4, 16, 64), batch: int = 64, n: int = 256,
                seed: int = 0) -> list[SweepPoint]:
    """For each chunk size, write the first `n` images (uncompressed Zarr, `folder/chunksC.zarr`,
    which must be under the store's root) and read over HTTP one batch of `batch` consecutive
    samples (`z[0:batch]`, chunk-aligned) and one of `batch` random samples (`z.oindex[idx]`).

    Zarr fetches each chunk a batch touches once, whole: consecutive reads need about
    batch / chunk requests, random ones up to one per sample, each carrying a whole chunk.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    points = []
    for c in chunk_sizes:
        path = write_zarr(h5_path, folder / f"chunks{c}.zarr", n, c)
        z = open_zarr_http(store.url_for(path))
        b, sample = min(batch, z.shape[0]), _sample_bytes(z)
        idx = np.sort(np.random.default_rng(seed).choice(z.shape[0], size=b, replace=False))
        points.append(SweepPoint(
            c, measure(store, f"chunk {c}, {b} consecutive", lambda z=z, b=b: z[0:b], b, sample),
            measure(store, f"chunk {c}, {b} random", lambda z=z, i=idx: z.oindex[i], b, sample)))
    return points
