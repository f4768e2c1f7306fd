"""Do the LeanDataset checks fail wrong implementations and pass other correct ones?"""

from __future__ import annotations

import pytest

from autograder.exercises.lean_dataset import EXERCISE
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
import h5py, numpy as np, torch
from torch.utils.data import Dataset
"""

# The notebook's SlowDataset: right values, but it redoes its set-up work for every item.
SLOW = HEADER + """
class LeanDataset(Dataset):
    def __init__(self, h5_path, index_path):
        self.h5_path, self.index_path = h5_path, index_path
    def __len__(self):
        return len(np.load(self.index_path))
    def __getitem__(self, i):
        rows = np.load(self.index_path)
        with h5py.File(self.h5_path, "r") as f:
            image = f["images"][rows[i]]
            labels = f["labels"][:]
        return torch.from_numpy(image).float() / 255, int(labels[rows[i]])
"""

REFERENCE = HEADER + """
class LeanDataset(Dataset):
    def __init__(self, h5_path, index_path):
        self.h5_path = h5_path
        self.rows = np.load(index_path)
        with h5py.File(h5_path, "r") as f:
            self.labels = f["labels"][:]
        self.file = self.images = None
    def __len__(self):
        return len(self.rows)
    def __getstate__(self):
        state = self.__dict__.copy()
        state["file"] = state["images"] = None
        return state
    def __getitem__(self, i):
        if self.images is None:
            self.file = h5py.File(self.h5_path, "r")
            self.images = self.file["images"]
        row = self.rows[i]
        return torch.from_numpy(self.images[row]).float() / 255, int(self.labels[row])
"""


def _variant(old: str, new: str) -> str:
    assert old in REFERENCE, old
    return REFERENCE.replace(old, new)


# Each wrong implementation has one defect, and the check expected to catch it.
WRONG = {
    "slow_dataset_as_given": (SLOW, "lean_dataset_opens_files_once"),
    "reopens_file_per_item": (_variant(
        "row = self.rows[i]",
        "row = self.rows[i]\n"
        "        with h5py.File(self.h5_path, 'r') as f:\n"
        "            return torch.from_numpy(f['images'][row]).float() / 255, "
        "int(self.labels[row])"), "lean_dataset_opens_files_once"),
    "reloads_index_per_item": (_variant("row = self.rows[i]",
                                        "row = np.load(self.index_path)[i]").replace(
        "self.h5_path = h5_path", "self.h5_path, self.index_path = h5_path, index_path"),
        "lean_dataset_opens_files_once"),
    "len_reads_the_index": (_variant("return len(self.rows)",
                                     "return len(np.load(self.index_path))").replace(
        "self.h5_path = h5_path", "self.h5_path, self.index_path = h5_path, index_path"),
        "lean_dataset_opens_files_once"),
    "looks_up_images_per_item": (_variant("torch.from_numpy(self.images[row])",
                                          "torch.from_numpy(self.file['images'][row])"),
                                 "lean_dataset_no_repeated_lookups"),
    "rereads_all_labels_per_item": (_variant(
        "int(self.labels[row])", "int(self.file['labels'][:][row])"),
        "lean_dataset_reads_only_the_sample"),
    "handle_pickled_to_workers": (_variant('state["file"] = state["images"] = None', "pass"),
                                  "lean_dataset_spawn_workers"),
    "ignores_the_index": (_variant("row = self.rows[i]", "row = i"), "lean_dataset_values"),
    "length_of_whole_file": (_variant("return len(self.rows)", "return len(self.labels)"),
                             "lean_dataset_length"),
    "no_scaling": (_variant(").float() / 255", ").float()"), "lean_dataset_values"),
    "label_of_position_not_row": (_variant("int(self.labels[row])", "int(self.labels[i])"),
                                  "lean_dataset_values"),
    "holds_every_image": (_variant(
        'self.labels = f["labels"][:]',
        'self.labels = f["labels"][:]\n            self.all_images = f["images"][:]').replace(
        "torch.from_numpy(self.images[row])", "torch.from_numpy(self.all_images[row])"),
        "lean_dataset_stays_small"),
    "file_opened_in_init": (_variant(
        'self.file = self.images = None',
        'self.file = h5py.File(h5_path, "r")\n        self.images = self.file["images"]'),
        "lean_dataset_lazy_open"),
    "float_label": (_variant("int(self.labels[row])", "float(self.labels[row])"),
                    "lean_dataset_values"),
}

# One defect, one deduction, a true reason: name -> (implementation, the checks that lose
# points, the checks that must keep them, words the message of each losing check must contain).
ONE_DEDUCTION = {
    "file_opened_in_init": (WRONG["file_opened_in_init"][0], {"lean_dataset_lazy_open"},
                            {"lean_dataset_opens_files_once", "lean_dataset_values"},
                            {"lean_dataset_lazy_open": "descriptor(s) on images.h5"}),
    # A value defect is the value check's: workers that return what the main process returns
    # keep their points.
    "no_scaling": (WRONG["no_scaling"][0], {"lean_dataset_values"},
                   {"lean_dataset_spawn_workers"}, {}),
    "label_of_position_not_row": (WRONG["label_of_position_not_row"][0], {"lean_dataset_values"},
                                  {"lean_dataset_spawn_workers"}, {}),
    "one_element_label_tensor": (_variant("int(self.labels[row])",
                                          "torch.tensor([self.labels[row]])"),
                                 {"lean_dataset_values"}, {"lean_dataset_length"},
                                 {"lean_dataset_values": "1-dim int64 tensor of shape (1,)"}),
}

CORRECT = {
    "reference": REFERENCE,
    # Opens in the worker only (get_worker_info), via a helper; labels read per item.
    "open_helper_labels_per_item": HEADER + """
