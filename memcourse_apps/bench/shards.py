"""Section 5: the dataset as WebDataset tar shards (notebook 07): read speed per shard size,
from disk, from the page cache and over HTTP.

The first 1000 samples are written with `memcourse.shards.write_shards` at 1, 10, 100 and 1000
samples per shard (1: one file per sample, the many-small-files case), and every sample is read
in order with `samples_in_shard`, one shard after another. In a fresh process
(`python -m memcourse_apps.bench.shards H5 SCRATCH --repeats R --http URL`):

- **cold**: `memcourse.shards.shard_size_trial`, every shard evicted from the page cache
  (`posix_fadvise(DONTNEED)`) before each epoch, opens counted;
- **warm**: the files read once first, then the same epoch from the page cache;
- **HTTP**: the same warm files through `memcourse.objectstore.HTTPStore`, an HTTP server that
  runs in the bench's own process (not the reader's, so the two do not share a GIL), one
  streamed GET per shard (`samples_in_shard` on an `http://` URL).

Epochs are interleaved over the sizes (and warm against HTTP), so figures of one round saw the
same load; every comparison is a ratio paired round by round.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from memcourse import formats as fm
from memcourse.objectstore import HTTPStore
from memcourse.shards import samples_in_shard, shard_paths, shard_size_trial
from memcourse_apps.bench.common import Stat, num, ratio, run_measurement, table

SHARD_SIZES = (1, 10, 100, 1000)
# Samples written and read per epoch: one file per sample over HTTP reads ~200 samples/s on
# 2 cores, so more would make this section minutes long without changing a ratio.
MAX_SAMPLES = 1000


def _folder(scratch: Path, size: int) -> Path:
    """Where `shard_size_trial` writes the shards of one size."""
    return scratch / f"{size}-per-shard"


# ----------------------------------------------------------------------------- in the fresh process


def _epoch_rate(urls: Sequence[str | Path]) -> float:
    """Samples/s reading every sample of `urls`, in order, one shard after another."""
    count = 0
    start = time.perf_counter()
    for url in urls:
        for _image, _label in samples_in_shard(url):
            count += 1
    return count / (time.perf_counter() - start)


def measure(h5_path: str, scratch: str, repeats: int, max_samples: int,
            base_url: str | None) -> dict:
    """Cold trials (writing the shards), then warm and HTTP epochs interleaved."""
    scratch_path = Path(scratch)
    trials = shard_size_trial(h5_path, scratch_path, SHARD_SIZES, n=max_samples, cold=True,
                              repeats=repeats)
    out: dict = {"n": trials[0].samples, "cold_measured": trials[0].cold, "sizes": {}}
    for t in trials:
        out["sizes"][t.samples_per_shard] = {
            "shards": t.shards, "opens": t.opens,
            "file_bytes_per_sample": t.file_bytes_per_sample,
            "overhead_bytes_per_sample": t.overhead_bytes_per_sample,
            "cold": [t.samples / s for s in t.seconds_runs], "warm": [], "http": []}
    for size in SHARD_SIZES:
        fm.warm(_folder(scratch_path, size))
    for _ in range(repeats):
        for size in SHARD_SIZES:
            paths = shard_paths(_folder(scratch_path, size))
            row = out["sizes"][size]
            row["warm"].append(_epoch_rate(paths))
            if base_url:
                row["http"].append(_epoch_rate(
                    [f"{base_url}/{p.parent.name}/{p.name}" for p in paths]))
    return out


# ----------------------------------------------------------------------------- the section


def run(h5_path: Path, scratch: Path, repeats: int, max_samples: int) -> dict:
    """Serve `scratch` over HTTP, run `measure` in a fresh process reading it, and return its
    runs as Stats with the ratios and the requests the server logged (GET and HEAD)."""
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    max_samples = min(max_samples, MAX_SAMPLES)
    with HTTPStore(scratch) as store:
        raw = run_measurement(
            "memcourse_apps.bench.shards",
            [str(h5_path), str(scratch), "--repeats", str(repeats), "--max-samples",
             str(max_samples), "--http", store.url],
            "the shard benchmark", 1800)
        log = store.log()
    rows = []
    for key, r in raw["sizes"].items():
        size = int(key)
        prefix = f"{_folder(scratch, size).name}/"
        served = [q for q in log if q.path.startswith(prefix)]
        epochs = repeats * r["shards"]
        file_bytes = r["file_bytes_per_sample"] * raw["n"]
        rows.append({
            "samples_per_shard": size, "shards": r["shards"], "opens": r["opens"],
            "file_bytes_per_sample": r["file_bytes_per_sample"],
            "overhead_bytes_per_sample": r["overhead_bytes_per_sample"],
            "cold": Stat(r["cold"]), "warm": Stat(r["warm"]), "http": Stat(r["http"]),
            "requests_per_shard": len(served) / epochs,
            "gets_per_shard": sum(q.method == "GET" for q in served) / epochs,
            "http_bytes_over_file": sum(q.bytes_sent for q in served) / (repeats * file_bytes),
        })
    for kind in ("cold", "warm", "http"):
        best = max(rows, key=lambda row: row[kind].median)
        for row in rows:
            row[f"{kind}_share"] = ratio(row[kind], best[kind])
    for row in rows:
        row["http_over_warm"] = ratio(row["http"], row["warm"])
    return {"n": raw["n"], "repeats": repeats, "cold_measured": raw["cold_measured"],
            "rows": rows}


def markdown(res: dict) -> str:
    """The section's table and the sentences that say what was compared with what."""
    cold = "cold (evicted)" if res["cold_measured"] else "first read (not evicted)"
    cold_note = ("" if res["cold_measured"] else
                 " **This OS cannot drop files from the page cache (no posix_fadvise), so the "
                 "cold column is a read of files that may still be cached.**")
    rows = [(r["samples_per_shard"], r["shards"], r["opens"], num(r["file_bytes_per_sample"]),
             num(r["overhead_bytes_per_sample"]), r["cold"].fmt(), r["cold_share"].fmt(2),
             r["warm"].fmt(), r["warm_share"].fmt(2), r["http"].fmt(),
             r["http_over_warm"].fmt(2),
             f"{num(r['requests_per_shard'])} ({num(r['gets_per_shard'])} GET)")
            for r in res["rows"]]
    lines = [
        "## 5. WebDataset shards: shard size, and local against HTTP",
        "",
        f"{res['n']} images written as tar shards (`memcourse.shards.write_shards`) at each "
        "shard size, and read in order with `samples_in_shard` (one open or one streamed GET "
        "per shard; one sample in memory at a time). *Cold*: every shard evicted from the page "
        "cache before each epoch "
        "(`shard_size_trial`, opens counted by an audit hook). *Warm*: from the page cache. "
        "*HTTP*: the warm files through `memcourse.objectstore.HTTPStore` running in the "
        "bench's process, read by the measuring process. Samples/s, median of "
        f"{res['repeats']} epochs (lowest–highest), interleaved over sizes." + cold_note,
        "",
        "**Compared with the best shard size** of the same column, paired epoch by epoch "
        "(*share of best*; 1.0 is the fastest size), and HTTP with the same files read warm "
        "from disk (*HTTP ÷ warm*). *Bytes/sample* is the shards' size over the samples; "
        "*overhead* is what is not pixels (tar headers, padding, the `.npy` header, the "
        "label's member). The server sent the shards' bytes once per epoch: "
        f"{num(max(r['http_bytes_over_file'] for r in res['rows']), 3)}x the files at most.",
        "",
        table(["samples per shard", "shards", "opens", "bytes/sample", "overhead bytes/sample",
               f"{cold} samples/s", "share of best", "warm samples/s", "share of best",
               "HTTP samples/s", "HTTP ÷ warm", "HTTP requests per shard"], rows),
    ]
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    """Samples/s against samples per shard (log x), cold, warm and HTTP."""
    # lazy: matplotlib (~0.7 s) only to plot; use("Agg") at import would change others' backend
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: must come after matplotlib.use("Agg")

    rows = res["rows"]
    sizes = [r["samples_per_shard"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = {"cold": "cold (evicted)" if res["cold_measured"] else "first read",
              "warm": "warm (page cache)", "http": "HTTP (local server)"}
    for kind, label in labels.items():
        med = np.array([r[kind].median for r in rows])
        err = np.array([[m - r[kind].low for m, r in zip(med, rows, strict=True)],
                        [r[kind].high - m for m, r in zip(med, rows, strict=True)]])
        ax.errorbar(sizes, med, yerr=err, fmt="o-", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("samples per shard (log scale; 1 = one file per sample)")
    ax.set_ylabel("samples/s (median, bars = range)")
    ax.set_title(f"Reading {res['n']} samples from tar shards, in order")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """`python -m memcourse_apps.bench.shards H5 SCRATCH ...`: the measuring process."""
    parser = argparse.ArgumentParser(prog="python -m memcourse_apps.bench.shards")
    parser.add_argument("h5_path")
    parser.add_argument("scratch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--http", default=None, metavar="URL",
                        help="base URL serving SCRATCH (default: no HTTP reads)")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.h5_path, args.scratch, args.repeats, args.max_samples,
                             args.http)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
