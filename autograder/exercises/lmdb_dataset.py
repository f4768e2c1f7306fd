"""04_file_formats: `LMDBDataset`, a worker-safe Dataset over an LMDB written by the notebook.

Contract (the same as 05's HDF5Dataset, for LMDB): `LMDBDataset(lmdb_path, transform=None)` over
a folder written by `memcourse.formats.write_lmdb`; `len(ds)` is the number of samples; `ds[i]`
returns `(image, label)` with image a float32 tensor (3, H, W) equal to the stored uint8 / 255
(through `transform` if given: called once per item, on that float32 image) and label `labels[i]`
(int, NumPy int64 or 0-dim int64 tensor).
It holds no open environment after `__init__`, opens one lazily per process and reuses it, never
uses an environment opened by another process (fork), stays picklable after use, works with
`DataLoader(num_workers=2)` under fork and spawn, and never holds all images in memory.

Each check fails only on what it observed: forked workers that open no environment are blamed for
reading through their parent's only when the parent held one, and a pickling error is blamed on
the environment only when one was open.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import shutil
from pathlib import Path

import lmdb
import numpy as np

from autograder.engine.check_report import run_exercise
from autograder.engine.context import NotAttempted
from autograder.engine.spec import Check, Exercise, Fail
from autograder.exercises import _dataset_contract as contract
from autograder.exercises import _fixtures as fixtures
from memcourse.formats import LMDB_LABELS_KEY, LMDB_META_KEY, lmdb_key, write_lmdb
from memcourse.images import iter_blocks

SUBJECT = "LMDBDataset"
SMALL = "small_lmdb"
BIG = "big_lmdb"
_SHAPES = {SMALL: (40, 20, 24), BIG: (1000, 128, 128)}  # 1000 x 48 KiB = 47 MiB
SEED = 17
LMDB_VERSION = 1


def lmdb_fixture(n: int, height: int, width: int, seed: int = SEED) -> Path:
    """An LMDB folder in the notebook's layout, with unique labels; written once and cached."""
    path = fixtures.fixture_dir() / f"v{LMDB_VERSION}_lmdb_{n}x{height}x{width}_{seed}"
    if (path / "data.mdb").exists():
        return path
    images = np.concatenate([b for _, b, _ in iter_blocks(n, height, width, seed)])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    write_lmdb(tmp, images, fixtures.fixture_labels(n, seed))
    try:
        os.replace(tmp, path)
    except OSError:  # another process wrote it first
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def make_fixtures() -> dict[str, str]:
    return {name: str(lmdb_fixture(*shape)) for name, shape in _SHAPES.items()}


