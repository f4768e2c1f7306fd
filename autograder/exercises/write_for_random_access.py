"""04_file_formats: `write_for_random_access`, an HDF5 writer whose layout suits random reads.

Contract: `write_for_random_access(images, labels, path)` writes `images` (N, 3, H, W) uint8 and
`labels` (N,) int64 to a new HDF5 file at `path`, as datasets named `images` and `labels`, with
`images` either contiguous or chunked so that each chunk holds whole samples, at most
`MAX_SAMPLES_PER_CHUNK` of them. Random single-sample reads from the file must not be much slower
than from a file with one sample per chunk and the same compression, written in the same run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from autograder.engine.check_report import run_exercise
from autograder.engine.spec import Check, Exercise, Fail
from autograder.exercises import _fixtures as fixtures

SUBJECT = "write_for_random_access"
MID = "mid_h5"  # values: small enough to send every pixel back to the parent
ODD = "odd_h5"  # another shape and a sample count no chunk size divides
BIG = "big_h5"  # layout and timing: 512 x 48 KiB = 24 MiB, three times HDF5's 8 MiB chunk cache
MAX_SAMPLES_PER_CHUNK = 8
# Reads from the learner's file may take this many times as long as from one sample per chunk
# with the same filters. A chunk of k samples costs at most ~k times one sample, so layouts that
# pass the chunk check measured up to ~7x (gzip, eight samples per chunk); `chunks=True` measured
# ~54x and 64-sample gzip chunks ~59x (two of its 3 MiB chunks fit HDF5's 8 MiB chunk cache).
MAX_SLOWDOWN = 16.0
ROUNDS = 5
READS_PER_ROUND = 60


def make_fixtures() -> dict[str, str]:
    return {MID: str(fixtures.images_h5(48, 40, 40)),
            ODD: str(fixtures.images_h5(37, 20, 24)),
            BIG: str(fixtures.images_h5(512, 128, 128))}


# ----------------------------------------------------------------------------- in the child


def _load(path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        return f["images"][:], f["labels"][:]


def _write(ctx, submission, fixture: str) -> tuple[str, tuple]:
    """Call the learner's writer on the fixture's arrays; return the path and the input shape."""
    images, labels = _load(ctx.fixtures[fixture])
    out = str(ctx.workdir / "yours.h5")
    ctx.call(f"{SUBJECT}(images, labels, path)", submission[SUBJECT], images, labels, out)
    return out, images.shape


def _inspect(path: str) -> dict:
    """What the file holds, read by the checker (hdf5plugin loaded, so any filter opens)."""
    # lazy: ~0.3 s, and it registers HDF5 filters; hint() and the grader import every exercise
    import hdf5plugin  # noqa: F401

    if not Path(path).exists():
        return {"missing": True}
    try:
        f = h5py.File(path, "r")
    except Exception as e:  # a file left open for writing, or not HDF5 at all
        return {"open_error": f"{type(e).__name__}: {e}"}
    with f:
        info: dict = {"keys": sorted(f.keys())}
        for name in ("images", "labels"):
            obj = f.get(name)
            if obj is None or not isinstance(obj, h5py.Dataset):
                continue
            info[name] = {"shape": list(obj.shape), "dtype": str(obj.dtype),
                          "chunks": list(obj.chunks) if obj.chunks else None,
                          "filters": sorted(str(k) for k in obj._filters)}
    return info


def _other_process_error(path: str) -> str | None:
    """Open the file in another process, as a DataLoader worker would; return its error."""
    code = "import sys, h5py; h5py.File(sys.argv[1], 'r').close()"
    done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                          timeout=60)
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {done.returncode}"


def act_values(ctx, submission, fixture: str = MID):
    path, shape = _write(ctx, submission, fixture)
    info = _inspect(path)
    if "missing" not in info and "open_error" not in info:
        error = _other_process_error(path)
        if error:
            info = {"open_error": f"another process could not open it ({error})"}
    if "images" in info and "labels" in info:
        with h5py.File(path, "r") as f:
            ctx.save_array("images", f["images"][:])
            ctx.save_array("labels", f["labels"][:])
    return {"info": info, "input_shape": list(shape)}


def act_other_shape(ctx, submission):
    return act_values(ctx, submission, ODD)


def act_chunks(ctx, submission):
    path, shape = _write(ctx, submission, BIG)
    return {"info": _inspect(path), "input_shape": list(shape)}


def _write_reference(learner_path: str, images: np.ndarray, out: str) -> str:
    """One sample per chunk with the learner's own filters (copied from its creation plist)."""
    sample_chunk = (1, *images.shape[1:])
    with h5py.File(learner_path, "r") as f:
        dcpl = f["images"].id.get_create_plist()
        if dcpl.get_layout() == h5py.h5d.CHUNKED:
            dcpl = dcpl.copy()
            described = "one sample per chunk, with the same filters as yours"
        else:
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            described = "one sample per chunk, uncompressed"
    dcpl.set_chunk(sample_chunk)
    with h5py.File(out, "w") as f:
        space = h5py.h5s.create_simple(images.shape)
        dset = h5py.Dataset(h5py.h5d.create(f.id, b"images", h5py.h5t.NATIVE_UINT8, space,
                                            dcpl=dcpl))
        dset[...] = images
    return described


