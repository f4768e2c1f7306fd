"""Do the LazyNpyDataset checks fail wrong implementations and pass other correct ones?"""

from __future__ import annotations

import pytest

from autograder.exercises.lazy_npy_dataset import EXERCISE
from tests.exercises.catalogue import (
    aimed,
    assert_deductions,
    define,
    describe,
    failing,
    verdicts,
)

pytestmark = pytest.mark.slow

HEADER = """
import numpy as np, torch
from pathlib import Path
from torch.utils.data import Dataset
"""

REFERENCE = HEADER + """
class LazyNpyDataset(Dataset):
    def __init__(self, folder, transform=None):
        self.paths = sorted(str(p) for p in Path(folder).glob("[0-9]*.npy"))
        self.labels = np.load(Path(folder) / "labels.npy")
        self.transform = transform
    def __len__(self):
        return len(self.paths)
    def __getitem__(self, idx):
        image = torch.from_numpy(np.load(self.paths[idx])).float() / 255
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[idx])
"""


def _variant(old: str, new: str) -> str:
    assert old in REFERENCE, old
    return REFERENCE.replace(old, new)


TRANSFORM = """image = torch.from_numpy(np.load(self.paths[idx])).float() / 255
        if self.transform is not None:
            image = self.transform(image)"""


# Each wrong implementation has one defect, and the check expected to catch it.
WRONG = {
    "eager_init": (_variant("self.transform = transform",
                            "self.transform = transform\n"
                            "        self.images = [np.load(p) for p in self.paths]"),
                   "lazy_npy_dataset_stays_small"),
    "unbounded_cache": (_variant(
        "image = torch.from_numpy(np.load(self.paths[idx])).float() / 255",
        "self.__dict__.setdefault('cache', {})\n"
        "        if idx not in self.cache:\n"
        "            self.cache[idx] = torch.from_numpy(np.load(self.paths[idx])).float() / 255\n"
        "        image = self.cache[idx]"), "lazy_npy_dataset_stays_small"),
    "no_scaling": (_variant(").float() / 255", ").float()"), "lazy_npy_dataset_values"),
    "float64": (_variant("torch.from_numpy(np.load(self.paths[idx])).float() / 255",
                         "torch.from_numpy(np.load(self.paths[idx]) / 255.0)"),
                "lazy_npy_dataset_values"),
    "labels_counted_as_sample": (_variant('glob("[0-9]*.npy")', 'glob("*.npy")'),
                                 "lazy_npy_dataset_length"),
    "transform_ignored": (_variant("image = self.transform(image)", "pass"),
                          "lazy_npy_dataset_transform"),
    "unsorted_label_offset": (_variant("int(self.labels[idx])", "int(self.labels[idx - 1])"),
                              "lazy_npy_dataset_values"),
    "transform_on_uint8_tensor": (_variant(TRANSFORM, """image = torch.from_numpy(
            np.load(self.paths[idx]))
        if self.transform is not None:
            image = self.transform(image)
        image = image.float() / 255"""), "lazy_npy_dataset_transform"),
    "transform_before_division": (_variant(TRANSFORM, """image = torch.from_numpy(
            np.load(self.paths[idx])).float()
        if self.transform is not None:
            image = self.transform(image)
        image = image / 255"""), "lazy_npy_dataset_transform_input"),
    "labels_reloaded_per_item": (_variant("self.labels = np.load(Path(folder) / \"labels.npy\")",
                                          "self.folder = Path(folder)").replace(
        "int(self.labels[idx])", "int(np.load(self.folder / 'labels.npy')[idx])"),
        "lazy_npy_dataset_one_file_per_item"),
    "float_label_tensor": (_variant("int(self.labels[idx])",
                                    "torch.tensor(float(self.labels[idx]))"),
                           "lazy_npy_dataset_values"),
}

VALUES = {"lazy_npy_dataset_values", "lazy_npy_dataset_transform"}
VALUES_AND_INPUT = VALUES | {"lazy_npy_dataset_transform_input"}
TRANSFORM_NOT_RETURNED = {"lazy_npy_dataset_transform": "not what the transform returned"}

