"""06_tradeoffs: `precompute(h5_in, h5_out, transform)`, an offline preprocessing pass into HDF5.

Contract: read `images` (N, 3, H, W) uint8 and `labels` (N,) int64 from `h5_in`; write `h5_out`
with `images` of shape (N, *out_shape) and the dtype `transform` returns, where
`images[i] == transform(input_images[i])`, in a layout fit for per-sample reads (contiguous, or
chunks holding whole samples, a few at most), and `labels` copied unchanged; never hold the whole
input or the whole output in memory at once.
"""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np

from autograder.engine.check_report import run_exercise
from autograder.engine.spec import Check, Exercise, Fail
from autograder.exercises import _fixtures as fixtures

SUBJECT = "precompute"
SMALL = "small_h5"  # values, dtype, shape, labels, layout
ODD = "odd_h5"  # another shape, and a transform with another output dtype (hidden)
BIG = "big_h5"  # memory: loading it all is unmistakable
TIMED = "timed_h5"  # speed: an expensive transform against reading its stored result

MAX_SAMPLES_PER_CHUNK = 8
SPEED_RATIO = 0.5  # the precomputed epoch must take at most half the on-the-fly epoch


def make_fixtures() -> dict[str, str]:
    return {SMALL: str(fixtures.images_h5(40, 20, 24)),
            ODD: str(fixtures.images_h5(23, 14, 22)),
            # 2000 x 48 KiB = 94 MiB of input; the cheap transform's output is as large again.
            BIG: str(fixtures.images_h5(2000, 128, 128)),
            # 200 x 48 KiB of float32 output: 9.4 MiB, more than HDF5's default chunk cache, so a
            # layout that decompresses a huge chunk per read cannot hide behind the cache.
            TIMED: str(fixtures.images_h5(200, 64, 64))}


# ----------------------------------------------------------------------------- transforms
# Module-level functions, so the child imports them by reference and the parent can recompute
# the expected values itself.


def halve_and_standardise(image: np.ndarray) -> np.ndarray:
    """uint8 (3, H, W) -> float32 (3, H/2, W/2): every second pixel, then fixed scaling (cheap)."""
    x = image[:, ::2, ::2].astype(np.float32)
    return (x * np.float32(1 / 255) - np.float32(0.45)) * np.float32(4.0)


def crop_half_precision(image: np.ndarray) -> np.ndarray:
    """uint8 (3, H, W) -> float16 (3, 8, 11): a fixed crop (not half the size), scaled to [0, 1]."""
    return (image[:, 2:10, 3:14].astype(np.float32) / 255).astype(np.float16)


def expensive_smoothing(image: np.ndarray) -> np.ndarray:
    """uint8 (3, H, W) -> float32 (3, H, W): repeated smoothing, deliberately a few ms of CPU."""
    x = image.astype(np.float32) / np.float32(255)
    for _ in range(24):
        x = (np.roll(x, 1, -1) + 2 * x + np.roll(x, -1, -1)) * np.float32(0.25)
        x = (np.roll(x, 1, -2) + 2 * x + np.roll(x, -1, -2)) * np.float32(0.25)
    return ((x - x.mean()) / (x.std() + np.float32(1e-6))).astype(np.float32)


def reference_precompute(h5_in, h5_out, transform) -> None:
    """The reference solution, measured beside the learner's in the same process."""
    with h5py.File(h5_in, "r") as src, h5py.File(h5_out, "w") as dst:
        images = src["images"]
        first = np.asarray(transform(images[0]))
        out = dst.create_dataset("images", (images.shape[0], *first.shape), first.dtype,
                                 chunks=(1, *first.shape))
        out[0] = first
        for i in range(1, images.shape[0]):
            out[i] = transform(images[i])
        dst.create_dataset("labels", data=src["labels"][:])


# ----------------------------------------------------------------------------- in the child


def _run(ctx, submission, fixture: str, transform, as_str: bool = False) -> Path:
    """Call the learner's precompute on a fixture; return the output path."""
    src = ctx.fixtures[fixture]
    out = ctx.workdir / "precomputed.h5"
    if out.exists():
        out.unlink()
    args = (str(src), str(out)) if as_str else (src, out)
    ctx.call("precompute(h5_in, h5_out, transform)", submission[SUBJECT], *args, transform)
    return out


