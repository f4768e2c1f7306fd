"""05_hdf5_dataset: `read_batch(images, indices)`, a shuffled batch from an h5py dataset.

h5py's fancy indexing only accepts increasing, unique indices (unsorted or repeated ones raise
TypeError), so a shuffled batch must be sorted, de-duplicated, read, and put back in the order
asked for. Contract: `images` is an open h5py Dataset (N, 3, H, W) uint8; `indices` a sequence of
ints in any order, possibly repeated; the result is a uint8 array (len(indices), 3, H, W) whose
row k is `images[indices[k]]`, read without loading the whole dataset.
"""

from __future__ import annotations

import h5py
import numpy as np

from autograder.engine.check_report import run_exercise
from autograder.engine.spec import Check, Exercise, Fail
from autograder.exercises import _fixtures as fixtures

SUBJECT = "read_batch"
SMALL, BIG = "small_h5", "big_h5"
SMALL_SHAPE = (64, 24, 20)
BIG_SHAPE = (1000, 128, 128)
SHUFFLED = [int(i) for i in np.random.default_rng(8).permutation(64)[:24]]
REPEATED = [7, 3, 7, 60, 0, 3, 3, 59]


def make_fixtures() -> dict[str, str]:
    return {SMALL: str(fixtures.images_h5(*SMALL_SHAPE)),
            BIG: str(fixtures.images_h5(*BIG_SHAPE))}


def reference_read_batch(images, indices):
    """The reference: one sorted, unique selection, then un-permuted."""
    indices = np.asarray(indices)
    unique, inverse = np.unique(indices, return_inverse=True)
    return images[unique][inverse]


def _run(ctx, submission, path, indices, label):
    with h5py.File(path, "r") as f:
        out = ctx.call(f"read_batch(images, {label})", submission[SUBJECT], f["images"],
                       list(indices))
        kind = {"type": type(out).__name__}
        if isinstance(out, np.ndarray):
            ctx.save_array("batch", out)
            kind.update(dtype=str(out.dtype), shape=list(out.shape))
    return {"indices": list(indices), "kind": kind}


def act_shuffled(ctx, submission):
    return _run(ctx, submission, ctx.fixtures[SMALL], SHUFFLED, "shuffled_indices")


def act_repeated(ctx, submission):
    return _run(ctx, submission, ctx.fixtures[SMALL], REPEATED, "indices_with_repeats")


def act_no_full_read(ctx, submission):
    path = ctx.fixtures[BIG]
    indices = [int(i) for i in np.random.default_rng(9).permutation(BIG_SHAPE[0])[:32]]
    with h5py.File(path, "r") as f:
        reference_read_batch(f["images"], indices)  # warm up
        ctx.mark("reference_start")
        reference_read_batch(f["images"], indices)
        ctx.mark("reference_end")
        ctx.call("read_batch(images, 32 shuffled indices)", submission[SUBJECT], f["images"],
                 indices)
        ctx.mark("learner_end")
    return {"bytes": int(np.prod(BIG_SHAPE)) * 3}


def _judge_batch(trace) -> None:
    kind = trace.data["kind"]
    indices = trace.data["indices"]
    if kind["type"] != "ndarray":
        raise Fail(f"read_batch returned a {kind['type']}; return a NumPy array.")
    if kind["dtype"] != "uint8":
        raise Fail(f"read_batch returned dtype {kind['dtype']}; keep the file's uint8 (convert "
                   "later, in the model's device, if at all).")
    expected_shape = [len(indices), 3, SMALL_SHAPE[1], SMALL_SHAPE[2]]
    if kind["shape"] != expected_shape:
        raise Fail(f"read_batch returned shape {tuple(kind['shape'])}; expected "
                   f"{tuple(expected_shape)}: one row per requested index, repeats included.")
    with h5py.File(make_fixtures()[SMALL], "r") as f:
        images = f["images"][:]
    batch = trace.arrays["batch"]
    for k, i in enumerate(indices):
        if not np.array_equal(batch[k], images[i]):
            sorted_order = sorted(indices)
            if np.array_equal(batch[k], images[sorted_order[k]]):
                raise Fail(f"row {k} holds images[{sorted_order[k]}], not images[{i}]: the rows "
                           "come back in sorted order; put them back in the order requested.")
            raise Fail(f"row {k} is not images[{i}].")


def judge_no_full_read(trace) -> None:
    data_mib = trace.data["bytes"] / 2**20
    reference = trace.private_growth_mib("reference_start", "reference_end")
    learner = trace.private_growth_mib("reference_end", "learner_end")
    if learner > reference + max(8.0, 0.1 * data_mib):
        rows_mib = 32 * data_mib / BIG_SHAPE[0]
        raise Fail(f"reading 32 samples ({rows_mib:.1f} MiB of rows) grew memory by "
                   f"{learner:.0f} MiB, for a {data_mib:.0f} MiB dataset: it reads far more rows "
                   "than it returns, as `images[:]` or a slice spanning the requested rows "
                   "would. Read only the rows you need.")


CHECKS = [
    Check("read_batch_shuffled", 1, "shuffled indices come back in the order requested",
          act_shuffled, _judge_batch, fixtures=(SMALL,),
          hint="h5py needs increasing indices: `np.unique(indices, return_inverse=True)` gives "
               "the sorted unique ones and how to put them back."),
    Check("read_batch_repeats", 1, "repeated indices give repeated rows", act_repeated,
          _judge_batch, fixtures=(SMALL,), hidden=True, extends="shuffled",
          hint="h5py refuses repeated indices; read each distinct index once and repeat rows "
               "afterwards."),
    Check("read_batch_no_full_read", 1, "only the requested rows are read", act_no_full_read,
          judge_no_full_read, fixtures=(BIG,), timeout_s=60,
          hint="`images[sorted_unique_indices]` reads just those rows."),
]

EXERCISE = Exercise(
    name="read_batch", title="read_batch", subjects=(SUBJECT,), checks=CHECKS,
    make_fixtures=make_fixtures,
    hints=[
        "h5py reads several rows in one request only when the indices increase and do not "
        "repeat. Ask for indices that do, then put the rows back in the order you were asked.",
        "`np.unique(indices, return_inverse=True)` returns the sorted distinct indices and, for "
        "each position of the original list, where its value sits among them. The cell above "
        "the exercise shows which requests h5py accepts.",
        "`unique, inverse = np.unique(np.asarray(indices), return_inverse=True)`; read "
        "`images[unique]` once, then index that array with `inverse`: the rows come back in the "
        "requested order, repeats included.",
    ])


def check_read_batch(read_batch, *checks: str) -> None:
    """Check the learner's `read_batch` in a fresh process; name checks to run only those."""
    __tracebackhide__ = True
    run_exercise(EXERCISE, {SUBJECT: read_batch}, checks)
