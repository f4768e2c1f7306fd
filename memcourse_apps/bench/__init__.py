"""`memcourse bench`: what every technique the course teaches costs, measured on this machine.

Five sections, each a module: `reads` (random reads per storage format against a sequential
read of the same bytes), `loaders` (the reference HDF5Dataset, and notebook 05's batch-request
uint8 loader, through a DataLoader against a warm memmap), `footprints` (eager against lazy
memory, bytes in flight predicted against measured), `grading` (`memcourse grade --jobs 2`
against plain nbgrader) and `shards` (notebook 07's WebDataset tar shards: read speed per shard
size against the best size, and over HTTP against the same files on disk). Every figure is a
median of several runs with its range, and every comparison is a ratio measured in the same
run, because the machines this runs on are shared and absolute times wander.

Writes `results.md`, `results.json` and one PNG per section into the output folder, and, when
asked, replaces the block between `<!-- bench:start -->` and `<!-- bench:end -->` in a README.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from autograder.course import repo_root
from memcourse_apps.bench.common import BenchError, Stat, load_average, machine, num, table

SECTIONS = ("reads", "loaders", "memory", "grading", "shards")
README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"
MAX_READ_SAMPLES = 4000  # larger datasets are cut to this many images for the format copies


def run_bench(size: str = "small", out: Path | None = None, sections: tuple[str, ...] = SECTIONS,
              repeats: int = 5, grading_submissions: int = 10, grading_repeats: int = 3,
              jobs: int = 2, assignments: list[str] | None = None,
              readme: Path | None = None, keep_scratch: bool = False) -> dict[str, Any]:
    """Run the chosen sections; write results.md, results.json and plots into `out`."""
    # Every measuring child (`python -m memcourse_apps.bench.<section>`) runs this package's
    # __init__ first, so what it imports at the top grows the children that time formats.
    # lazy: memcourse.data loads h5py, which the children timing other formats must not hold
    from memcourse import data

    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise BenchError(f"Unknown section(s) {', '.join(unknown)}: choose from "
                         f"{', '.join(SECTIONS)}.")
    if repeats < 1 or grading_repeats < 1 or grading_submissions < 1 or jobs < 1:
        raise BenchError("--repeats, --grading-repeats, --grading-submissions and --jobs "
                         "must be at least 1.")
    out = Path(out or repo_root() / "bench").resolve()
    scratch = out / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_before = load_average()

    def progress(message: str) -> None:
        print(f"[bench {time.monotonic() - started:6.0f} s] {message}", file=sys.stderr,
              flush=True)

    progress(f"dataset {size}")
    h5_path = data.ensure_dataset(size)
    results: dict[str, Any] = {}
    try:
        if "reads" in sections:
            # A section imported at the top would be imported again as __main__ in its own
            # measuring child (runpy warns), and would grow every other section's child.
            from memcourse_apps.bench import reads  # lazy: a section is its own child

            results["reads"] = reads.run(h5_path, scratch / "reads", repeats, MAX_READ_SAMPLES,
                                         progress)
            shutil.rmtree(scratch / "reads", ignore_errors=True)  # up to 1 GB of copies
        if "loaders" in sections:
            from memcourse_apps.bench import loaders  # lazy: a section is its own child

            progress(f"loaders: {repeats} passes of 0, 1, 2, 4 workers, light and heavy, "
                     "and batch requests")
            results["loaders"] = loaders.run(h5_path, repeats, scratch / "loaders")
            shutil.rmtree(scratch / "loaders", ignore_errors=True)  # a copy of the dataset
        if "memory" in sections:
            from memcourse_apps.bench import footprints  # lazy: a section is its own child

            progress(f"memory: eager and lazy at two sizes ({repeats} runs), bytes in flight")
            results["memory"] = footprints.run(h5_path, scratch, repeats)
        if "grading" in sections:
            from memcourse_apps.bench import grading  # lazy: a section is its own child

            results["grading"] = grading.run(repo_root(), scratch, grading_submissions, jobs,
                                             grading_repeats, assignments, progress)
        if "shards" in sections:
            from memcourse_apps.bench import shards  # lazy: a section is its own child

            progress(f"shards: {repeats} epochs per shard size, cold, warm and over HTTP")
            results["shards"] = shards.run(h5_path, scratch / "shards", repeats,
                                           MAX_READ_SAMPLES)
            shutil.rmtree(scratch / "shards", ignore_errors=True)  # a copy per shard size
    finally:
        if not keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    meta = {
        "size": size, "dataset": str(h5_path), "repeats": repeats,
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine(out), "load_before": load_before, "load_after": load_average(),
        "elapsed_s": time.monotonic() - started,
        "command": "memcourse bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"]
                                                 else []),
    }
    write_outputs(out, meta, results)
    if readme is not None:
        update_readme(readme, readme_block(meta, results, out))
    progress(f"done: {out / 'results.md'}")
    return {"meta": meta, **results}


# ----------------------------------------------------------------------------- outputs


def _machine_lines(meta: dict) -> list[str]:
    m = meta["machine"]
    return [f"- CPU: {m['cpu']}, {m['cores']}; RAM: {m['ram']}",
            f"- kernel: {m['kernel']}; disk: {m['disk']}",
            f"- {m['software']}",
            f"- load average (1, 5, 15 min): {meta['load_before']} at the start, "
            f"{meta['load_after']} at the end"]


def write_outputs(out: Path, meta: dict, results: dict) -> None:
    # lazy: the sections also run as measuring children (see run_bench)
    from memcourse_apps.bench import footprints, grading, loaders, reads, shards

    modules = {"reads": reads, "loaders": loaders, "memory": footprints, "grading": grading,
               "shards": shards}
    parts = [
        "# memcourse benchmarks",
        "",
        f"Written by `{meta['command'].strip()}` on {meta['date']}, dataset size "
        f"`{meta['size']}`, in {meta['elapsed_s'] / 60:.1f} minutes. Do not edit by hand: "
        "`make bench` rewrites this file and the plots beside it.",
        "",
        *_machine_lines(meta),
        "",
        "Every figure is the median of several runs, followed by the lowest and highest run "
        "in parentheses. Every ratio compares two things measured in the same run; absolute "
        "times on a shared machine wander, ratios much less.",
    ]
    for name, res in results.items():
        module = modules[name]
        parts += ["", module.markdown(res), "", f"![{name}]({name}.png)"]
        module.plot(res, out / f"{name}.png")
    (out / "results.md").write_text("\n".join(parts) + "\n")
    (out / "results.json").write_text(json.dumps({"meta": meta, **results}, indent=1,
                                                 default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Stat):
        return value.to_dict()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def summary_rows(results: dict) -> list[tuple[str, str, str]]:
    """One row per headline figure: (what, compared with, median (range))."""
    rows = []
    if "reads" in results:
        r = results["reads"]
        for row in r["rows"]:
            rows.append((f"random reads, {row['format']}",
                         "sequential read of the same bytes (warm / cold)",
                         f"{row['warm_share'].fmt(2)} / {row['cold_share'].fmt(2)} of ceiling"))
    if "loaders" in results:
        r = results["loaders"]
        for k in (0, 2):
            rows.append((f"reference HDF5Dataset, DataLoader num_workers={k}",
                         "warm memmap ceiling",
                         f"{r['light'][k].fmt()} samples/s = "
                         f"{r['light_share'][k].fmt(2)} of ceiling"))
        for k in sorted(r["batch"]):
            rows.append((f"batch-request uint8 loader (notebook 05's fast path), "
                         f"num_workers={k}", "warm memmap ceiling",
                         f"{r['batch'][k].fmt()} samples/s = "
                         f"{r['batch_share'][k].fmt(2)} of ceiling"))
        rows.append(("batch-request uint8 loader mapped with get_offset, num_workers=0",
                     "warm memmap ceiling", f"{r['batch_mapped'].fmt()} samples/s = "
                     f"{r['batch_mapped_share'].fmt(2)} of ceiling"))
        rows.append(("CPU-bound transform: 2 workers", "0 workers",
                     f"{r['heavy_speedup_2v0'].fmt(2)}x faster"))
    if "memory" in results:
        r = results["memory"]
        small, big = r["sizes"]
        eager, lazy = r["kinds"]
        rows.append((f"peak memory, eager dataset, {big} images", f"{small} images",
                     f"{r['growth'][eager].fmt(2)}x"))
        rows.append((f"peak memory, lazy dataset, {big} images", f"{small} images",
                     f"{r['growth'][lazy].fmt(2)}x"))
        rows.append((f"peak memory, lazy, {big} images", "eager, same size",
                     f"{r['lazy_over_eager'].fmt(2)}x"))
        for f in r["flight"]:
            nw = f["num_workers"]
            rows.append((f"bytes in flight, {nw} worker{'s' if nw != 1 else ''} × prefetch "
                         f"{f['prefetch_factor']} (measured)", "notebook 01's formula",
                         f"{f['ratio'].fmt(3)}x"))
    if "grading" in results:
        g = results["grading"]
        rows.append((f"`memcourse grade --jobs {g['jobs']}`, s per submission",
                     "plain `nbgrader autograde`, serial",
                     f"{num(g['mc_per_sub'].median)} vs {num(g['plain_per_sub'].median)} s "
                     f"= {g['speedup'].median:.1f}x faster"))
        rows.append(("`memcourse grade`, CPU s per submission", "plain `nbgrader autograde`",
                     f"{num(g['mc_cpu_per_sub'].median)} vs "
                     f"{num(g['plain_cpu_per_sub'].median)} s"))
        rows.append(("out-of-kernel program + checks", "the whole grading worker",
                     f"{g['outside_share'].fmt(2)} of its time"))
    if "shards" in results:
        s = results["shards"]
        by_size = {row["samples_per_shard"]: row for row in s["rows"]}
        one, best = by_size[min(by_size)], max(s["rows"], key=lambda row: row["warm"].median)
        read = "cold" if s["cold_measured"] else "first read"
        rows.append((f"tar shards, {one['samples_per_shard']} sample per shard (a file per "
                     f"sample), {read}", "the fastest shard size, same read",
                     f"{one['cold'].fmt()} samples/s = {one['cold_share'].fmt(2)} of it"))
        for row in (one, best):
            rows.append((f"tar shards over HTTP, {row['samples_per_shard']} per shard",
                         "the same files read warm from disk",
                         f"{row['http_over_warm'].fmt(2)}x its speed, "
                         f"{num(row['requests_per_shard'])} requests per shard"))
    return rows


def readme_block(meta: dict, results: dict, out: Path) -> str:
    m = meta["machine"]
    lines = [
        README_START,
        "## Benchmarks: what each technique costs",
        "",
        "`make bench` measures every technique the course teaches against this machine's own "
        "limit, and `memcourse grade` against plain nbgrader, and rewrites this block.",
        "",
        f"Latest `make bench` ({meta['date']}, dataset `{meta['size']}`, "
        f"{meta['elapsed_s'] / 60:.1f} min) on {m['cpu']}, {m['cores']}, {m['ram']} RAM, "
        f"{m['kernel']}, {m['disk']}; load average {meta['load_before']} at the start, "
        f"{meta['load_after']} at the end. Medians of several runs (lowest–highest); full "
        "tables, method and plots in [bench/results.md](bench/results.md).",
        "",
        table(["measured", "compared with", "result"], summary_rows(results)),
    ]
    if "grading" in results:
        lines += ["", f"grading speed-up vs plain nbgrader: "
                      f"{results['grading']['speedup'].median:.1f}x"]
    lines.append(README_END)
    return "\n".join(lines)


def update_readme(path: Path, block: str) -> None:
    """Replace the bench block of the README at `path` (it must have both markers)."""
    text = Path(path).read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise BenchError(f"{path} has no {README_START} ... {README_END} block to replace.")
    Path(path).write_text(text[:start] + block + text[end + len(README_END):])
