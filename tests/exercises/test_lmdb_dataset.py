"""Do the LMDBDataset checks fail wrong implementations and pass other correct ones?"""

from __future__ import annotations

import pytest

from autograder.exercises.lmdb_dataset import EXERCISE
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
import json, os
import lmdb, numpy as np, torch
from torch.utils.data import Dataset
from memcourse.formats import LMDB_LABELS_KEY, LMDB_META_KEY, lmdb_key
"""

REFERENCE = HEADER + """
class LMDBDataset(Dataset):
    def __init__(self, lmdb_path, transform=None):
        self.lmdb_path = str(lmdb_path)
        self.transform = transform
        with lmdb.open(self.lmdb_path, readonly=True, lock=False) as env, env.begin() as txn:
            meta = json.loads(txn.get(LMDB_META_KEY))
            self.labels = np.frombuffer(txn.get(LMDB_LABELS_KEY), dtype="<i8").copy()
        self.shape = tuple(meta["shape"])
        self._env = None
        self._pid = None

    def __len__(self):
        return len(self.labels)

    def _get_env(self):
        if self._env is not None and self._pid != os.getpid():
            self._env.close()
            self._env = None
        if self._env is None:
            self._env = lmdb.open(self.lmdb_path, readonly=True, lock=False)
            self._pid = os.getpid()
        return self._env

    def __getitem__(self, idx):
        with self._get_env().begin() as txn:
            raw = txn.get(lmdb_key(idx))
        image = np.frombuffer(raw, dtype=np.uint8).reshape(self.shape).copy()
        image = torch.from_numpy(image).float() / 255
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[idx])

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_env"] = None
        state["_pid"] = None
        return state