def _describe_output(ctx, out: Path, keep_arrays: bool) -> dict:
    """Open the output and describe it; save its arrays when asked."""
    if not out.exists():
        return {"missing": True}
    try:
        with h5py.File(out, "r") as f:
            info = {"keys": sorted(f.keys())}
            for name in ("images", "labels"):
                d = f.get(name)
                if isinstance(d, h5py.Dataset):
                    info[name] = {"shape": list(d.shape), "dtype": str(d.dtype),
                                  "chunks": list(d.chunks) if d.chunks else None,
                                  "compression": d.compression}
                    if keep_arrays:
                        ctx.save_array(name, d[()])
            return info
    except OSError as e:
        return {"open_error": str(e)}


def act_output(ctx, submission) -> dict:
    out = _run(ctx, submission, SMALL, halve_and_standardise)
    return _describe_output(ctx, out, keep_arrays=True)


def act_odd(ctx, submission) -> dict:
    out = _run(ctx, submission, ODD, crop_half_precision, as_str=True)
    return _describe_output(ctx, out, keep_arrays=True)


def act_streams(ctx, submission) -> dict:
    src = ctx.fixtures[BIG]
    scratch = ctx.workdir / "reference.h5"
    reference_precompute(src, scratch, halve_and_standardise)  # warm up imports and page cache
    scratch.unlink()
    ctx.mark("reference_start")
    reference_precompute(src, scratch, halve_and_standardise)
    ctx.mark("reference_end")
    scratch.unlink()
    ctx.mark("learner_start")
    _run(ctx, submission, BIG, halve_and_standardise)
    ctx.mark("learner_end")
    with h5py.File(src, "r") as f:
        return {"input_bytes": int(f["images"].nbytes)}


def act_faster(ctx, submission) -> dict:
    out = _run(ctx, submission, TIMED, expensive_smoothing)
    info = _describe_output(ctx, out, keep_arrays=False)
    if "images" not in info:
        return info
    with h5py.File(ctx.fixtures[TIMED], "r") as f:
        images = f["images"]
        order = np.random.default_rng(3).permutation(images.shape[0])
        start = time.perf_counter()
        for i in order:
            expensive_smoothing(images[i])
        on_the_fly = time.perf_counter() - start
    best, read, aborted = float("inf"), 0, False
    with h5py.File(out, "r") as f:
        stored = f["images"]
        for _ in range(3):  # best of three: a burst of load elsewhere only slows one pass
            start, read = time.perf_counter(), 0
            for i in order:
                stored[i]
                read += 1
                if time.perf_counter() - start > on_the_fly:  # already slower: stop waiting
                    aborted = True
                    break
            best = min(best, time.perf_counter() - start)
            if aborted:
                break
    return {**info, "n": len(order), "on_the_fly_s": on_the_fly, "precomputed_s": best,
            "read": read, "aborted": aborted}


# ----------------------------------------------------------------------------- in the parent


def _expected(fixture: str, transform) -> np.ndarray:
    """The transformed fixture images, computed here in the parent."""
    with h5py.File(make_fixtures()[fixture], "r") as f:
        return np.stack([transform(image) for image in f["images"][()]])


def _fixture_labels(fixture: str) -> np.ndarray:
    with h5py.File(make_fixtures()[fixture], "r") as f:
        return f["labels"][()]


def _require_images(trace) -> dict:
    """The output's `images` description, or a Fail that says what is missing."""
    data = trace.data
    if data.get("missing"):
        raise Fail("`precompute` returned, but `h5_out` does not exist: write the output file "
                   "at the path it is given.")
    if "open_error" in data:
        error = data["open_error"]
        if "signature not found" in error:  # what HDF5 says of a file it did not write
            raise Fail(f"`h5_out` is not an HDF5 file ({error}): write it with "
                       "`h5py.File(h5_out, 'w')` and `create_dataset`.")
        advice = (" Close it before returning: `with h5py.File(h5_out, 'w') as f:` does that "
                  "for you.") if "lock" in error or "already open" in error else ""
        raise Fail(f"the output file could not be opened after `precompute` returned "
                   f"({error}).{advice}")
    if "images" not in data:
        raise Fail(f"the output file holds {data.get('keys') or 'nothing'}, but no `images` "
                   "dataset: store the transformed samples as `images`.")
    return data["images"]


def _check_shape_dtype(trace, fixture: str, transform) -> None:
    info = _require_images(trace)
    expected = _expected(fixture, transform)
    shape, want_shape = tuple(info["shape"]), expected.shape
    if shape != want_shape:
        raise Fail(f"`images` has shape {shape}; with {want_shape[0]} input samples and a "
                   f"transform that returns {want_shape[1:]}, it should be {want_shape}. Take "
                   "the sample shape from what `transform` returns.")
    if info["dtype"] != str(expected.dtype):
        raise Fail(f"`images` is stored as {info['dtype']}, but the transform returns "
                   f"{expected.dtype}: store the dtype the transform returns (a wider one wastes "
                   "disk and read time, a narrower one loses values).")


