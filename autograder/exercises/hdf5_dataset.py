"""05_hdf5_dataset: `HDF5Dataset`, the guide's HDF5-backed Dataset done right.

Contract (keep these names; other material depends on them): `HDF5Dataset(h5_path,
transform=None)` over a file holding `images` (N, 3, H, W) uint8 and `labels` (N,) int64;
`ds[i]` follows the course's Dataset contract (see _dataset_contract.py), the transform included
(called once per item, on the float32 image); it never reads all images into memory; it holds
no open file handle after `__init__` (it opens lazily, once per process, and reuses the
handle); it stays picklable after use in the parent; it works with `DataLoader(num_workers=2)`
under fork and spawn; it does not leak file handles.

Each check fails only on what it observed: a check that sees nothing of its property (no open, no
handle) passes rather than guess at another defect, which the check that observes it reports.
"""

from __future__ import annotations

import functools
import pickle

import h5py
import numpy as np

from autograder.engine.check_report import run_exercise
from autograder.engine.context import LearnerRaised, NotAttempted
from autograder.engine.spec import Check, Exercise, Fail
from autograder.exercises import _dataset_contract as contract
from autograder.exercises import _fixtures as fixtures

SUBJECT = "HDF5Dataset"
SMALL = "small_h5"
BIG = "big_h5"
SMALL_SHAPE = (64, 24, 20)  # non-square, so an (H, W, 3) or (3, W, H) image is caught
BIG_SHAPE = (1000, 128, 128)  # 49 MiB of images: reading them all stands far above the noise


def make_fixtures() -> dict[str, str]:
    return {SMALL: str(fixtures.images_h5(*SMALL_SHAPE)),
            BIG: str(fixtures.images_h5(*BIG_SHAPE))}


@functools.lru_cache(maxsize=1)
def _small() -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(make_fixtures()[SMALL], "r") as f:
        return f["images"][:], f["labels"][:]


def _image(i: int) -> np.ndarray:
    return _small()[0][i]


def _label(i: int) -> int:
    return int(_small()[1][i])


class ReferenceHDF5Dataset:
    """The reference solution, measured beside the learner's in the same process."""

    def __init__(self, h5_path, transform=None):
        self.h5_path, self.transform = str(h5_path), transform
        with h5py.File(self.h5_path, "r") as f:
            self.length = len(f["labels"])
        self._file = self._images = self._labels = None

    def __len__(self):
        return self.length

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = state["_images"] = state["_labels"] = None
        return state

    def __getitem__(self, idx):
        import torch  # lazy: ~2 s, and the grader imports every exercise without needing it

        if self._file is None:
            self._file = h5py.File(self.h5_path, "r")
            self._images, self._labels = self._file["images"], self._file["labels"]
        image = torch.from_numpy(self._images[idx]).float() / 255
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self._labels[idx])


# ----------------------------------------------------------------------------- in the child


def _build(ctx, submission, path, **kwargs):
    transform = kwargs.get("transform")
    args = "" if transform is None else ", transform=flip" \
        if isinstance(transform, contract.FlippingTransform) else ", transform=record"
    return ctx.call(f"{SUBJECT}(h5_path{args})", submission[SUBJECT], str(path), **kwargs)


def _own_files(path) -> int:
    """h5py file objects open on `path` in this process (several may share one descriptor)."""
    return len([fid for fid in h5py.h5f.get_obj_ids(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE)
                if fid.name.decode(errors="replace") == str(path)])


def act_values(ctx, submission):
    ds = _build(ctx, submission, ctx.fixtures[SMALL])
    return contract.read_items(ctx, ds, [0, 9, SMALL_SHAPE[0] - 1])


def act_length(ctx, submission):
    ds = _build(ctx, submission, ctx.fixtures[SMALL])
    return {"length": ctx.call("len(ds)", len, ds)}


def act_random_indices(ctx, submission):
    ds = _build(ctx, submission, ctx.fixtures[SMALL])
    order = np.random.default_rng(3).permutation(SMALL_SHAPE[0])[:16]
    return contract.read_items(ctx, ds, [int(i) for i in order])


def act_transform(ctx, submission):
    return contract.transform_result_pass(
        ctx, lambda flip: _build(ctx, submission, ctx.fixtures[SMALL], transform=flip), [5, 40])


def act_transform_input(ctx, submission):
    return contract.transform_pass(
        ctx, lambda record: _build(ctx, submission, ctx.fixtures[SMALL], transform=record),
        [5, 40])