"""


def _variant(old: str, new: str) -> str:
    assert old in REFERENCE, old
    return REFERENCE.replace(old, new)


# Each wrong implementation has one defect, and the check expected to catch it.
WRONG = {
    "env_opened_in_init": (_variant(
        "        self._env = None\n        self._pid = None\n",
        "        self._env = lmdb.open(self.lmdb_path, readonly=True, lock=False)\n"
        "        self._pid = os.getpid()\n"), "lmdb_dataset_lazy_open"),
    "env_opened_per_item": (_variant(
        "        with self._get_env().begin() as txn:\n            raw = txn.get(lmdb_key(idx))\n",
        "        with lmdb.open(self.lmdb_path, readonly=True, lock=False) as env:\n"
        "            with env.begin() as txn:\n                raw = txn.get(lmdb_key(idx))\n"),
        "lmdb_dataset_reuses_env"),
    "str_keys": (_variant("txn.get(lmdb_key(idx))", "txn.get(str(idx).encode())"),
                 "lmdb_dataset_values"),
    "missing_div_255": (_variant(".float() / 255", ".float()"), "lmdb_dataset_values"),
    "no_getstate": (_variant("    def __getstate__(self):", "    def _unused(self):"),
                    "lmdb_dataset_picklable_after_use"),
    "env_inherited_across_fork": (_variant(
        "        if self._env is not None and self._pid != os.getpid():",
        "        if False:"), "lmdb_dataset_fork_workers"),
    "eager_load_in_init": (_variant(
        "        self.shape = tuple(meta[\"shape\"])\n",
        "        self.shape = tuple(meta[\"shape\"])\n"
        "        with lmdb.open(self.lmdb_path, readonly=True, lock=False) as env:\n"
        "            with env.begin() as txn:\n"
        "                self.images = [txn.get(lmdb_key(i)) for i in range(len(self.labels))]\n"),
        "lmdb_dataset_stays_small"),
    "label_of_next_sample": (_variant("int(self.labels[idx])", "int(self.labels[idx + 1])"),
                             "lmdb_dataset_values"),
    "transform_on_uint8_tensor": (_variant(
        "        image = torch.from_numpy(image).float() / 255\n"
        "        if self.transform is not None:\n            image = self.transform(image)\n",
        "        image = torch.from_numpy(image)\n"
        "        if self.transform is not None:\n            image = self.transform(image)\n"
        "        image = image.float() / 255\n"), "lmdb_dataset_transform"),
    "float_label_tensor": (_variant("int(self.labels[idx])",
                                    "torch.tensor(self.labels[idx], dtype=torch.float64)"),
                           "lmdb_dataset_values"),
}

# Everything read into memory in `__init__`, no environment kept: its one defect is memory.
SERVED_FROM_MEMORY = _variant(
    "        self.shape = tuple(meta[\"shape\"])\n",
    "        self.shape = tuple(meta[\"shape\"])\n"
    "        with lmdb.open(self.lmdb_path, readonly=True, lock=False) as env:\n"
    "            with env.begin() as txn:\n"
    "                self.images = [txn.get(lmdb_key(i)) for i in range(len(self.labels))]\n"
).replace("        with self._get_env().begin() as txn:\n"
          "            raw = txn.get(lmdb_key(idx))\n", "        raw = self.images[idx]\n")

# One defect, one deduction, a true reason: name -> (implementation, the checks that lose
# points, the checks that must keep them, words the message of each losing check must contain).
ONE_DEDUCTION = {
    # Forked workers that open nothing read from memory, not through an inherited environment.
    "served_from_memory": (SERVED_FROM_MEMORY, {"lmdb_dataset_stays_small"},
                           {"lmdb_dataset_fork_workers", "lmdb_dataset_lazy_open",
                            "lmdb_dataset_reuses_env", "lmdb_dataset_picklable_after_use"},
                           {"lmdb_dataset_stays_small": "after `__init__`"}),
    "env_inherited_across_fork": (WRONG["env_inherited_across_fork"][0],
                                  {"lmdb_dataset_fork_workers"}, {"lmdb_dataset_values"},
                                  {"lmdb_dataset_fork_workers": "the main process held"}),
    # A value defect is the value checks': a pickled copy and the workers that return what the
    # original returns keep their points (the transform sees the undivided image too).
    "missing_div_255": (WRONG["missing_div_255"][0],
                        {"lmdb_dataset_values", "lmdb_dataset_transform_input"},
                        {"lmdb_dataset_picklable_after_use", "lmdb_dataset_fork_workers"},
                        {"lmdb_dataset_transform_input": "values up to"}),
    # The transform's check compares the image with what the transform returned, whatever it
    # was given: scaling after the transform is its defect, a wrong scale is not.
    "transform_on_uint8_tensor": (WRONG["transform_on_uint8_tensor"][0],
                                  {"lmdb_dataset_transform"},
                                  {"lmdb_dataset_values", "lmdb_dataset_transform_input"},
                                  {"lmdb_dataset_transform": "not what the transform returned"}),
    "divides_by_256": (_variant(".float() / 255", ".float() / 256"),
                       {"lmdb_dataset_values", "lmdb_dataset_transform_input"},
                       {"lmdb_dataset_transform", "lmdb_dataset_length"},
                       {"lmdb_dataset_values": "divided by 256"}),
    "int32_label": (_variant("int(self.labels[idx])", "np.int32(self.labels[idx])"),
                    {"lmdb_dataset_values"}, {"lmdb_dataset_length"},
                    {"lmdb_dataset_values": "an int32"}),
    # The pickling error names what would not pickle: the environment, or something else.
    "no_getstate": (WRONG["no_getstate"][0], {"lmdb_dataset_picklable_after_use"},
                    {"lmdb_dataset_lazy_open"},
                    {"lmdb_dataset_picklable_after_use": "`_env` (lmdb.Environment)"}),
    "unpicklable_attribute": (_variant("        self._pid = None\n",
                                       "        self._pid = None\n"
                                       "        self.rows = (i for i in range(9))\n"),
                              {"lmdb_dataset_lazy_open", "lmdb_dataset_picklable_after_use"},
                              {"lmdb_dataset_fork_workers"},
                              {"lmdb_dataset_picklable_after_use": "`rows` (builtins.generator)",
                               "lmdb_dataset_lazy_open": "`rows` (builtins.generator)"}),
}

CORRECT = {
    "reference": REFERENCE,
    # uint8 out of the worker, a quarter of the bytes; the training loop normalises (01, 05).
    "ships_uint8": _variant("torch.from_numpy(image).float() / 255", "torch.from_numpy(image)"),
    # Dropping (not closing) the environment inherited through fork also works: py-lmdb forgets
    # an environment when its last reference goes, without touching the parent's; closing it
    # is tidier (it also releases this process's descriptor and mapping).
    "inherited_env_dropped": _variant(
        "            self._env.close()\n            self._env = None\n",
        "            self._env = None\n"),
    # A Python list of keys is allowed: its cost (~100 bytes per sample, copied per worker) is a
    # scalability concern the notebook discusses, not a wrong behaviour.
    "keys_list_locked_env": HEADER + """
class LMDBDataset(Dataset):
    def __init__(self, lmdb_path, transform=None):
        self.path = lmdb_path
        env = lmdb.open(str(lmdb_path), readonly=True)
        try:
            with env.begin() as txn:
                meta = json.loads(txn.get(b"__meta__").decode())
                labels = np.frombuffer(txn.get(b"__labels__"), dtype=np.int64)
        finally:
            env.close()
        self.keys = [i.to_bytes(8, "big") for i in range(meta["length"])]
        self.labels = torch.from_numpy(labels.copy())
        self.c, self.h, self.w = meta["shape"]
        self.transform = transform
        self.env = None
        self.owner = None

    def __len__(self):
        return len(self.keys)

    def __getitem__(self, idx):
        if self.owner != os.getpid():
            if self.env is not None:
                self.env.close()
            self.env = lmdb.open(str(self.path), readonly=True, readahead=False)
            self.owner = os.getpid()
        with self.env.begin(buffers=True) as txn:
            buf = txn.get(self.keys[idx])
            pixels = np.array(np.frombuffer(buf, np.uint8), dtype=np.float32)  # copy in the txn
        image = torch.from_numpy(pixels.reshape(self.c, self.h, self.w)).div_(255.0)
        return (self.transform(image) if self.transform else image), self.labels[idx]

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("env", "owner")} | \\
            {"env": None, "owner": None}
