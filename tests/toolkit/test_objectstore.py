"""The object-store stand-in of notebook 07: HTTP ranges, counters, and what reads cost.

One server (`HTTPStore`) per module serves a folder of test files, the tiny dataset as a raw
`.npy` file and as Zarr arrays; each test resets its counters before it reads.
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from pathlib import Path

import fsspec
import numpy as np
import pytest

from memcourse import objectstore as ob

SIZE = 1000  # small.bin
BIG = 600 * 1024  # big.bin: several STREAM_BLOCKs


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("objectstore")
    (base / "outside.txt").write_text("secret")
    root = base / "root"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(7)
    (root / "small.bin").write_bytes(rng.integers(0, 256, SIZE, dtype=np.uint8).tobytes())
    (root / "big.bin").write_bytes(rng.integers(0, 256, BIG, dtype=np.uint8).tobytes())
    (root / "sub" / "name with space.bin").write_bytes(b"0123456789")
    (root / "empty.bin").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def store(root: Path):
    with ob.serve(root) as s:
        yield s


@pytest.fixture
def fresh(store: ob.HTTPStore) -> ob.HTTPStore:
    store.reset()
    return store


def get(store: ob.HTTPStore, path: str, method: str = "GET",
        headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One raw request (http.client sends the path as written, `..` included)."""
    conn = http.client.HTTPConnection("127.0.0.1", store.server_address[1], timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


# ---------------------------------------------------------------- Range semantics


@pytest.mark.parametrize("header, want", [
    (None, None),
    ("bytes=10-19", (10, 20)),
    ("bytes=10-", (10, SIZE)),
    ("bytes=-100", (SIZE - 100, SIZE)),
    ("bytes=-5000", (0, SIZE)),  # a suffix longer than the file is all of it
    ("bytes=990-5000", (990, SIZE)),  # clipped at the end
    ("bytes=0-0", (0, 1)),
    ("items=0-10", None),  # an unknown unit is ignored
])
def test_parse_range(header: str | None, want: tuple[int, int] | None) -> None:
    assert ob.parse_range(header, SIZE) == want


@pytest.mark.parametrize("header, status", [
    ("bytes=1000-", 416), ("bytes=2000-2100", 416), ("bytes=-0", 416), ("bytes=20-10", 416),
    ("bytes=0-1,5-9", 400), ("bytes=abc", 400), ("bytes=-", 400),
])
def test_parse_range_errors(header: str, status: int) -> None:
    with pytest.raises(ob.RangeError) as e:
        ob.parse_range(header, SIZE)
    assert e.value.status == status


@pytest.mark.parametrize("rng, sl", [
    ("bytes=10-19", slice(10, 20)), ("bytes=900-", slice(900, None)),
    ("bytes=-37", slice(-37, None)), ("bytes=0-", slice(0, None)),
])
def test_range_206_is_exactly_the_slice(store: ob.HTTPStore, root: Path, rng: str,
                                        sl: slice) -> None:
    data = (root / "small.bin").read_bytes()
    status, headers, body = get(store, "/small.bin", headers={"Range": rng})
    assert status == 206
    assert body == data[sl]
    start, stop, _ = sl.indices(SIZE)
    assert headers["content-range"] == f"bytes {start}-{stop - 1}/{SIZE}"
    assert headers["content-length"] == str(stop - start)
    assert headers["accept-ranges"] == "bytes"


def test_range_across_stream_blocks(store: ob.HTTPStore, root: Path) -> None:
    data = (root / "big.bin").read_bytes()
    a, b = ob.STREAM_BLOCK - 5, 2 * ob.STREAM_BLOCK + 17
    status, _, body = get(store, "/big.bin", headers={"Range": f"bytes={a}-{b}"})
    assert status == 206 and body == data[a:b + 1]
    status, headers, body = get(store, "/big.bin")
    assert status == 200 and body == data and headers["content-length"] == str(BIG)


def test_whole_file_416_400_head_404(store: ob.HTTPStore, root: Path) -> None:
    data = (root / "small.bin").read_bytes()
    status, headers, body = get(store, "/small.bin")
    assert (status, body, headers["content-length"]) == (200, data, str(SIZE))
    assert headers["accept-ranges"] == "bytes" and "content-range" not in headers

    status, headers, body = get(store, "/small.bin", headers={"Range": f"bytes={SIZE}-"})
    assert (status, body, headers["content-range"]) == (416, b"", f"bytes */{SIZE}")
    assert get(store, "/empty.bin", headers={"Range": "bytes=-1"})[0] == 416
    assert get(store, "/small.bin", headers={"Range": "bytes=0-1,4-5"})[0] == 400

    status, headers, body = get(store, "/small.bin", method="HEAD")
    assert (status, body, headers["content-length"]) == (200, b"", str(SIZE))
    status, headers, body = get(store, "/small.bin", method="HEAD",
                                headers={"Range": "bytes=-10"})
    assert (status, body, headers["content-length"]) == (206, b"", "10")
    assert headers["content-range"] == f"bytes {SIZE - 10}-{SIZE - 1}/{SIZE}"

    for missing in ("/nope.bin", "/sub", "/sub/"):
        status, headers, body = get(store, missing)
        assert (status, headers["content-length"]) == (404, "0"), missing
    status, _, body = get(store, "/sub/name%20with%20space.bin")
    assert (status, body) == (200, b"0123456789")


@pytest.mark.parametrize("path", ["/../outside.txt", "/%2e%2e/outside.txt",
                                  "/sub/../../outside.txt", "//etc/passwd"])
def test_paths_outside_the_root_are_refused(store: ob.HTTPStore, path: str) -> None:
    status, _, body = get(store, path)
    assert status in (403, 404) and b"secret" not in body and b"root:" not in body
    if ".." in path or "%2e" in path:
        assert status == 403


def test_url_for(store: ob.HTTPStore, root: Path) -> None:
    assert store.url.startswith("http://127.0.0.1:")
    assert store.url_for("small.bin") == store.url + "/small.bin"
    assert store.url_for(root / "sub" / "name with space.bin") == \
        store.url + "/sub/name%20with%20space.bin"
    with pytest.raises(ValueError):
        store.url_for(root.parent / "outside.txt")
    with pytest.raises(ValueError):
        store.url_for("../outside.txt")


def test_quiet(store: ob.HTTPStore, capfd: pytest.CaptureFixture) -> None:
    capfd.readouterr()
    get(store, "/small.bin")
    get(store, "/nope")
    get(store, "/small.bin", headers={"Range": "bytes=5000-"})
    store.traffic()
    assert capfd.readouterr().err == ""


# ---------------------------------------------------------------- counters


def test_fsspec_reads_are_counted(fresh: ob.HTTPStore, root: Path) -> None:
    data = (root / "big.bin").read_bytes()
    fs = fsspec.filesystem("http")
    url = fresh.url_for("big.bin")
    got = [fs.cat_file(url, start=i * 1000, end=i * 1000 + 700) for i in range(7)]
    assert got == [data[i * 1000:i * 1000 + 700] for i in range(7)]
    t = fresh.traffic()
    assert (t.requests, t.gets, t.bytes_sent) == (7, 7, 7 * 700)
    assert t.by_path == {"big.bin": (7, 4900)}

    fresh.reset()
    assert fresh.traffic() == ob.Traffic(0, 0, 0, {})
    # 40 small reads through an uncached file: one HEAD (its size) and one GET per read.
    with fs.open(url, "rb", cache_type="none") as f:
        for i in range(40):
            f.seek(i * 5000)
            assert f.read(100) == data[i * 5000:i * 5000 + 100]
    t = fresh.traffic()
    assert (t.requests, t.gets, t.bytes_sent) == (41, 40, 4000)
    log = fresh.log()
    assert [r.method for r in log] == ["HEAD"] + ["GET"] * 40
    assert all(r.status == 206 for r in log[1:])

    fresh.reset()
    status, _, body = get(fresh, "/small.bin")
    get(fresh, "/nope")
    t = fresh.traffic()
    assert (t.requests, t.bytes_sent) == (2, len(body))
    assert t.by_path == {"small.bin": (1, SIZE), "nope": (1, 0)}
    assert [r.status for r in fresh.log()] == [200, 404]


def test_traffic_waits_for_requests_in_flight(tmp_path: Path) -> None:
    # A body much larger than the loopback socket buffers: the handler is stuck writing it
    # until the client reads, so the request stays in flight for as long as we like.
    size = 48 * 2**20
    (tmp_path / "huge.bin").write_bytes(b"\x01" * size)
    with ob.serve(tmp_path) as store:
        conn = http.client.HTTPConnection("127.0.0.1", store.server_address[1], timeout=20)
        conn.request("GET", "/huge.bin")
        response = conn.getresponse()  # headers only; the body waits in the socket
        with pytest.raises(TimeoutError, match="in flight"):
            store.traffic(timeout=0.3)
        got: list[int] = []

        def read_later() -> None:
            time.sleep(0.3)
            got.append(len(response.read()))

        reader = threading.Thread(target=read_later)
        reader.start()
        t = store.traffic(timeout=20)  # returns only once the body has gone out
        reader.join()
        conn.close()
        assert got == [size]
        assert (t.requests, t.bytes_sent) == (1, size)


def test_close_drops_keep_alive_connections(root: Path) -> None:
    store = ob.serve(root)
    conn = http.client.HTTPConnection("127.0.0.1", store.server_address[1], timeout=10)
    conn.request("GET", "/small.bin")
    assert conn.getresponse().read()  # the connection stays open (HTTP/1.1 keep-alive)
    before = threading.active_count()
    start = time.perf_counter()
    store.close()
    assert time.perf_counter() - start < 3
    assert threading.active_count() <= before - 2  # the serving thread and the handler
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", store.server_address[1]), timeout=2)
    conn.close()
    store.close()  # twice is fine


def test_measure_and_read_cost(fresh: ob.HTTPStore) -> None:
    fs = fsspec.filesystem("http")
    url = fresh.url_for("big.bin")
    cost = ob.measure(fresh, "three", lambda: [fs.cat_file(url, start=0, end=200)
                                                for _ in range(3)], samples=3, sample_bytes=100)
    assert (cost.requests, cost.bytes_sent) == (3, 600)
    assert (cost.requests_per_sample, cost.bytes_per_sample, cost.amplification) == (1, 200, 2)
    assert cost.seconds > 0 and "three" in cost.line()
    local = ob.measure(None, "local", lambda: None, samples=4, sample_bytes=100)
    assert (local.requests, local.bytes_sent) == (0, 0) and "no requests" in local.line()


# ---------------------------------------------------------------- the dataset over HTTP


@pytest.fixture(scope="module")
def raw(store: ob.HTTPStore, root: Path, tiny_h5: Path) -> ob.RawImages:
    return ob.write_raw_images(tiny_h5, root / "images.npy", 256)


class HTTPSamples:
    """A map-style Dataset reading sample i with one range GET; returns (image, pid)."""

    def __init__(self, url: str, raw: ob.RawImages) -> None:
        self.url, self.raw = url, raw

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        start = self.raw.offset + i * self.raw.sample_bytes
        blob = fsspec.filesystem("http").cat_file(self.url, start=start,
                                                  end=start + self.raw.sample_bytes)
        return np.frombuffer(blob, np.uint8).reshape(self.raw.sample_shape), os.getpid()


def test_fork_dataloader_workers_are_counted(fresh: ob.HTTPStore, raw: ob.RawImages) -> None:
    from torch.utils.data import DataLoader  # lazy: torch is slow to import; only this test

    ds = HTTPSamples(fresh.url_for(raw.path), raw)
    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork")
    images, pids = [], set()
    for batch, pid in loader:
        images.append(batch.numpy())
        pids.update(pid.tolist())
    assert os.getpid() not in pids and len(pids) == 2
    local = np.load(raw.path, mmap_mode="r")
    np.testing.assert_array_equal(np.concatenate(images), local[:16])
    t = fresh.traffic()
    assert (t.requests, t.gets, t.bytes_sent) == (16, 16, 16 * raw.sample_bytes)


def test_zarr_over_http_matches_local(fresh: ob.HTTPStore, root: Path, tiny_h5: Path) -> None:
    import zarr  # lazy: as in the module under test

    variants = ob.write_zarr_variants(tiny_h5, root / "zarr", 200)
    assert set(variants) == set(ob.ZARR_VARIANTS)
    sample = 3 * 32 * 32
    for name, path in variants.items():
        local = zarr.open_array(str(path), mode="r")
        fresh.reset()
        remote = ob.open_zarr_http(fresh.url_for(path))
        assert fresh.traffic().requests == 1  # zarr.json only
        fresh.reset()
        for i in (3, 150, 77, 199):
            np.testing.assert_array_equal(remote[i], local[i])
        t = fresh.traffic()
        log = fresh.log()
        if name == "chunk 1":
            assert (t.requests, t.gets, t.bytes_sent) == (4, 4, 4 * sample)
        elif name == "chunk 16":
            assert (t.requests, t.bytes_sent) == (4, 4 * 16 * sample)
        else:  # the shard's index (a suffix range), then the chunk
            assert t.requests == 8 and all(r.status == 206 for r in log)
            assert sum(r.range.startswith("bytes=-") for r in log) == 4
            assert 4 * sample < t.bytes_sent < 4 * sample + 4 * 2048
        np.testing.assert_array_equal(remote[10:90], local[10:90])


def test_zarr_read_costs_and_sweep(fresh: ob.HTTPStore, root: Path, tiny_h5: Path) -> None:
    variants = ob.write_zarr_variants(tiny_h5, root / "zarr2", 128)
    costs = {c.label: c for c in ob.zarr_read_costs(fresh, variants, reads=8, batch=32)}
    assert len(costs) == 12
    assert costs["chunk 1: 8 random (HTTP)"].requests == 8
    assert costs["chunk 1, shard 64: 8 random (HTTP)"].requests == 16
    assert costs["chunk 16: 8 random (HTTP)"].amplification == 16
    assert costs["chunk 16: batch of 32 (HTTP)"].requests == 2
    assert costs["chunk 1: 8 random (local)"].requests == 0

    points = ob.chunk_sweep(fresh, tiny_h5, root / "sweep", chunk_sizes=(1, 4, 64), batch=32,
                            n=128)
    assert [p.chunk_samples for p in points] == [1, 4, 64]
    assert [p.consecutive.requests for p in points] == [32, 8, 1]
    assert points[0].random.requests == 32 and points[0].random.amplification == 1
    assert points[2].random.requests == 2 and points[2].random.amplification == 4
    assert all(p.line() for p in points)


def test_block_cache_cuts_requests(fresh: ob.HTTPStore, raw: ob.RawImages) -> None:
    local = np.load(raw.path, mmap_mode="r")
    url = fresh.url_for(raw.path)
    block = 16 * raw.sample_bytes
    seq = list(range(40))
    got = ob.read_raw_samples(url, raw, seq, "none")
    np.testing.assert_array_equal(got, local[:40])
    assert fresh.traffic().requests == 41  # HEAD + one GET per sample

    fresh.reset()
    got = ob.read_raw_samples(url, raw, seq, "blockcache", block_size=block)
    np.testing.assert_array_equal(got, local[:40])
    # 40 samples after a 128-byte header touch blocks 0, 1 and 2 only.
    end = raw.offset + 40 * raw.sample_bytes
    assert fresh.traffic().requests == 1 + (end - 1) // block + 1 == 4

    costs = {c.label: c for c in ob.block_cache_costs(fresh, raw, reads=24, block_size=block)}
    blockcache = f"blockcache {block / 2**20:g} MiB"
    assert costs["sequential, none"].requests == 25
    assert costs[f"sequential, {blockcache}"].requests <= 3
    assert costs["random, none"].amplification == 1
    # A random read through a block cache pulls whole blocks for one sample each.
    assert costs[f"random, {blockcache}"].amplification > 5