def act_no_full_read(ctx, submission):
    path = ctx.fixtures[BIG]
    contract.streaming_pass(ctx, lambda: ReferenceHDF5Dataset(path),
                            lambda: _build(ctx, submission, path), BIG_SHAPE[0])
    return {"n": BIG_SHAPE[0], "bytes": BIG_SHAPE[0] * 3 * BIG_SHAPE[1] * BIG_SHAPE[2]}


def act_handles(ctx, submission):
    """Construct, then read 48 samples and call len() often; the parent counts fds and opens."""
    path = ctx.fixtures[SMALL]
    ctx.mark("before_init")
    ds = _build(ctx, submission, path)
    ctx.mark("after_init")
    after_init = _own_files(path)
    for i in range(48):
        ctx.call(f"ds[{i}]", ds.__getitem__, i)
        if i % 8 == 0:
            ctx.call("len(ds)", len, ds)
    ctx.mark("after_reads")
    return {"h5py_open_files_after_init": after_init, "h5py_open_files": _own_files(path)}


def _error(e: BaseException) -> str:
    if isinstance(e, LearnerRaised):
        e = e.error
    return f"{type(e).__name__}: {e}"[:300]


def _pickle_round_trip(ctx, ds, when: str) -> dict:
    """Pickle, unpickle and read `copy[3]`; record which step failed, and how."""
    try:
        blob = pickle.dumps(ds)
    except Exception as e:
        return {f"{when}_pickle_error": _error(e),
                f"{when}_unpicklable": contract.unpicklable_attributes(ds)}
    try:
        copy = pickle.loads(blob)
    except Exception as e:
        return {f"{when}_unpickle_error": _error(e)}
    try:
        image, label = ctx.call(f"copy[3] on a copy unpickled {when}", copy.__getitem__, 3)
    except NotAttempted:
        raise
    except Exception as e:
        return {f"{when}_read_error": _error(e)}
    ctx.save_array(f"copy_{when}", contract._numbers(image))
    return {f"{when}_label": contract._as_int(label)}


def act_picklable(ctx, submission):
    path = ctx.fixtures[SMALL]
    ds = _build(ctx, submission, path)
    data = _pickle_round_trip(ctx, ds, "before_use")
    ctx.call("ds[0]", ds.__getitem__, 0)
    data.update(_pickle_round_trip(ctx, ds, "after_use"))
    try:  # what the original returns: a reference point only, the value checks judge it
        image, label = ctx.call("ds[3]", ds.__getitem__, 3)
    except NotAttempted:
        raise
    except Exception:
        return data
    ctx.save_array("original", contract._numbers(image))
    return {**data, "original_label": contract._as_int(label)}


def _act_loader(ctx, submission, context: str):
    ds = _build(ctx, submission, ctx.fixtures[SMALL])
    ctx.call("ds[0] in the main process", ds.__getitem__, 0)  # the common trap: use, then fork
    return contract.loader_pass(ctx, ds, context)


def act_fork_workers(ctx, submission):
    return _act_loader(ctx, submission, "fork")


def act_spawn_workers(ctx, submission):
    return _act_loader(ctx, submission, "spawn")


# ----------------------------------------------------------------------------- in the parent


def judge_values(trace) -> None:
    contract.judge_types(trace, SMALL_SHAPE[1], SMALL_SHAPE[2])
    contract.judge_images(trace, _image)


def judge_labels(trace) -> None:
    contract.judge_labels(trace, _label)


def judge_length(trace) -> None:
    if trace.data["length"] != SMALL_SHAPE[0]:
        raise Fail(f"len(ds) is {trace.data['length']}, but the file holds {SMALL_SHAPE[0]} "
                   "samples: read the length from the file's `labels` (or `images`) dataset.")


def judge_random_indices(trace) -> None:
    contract.judge_types(trace, SMALL_SHAPE[1], SMALL_SHAPE[2])
    contract.judge_images(trace, _image)
    contract.judge_labels(trace, _label)


def judge_transform(trace) -> None:
    contract.judge_transform_result(trace)


def judge_transform_input(trace) -> None:
    contract.judge_transform_input(trace, _image, SMALL_SHAPE[1], SMALL_SHAPE[2])


def judge_no_full_read(trace) -> None:
    contract.judge_streaming(trace, trace.data["bytes"] / 2**20, "images",
                             "Read `images[idx]` (one sample) in `__getitem__` and keep nothing "
                             "else.", fixture=BIG)