def _median_read_s(path: str, indices: np.ndarray, budget_s: float = 0.3) -> float:
    """Median seconds per `images[i]` on a freshly opened file (its chunk cache starts empty)."""
    times = []
    with h5py.File(path, "r") as f:
        dset = f["images"]
        started = time.perf_counter()
        for i in indices:
            t = time.perf_counter()
            dset[int(i)]
            times.append(time.perf_counter() - t)
            if len(times) >= 5 and time.perf_counter() - started > budget_s:
                break
    return float(np.median(times))


def act_read_time(ctx, submission):
    # lazy: ~0.3 s, and it registers HDF5 filters; hint() and the grader import every exercise
    import hdf5plugin  # noqa: F401

    images, labels = _load(ctx.fixtures[BIG])
    path = str(ctx.workdir / "yours.h5")
    ctx.call(f"{SUBJECT}(images, labels, path)", submission[SUBJECT], images, labels, path)
    info = _inspect(path)
    if "images" not in info or info["images"]["shape"] != list(images.shape):
        return {"info": info, "input_shape": list(images.shape)}
    reference = str(ctx.workdir / "reference.h5")
    described = _write_reference(path, images, reference)
    rng = np.random.default_rng(3)
    yours, ref = [], []
    for _ in range(ROUNDS):  # alternate, so a busy machine slows both files alike
        indices = rng.permutation(len(images))[:READS_PER_ROUND]
        ref.append(_median_read_s(reference, indices))
        yours.append(_median_read_s(path, indices))
    return {"info": info, "input_shape": list(images.shape), "yours_s": yours,
            "reference_s": ref, "reference": described}


# ----------------------------------------------------------------------------- in the parent


def _expected(fixture: str) -> tuple[np.ndarray, np.ndarray]:
    return _load(make_fixtures()[fixture])


def _require_datasets(trace) -> dict:
    """Fail with a sentence unless the file exists, opens, and holds `images` and `labels`."""
    info = trace.data["info"]
    if info.get("missing"):
        raise Fail("no file was written at `path`: create it there with "
                   "`h5py.File(path, 'w')`.")
    if "open_error" in info:
        error = info["open_error"]
        if "signature not found" in error:  # what HDF5 says of a file it did not write
            raise Fail(f"the file at `path` is not an HDF5 file ({error}): write it with "
                       "`h5py.File(path, 'w')` and `create_dataset`.")
        if "lock" in error:  # HDF5's lock on a file another process still has open to write
            raise Fail(f"the file could not be opened for reading: {error}. It is still open "
                       "for writing, so it is locked and may not be complete on disk; close it "
                       "before returning: write inside `with h5py.File(path, 'w') as f:`.")
        raise Fail(f"the file could not be opened for reading: {error}.")
    for name in ("images", "labels"):
        if name not in info:
            raise Fail(f"the file has no dataset named `{name}` (it holds "
                       f"{info['keys'] or 'nothing'}); readers look the data up by that name.")
    return info


def _check_images_meta(info: dict, input_shape: list) -> None:
    images = info["images"]
    if images["dtype"] != "uint8":
        factor = np.dtype(images["dtype"]).itemsize if images["dtype"] != "object" else 0
        more = f" ({factor}x the bytes on disk and on every read)" if factor > 1 else ""
        raise Fail(f"`images` is stored as {images['dtype']}{more}; store the uint8 pixels as "
                   "they are and convert to float in `__getitem__`.")
    if images["shape"] != input_shape:
        shape = tuple(images["shape"])
        hint = ""
        if sorted(shape) == sorted(input_shape) and shape[-1] == 3:
            hint = " It looks transposed to (N, H, W, C); keep the channels-first layout."
        raise Fail(f"`images` has shape {shape}, but the input was {tuple(input_shape)} "
                   f"(N, 3, H, W).{hint}")


def _judge_values(trace, fixture: str) -> None:
    info = _require_datasets(trace)
    _check_images_meta(info, trace.data["input_shape"])
    want_images, want_labels = _expected(fixture)
    got = trace.arrays["images"]
    if not np.array_equal(got, want_images):
        bad = int(np.flatnonzero([not np.array_equal(g, w) for g, w in
                                  zip(got, want_images, strict=True)])[0])
        raise Fail(f"`images[{bad}]` in the file differs from the image passed in: write the "
                   "array unchanged, in the same sample order.")
    labels = info["labels"]
    if labels["shape"] != [len(want_labels)]:
        raise Fail(f"`labels` has shape {tuple(labels['shape'])}; expected "
                   f"({len(want_labels)},), one label per image.")
    if labels["dtype"] != "int64":
        raise Fail(f"`labels` is stored as {labels['dtype']}; store int64, the dtype "
                   "`CrossEntropyLoss` expects and the course's datasets use.")
    if not np.array_equal(trace.arrays["labels"], want_labels):
        raise Fail("`labels` in the file differ from the labels passed in.")