""",
    "per_pid_dict_long_txn": HEADER + """
class LMDBDataset(Dataset):
    _handles = ("_envs", "_txns")

    def __init__(self, lmdb_path, transform=None):
        self.lmdb_path, self.transform = os.fspath(lmdb_path), transform
        with lmdb.open(self.lmdb_path, readonly=True, lock=False, max_readers=1) as env:
            txn = env.begin()
            meta = json.loads(txn.get(LMDB_META_KEY))
            self.labels = np.frombuffer(txn.get(LMDB_LABELS_KEY), "<i8").copy()
            txn.abort()
        self.shape = meta["shape"]
        self._envs, self._txns = {}, {}

    def __len__(self):
        return int(self.labels.shape[0])

    def _txn(self):
        pid = os.getpid()
        if pid not in self._txns:
            for env in self._envs.values():   # inherited through fork: drop this copy
                env.close()
            self._envs.clear()
            self._txns.clear()
            self._envs[pid] = lmdb.open(self.lmdb_path, readonly=True, lock=False)
            self._txns[pid] = self._envs[pid].begin()   # read-only data: one long txn is fine
        return self._txns[pid]

    def __getitem__(self, idx):
        value = self._txn().get(lmdb_key(int(idx)))
        image = torch.tensor(np.frombuffer(value, np.uint8).reshape(self.shape),
                             dtype=torch.float32) / 255
        if self.transform is not None:
            image = self.transform(image)
        return image, np.int64(self.labels[idx])

    def __getstate__(self):
        state = dict(self.__dict__)
        for name in self._handles:
            state[name] = {}
        return state
""",
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_implementation_loses_points(name):
    """Is each defective LMDBDataset caught, by the check aimed at its defect?"""
    source, expected = WRONG[name]
    results = verdicts(EXERCISE, {"LMDBDataset": define(source, "LMDBDataset")}, aimed(expected))
    assert expected in failing(results), describe(results)
    assert sum(v.points for v in results.values()) < sum(c.points for c in EXERCISE.checks)


@pytest.mark.parametrize("name", sorted(ONE_DEDUCTION))
def test_one_defect_loses_only_its_own_points(name):
    """Does each defect lose exactly the checks that observe it, each saying what it saw?"""
    source, lose, keep, says = ONE_DEDUCTION[name]
    assert_deductions(EXERCISE, {"LMDBDataset": define(source, "LMDBDataset")}, lose, keep, says)


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_implementation_gets_full_marks(name):
    """Does every correct LMDBDataset, however written, pass every check?"""
    results = verdicts(EXERCISE, {"LMDBDataset": define(CORRECT[name], "LMDBDataset")})
    assert not failing(results), describe(results)


def test_stub_is_not_attempted():
    """Is the release stub reported as not attempted, not as wrong?"""
    stub = define(HEADER + """
class LMDBDataset(Dataset):
    def __init__(self, lmdb_path, transform=None):
        raise NotImplementedError()

    def __len__(self):
        raise NotImplementedError()

    def __getitem__(self, idx):
        raise NotImplementedError()
""", "LMDBDataset")
    results = verdicts(EXERCISE, {"LMDBDataset": stub})
    assert {v.status for v in results.values()} == {"not_attempted"}, describe(results)


def test_lmdb_writer_layout(tmp_path):
    """Does write_lmdb store what the exercise documents: sorted 8-byte keys, labels, metadata?"""
    import json

    import lmdb
    import numpy as np

    from memcourse import formats

    images = np.random.default_rng(0).integers(0, 256, (300, 3, 4, 5), dtype=np.uint8)
    labels = np.arange(300) * 7
    formats.write_lmdb(tmp_path / "db", images, labels)
    with lmdb.open(str(tmp_path / "db"), readonly=True, lock=False) as env, \
            env.begin() as txn:
        keys = [k for k, _ in txn.cursor()]
        assert keys[:300] == [formats.lmdb_key(i) for i in range(300)]  # index order
        assert keys[300:] == [formats.LMDB_LABELS_KEY, formats.LMDB_META_KEY]
        assert np.array_equal(np.frombuffer(txn.get(formats.lmdb_key(258)), np.uint8)
                              .reshape(3, 4, 5), images[258])
        assert np.array_equal(np.frombuffer(txn.get(formats.LMDB_LABELS_KEY), "<i8"), labels)
        assert json.loads(txn.get(formats.LMDB_META_KEY)) == {
            "length": 300, "shape": [3, 4, 5], "dtype": "uint8"}
    with pytest.raises(lmdb.MapFullError):
        formats.write_lmdb(tmp_path / "small", images, labels, map_size=images.nbytes // 2)