def _check_values(trace, fixture: str, transform) -> None:
    info = _require_images(trace)
    expected = _expected(fixture, transform)
    got = trace.arrays["images"]
    if tuple(info["shape"]) != expected.shape:
        raise Fail(f"`images` has shape {tuple(info['shape'])}, not {expected.shape}, so its "
                   "values cannot match the transformed samples.")
    got64, want64 = got.astype(np.float64), expected.astype(np.float64)
    tol = 1e-3 if expected.dtype == np.float16 else 1e-5
    bad = [i for i in range(len(expected)) if not np.allclose(got64[i], want64[i], atol=tol)]
    if bad:
        i = bad[0]
        hint = ""
        if len(expected) > 1 and np.allclose(got64[i], want64[(i + 1) % len(expected)], atol=tol):
            hint = f" It equals the transform of sample {(i + 1) % len(expected)}: check indices."
        raise Fail(f"{len(bad)} of {len(expected)} stored samples differ from "
                   f"`transform(images[i])`, the first at i = {i} (largest difference "
                   f"{np.abs(got64[i] - want64[i]).max():.3g}).{hint} Store exactly what the "
                   "given `transform` returns for each input sample, in the same order.")


def _check_labels(trace, fixture: str) -> None:
    data = trace.data
    _require_images(trace)
    if "labels" not in data:
        raise Fail("the output file has no `labels` dataset: copy `labels` from the input, so "
                   "the precomputed file is a complete training set on its own.")
    labels = _fixture_labels(fixture)
    got = trace.arrays["labels"]
    if data["labels"]["dtype"] != "int64":
        raise Fail(f"`labels` is stored as {data['labels']['dtype']}; keep int64, the dtype "
                   "`CrossEntropyLoss` expects and the input file uses.")
    if got.shape != labels.shape or not np.array_equal(got, labels):
        raise Fail("`labels` differs from the input file's labels: copy them unchanged, in the "
                   "same order as the images.")


def judge_values(trace) -> None:
    _check_values(trace, SMALL, halve_and_standardise)


def judge_dtype_shape(trace) -> None:
    _check_shape_dtype(trace, SMALL, halve_and_standardise)


def judge_labels(trace) -> None:
    _check_labels(trace, SMALL)


def judge_any_transform(trace) -> None:
    _check_shape_dtype(trace, ODD, crop_half_precision)
    _check_values(trace, ODD, crop_half_precision)
    _check_labels(trace, ODD)


def judge_layout(trace) -> None:
    info = _require_images(trace)
    chunks, shape = info["chunks"], info["shape"]
    if chunks is None:
        return  # contiguous: any sample is one read at a known offset
    if list(chunks[1:]) != list(shape[1:]):
        raise Fail(f"`images` is stored in chunks of shape {tuple(chunks)}, so one sample "
                   f"{tuple(shape[1:])} is spread over several chunks and every per-sample read "
                   "touches (and decompresses) all of them. Give each chunk whole samples: "
                   f"`chunks=(1, {', '.join(map(str, shape[1:]))})`.")
    if chunks[0] > MAX_SAMPLES_PER_CHUNK:
        raise Fail(f"each chunk of `images` holds {chunks[0]} samples, so a random read of one "
                   f"sample reads (and decompresses) {chunks[0]}. Use one sample per chunk: "
                   f"`chunks=(1, {', '.join(map(str, shape[1:]))})`.")


def judge_streams(trace) -> None:
    data_mib = trace.data["input_bytes"] / 2**20
    reference = trace.growth_mib("reference_start", "reference_end")
    learner = trace.growth_mib("learner_start", "learner_end")
    allowed = reference + max(16.0, 0.2 * data_mib)
    if learner > allowed:
        raise Fail(f"memory grew by {learner:.0f} MiB while precomputing {data_mib:.0f} MiB of "
                   f"images (the reference solution grew by {reference:.0f} MiB in the same "
                   "process): it holds the whole input, or every output, in memory at once. "
                   "Read, transform and "
                   "write one sample (or a small block) at a time, writing into a dataset "
                   "created up front with `create_dataset(shape=..., dtype=...)`.")