def expected(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The fixture's images and labels, regenerated from the seed (the parent opens no LMDB)."""
    n, h, w = _SHAPES[name]
    return (np.concatenate([b for _, b, _ in iter_blocks(n, h, w, SEED)]),
            fixtures.fixture_labels(n, SEED))


class ReferenceLMDBDataset:
    """The reference solution's reading path, measured beside the learner's in the same child."""

    def __init__(self, lmdb_path, transform=None):
        self.path = str(lmdb_path)
        with lmdb.open(self.path, readonly=True, lock=False) as env, env.begin() as txn:
            meta = json.loads(txn.get(LMDB_META_KEY))
            self.labels = np.frombuffer(txn.get(LMDB_LABELS_KEY), "<i8").copy()
        self.shape = tuple(meta["shape"])
        self.env = None

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        import torch  # lazy: ~2 s, and the grader imports every exercise without needing it

        if self.env is None:
            self.env = lmdb.open(self.path, readonly=True, lock=False)
        with self.env.begin() as txn:
            raw = txn.get(lmdb_key(idx))
        image = np.frombuffer(raw, np.uint8).reshape(self.shape).copy()
        return torch.from_numpy(image).float() / 255, int(self.labels[idx])

    def close(self):
        if self.env is not None:
            self.env.close()
            self.env = None


# ----------------------------------------------------------------------------- in the child


def _make(ctx, submission, fixture=SMALL, **kwargs):
    transform = kwargs.get("transform")
    args = "" if transform is None else ", transform=flip" \
        if isinstance(transform, contract.FlippingTransform) else ", transform=record"
    return ctx.call(f"{SUBJECT}(lmdb_path{args})", submission[SUBJECT], str(ctx.fixtures[fixture]),
                    **kwargs)


def act_values(ctx, submission):
    return contract.read_items(ctx, _make(ctx, submission), [0, 7, 39])


def act_length(ctx, submission):
    return {"length": ctx.call("len(ds)", len, _make(ctx, submission))}


def act_transform(ctx, submission):
    return contract.transform_result_pass(
        ctx, lambda flip: _make(ctx, submission, transform=flip), [3, 21])


def act_transform_input(ctx, submission):
    return contract.transform_pass(
        ctx, lambda record: _make(ctx, submission, transform=record), [3, 21])


def act_random_indices(ctx, submission):
    indices = [int(i) for i in np.random.default_rng(5).permutation(40)[:12]]
    return contract.read_items(ctx, _make(ctx, submission), indices)


def _try_pickle(ds) -> tuple[bytes | None, str, list[dict]]:
    """The pickled dataset, or the error and which entries of its state would not pickle."""
    try:
        return pickle.dumps(ds), "", []
    except NotImplementedError:
        return None, "`__getstate__` still raises NotImplementedError", []
    except Exception as e:
        return None, f"{type(e).__name__}: {e}"[:300], contract.unpicklable_attributes(ds)


def act_lazy_open(ctx, submission):
    ctx.mark("before_init")
    ds = _make(ctx, submission)
    ctx.mark("after_init")
    _blob, error, unpicklable = _try_pickle(ds)
    return {"pickle_error": error, "unpicklable": unpicklable}


def _calibrate(ctx, fixture=SMALL) -> None:
    """Open and close one environment between two marks: how many opens one `lmdb.open` makes."""
    ctx.mark("calibrate_start")
    lmdb.open(str(ctx.fixtures[fixture]), readonly=True, lock=False).close()
    ctx.mark("calibrate_end")


def act_reuses_env(ctx, submission):
    _calibrate(ctx)  # before the learner's code opens anything on these files
    ds = _make(ctx, submission)
    ctx.mark("after_init")
    indices = [int(i) for i in np.random.default_rng(9).integers(0, 40, 100)]
    for i in indices:
        ctx.call("ds[i] for 100 random i", ds.__getitem__, i)
    ctx.mark("after_reads")
    return {"reads": len(indices)}


def act_picklable_after_use(ctx, submission):
    ds = _make(ctx, submission)
    ctx.call("ds[0]", ds.__getitem__, 0)
    ctx.mark("after_use")
    try:  # what the original returns: a reference point only, the value checks judge it
        original = contract.read_items(ctx, ds, [5, 17], prefix="original")
    except NotAttempted:
        raise
    except Exception:
        original = {}
    blob, error, unpicklable = _try_pickle(ds)
    if blob is None:
        return {"pickle_error": error, "unpicklable": unpicklable}
    # py-lmdb refuses a second environment on the same files in one process, so the original
    # must be gone before the copy opens its own (as it is in a real worker process).
    del ds
    gc.collect()
    copy = ctx.call("pickle.loads(pickle.dumps(ds))", pickle.loads, blob)
    return {"pickle_error": "", "original": original,
            **contract.read_items(ctx, copy, [5, 17], what="copy")}


def act_stays_small(ctx, submission):
    path = str(ctx.fixtures[BIG])
    n = _SHAPES[BIG][0]
    ref = ReferenceLMDBDataset(path)  # warm up torch, the allocator and the page cache first
    for i in range(n):
        ref[i]
    ref.close()
    del ref
    gc.collect()
    ctx.mark("reference_start")
    ref = ReferenceLMDBDataset(path)
    for i in range(n):
        ref[i]
    ctx.mark("reference_end")
    ref.close()
    del ref
    gc.collect()
    ctx.mark("learner_start")
    ds = ctx.call(f"{SUBJECT}(lmdb_path)", submission[SUBJECT], path)
    ctx.mark("after_init")
    for i in range(n):
        ctx.call("ds[i] for every i", ds.__getitem__, i)
    ctx.mark("after_reads")
    return {"bytes": n * 3 * _SHAPES[BIG][1] * _SHAPES[BIG][2]}


def _loader_run(ctx, submission, method: str) -> dict:
    _calibrate(ctx)  # before the learner's code opens anything on these files
    ds = _make(ctx, submission)
    ctx.call("ds[0]", ds.__getitem__, 0)  # used in the main process first, as learners do
    ctx.mark("before_loader")
    data = contract.loader_pass(ctx, ds, method)
    ctx.mark("after_loader")
    return data


def act_fork_workers(ctx, submission):
    return _loader_run(ctx, submission, "fork")


def act_spawn_workers(ctx, submission):
    return _loader_run(ctx, submission, "spawn")


# ----------------------------------------------------------------------------- in the parent


def _compare(trace) -> None:
    images, labels = expected(SMALL)
    _, height, width = _SHAPES[SMALL]
    contract.judge_types(trace, height, width)
    contract.judge_images(trace, lambda i: images[i])
    contract.judge_labels(trace, lambda i: int(labels[i]))


def judge_values(trace) -> None:
    _compare(trace)


def judge_length(trace) -> None:
    n = _SHAPES[SMALL][0]
    if trace.data["length"] != n:
        raise Fail(f"len(ds) is {trace.data['length']}, but the LMDB holds {n} samples (its "
                   "metadata says so; the labels and metadata keys are not samples).")


def judge_transform(trace) -> None:
    contract.judge_transform_result(trace)


def judge_transform_input(trace) -> None:
    images, _ = expected(SMALL)
    _, height, width = _SHAPES[SMALL]
    contract.judge_transform_input(trace, lambda i: images[i], height, width)


def judge_random_indices(trace) -> None:
    _compare(trace)


def _lmdb_fds(mark) -> int:
    return sum(n for f, n in mark.fds.items())


def _opens_per_env(trace) -> int:
    """Opens of data.mdb that one `lmdb.open` made in this child (py-lmdb opens it twice)."""
    return max(1, _data_opens(trace, "calibrate_start", "calibrate_end"))


def _data_opens(trace, first: str, last: str) -> int:
    labels = [m.label for m in trace.marks]
    i, j = labels.index(first), labels.index(last)
    return sum(n for m in trace.marks[i + 1: j + 1] for f, n in m.opens.items()
               if f.endswith("data.mdb"))


def judge_lazy_open(trace) -> None:
    fds = _lmdb_fds(trace.mark("after_init"))
    if fds:
        raise Fail(f"right after `__init__`, the process held {fds} descriptor(s) open on the "
                   "LMDB files: the environment was opened (and kept) in `__init__`. Open it "
                   "briefly there for the metadata and close it, then open it lazily in "
                   "`__getitem__`; an environment opened before DataLoader workers start is "
                   "inherited by forked workers and cannot be pickled for spawned ones.")
    if trace.data["pickle_error"]:
        raise Fail("a freshly built dataset could not be pickled "
                   f"({trace.data['pickle_error']}); spawn and forkserver workers receive the "
                   "dataset by pickling it: "
                   f"{contract.pickling_advice(trace.data.get('unpicklable', []))}.")


def judge_reuses_env(trace) -> None:
    if not trace.opens_available:
        return  # no inotify here: nothing to count (the other checks still run)
    opens = _data_opens(trace, "after_init", "after_reads")
    per_env = _opens_per_env(trace)
    reads = trace.data["reads"]
    if opens > per_env:
        raise Fail(f"{reads} reads opened {opens // per_env} environments (data.mdb was opened "
                   f"{opens} times; one `lmdb.open` opens it {per_env} times here): the "
                   "environment is opened again for each sample. Keep the environment in an "
                   "attribute after the first open and reuse it; begin a cheap read transaction "
                   "per sample instead.")
    fds = _lmdb_fds(trace.mark("after_reads"))
    if fds > 2:
        raise Fail(f"after {reads} reads the process held {fds} descriptors on the LMDB files: "
                   "environments are opened and never closed.")


def judge_picklable_after_use(trace) -> None:
    if trace.data["pickle_error"]:
        raise Fail("after `ds[0]` the dataset could not be pickled "
                   f"({trace.data['pickle_error']}); spawn and forkserver workers receive the "
                   "dataset by pickling, often after a sanity check like `ds[0]`: "
                   f"{contract.pickling_advice(trace.data.get('unpicklable', []))}.")
    try:
        _compare(trace)
    except Fail as e:
        if contract.same_items(trace, "item", "original", len(trace.data["indices"])):
            return  # the copy reads as the original does: wrong values are `values`' to judge
        raise Fail(f"a copy unpickled after `ds[0]` does not read as the original does: {e}") \
            from None


def judge_stays_small(trace) -> None:
    data_mib = trace.data["bytes"] / 2**20

    def anon(label):
        return trace.mark(label).anon_mib

    reference = anon("reference_end") - anon("reference_start")
    init = anon("after_init") - anon("learner_start")
    reads = anon("after_reads") - anon("learner_start")
    allowed = max(0.0, reference) + max(8.0, 0.15 * data_mib)
    if max(init, reads) > allowed:
        when = "after `__init__`" if init > allowed else "after reading every sample"
        raise Fail(f"private memory (RssAnon) stood {max(init, reads):.0f} MiB higher {when} "
                   f"for {data_mib:.0f} MiB of images (reading through the reference needs "
                   f"{max(0.0, reference):.0f} MiB): the dataset keeps images in memory. Read "
                   "one value per `__getitem__` and keep nothing but the labels.")


def _judge_loader(trace) -> None:
    images, labels = expected(SMALL)
    contract.judge_loader(trace, lambda i: images[i], labels)


def judge_fork_workers(trace) -> None:
    """Workers that open no environment of their own fail only if the parent held one.

    With no descriptor on the LMDB files in the parent when the loader starts, there is nothing
    to inherit: the samples came from memory (`stays_small` judges that), not through an
    environment opened before the fork. Only "no open at all" fails: inotify merges identical
    open events that the parent has not read yet, so two workers opening at the same moment on
    a busy machine can be seen as one environment (measured in `make test` at load 2 on 2
    cores), while a dataset that reads through the inherited environment opens nothing.
    """
    _judge_loader(trace)
    if trace.opens_available:
        held = _lmdb_fds(trace.mark("before_loader"))
        opens = _data_opens(trace, "before_loader", "after_loader")
        if held and opens == 0:
            raise Fail(f"when the loader started, the main process held {held} descriptor(s) "
                       "on the LMDB files (the environment `ds[0]` opened), and the two forked "
                       "workers opened no environment of their "
                       "own: they read through the inherited one. LMDB forbids using an "
                       "environment in a process forked after it was opened; remember "
                       "`os.getpid()` when you open, and in a process with another pid close "
                       "the inherited environment and open a new one.")


def judge_spawn_workers(trace) -> None:
    _judge_loader(trace)


CHECKS = [
    Check("lmdb_dataset_values", 1,
          "`ds[i]` returns a (3, H, W) tensor, the stored image / 255 as float32 (or as "
          "uint8), and its "
          "label", act_values, judge_values, fixtures=(SMALL,),
          hint="`np.frombuffer(txn.get(lmdb_key(idx)), np.uint8).reshape(shape).copy()`, then "
               "`torch.from_numpy(...).float() / 255`; keys are 8-byte big-endian, not "
               "`str(idx)`."),
    Check("lmdb_dataset_length", 1, "`len(ds)` is the number of samples",
          act_length, judge_length, fixtures=(SMALL,),
          hint="Read the length from the metadata (or the labels) once in `__init__`."),
    Check("lmdb_dataset_transform", 0.5, "the `transform`'s result is the image returned",
          act_transform, judge_transform, fixtures=(SMALL,),
          hint="Store `transform`; in `__getitem__`, when it is not None, call it last, on "
               "the float image, and return what it returns."),
    Check("lmdb_dataset_transform_input", 0.5,
          "`ds[i]` calls the transform once, on the (3, H, W) image it returns (float32 "
          "stored bytes / 255, or uint8)",
          act_transform_input, judge_transform_input, fixtures=(SMALL,),
          hint="Convert first, `torch.from_numpy(image).float() / 255`, then call "
               "`self.transform(image)` once, in `__getitem__`."),
    Check("lmdb_dataset_random_indices", 1, "any index returns its own image and label",
          act_random_indices, judge_random_indices, fixtures=(SMALL,), hidden=True,
          extends="values",
          hint="Build the key from the index you were given: `lmdb_key(idx)`."),
    Check("lmdb_dataset_lazy_open", 1,
          "`__init__` leaves no environment open and the new dataset pickles",
          act_lazy_open, judge_lazy_open, fixtures=(SMALL,),
          hint="Read the metadata in `with lmdb.open(...) as env:` so it closes, and set "
               "`self._env = None`; open it in `__getitem__`."),
    Check("lmdb_dataset_reuses_env", 1,
          "100 reads open the LMDB files once and leak no descriptors",
          act_reuses_env, judge_reuses_env, fixtures=(SMALL,),
          hint="`if self._env is None: self._env = lmdb.open(...)`, then reuse `self._env`."),
    Check("lmdb_dataset_stays_small", 1,
          "building the dataset and reading every sample keeps private memory flat",
          act_stays_small, judge_stays_small, fixtures=(BIG,), timeout_s=90,
          hint="Keep the path, the shape and the labels; fetch one value per `__getitem__`."),
    Check("lmdb_dataset_picklable_after_use", 1,
          "after `ds[0]` the dataset still pickles, and the copy reads correctly",
          act_picklable_after_use, judge_picklable_after_use, fixtures=(SMALL,),
          hint="`def __getstate__(self): state = self.__dict__.copy(); state['_env'] = None; "
               "return state`."),
    Check("lmdb_dataset_fork_workers", 1,
          "forked DataLoader workers each open their own environment, even after `ds[0]`",
          act_fork_workers, judge_fork_workers, fixtures=(SMALL,), timeout_s=90,
          hint="Store `os.getpid()` with the environment; when `__getitem__` runs in another "
               "process, `close()` the inherited environment and open a fresh one."),
    Check("lmdb_dataset_spawn_workers", 1,
          "spawned DataLoader workers deliver every sample exactly once, even after `ds[0]`",
          act_spawn_workers, judge_spawn_workers, fixtures=(SMALL,), timeout_s=150,
          hint="Spawned workers unpickle the dataset: it must pickle after use, and open its "
               "own environment in the worker."),
]

EXERCISE = Exercise(
    name="lmdb_dataset", title="LMDBDataset", subjects=(SUBJECT,), checks=CHECKS,
    make_fixtures=make_fixtures,
    hints=[
        "It is notebook 05's `HDF5Dataset` with an LMDB environment in place of the h5py file: "
        "read the small things in `__init__` and close again, open lazily once per process, "
        "and drop the environment when pickled.",
        "`lmdb.open(path, readonly=True, lock=False)` opens an environment; `with env.begin() "
        "as txn: txn.get(lmdb_key(idx))` returns a sample's raw bytes, and `LMDB_META_KEY` "
        "(JSON with the shape) and `LMDB_LABELS_KEY` (int64 bytes) hold the rest. Section 3's "
        "'One environment per process, opened lazily' shows why a fork child must not reuse "
        "its parent's environment.",
        "Keep `self._env = None` and the pid that opened it; in `__getitem__`, reopen when "
        "`self._env is None` or `os.getpid()` changed, then `np.frombuffer(raw, "
        "dtype=np.uint8).reshape(self.shape).copy()`, `torch.from_numpy(...).float() / 255`, "
        "and return it with `int(self.labels[idx])`. `__getstate__` returns a copy of "
        "`self.__dict__` with `_env` (and the pid) set to None.",
    ],
)


def check_lmdb_dataset(LMDBDataset, *checks: str) -> None:  # noqa: N803 (the learner's name)
    """Check the learner's `LMDBDataset` in a fresh process; name checks to run only those."""
    __tracebackhide__ = True
    run_exercise(EXERCISE, {SUBJECT: LMDBDataset}, checks)