def judge_lazy_open(trace) -> None:
    held = sum(trace.mark("after_init").fds.values())
    if held:
        raise Fail(f"after `__init__` the process holds {held} open descriptor(s) on the HDF5 "
                   "file: open it lazily, on first use in each process, so no handle exists "
                   "when DataLoader forks or pickles the dataset. (Opening it briefly in "
                   "`__init__` to read the length is fine with `with h5py.File(...)`.)")


def judge_reuses_handle(trace) -> None:
    """Fails only on what it sees: more than one open while reading.

    No open at all is not a defect of this property: either a handle opened in `__init__` was
    kept (`lazy_open` sees its descriptor) or the samples came from memory (`no_full_read` sees
    that), and neither reopens the file per item.
    """
    if not trace.opens_available:
        return  # no inotify on this system (not Linux): the descriptor checks still apply
    opens = trace.opens_between("after_init", "after_reads", SMALL)
    if opens > 1:
        raise Fail(f"reading 48 samples and calling len() 6 times opened the file {opens} "
                   "times: open it once per process and keep the handle (and the `images` and "
                   "`labels` dataset objects) for later calls; `__len__` should not open it.")


def judge_no_handle_leak(trace) -> None:
    """Handles opened while reading and still open: what `__init__` left is `lazy_open`'s."""
    fds0 = sum(trace.mark("after_init").fds.values())
    fds = sum(trace.mark("after_reads").fds.values())
    files0 = trace.data.get("h5py_open_files_after_init", 0)
    files = trace.data.get("h5py_open_files", 0)
    if fds - fds0 > 1 or files - files0 > 1:
        raise Fail(f"reading 48 samples left {fds - fds0} more descriptor(s) and "
                   f"{files - files0} more open h5py file object(s) on the dataset than "
                   f"`__init__` did ({fds} and {files} in all): the handles `__getitem__` "
                   "opens are neither closed nor reused. Keep one handle per process.")


def judge_picklable(trace) -> None:
    data = trace.data
    for when, words in (("before_use", "right after `__init__`"),
                        ("after_use", "after `ds[0]` ran in this process")):
        if f"{when}_pickle_error" in data:
            raise Fail(f"the dataset cannot be pickled {words} "
                       f"({data[f'{when}_pickle_error']}), and `spawn`/`forkserver` workers "
                       "receive a pickled copy: "
                       f"{contract.pickling_advice(data.get(f'{when}_unpicklable', []))}.")
        if f"{when}_unpickle_error" in data:
            raise Fail(f"the dataset pickles {words}, but the copy cannot be unpickled "
                       f"({data[f'{when}_unpickle_error']}), as a `spawn` worker must.")
        if f"{when}_read_error" in data:
            raise Fail(f"a copy unpickled {words} raised {data[f'{when}_read_error']} at "
                       "`copy[3]`: a copy must open its own handle the first time it reads.")
        got = trace.arrays[f"copy_{when}"].astype(np.float64)
        # A uint8 copy passes below, where it reads as the original does.
        want = contract.expected_image(_image(3), "float32")
        if got.shape == want.shape and np.allclose(got, want, atol=1e-6) \
                and data[f"{when}_label"] == _label(3):
            continue
        original = trace.arrays.get("original", np.zeros(0)).astype(np.float64)
        if got.shape == original.shape and np.allclose(got, original, atol=1e-6) \
                and data[f"{when}_label"] == data.get("original_label"):
            continue  # the copy reads as the original does: wrong values are `values`' to judge
        raise Fail(f"a copy unpickled {words} returns another sample at `copy[3]` than the "
                   "original's `ds[3]`.")


def judge_workers(trace) -> None:
    contract.judge_loader(trace, _image, _small()[1])


def _check(name, points, verifies, act, judge, hint, **kwargs) -> Check:
    return Check(f"hdf5_dataset_{name}", points, verifies, act, judge, hint=hint, **kwargs)


