"""03_on_the_fly_loading: `LazyNpyDataset`, a lazy Dataset over a folder of per-sample .npy files.

Contract: `LazyNpyDataset(folder, transform=None)`; `len(ds)` is the number of sample files;
`ds[i]` returns `(image, label)` with image a float32 tensor (3, H, W) equal to the file's uint8
values / 255 (through `transform` if given: called once per item, on that float32 image) and
label `labels.npy[i]`; nothing but the file list and the labels is read in `__init__`, and each
`ds[i]` opens no file but its own (inotify counts the opens from outside the child).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autograder.engine.check_report import run_exercise
from autograder.engine.spec import Check, Exercise, Fail
from autograder.exercises import _dataset_contract as contract
from autograder.exercises import _fixtures as fixtures

SUBJECT = "LazyNpyDataset"
SMALL = "small_npy"
BIG = "big_npy"


def make_fixtures() -> dict[str, str]:
    return {SMALL: str(fixtures.npy_folder(40, 20, 24)),
            # 1200 x 48 KiB = 56 MiB: loading it all stands far above any per-process noise.
            BIG: str(fixtures.npy_folder(1200, 128, 128))}


class ReferenceLazyNpyDataset:
    """The reference solution, measured beside the learner's in the same process."""

    def __init__(self, folder, transform=None):
        self.paths = sorted(str(p) for p in Path(folder).glob("[0-9]*.npy"))
        self.labels = np.load(Path(folder) / "labels.npy")
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, idx):
        import torch  # lazy: ~2 s, and the grader imports every exercise without needing it

        image = torch.from_numpy(np.load(self.paths[idx])).float() / 255
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[idx])


# ----------------------------------------------------------------------------- in the child


def act_values(ctx, submission):
    ds = ctx.call(f"{SUBJECT}(folder)", submission[SUBJECT], ctx.fixtures[SMALL])
    return contract.read_items(ctx, ds, [0, 7, 39])


def act_length(ctx, submission):
    ds = ctx.call(f"{SUBJECT}(folder)", submission[SUBJECT], ctx.fixtures[SMALL])
    return {"length": ctx.call("len(ds)", len, ds)}


def act_transform(ctx, submission):
    return contract.transform_result_pass(
        ctx, lambda flip: ctx.call(f"{SUBJECT}(folder, transform=flip)", submission[SUBJECT],
                                   ctx.fixtures[SMALL], transform=flip), [3, 21])


def act_transform_input(ctx, submission):
    return contract.transform_pass(
        ctx, lambda record: ctx.call(f"{SUBJECT}(folder, transform=record)", submission[SUBJECT],
                                     ctx.fixtures[SMALL], transform=record), [3, 21])


def act_random_indices(ctx, submission):
    ds = ctx.call(f"{SUBJECT}(folder)", submission[SUBJECT], ctx.fixtures[SMALL])
    indices = [int(i) for i in np.random.default_rng(5).permutation(40)[:12]]
    return contract.read_items(ctx, ds, indices)


ONE_FILE_INDICES = [4, 17, 4, 33]


def act_one_file_per_item(ctx, submission):
    ds = ctx.call(f"{SUBJECT}(folder)", submission[SUBJECT], ctx.fixtures[SMALL])
    ctx.mark("after_init")
    for k, i in enumerate(ONE_FILE_INDICES):
        ctx.call(f"ds[{i}]", ds.__getitem__, i)
        ctx.mark(f"after_item_{k}")
    return {"indices": ONE_FILE_INDICES}


def act_stays_small(ctx, submission):
    folder = ctx.fixtures[BIG]
    n = len(list(folder.glob("[0-9]*.npy")))
    contract.streaming_pass(ctx, lambda: ReferenceLazyNpyDataset(folder),
                            lambda: ctx.call(f"{SUBJECT}(folder)", submission[SUBJECT], folder), n)
    return {"n": n, "bytes": int(sum(p.stat().st_size for p in folder.glob("[0-9]*.npy")))}


# ----------------------------------------------------------------------------- in the parent


def _image(i: int) -> np.ndarray:
    return np.load(Path(make_fixtures()[SMALL]) / f"{i:06d}.npy")


def _label(i: int) -> int:
    return int(np.load(Path(make_fixtures()[SMALL]) / "labels.npy")[i])


def judge_values(trace) -> None:
    contract.judge_types(trace, 20, 24)
    contract.judge_images(trace, _image)
    contract.judge_labels(trace, _label)


def judge_length(trace) -> None:
    n = len(list(Path(make_fixtures()[SMALL]).glob("[0-9]*.npy")))
    if trace.data["length"] != n:
        raise Fail(f"len(ds) is {trace.data['length']}, but the folder holds {n} sample files "
                   "(labels.npy is not a sample).")


def judge_transform(trace) -> None:
    contract.judge_transform_result(trace)


def judge_transform_input(trace) -> None:
    contract.judge_transform_input(trace, _image, 20, 24)


def judge_random_indices(trace) -> None:
    judge_values(trace)