def judge_values(trace) -> None:
    _judge_values(trace, MID)


def _judge_layout(info: dict) -> None:
    images = info["images"]
    chunks, shape = images["chunks"], images["shape"]
    if chunks is None:
        return  # contiguous: every sample is one run of bytes, read with a single pread
    spans = int(np.prod([-(-s // c) for s, c in zip(shape[1:], chunks[1:], strict=True)]))
    if chunks[1:] != shape[1:]:
        shared = f", each holding pieces of {chunks[0]} samples" if chunks[0] > 1 else ""
        raise Fail(f"`images` is chunked as {tuple(chunks)}, so reading one sample touches "
                   f"{spans} chunks{shared} (h5py guesses shapes like this for `chunks=True`, "
                   "or for `compression=` without `chunks=`). Make every chunk cover whole "
                   "samples: chunks=(k, 3, H, W).")
    if chunks[0] > MAX_SAMPLES_PER_CHUNK:
        raise Fail(f"`images` is chunked as {tuple(chunks)}: every random read of one sample "
                   f"reads (and decompresses) a chunk of {chunks[0]} samples. Use at most "
                   f"{MAX_SAMPLES_PER_CHUNK} samples per chunk for per-sample access.")


def judge_chunks(trace) -> None:
    info = _require_datasets(trace)
    _check_images_meta(info, trace.data["input_shape"])
    _judge_layout(info)


def judge_other_shape(trace) -> None:
    _judge_values(trace, ODD)
    _judge_layout(trace.data["info"])


def judge_read_time(trace) -> None:
    info = _require_datasets(trace)
    _check_images_meta(info, trace.data["input_shape"])
    yours, ref = min(trace.data["yours_s"]), min(trace.data["reference_s"])
    ratio = yours / ref
    if ratio > MAX_SLOWDOWN:
        raise Fail(f"a random single-sample read from your file took {yours * 1e3:.2f} ms, "
                   f"{ratio:.0f}x the {ref * 1e3:.3f} ms of a file written in the same run with "
                   f"{trace.data['reference']} (allowed: {MAX_SLOWDOWN:.0f}x). Your layout "
                   f"({_layout_words(info['images'])}) makes each read fetch far more than the "
                   "sample.")


def _layout_words(images: dict) -> str:
    if images["chunks"] is None:
        return "contiguous"
    return f"chunks {tuple(images['chunks'])}"


CHECKS = [
    Check("write_for_random_access_values", 1,
          "the file holds `images` (uint8, N x 3 x H x W) and `labels` (int64) exactly as given",
          act_values, judge_values, fixtures=(MID,),
          hint="`f.create_dataset('images', data=images, ...)` and "
               "`f.create_dataset('labels', data=labels)` inside `with h5py.File(path, 'w') as "
               "f:`; do not convert or transpose the arrays."),
    Check("write_for_random_access_chunks", 1,
          f"`images` is contiguous or chunked as (k, 3, H, W) with k <= {MAX_SAMPLES_PER_CHUNK}",
          act_chunks, judge_chunks, fixtures=(BIG,),
          hint="Pass `chunks=(1, *images.shape[1:])` (one sample per chunk), or no `chunks` and "
               "no compression (contiguous). `chunks=True` lets h5py guess, and its guess cuts "
               "samples into pieces."),
    Check("write_for_random_access_other_shape", 1,
          "another image size and sample count are written exactly, with whole-sample chunks",
          act_other_shape, judge_other_shape, fixtures=(ODD,), hidden=True,
          extends="values",
          hint="Take every size from `images.shape`; hard-code nothing."),
    Check("write_for_random_access_read_time", 2,
          "random single-sample reads are about as fast as from one sample per chunk",
          act_read_time, judge_read_time, fixtures=(BIG,), timeout_s=90,
          hint="A read costs a whole chunk: chunk by single samples (or leave the data "
               "contiguous), and never let one chunk hold many samples."),
]

EXERCISE = Exercise(
    name="write_for_random_access", title="write_for_random_access", subjects=(SUBJECT,),
    checks=CHECKS, make_fixtures=make_fixtures,
    hints=[
        "A random single-sample read costs whole chunks: the fewer bytes a chunk holds beyond "
        "the sample you asked for, the cheaper the read. Store the arrays as they come, with no "
        "conversion.",
        "`f.create_dataset(\"images\", data=images, chunks=...)` inside `with h5py.File(path, "
        "\"w\") as f:`; section 2's 'Contiguous and chunked layouts' timed one sample per "
        "chunk against bigger chunks. Take every size from `images.shape`.",
        "`chunks=(1, *images.shape[1:])` puts one whole sample in each chunk (leaving out "
        "`chunks` keeps it contiguous, which also passes); write the labels with "
        "`f.create_dataset(\"labels\", data=np.asarray(labels, dtype=np.int64))`.",
    ],
)


def check_write_for_random_access(write_for_random_access, *checks: str) -> None:
    """Check the learner's HDF5 writer in a fresh process; name checks to run only those."""
    __tracebackhide__ = True
    run_exercise(EXERCISE, {SUBJECT: write_for_random_access}, checks)