CHECKS = [
    _check("values", 2, "`ds[i]` returns a (3, H, W) tensor: images[i] / 255 as float32, or "
           "images[i] as uint8",
           act_values, judge_values, fixtures=(SMALL,),
           hint="`torch.from_numpy(self._images[idx]).float() / 255` gives float32 in [0, 1] "
                "with the file's (3, H, W) layout."),
    _check("labels", 1, "`ds[i][1]` equals labels[i]", act_values, judge_labels,
           fixtures=(SMALL,), hint="Read the label at the same index: `int(self._labels[idx])`."),
    _check("length", 1, "`len(ds)` is the number of samples in the file", act_length,
           judge_length, fixtures=(SMALL,),
           hint="Read `len(f['labels'])` once in `__init__` (inside `with h5py.File(...)`)."),
    _check("random_indices", 1, "any index returns its own image and label", act_random_indices,
           judge_random_indices, fixtures=(SMALL,), hidden=True, extends="values",
           hint="Index the file's datasets with the index you were given, nothing else."),
    _check("transform", 0.5, "the `transform`'s result is the image returned", act_transform,
           judge_transform, fixtures=(SMALL,),
           hint="Keep `transform` in `__init__`; in `__getitem__`, when it is not None, call it "
                "last, on the float image, and return what it returns."),
    _check("transform_input", 0.5,
           "`ds[i]` calls the transform once, on the (3, H, W) image it returns (float32 "
           "images[i] / 255, or uint8 images[i])",
           act_transform_input, judge_transform_input, fixtures=(SMALL,),
           hint="Convert first, `image = torch.from_numpy(self._images[idx]).float() / 255`, "
                "then `image = self.transform(image)` once, in `__getitem__`."),
    _check("no_full_read", 2, "reading every sample keeps memory flat (no full read, no cache)",
           act_no_full_read, judge_no_full_read, fixtures=(BIG,), timeout_s=90,
           hint="Never call `f['images'][:]`; index one sample, `self._images[idx]`, and return "
                "it without storing it."),
    _check("lazy_open", 1, "no file handle is held after `__init__`", act_handles,
           judge_lazy_open, fixtures=(SMALL,),
           hint="Set `self._file = None` in `__init__` and open the file in `__getitem__` when "
                "it is still None."),
    _check("reuses_handle", 1, "the file is opened once per process and reused",
           act_handles, judge_reuses_handle, fixtures=(SMALL,),
           hint="Store the open file (and its `images`/`labels` datasets) on `self` the first "
                "time `__getitem__` runs."),
    _check("no_handle_leak", 1, "reading many samples leaves at most one open handle",
           act_handles, judge_no_handle_leak, fixtures=(SMALL,),
           hint="Open the file only when `self._file is None`."),
    _check("picklable", 1, "the dataset can be pickled before and after use", act_picklable,
           judge_picklable, fixtures=(SMALL,),
           hint="Define `__getstate__` to return a copy of `self.__dict__` with the handle "
                "entries set to None."),
    _check("fork_workers", 1, "`DataLoader(num_workers=2)` with fork delivers every sample once",
           act_fork_workers, judge_workers, fixtures=(SMALL,), timeout_s=60,
           hint="Each worker must open its own handle: keep none open when the loader starts, "
                "or reopen when the process id changes."),
    _check("spawn_workers", 2,
           "`DataLoader(num_workers=2)` with spawn delivers every sample once, after use",
           act_spawn_workers, judge_workers, fixtures=(SMALL,), timeout_s=90,
           hint="spawn workers get a pickled copy of the dataset: it must pickle even after "
                "`ds[0]` opened the file in the main process (`__getstate__`)."),
]

EXERCISE = Exercise(
    name="hdf5_dataset", title="HDF5Dataset", subjects=(SUBJECT,), checks=CHECKS,
    make_fixtures=make_fixtures,
    hints=[
        "Take the properties in the order the notebook taught them: read one sample, open once "
        "per process, stay picklable. `__init__` needs only the path, the transform and the "
        "number of samples, and must leave no file open.",
        "In `__init__`, read `len(f[\"labels\"])` inside `with h5py.File(path, \"r\") as f:` "
        "and set the handles to None. In `__getitem__`, open `h5py.File(self.h5_path, \"r\")` "
        "only while `self._file is None` (Property 2). `__getstate__` returns a copy of "
        "`self.__dict__` with every h5py object set to None (Property 3, the "
        "`LazyButNotPicklable` trap).",
        "`__getitem__`: `if self._file is None:` open the file and keep `self._images, "
        "self._labels = self._file[\"images\"], self._file[\"labels\"]`; then `image = "
        "torch.from_numpy(self._images[idx]).float() / 255`, apply the transform, and `return "
        "image, int(self._labels[idx])`. `__getstate__`: `state = dict(self.__dict__)`, set the "
        "three handle entries to None, `return state`.",
    ])


def check_hdf5_dataset(HDF5Dataset, *checks: str) -> None:  # noqa: N803 (the learner's name)
    """Check the learner's `HDF5Dataset` in a fresh process; name checks to run only those."""
    __tracebackhide__ = True
    run_exercise(EXERCISE, {SUBJECT: HDF5Dataset}, checks)
