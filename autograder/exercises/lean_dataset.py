"""02_workers_and_pinning: `LeanDataset`, the notebook's `SlowDataset` without per-item waste.

Contract: `LeanDataset(h5_path, index_path)`; `index.npy` lists the rows of `images.h5` that
belong to the dataset, in order; `len(ds)` is the length of that index; `ds[i]` returns
`(image, label)` where image is a float32 tensor (3, H, W) equal to `images[index[i]] / 255` and
label is `labels[index[i]]` (a Python int, a NumPy int64 or a 0-dim int64 tensor). `__init__`
opens no file that stays open: the HDF5 file is opened on the first item in each process. After
the first item it opens no file again, looks up no HDF5 object
by name again and reads only the sample it returns; it works in `spawn` DataLoader workers after
it has been used in the parent; and it never holds all the images in memory.

The file opens are counted from outside the child with inotify; the name lookups and the bytes read
through h5py are counted by wrapping h5py's own methods in the child while the learner's code runs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from autograder.engine.check_report import run_exercise
from autograder.engine.spec import Check, Exercise, Fail
from autograder.exercises import _dataset_contract as contract
from autograder.exercises import _fixtures as fixtures

SUBJECT = "LeanDataset"
SMALL = "lean_small"
BIG = "lean_big"
FIXTURE_VERSION = 1
READS = 60  # items read after the first one in the per-item checks
LENS = 20  # len(ds) calls that must not touch the disk
SPAWN_BATCH = 50


def split_folder(n: int, height: int, width: int, keep: int, chunks: tuple | None,
                 seed: int = 17) -> Path:
    """A folder holding `images.h5` (n rows) and `index.npy` (`keep` of its rows, shuffled)."""
    tag = "contig" if chunks is None else "chunked"
    path = fixtures.fixture_dir() / f"v{FIXTURE_VERSION}_lean_{n}x{height}x{width}_{tag}_{keep}"
    if path.exists():
        return path
    source = fixtures.images_h5(n, height, width, chunks=chunks, seed=seed)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        shutil.copy2(source, tmp / "images.h5")
        rows = np.random.default_rng(seed).permutation(n)[:keep].astype(np.int64)
        np.save(tmp / "index.npy", rows)
        try:
            os.replace(tmp, path)
        except OSError:  # another process finished the same folder first
            if not path.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def make_fixtures() -> dict[str, str]:
    # H != W, so an image returned as (C, W, H) or (H, W, C) shows up as a wrong shape.
    return {SMALL: str(split_folder(600, 12, 10, keep=450, chunks=(1, 3, 12, 10))),
            # 1200 x 27 KiB = 32 MiB: holding every image stands far above per-process noise.
            BIG: str(split_folder(1200, 96, 96, keep=1200, chunks=None))}


class ReferenceLeanDataset:
    """The reference solution, measured beside the learner's in the same process."""

    def __init__(self, h5_path, index_path):
        self.h5_path = str(h5_path)
        self.rows = np.load(index_path)
        with h5py.File(self.h5_path, "r") as f:
            self.labels = f["labels"][:]
        self._images = None

    def __len__(self):
        return len(self.rows)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_images"] = None
        return state

    def __getitem__(self, i):
        import torch  # lazy: ~2 s, and the grader imports every exercise without needing it

        if self._images is None:
            self._images = h5py.File(self.h5_path, "r")["images"]
        row = self.rows[i]
        return torch.from_numpy(self._images[row]).float() / 255, int(self.labels[row])


# ----------------------------------------------------------------------------- in the child


def _paths(ctx, name: str) -> tuple[str, str]:
    folder = ctx.fixtures[name]
    return str(folder / "images.h5"), str(folder / "index.npy")


def _build(ctx, submission, name: str = SMALL):
    h5_path, index_path = _paths(ctx, name)
    return ctx.call(f"{SUBJECT}(h5_path, index_path)", submission[SUBJECT], h5_path, index_path)


def _as_array(image):
    import torch  # lazy: ~2 s, and the grader imports every exercise without needing it

    if isinstance(image, torch.Tensor):
        return image.detach().cpu().numpy()
    return np.asarray(image)