# One defect, one deduction, a true reason: name -> (implementation, the checks that lose
# points, the checks that must keep them, words the message of each losing check must contain).
ONE_DEDUCTION = {
    "served_from_memory": (_variant("self.transform = transform",
                                    "self.transform = transform\n"
                                    "        self.images = [np.load(p) for p in self.paths]"
                                    ).replace("np.load(self.paths[idx])", "self.images[idx]"),
                           {"lazy_npy_dataset_stays_small"},
                   VALUES | {"lazy_npy_dataset_transform_input"},
                   {"lazy_npy_dataset_stays_small": "reading every sample opened no file"}),
    # The transform's check compares the image with what the transform returned, whatever it
    # was given: scaling after the transform is its defect, a wrong scale is not.
    "transform_on_uint8_tensor": (WRONG["transform_on_uint8_tensor"][0],
                                  {"lazy_npy_dataset_transform"},
                                  {"lazy_npy_dataset_values", "lazy_npy_dataset_transform_input"},
                                  TRANSFORM_NOT_RETURNED),
    "transform_before_division": (WRONG["transform_before_division"][0],
                                  set(VALUES_AND_INPUT) - {"lazy_npy_dataset_values"},
                                  {"lazy_npy_dataset_values"},
                                  {"lazy_npy_dataset_transform_input": "values up to",
                                   **TRANSFORM_NOT_RETURNED}),
    "divides_by_256": (_variant(").float() / 255", ").float() / 256"),
                       {"lazy_npy_dataset_values", "lazy_npy_dataset_transform_input"},
                       {"lazy_npy_dataset_transform", "lazy_npy_dataset_length"},
                       {"lazy_npy_dataset_values": "divided by 256"}),
    "transform_applied_twice": (_variant("image = self.transform(image)",
                                         "image = self.transform(self.transform(image))"),
                                {"lazy_npy_dataset_transform_input"},
                                {"lazy_npy_dataset_values", "lazy_npy_dataset_transform"},
                                {"lazy_npy_dataset_transform_input": "2 times"}),
    "labels_reloaded_per_item": (WRONG["labels_reloaded_per_item"][0],
                                 {"lazy_npy_dataset_one_file_per_item"},
                                 {"lazy_npy_dataset_values", "lazy_npy_dataset_stays_small"},
                                 {"lazy_npy_dataset_one_file_per_item": "labels.npy 1x"}),
    "int32_label": (_variant("int(self.labels[idx])", "np.int32(self.labels[idx])"),
                    {"lazy_npy_dataset_values"}, {"lazy_npy_dataset_length"},
                    {"lazy_npy_dataset_values": "an int32"}),
}

CORRECT = {
    "reference": REFERENCE,
    # uint8 out of the worker, a quarter of the bytes; the training loop normalises (01, 05).
    "ships_uint8": _variant("torch.from_numpy(np.load(self.paths[idx])).float() / 255",
                            "torch.from_numpy(np.load(self.paths[idx]))"),
    "numpy_then_tensor": HEADER + """
class LazyNpyDataset(Dataset):
    def __init__(self, folder, transform=None):
        folder = Path(folder)
        self.files = np.array(sorted(p.name for p in folder.iterdir()
                                     if p.suffix == ".npy" and p.stem.isdigit()))
        self.folder, self.transform = folder, transform
        self.labels = torch.from_numpy(np.load(folder / "labels.npy"))
    def __len__(self):
        return len(self.files)
    def __getitem__(self, idx):
        array = np.load(self.folder / self.files[idx]).astype(np.float32) / np.float32(255)
        image = torch.tensor(array)
        return (self.transform(image) if self.transform else image), self.labels[idx]
""",
    "transform_in_a_helper": HEADER + """
class LazyNpyDataset(Dataset):
    def __init__(self, folder, transform=None):
        self.paths = [str(p) for p in sorted(Path(folder).glob("[0-9]*.npy"))]
        self.labels = np.load(Path(folder) / "labels.npy").tolist()
        self.transform = transform
    def __len__(self):
        return len(self.paths)
    def _finish(self, image):
        return image if self.transform is None else self.transform(image)
    def __getitem__(self, idx):
        image = torch.as_tensor(np.load(self.paths[idx]), dtype=torch.float32).mul_(1 / 255)
        return self._finish(image), self.labels[idx]
""",
    "mmap_load": HEADER + """
class LazyNpyDataset(Dataset):
    def __init__(self, folder, transform=None):
        self.folder = str(folder)
        self.n = sum(1 for p in Path(folder).glob("[0-9]*.npy"))
        self.labels = np.load(Path(folder) / "labels.npy", mmap_mode="r")
        self.transform = transform
    def __len__(self):
        return self.n
    def __getitem__(self, idx):
        raw = np.load(f"{self.folder}/{idx:06d}.npy", mmap_mode="r")
        image = torch.from_numpy(np.array(raw)).to(torch.float32).div(255)
        if self.transform is not None:
            image = self.transform(image)
        return image, np.int64(self.labels[idx])
""",
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_implementation_loses_points(name):
    """Is each defective LazyNpyDataset caught, by the check aimed at its defect?"""
    source, expected = WRONG[name]
    results = verdicts(EXERCISE, {"LazyNpyDataset": define(source, "LazyNpyDataset")},
                       aimed(expected))
    assert expected in failing(results), describe(results)
    assert sum(v.points for v in results.values()) < sum(c.points for c in EXERCISE.checks)


@pytest.mark.parametrize("name", sorted(ONE_DEDUCTION))
def test_one_defect_loses_only_its_own_points(name):
    """Does each defect lose exactly the checks that observe it, each saying what it saw?"""
    source, lose, keep, says = ONE_DEDUCTION[name]
    assert_deductions(EXERCISE, {"LazyNpyDataset": define(source, "LazyNpyDataset")}, lose, keep,
                      says)


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_implementation_gets_full_marks(name):
    """Does every correct LazyNpyDataset, however written, pass every check?"""
    results = verdicts(EXERCISE, {"LazyNpyDataset": define(CORRECT[name], "LazyNpyDataset")})
    assert not failing(results), describe(results)


def test_stub_is_not_attempted():
    """Is the release stub reported as not attempted, not as wrong?"""
    stub = define(HEADER + """
class LazyNpyDataset(Dataset):
    def __init__(self, folder, transform=None):
        raise NotImplementedError()
""", "LazyNpyDataset")
    results = verdicts(EXERCISE, {"LazyNpyDataset": stub})
    assert {v.status for v in results.values()} == {"not_attempted"}, describe(results)