def judge_one_file_per_item(trace) -> None:
    """Fails only on a file other than the item's own: how often a loader opens that one file
    (np.load with mmap_mode opens it more than once) is not the dataset's choice, and an item
    that opens nothing was served from memory, which `stays_small` judges."""
    if not trace.opens_available:
        return  # no inotify here: nothing to count (the memory check still applies)
    for k, i in enumerate(trace.data["indices"]):  # each mark counts the opens since the last
        opens = {f.split("/", 1)[1]: n for f, n in trace.mark(f"after_item_{k}").opens.items()
                 if f.startswith(f"{SMALL}/")}
        own = f"{i:06d}.npy"
        others = {f: n for f, n in opens.items() if f != own}
        if others:
            seen = ", ".join(f"{f} {n}x" for f, n in sorted(others.items()))
            raise Fail(f"`ds[{i}]` opened {seen} besides its own file {own}: each item should "
                       "load one file, its own. Keep what every item needs (the file list, the "
                       "labels) from `__init__`.")


def judge_stays_small(trace) -> None:
    contract.judge_streaming(trace, trace.data["bytes"] / 2**20, "sample files",
                             "Read one file per `__getitem__` and keep nothing else.",
                             fixture=BIG)


CHECKS = [
    Check("lazy_npy_dataset_values", 1,
          "`ds[i]` returns a (3, H, W) tensor, the file / 255 as float32 (or the file as "
          "uint8), and labels[i]",
          act_values, judge_values, fixtures=(SMALL,),
          hint="`torch.from_numpy(np.load(path)).float() / 255`; the label is "
               "`int(self.labels[idx])`."),
    Check("lazy_npy_dataset_length", 1, "`len(ds)` is the number of sample files",
          act_length, judge_length, fixtures=(SMALL,),
          hint="List the files matching `[0-9]*.npy` once in `__init__`; `labels.npy` is not a "
               "sample."),
    Check("lazy_npy_dataset_transform", 0.5, "the `transform`'s result is the image returned",
          act_transform, judge_transform, fixtures=(SMALL,),
          hint="Store `transform` in `__init__`; in `__getitem__`, when it is not None, call "
               "it last, on the float image, and return what it returns."),
    Check("lazy_npy_dataset_transform_input", 0.5,
          "`ds[i]` calls the transform once, on the (3, H, W) image it returns (float32 file "
          "/ 255, or uint8)",
          act_transform_input, judge_transform_input, fixtures=(SMALL,),
          hint="Convert first, `torch.from_numpy(np.load(path)).float() / 255`, then call "
               "`self.transform(image)` once, in `__getitem__`."),
    Check("lazy_npy_dataset_random_indices", 1, "any index returns its own file and label",
          act_random_indices, judge_random_indices, fixtures=(SMALL,), hidden=True,
          extends="values",
          hint="Sort the file names so index i is file i."),
    Check("lazy_npy_dataset_one_file_per_item", 0.5,
          "each `ds[i]` opens one file, its own", act_one_file_per_item,
          judge_one_file_per_item, fixtures=(SMALL,),
          hint="`np.load(self.paths[idx])` is the only file `__getitem__` should open; load "
               "`labels.npy` once, in `__init__`."),
    Check("lazy_npy_dataset_stays_small", 1.5,
          "building the dataset and reading every sample keeps memory flat",
          act_stays_small, judge_stays_small, fixtures=(BIG,), timeout_s=60,
          hint="Keep only the list of paths and the labels in `__init__`; call `np.load` on one "
               "path inside `__getitem__`, and do not store what it returns."),
]

EXERCISE = Exercise(
    name="lazy_npy_dataset", title="LazyNpyDataset", subjects=(SUBJECT,), checks=CHECKS,
    hints=[
        "Do as little as possible in `__init__`: remember where the samples are, and read one "
        "only when `__getitem__` asks for it.",
        "`sorted(folder.glob(\"[0-9]*.npy\"))` lists the sample files in order (`labels.npy` "
        "is not one of them); `np.load(path)` reads one file; `torch.from_numpy(array).float() "
        "/ 255` makes the float32 image. `EagerNpyDataset` above does the same steps for every "
        "file at once.",
        "`__init__`: keep the sorted paths (as `np.array(sorted(...))`: one buffer that forked "
        "workers share, where a list of str objects is copied page by page as they read it), "
        "`np.load(folder / \"labels.npy\")` and the transform. `__len__`: the number of "
        "paths. `__getitem__`: load `self.paths[idx]`, convert it, apply the transform when "
        "there is one, return `(image, int(self.labels[idx]))`.",
    ],
    make_fixtures=make_fixtures,
)


def check_lazy_npy_dataset(LazyNpyDataset, *checks: str) -> None:  # noqa: N803 (the learner's name)
    """Check the learner's `LazyNpyDataset` in a fresh process; name checks to run only those."""
    __tracebackhide__ = True
    run_exercise(EXERCISE, {SUBJECT: LazyNpyDataset}, checks)