def _as_int(label) -> int:
    import torch  # lazy: ~2 s, and the grader imports every exercise without needing it

    if isinstance(label, torch.Tensor):
        return int(label.item()) if label.numel() == 1 else -(10**12)
    try:
        return int(label)
    except (TypeError, ValueError):
        return -(10**12)


def _read(ctx, ds, positions: list[int]) -> dict:
    """Read `positions`; keep images and labels as arrays, and describe the image types."""
    import torch  # lazy: ~2 s, and the grader imports every exercise without needing it

    labels, kinds = [], []
    for k, i in enumerate(positions):
        item = ctx.call(f"ds[{i}]", ds.__getitem__, i)
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            return {"positions": positions,
                    "shape_error": f"ds[{i}] returned {type(item).__name__}, not an "
                                   "(image, label) pair"}
        image, label = item
        ctx.save_array(f"item_{k}", _as_array(image))
        labels.append(_as_int(label))
        kinds.append({"type": type(image).__name__, "tensor": isinstance(image, torch.Tensor),
                      "dtype": str(getattr(image, "dtype", "")).replace("torch.", ""),
                      "label": contract._kind(label)})
    ctx.save_array("item_labels", np.array(labels, dtype=np.int64))
    return {"positions": positions, "kinds": kinds}


def act_values(ctx, submission):
    ds = _build(ctx, submission)
    n = len(np.load(ctx.fixtures[SMALL] / "index.npy"))
    return _read(ctx, ds, [0, 1, 17, n - 1])


def act_length(ctx, submission):
    ds = _build(ctx, submission)
    return {"length": ctx.call("len(ds)", len, ds)}


def act_random_indices(ctx, submission):
    ds = _build(ctx, submission)
    n = len(np.load(ctx.fixtures[SMALL] / "index.npy"))
    positions = [int(i) for i in np.random.default_rng(23).permutation(n)[:20]]
    return _read(ctx, ds, positions)


def _positions(n: int) -> list[int]:
    return [int(i) for i in np.random.default_rng(29).permutation(n)[:READS]]


def act_opens_once(ctx, submission):
    # The checker reads the index before the first mark, so no open of its own is counted.
    positions = _positions(len(np.load(ctx.fixtures[SMALL] / "index.npy")))
    ds = _build(ctx, submission)
    ctx.mark("after_init")
    ctx.call("ds[0]", ds.__getitem__, 0)
    ctx.mark("after_first")
    for i in positions:
        ctx.call(f"ds[{i}]", ds.__getitem__, i)
    ctx.mark("after_reads")
    for _ in range(LENS):
        ctx.call("len(ds)", len, ds)
    ctx.mark("after_lens")
    return {}


@contextmanager
def _h5py_probe() -> Iterator[dict]:
    """Count HDF5 name lookups and the bytes h5py hands back while the block runs."""
    counts = {"lookups": 0, "bytes": 0}
    lookup, read, as_array = h5py.Group.__getitem__, h5py.Dataset.__getitem__, \
        h5py.Dataset.__array__

    def counting_lookup(self, name):
        counts["lookups"] += 1
        return lookup(self, name)

    def counting_read(self, *args, **kwargs):
        result = read(self, *args, **kwargs)
        counts["bytes"] += int(getattr(result, "nbytes", 0))
        return result

    def counting_array(self, *args, **kwargs):
        result = as_array(self, *args, **kwargs)
        counts["bytes"] += int(getattr(result, "nbytes", 0))
        return result

    h5py.Group.__getitem__ = counting_lookup
    h5py.Dataset.__getitem__ = counting_read
    h5py.Dataset.__array__ = counting_array
    try:
        yield counts
    finally:
        h5py.Group.__getitem__, h5py.Dataset.__getitem__, h5py.Dataset.__array__ = \
            lookup, read, as_array