from torch.utils.data import get_worker_info

class LeanDataset(Dataset):
    def __init__(self, h5_path, index_path):
        self.path = str(h5_path)
        self.index = torch.from_numpy(np.load(index_path))
        self._handles = None
    def _open(self):
        f = h5py.File(self.path, "r")
        self._handles = (f, f["images"], f["labels"])
        return self._handles
    def __getstate__(self):
        return {**self.__dict__, "_handles": None}
    def __len__(self):
        return self.index.numel()
    def __getitem__(self, i):
        _, images, labels = self._handles or self._open()
        row = int(self.index[i])
        image = torch.tensor(images[row], dtype=torch.float32).div_(255)
        return image, labels[row]
""",
    # No h5py per item at all: np.memmap of the contiguous dataset (get_offset trick).
    "memmap_offset": HEADER + """
class LeanDataset(Dataset):
    def __init__(self, h5_path, index_path):
        with h5py.File(h5_path, "r") as f:
            d = f["images"]
            self.offset, self.shape = d.id.get_offset(), d.shape
            self.chunked = d.chunks is not None
            self.labels = f["labels"][:]
        self.path, self.rows = str(h5_path), np.load(index_path)
        self.mm = self.h5 = None
    def __len__(self):
        return self.rows.shape[0]
    def __getstate__(self):
        return dict(self.__dict__, mm=None, h5=None)
    def _image(self, row):
        if self.chunked:  # chunked data has no single offset: fall back to h5py
            if self.h5 is None:
                self.h5 = h5py.File(self.path, "r")["images"]
            return self.h5[row]
        if self.mm is None:
            self.mm = np.memmap(self.path, np.uint8, "r", self.offset, self.shape)
        return np.array(self.mm[row])
    def __getitem__(self, i):
        row = int(self.rows[i])
        return torch.from_numpy(self._image(row).astype(np.float32) / np.float32(255)), \\
            np.int64(self.labels[row])
""",
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_implementation_loses_points(name):
    """Is each defective LeanDataset caught, by the check aimed at its defect?"""
    source, expected = WRONG[name]
    results = verdicts(EXERCISE, {"LeanDataset": define(source, "LeanDataset")}, aimed(expected))
    assert expected in failing(results), describe(results)
    assert sum(v.points for v in results.values()) < sum(c.points for c in EXERCISE.checks)


@pytest.mark.parametrize("name", sorted(ONE_DEDUCTION))
def test_one_defect_loses_only_its_own_points(name):
    """Does each defect lose exactly the checks that observe it, each saying what it saw?"""
    source, lose, keep, says = ONE_DEDUCTION[name]
    assert_deductions(EXERCISE, {"LeanDataset": define(source, "LeanDataset")}, lose, keep, says)


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_implementation_gets_full_marks(name):
    """Does every correct LeanDataset, however written, pass every check?"""
    results = verdicts(EXERCISE, {"LeanDataset": define(CORRECT[name], "LeanDataset")})
    assert not failing(results), describe(results)


def test_stub_is_not_attempted():
    """Is the release stub reported as not attempted, not as wrong?"""
    stub = define(HEADER + """
class LeanDataset(Dataset):
    def __init__(self, h5_path, index_path):
        raise NotImplementedError()
""", "LeanDataset")
    results = verdicts(EXERCISE, {"LeanDataset": stub})
    assert {v.status for v in results.values()} == {"not_attempted"}, describe(results)