def judge_faster(trace) -> None:
    _require_images(trace)
    d = trace.data
    per_fly = d["on_the_fly_s"] / d["n"] * 1e3
    if d["aborted"]:
        raise Fail(f"reading your precomputed samples in a shuffled order was slower than "
                   f"reading and transforming the originals ({per_fly:.1f} ms per sample): after "
                   f"{d['read']} of {d['n']} reads it had already taken as long. The layout "
                   "makes each read expensive (large or compressed chunks); store one sample "
                   "per chunk.")
    per_pre = d["precomputed_s"] / d["n"] * 1e3
    if d["precomputed_s"] > SPEED_RATIO * d["on_the_fly_s"]:
        raise Fail(f"a shuffled epoch over your precomputed file took {per_pre:.2f} ms per "
                   f"sample, against {per_fly:.2f} ms to read and transform the originals: "
                   "precomputing saved less than half. Each read should touch one small chunk "
                   "(one sample per chunk, fast or no compression).")


CHECKS = [
    Check("precompute_values", 1, "the stored samples equal `transform(images[i])`, in order",
          act_output, judge_values, fixtures=(SMALL,),
          hint="Loop over the input samples; for each `i`, write `transform(images[i])` to "
               "`out[i]`."),
    Check("precompute_dtype_shape", 1,
          "`images` has shape (N, *transform's output shape) and the transform's dtype",
          act_output, judge_dtype_shape, fixtures=(SMALL,),
          hint="Call `transform` on the first sample to learn the output shape and dtype, then "
               "`create_dataset('images', shape=(n, *first.shape), dtype=first.dtype, ...)`."),
    Check("precompute_labels", 1, "`labels` is copied unchanged, as int64",
          act_output, judge_labels, fixtures=(SMALL,),
          hint="`dst.create_dataset('labels', data=src['labels'][:])`: labels are small."),
    Check("precompute_any_transform", 1,
          "works for another input shape and a transform with another output shape and dtype",
          act_odd, judge_any_transform, fixtures=(ODD,), hidden=True, extends="values",
          hint="Nothing about the output may be fixed in advance: take shape and dtype from "
               "what `transform` returns, and accept `str` paths as well as `Path`s."),
    Check("precompute_layout", 1, "`images` is stored in a layout fit for per-sample reads",
          act_output, judge_layout, fixtures=(SMALL,),
          hint="`chunks=(1, *first.shape)`: one sample per chunk, the layout notebook 04 "
               "measured for random per-sample reads."),
    Check("precompute_streams", 2,
          "precomputing a 94 MiB file keeps memory flat (one sample or small block at a time)",
          act_streams, judge_streams, fixtures=(BIG,), timeout_s=90,
          hint="Create the output dataset with its full shape first, then fill it one sample "
               "(or a small block) at a time; never `images[:]` and never a list of all outputs."),
    Check("precompute_faster", 1,
          "a shuffled epoch over the precomputed file takes at most half the on-the-fly epoch",
          act_faster, judge_faster, fixtures=(TIMED,), timeout_s=90,
          hint="Per-sample chunks make each read one small, cheap chunk."),
]

EXERCISE = Exercise(
    name="precompute", title="precompute", subjects=(SUBJECT,), checks=CHECKS,
    hints=[
        "Stream: create the output's `images` dataset at its full size before the loop, then "
        "read, transform and write one sample at a time, so that one sample at most is in "
        "memory.",
        "`dst.create_dataset(\"images\", shape=..., dtype=..., chunks=...)` makes an empty "
        "dataset you fill with `out[i] = ...`. Call `transform` on the first image to learn the "
        "output's shape and dtype; notebook 04 measured why `chunks=(1, *sample_shape)` suits "
        "random per-sample reads.",
        "`with h5py.File(h5_in, \"r\") as src, h5py.File(h5_out, \"w\") as dst:` take "
        "`first = np.asarray(transform(src[\"images\"][0]))`, create `out` with `shape=(n, "
        "*first.shape), dtype=first.dtype, chunks=(1, *first.shape)`, fill `out[i] = "
        "transform(src[\"images\"][i])` for every `i`, and copy the labels with "
        "`dst.create_dataset(\"labels\", data=src[\"labels\"][:])`.",
    ],
    make_fixtures=make_fixtures,
)


def check_precompute(precompute, *checks: str) -> None:
    """Check the learner's `precompute` in a fresh process; name checks to run only those."""
    __tracebackhide__ = True
    run_exercise(EXERCISE, {SUBJECT: precompute}, checks)