def _probe_reads(ctx, submission) -> dict:
    """Read one item, then READS more under the probe; return the probe's counts."""
    ds = _build(ctx, submission)
    ctx.call("ds[0]", ds.__getitem__, 0)
    positions = _positions(len(np.load(ctx.fixtures[SMALL] / "index.npy")))
    with _h5py_probe() as counts:
        for i in positions:
            ctx.call(f"ds[{i}]", ds.__getitem__, i)
    return {**counts, "reads": len(positions)}


def act_no_repeated_lookups(ctx, submission):
    return _probe_reads(ctx, submission)


def act_reads_only_the_sample(ctx, submission):
    return _probe_reads(ctx, submission)


def act_spawn_workers(ctx, submission):
    ds = _build(ctx, submission)
    ctx.call("ds[0] in the main process", ds.__getitem__, 0)

    def load_all():
        # lazy: ~2 s, and the grader imports every exercise without needing it
        from torch.utils.data import DataLoader

        loader = DataLoader(ds, batch_size=SPAWN_BATCH, num_workers=2,
                            multiprocessing_context="spawn")
        labels, batches = [], []
        for images, batch_labels in loader:
            labels.extend(_as_int(x) for x in batch_labels)
            batches.append(_as_array(images))
        return labels, batches

    labels, batches = ctx.call(
        "iterating DataLoader(ds, num_workers=2, multiprocessing_context='spawn') after using "
        "ds[0] in the main process", load_all)
    ctx.save_array("labels", np.array(labels, dtype=np.int64))
    if batches:
        ctx.save_array("first_batch", batches[0])
        ctx.save_array("last_batch", batches[-1])
    # What the main process itself returns for the same positions: the judge tells a sample the
    # workers got wrong from one the dataset gets wrong everywhere (the value checks' to judge).
    try:
        main = [ctx.call("ds[i] in the main process after the loader", ds.__getitem__, i)
                for i in range(len(labels))]
        ctx.save_array("main_labels", np.array([_as_int(y) for _, y in main], dtype=np.int64))
        if batches:
            ctx.save_array("main_first", np.stack([_as_array(x) for x, _ in
                                                   main[:len(batches[0])]]))
            ctx.save_array("main_last", np.stack([_as_array(x) for x, _ in
                                                  main[len(main) - len(batches[-1]):]]))
    except Exception:
        pass  # only a reference point; the workers are judged on their own
    return {"batches": len(batches)}


def act_stays_small(ctx, submission):
    h5_path, index_path = _paths(ctx, BIG)
    n = len(np.load(index_path))
    ref = ReferenceLeanDataset(h5_path, index_path)  # warms up torch, h5py and the page cache
    for i in range(n):
        ref[i]
    del ref
    ctx.mark("reference_start")
    ref = ReferenceLeanDataset(h5_path, index_path)
    for i in range(n):
        ref[i]
    ctx.mark("reference_end")
    del ref
    ctx.mark("learner_start")
    ds = _build(ctx, submission, BIG)
    for i in range(n):
        ctx.call("ds[i] for every i", ds.__getitem__, i)
    ctx.mark("learner_end")
    return {"n": n, "bytes": int(n * 3 * 96 * 96)}


# ----------------------------------------------------------------------------- in the parent


def _fixture(name: str = SMALL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """images, labels and index of a fixture, read in the parent."""
    folder = Path(make_fixtures()[name])
    with h5py.File(folder / "images.h5", "r") as f:
        images, labels = f["images"][:], f["labels"][:]
    return images, labels, np.load(folder / "index.npy")


def _compare_image(got: np.ndarray, want: np.ndarray, where: str) -> None:
    if got.shape != want.shape:
        raise Fail(f"{where} has shape {tuple(got.shape)}; expected {tuple(want.shape)} "
                   "(channels, height, width), as stored in the file.")
    if not np.allclose(got.astype(np.float64), want, atol=1e-6):
        if got.size and float(got.max()) > 1.5:
            raise Fail(f"{where} has values up to {float(got.max()):.0f}: divide the uint8 "
                       "values by 255 so they lie in [0, 1], as SlowDataset does.")
        raise Fail(f"{where} differs from what SlowDataset returns (largest difference "
                   f"{np.abs(got - want).max():.4f}): look up the row through the index, "
                   "`images[index[i]]`, not `images[i]`.")


def _compare(trace) -> None:
    if "shape_error" in trace.data:
        raise Fail(trace.data["shape_error"] + ".")
    images, labels, index = _fixture()
    positions = trace.data["positions"]
    for k, i in enumerate(positions):
        want = images[index[i]].astype(np.float32) / 255
        _compare_image(trace.arrays[f"item_{k}"], want, f"ds[{i}][0]")
    got_labels = [int(x) for x in trace.arrays["item_labels"]]
    for k, i in enumerate(positions):
        if got_labels[k] != int(labels[index[i]]):
            raise Fail(f"ds[{i}][1] is {got_labels[k]}, but SlowDataset returns "
                       f"labels[index[{i}]] = {int(labels[index[i]])}.")


def judge_values(trace) -> None:
    _compare(trace)
    for k, kind in enumerate(trace.data["kinds"]):
        i = trace.data["positions"][k]
        if not kind["tensor"]:
            raise Fail(f"ds[{i}][0] is a {kind['type']}; return a torch tensor, as "
                       "SlowDataset does.")
        if kind["dtype"] != "float32":
            raise Fail(f"ds[{i}][0] has dtype {kind['dtype']}; SlowDataset returns float32.")
        if not contract.label_kind_ok(kind["label"]):
            raise Fail(f"ds[{i}][1] is {contract.describe_kind(kind['label'])}; SlowDataset "
                       "returns a Python int (a NumPy int64 or a 0-dim int64 tensor also "
                       "collates into the int64 batch `CrossEntropyLoss` needs).")


def judge_length(trace) -> None:
    n = len(_fixture()[2])
    if trace.data["length"] != n:
        raise Fail(f"len(ds) is {trace.data['length']}, but the index file lists {n} rows; "
                   "the dataset is the rows in the index, not the whole HDF5 file.")


def judge_random_indices(trace) -> None:
    _compare(trace)


def _need_opens(trace) -> None:
    if not trace.opens_available:
        raise RuntimeError("file opens cannot be counted on this system (Linux inotify is "
                           "missing), so this check cannot run here")


def judge_opens_once(trace) -> None:
    _need_opens(trace)
    h5 = trace.opens_between("after_first", "after_reads", f"{SMALL}/images.h5")
    index = trace.opens_between("after_first", "after_reads", f"{SMALL}/index.npy")
    if h5 > 2 or index > 2:
        what = []
        if h5 > 2:
            what.append(f"opened images.h5 {h5} times")
        if index > 2:
            what.append(f"opened index.npy {index} times")
        raise Fail(f"after the first item, reading {READS} more items {' and '.join(what)}. "
                   "Each open costs far more than reading one sample; open each file once "
                   "per process and keep what you need.")
    lens = trace.opens_between("after_reads", "after_lens")
    if lens > 0:
        raise Fail(f"calling len(ds) {LENS} times opened files {lens} times; compute the "
                   "length once in `__init__` and return it.")


def judge_lazy_open(trace) -> None:
    held = trace.mark("after_init").fds.get(f"{SMALL}/images.h5", 0)
    if held:
        raise Fail(f"right after `__init__` the process held {held} descriptor(s) on images.h5: "
                   "the file was opened in `__init__` and kept. Open it on the first "
                   "`__getitem__` in each process (read the labels inside `with h5py.File(...)` "
                   "so that file closes again).")


def judge_no_repeated_lookups(trace) -> None:
    lookups, reads = trace.data["lookups"], trace.data["reads"]
    if lookups > 5:
        raise Fail(f"reading {reads} items looked up HDF5 objects by name {lookups} times "
                   "(like `f['images']`); each lookup walks the file's metadata. Look each "
                   "dataset up once, keep the h5py Dataset object, and index that.")


def judge_reads_only_the_sample(trace) -> None:
    sample = 3 * 12 * 10
    per_item = trace.data["bytes"] / max(1, trace.data["reads"])
    if per_item > 1.5 * (sample + 8) + 64:
        raise Fail(f"each item read {per_item:,.0f} bytes through h5py, but one sample is "
                   f"{sample} bytes and its label 8: it reads more than it returns (for example "
                   "every label, or every image). Read the labels once, or read only "
                   "`labels[row]`.")


def _as_main(trace, key: str, main_key: str) -> bool:
    """Do the workers' `key` equal what the main process's own `ds[i]` returned?"""
    got, main = trace.arrays.get(key), trace.arrays.get(main_key)
    if got is None or main is None or got.shape != main.shape:
        return False
    return bool(np.allclose(got.astype(np.float64), main.astype(np.float64), atol=1e-6))


def judge_spawn_workers(trace) -> None:
    """Every item once, in order, with its pixels; what the workers deliver exactly as the main
    process's `ds[i]` returns it passes here even when both are wrong (the value checks')."""
    images, labels, index = _fixture()
    got = [int(x) for x in trace.arrays.get("labels", np.array([], dtype=np.int64))]
    want = [int(labels[r]) for r in index]
    if got != want and not _as_main(trace, "labels", "main_labels"):
        if sorted(got) == sorted(want):
            raise Fail("the workers returned every item, but not in index order.")
        if len(got) != len(want):
            raise Fail(f"two spawn workers returned {len(got)} labels for a dataset of "
                       f"{len(want)} items: each item must arrive once.")
        wrong = sum(g != w for g, w in zip(got, want, strict=True))
        raise Fail(f"two spawn workers returned {len(got)} labels, one per item, but {wrong} of "
                   "them differ from labels[index[i]] and from what `ds[i]` returns in the main "
                   "process.")
    first = images[index[:SPAWN_BATCH]].astype(np.float32) / 255
    last_rows = index[(len(index) - 1) // SPAWN_BATCH * SPAWN_BATCH:]
    last = images[last_rows].astype(np.float32) / 255
    for key, main, want_images, where in (
            ("first_batch", "main_first", first, "the first batch from the workers"),
            ("last_batch", "main_last", last, "the last batch from the workers")):
        try:
            _compare_image(trace.arrays[key], want_images, where)
        except Fail:
            if not _as_main(trace, key, main):
                raise


def _anon(trace, label: str) -> float:
    return trace.mark(label).anon_mib


def _file(trace, label: str) -> float:
    return trace.mark(label).file_mib


def judge_stays_small(trace) -> None:
    data_mib = trace.data["bytes"] / 2**20
    allowed = max(8.0, 0.15 * data_mib)
    ref_held = _anon(trace, "reference_end") - _anon(trace, "reference_start")
    held = _anon(trace, "learner_end") - _anon(trace, "learner_start")
    if held > ref_held + allowed:
        raise Fail(f"after reading every item the process holds {held:.0f} MiB more than "
                   f"before, for {data_mib:.0f} MiB of images (the reference holds "
                   f"{max(0.0, ref_held):.0f} MiB): it keeps the images in memory. Read one "
                   "sample per `__getitem__` and keep nothing else.")
    ref_peak = trace.growth_mib("reference_start", "reference_end") - max(
        0.0, _file(trace, "reference_end") - _file(trace, "reference_start"))
    peak = trace.growth_mib("learner_start", "learner_end") - max(
        0.0, _file(trace, "learner_end") - _file(trace, "learner_start"))
    if peak > ref_peak + allowed:
        raise Fail(f"memory rose by {peak:.0f} MiB while reading, for {data_mib:.0f} MiB of "
                   f"images (the reference needs {max(0.0, ref_peak):.0f} MiB): some item "
                   "reads far more than one sample, for example `images[:][row]`.")


CHECKS = [
    Check("lean_dataset_values", 2,
          "`ds[i]` returns the same float32 (3, H, W) image and label as SlowDataset",
          act_values, judge_values, fixtures=(SMALL,),
          hint="Row `index[i]` of `images`, as `torch.from_numpy(...).float() / 255`, and "
               "`labels[index[i]]`: the same expressions SlowDataset uses."),
    Check("lean_dataset_length", 1, "`len(ds)` is the number of rows in the index",
          act_length, judge_length, fixtures=(SMALL,),
          hint="Load the index once in `__init__` and return its length."),
    Check("lean_dataset_random_indices", 1, "any index returns SlowDataset's sample and label",
          act_random_indices, judge_random_indices, fixtures=(SMALL,), hidden=True,
          extends="values",
          hint="Map position i to the file's row with the index loaded in `__init__`."),
    Check("lean_dataset_lazy_open", 0.5,
          "`__init__` leaves the HDF5 file closed: it is opened on the first item",
          act_opens_once, judge_lazy_open, fixtures=(SMALL,),
          hint="Read the labels inside `with h5py.File(h5_path, \"r\") as f:` and set the "
               "handle to None; open the file in `__getitem__` when it is still None."),
    Check("lean_dataset_opens_files_once", 1.5,
          "after the first item, reading more items and calling len() opens no file again",
          act_opens_once, judge_opens_once, fixtures=(SMALL,),
          hint="Load `index.npy` (and the labels) in `__init__`; open the HDF5 file on the "
               "first `__getitem__` and keep the handle in an attribute."),
    Check("lean_dataset_no_repeated_lookups", 1,
          "items are read without looking up `f['images']` again each time",
          act_no_repeated_lookups, judge_no_repeated_lookups, fixtures=(SMALL,),
          hint="When you open the file, store `f['images']` (and `f['labels']`) in attributes "
               "and index those in `__getitem__`."),
    Check("lean_dataset_reads_only_the_sample", 1,
          "each item reads one image and at most one label from the file",
          act_reads_only_the_sample, judge_reads_only_the_sample, fixtures=(SMALL,),
          hint="Read all labels once (they are small) or `labels[row]` per item, never "
               "`labels[:]` per item."),
    Check("lean_dataset_spawn_workers", 1,
          "two `spawn` workers return every item once, in order, after the parent used the "
          "dataset", act_spawn_workers, judge_spawn_workers, fixtures=(SMALL,), timeout_s=120,
          hint="An open h5py file cannot be pickled: add `__getstate__` that returns a copy of "
               "`self.__dict__` with the handle and dataset attributes set to None, so each "
               "worker opens its own."),
    Check("lean_dataset_stays_small", 1,
          "reading every item keeps memory flat (32 MiB of test images)",
          act_stays_small, judge_stays_small, fixtures=(BIG,), timeout_s=60,
          hint="Read one row per `__getitem__` and do not keep it; never `images[:]`."),
]

EXERCISE = Exercise(
    name="lean_dataset", title="LeanDataset", subjects=(SUBJECT,), checks=CHECKS,
    make_fixtures=make_fixtures,
    hints=[
        "Go through `SlowDataset.__getitem__` line by line and ask which steps give the same "
        "result for every item: do those once, in `__init__` or on the first call, and keep "
        "only the read of row `index[i]` per item.",
        "In `__init__`: `np.load(index_path)` once, and the labels once with `with "
        "h5py.File(h5_path, \"r\") as f: f[\"labels\"][:]`. In `__getitem__`, open the file "
        "only while the handle is None and keep `f[\"images\"]` too; `__getstate__` drops the "
        "h5py objects, as `H5Images` does in section 1.",
        "`__getitem__`: `if self._images is None: self._file = h5py.File(self.h5_path, \"r\"); "
        "self._images = self._file[\"images\"]`; then `row = self.rows[i]` and `return "
        "torch.from_numpy(self._images[row]).float() / 255, int(self.labels[row])`. "
        "`__getstate__`: `{**self.__dict__, \"_file\": None, \"_images\": None}`.",
    ],
)


def check_lean_dataset(LeanDataset, *checks: str) -> None:  # noqa: N803 (the learner's name)
    """Check the learner's `LeanDataset` in a fresh process; name checks to run only those."""
    __tracebackhide__ = True
    run_exercise(EXERCISE, {SUBJECT: LeanDataset}, checks)
