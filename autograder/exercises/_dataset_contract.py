"""The course's Dataset contract, shared by every exercise that asks for a Dataset.

`ds[i]` returns `(image, label)`: image a float32 tensor (3, H, W) equal to the stored uint8
values / 255, or the stored uint8 values themselves for the consumer to normalise (a quarter
of the bytes in shared and pinned memory; notebooks 01 and 05), and label equal to `labels[i]`
(a Python int, a NumPy int64 or a 0-dim int64 tensor: what `default_collate` turns into the
int64 batch `CrossEntropyLoss` needs). The transform, if one is given, is called once per
item, in `__getitem__`, on that (3, H, W) image, and its result is the image returned.
`read_items`, `transform_pass` and `transform_result_pass` run in the child and record what
the learner's dataset returned and what its transform received and returned; the `judge_*`
functions run in the parent and compare it with values they compute themselves. Each judge
fails only for what it observed: a check that cannot see its property (no opens, no worker, a
crash elsewhere) does not guess at another defect.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable, Sequence

import numpy as np

from autograder.engine.spec import Fail

BAD_LABEL = -(10**12)  # what a label that is not an integer is recorded as


def _as_array(image) -> np.ndarray:
    try:
        import torch  # lazy: ~2 s, and the grader imports every exercise without needing it

        if isinstance(image, torch.Tensor):
            return image.detach().cpu().numpy()
    except ImportError:
        pass
    return np.asarray(image)


def _as_int(label) -> int:
    """The label's integer value, or BAD_LABEL when it is not one integer (its type is judged
    separately, by `label_kind_ok`)."""
    try:
        import torch  # lazy: ~2 s, and the grader imports every exercise without needing it

        if isinstance(label, torch.Tensor):
            integer = not label.dtype.is_floating_point and not label.dtype.is_complex \
                and label.dtype != torch.bool
            return int(label.item()) if integer and label.numel() == 1 and label.dim() == 0 \
                else BAD_LABEL
    except ImportError:
        pass
    if isinstance(label, (bool, np.bool_)):
        return BAD_LABEL
    if isinstance(label, (int, np.integer)):
        return int(label)
    if isinstance(label, np.ndarray) and label.shape == () and label.dtype.kind in "iu":
        return int(label)
    return BAD_LABEL


def label_kind_ok(kind: dict) -> bool:
    """A Python int, a NumPy int64 (scalar or 0-dim array) or a 0-dim int64 tensor."""
    if kind["type"] == "int" and not kind["tensor"]:
        return True
    return kind["dtype"] == "int64" and kind["shape"] == []


def describe_kind(kind: dict) -> str:
    """"a 0-dim int32 tensor", "a float", "an int32", "a (1,) int64 ndarray": what a value was."""
    if kind["tensor"]:
        words = f"{len(kind['shape'])}-dim {kind['dtype']} tensor of shape " \
                f"{tuple(kind['shape'])}" if kind["shape"] else f"0-dim {kind['dtype']} tensor"
    elif kind["dtype"] and kind["shape"]:
        words = f"{tuple(kind['shape'])} {kind['dtype']} {kind['type']}"
    else:
        words = kind["type"]
    return ("an " if words[0] in "aeiou" else "a ") + words


def _kind(value) -> dict:
    try:
        import torch  # lazy: ~2 s, and the grader imports every exercise without needing it

        is_tensor = isinstance(value, torch.Tensor)
    except ImportError:
        is_tensor = False
    dtype = getattr(value, "dtype", None)
    return {"type": type(value).__name__, "tensor": is_tensor,
            "dtype": str(dtype).replace("torch.", "") if dtype is not None else "",
            "shape": list(getattr(value, "shape", ()) or ())}


def _numbers(value) -> np.ndarray:
    """The value as a numeric array (empty when it holds no numbers)."""
    try:
        array = _as_array(value)
    except Exception:
        return np.zeros(0, dtype=np.float32)
    return array if array.dtype.kind in "biuf" else np.zeros(0, dtype=np.float32)


def read_items(ctx, ds, indices: Sequence[int], prefix: str = "item", what: str = "ds") -> dict:
    """In the child: read `indices`, keep images and labels as arrays, describe their types.

    Arrays are saved as `<prefix>_<k>` and `<prefix>_labels`; `what` names the dataset in the
    operation (e.g. "copy" for a copy unpickled from the dataset).
    """
    labels, kinds = [], []
    for k, i in enumerate(indices):
        item = ctx.call(f"{what}[{i}]", ds.__getitem__, i)
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            return {"indices": list(indices),
                    "not_a_pair": f"{what}[{i}] returned {type(item).__name__}, not an "
                                  "(image, label) pair"}
        image, label = item
        ctx.save_array(f"{prefix}_{k}", _numbers(image))  # not numbers: judge_types says so
        labels.append(_as_int(label))
        kinds.append({"image": _kind(image), "label": _kind(label)})
    ctx.save_array(f"{prefix}_labels", np.array(labels, dtype=np.int64))
    return {"indices": list(indices), "kinds": kinds}


def same_items(trace, prefix: str, other: str, count: int) -> bool:
    """Did two `read_items` passes (`prefix`, `other`) return the same images and labels?"""
    arrays = trace.arrays
    for k in range(count):
        a, b = arrays.get(f"{prefix}_{k}"), arrays.get(f"{other}_{k}")
        if a is None or b is None or a.shape != b.shape \
                or not np.allclose(a.astype(np.float64), b.astype(np.float64), atol=1e-6):
            return False
    a, b = arrays.get(f"{prefix}_labels"), arrays.get(f"{other}_labels")
    return a is not None and b is not None and np.array_equal(a, b)


def unpicklable_attributes(obj) -> list[dict]:
    """In the child, after pickling `obj` failed: which entries of its state cannot be pickled.

    Returns up to five `{"name", "type"}` entries, so the message names what was seen (an open
    h5py file, an lmdb environment, a generator) instead of guessing.
    """
    try:
        state = obj.__getstate__()
    except Exception:
        return []
    if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
        state = {**(state[0] or {}), **(state[1] or {})}
    if not isinstance(state, dict):
        return []
    found = []
    for name, value in state.items():
        try:
            pickle.dumps(value)
        except Exception:
            found.append({"name": str(name), "type": _type_name(type(value))})
            if len(found) == 5:
                break
    return found


def _type_name(kind: type) -> str:
    """`h5py._hl.files.File`, `lmdb.Environment` (a C type that calls its module builtins)."""
    module = kind.__module__
    if module == "builtins":
        for name in ("lmdb", "h5py"):
            if getattr(sys.modules.get(name), kind.__name__, None) is kind:
                module = name
    return f"{module}.{kind.__qualname__}"


def pickling_advice(attributes: list[dict]) -> str:
    """What the unpicklable attributes were, and what to do about them."""
    if not attributes:
        return "spawn and forkserver workers receive the dataset by pickling it"
    names = ", ".join(f"`{a['name']}` ({a['type']})" for a in attributes)
    if any(a["type"].split(".")[0] in ("h5py", "lmdb") for a in attributes):
        return (f"its state holds {names}, which cannot be pickled: set such handles to None in "
                "`__getstate__` and open them again on first use in the new process")
    return (f"its state holds {names}, which cannot be pickled: keep only picklable things on "
            "the instance (or rebuild them in `__setstate__`)")


class RecordingTransform:
    """A transform that records what it receives, and when, and returns it unchanged.

    Returning its input keeps whatever the dataset does next working, so the judge sees the
    dataset's own behaviour: how often it calls the transform, and on what.
    """

    def __init__(self):
        self.calls: list = []

    def __call__(self, x):
        self.calls.append((_kind(x), _numbers(x).copy()))  # a copy: later in-place edits
        return x


class FlippingTransform:
    """A transform that flips the image left-right and keeps what it was given and returned.

    The judge compares the dataset's image with the transform's own result, so this check
    speaks only to "the transform's result is the image returned": a wrong scale fails the
    checks on values and on the transform's input, not this one.
    """

    def __init__(self):
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, x):
        out = x.flip(-1) if hasattr(x, "flip") else np.flip(np.asarray(x), -1).copy()
        self.calls.append((_numbers(x).copy(), _numbers(out).copy()))
        return out


def transform_result_pass(ctx, build: Callable[[FlippingTransform], object],
                          indices: Sequence[int]) -> dict:
    """In the child: build the dataset with a flipping transform, read `indices`, and keep each
    item's image (`item_<k>`) beside the transform's last input and output for that item."""
    flip = FlippingTransform()
    ds = build(flip)
    items = []
    for k, i in enumerate(indices):
        start = len(flip.calls)
        item = ctx.call(f"ds[{i}] with a transform", ds.__getitem__, i)
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            return {"indices": list(indices),
                    "not_a_pair": f"ds[{i}] returned {type(item).__name__}, not an "
                                  "(image, label) pair"}
        ctx.save_array(f"item_{k}", _numbers(item[0]))
        calls = flip.calls[start:]
        items.append({"calls": len(calls)})
        if calls:
            ctx.save_array(f"transform_input_{k}", calls[-1][0])
            ctx.save_array(f"transform_output_{k}", calls[-1][1])
    return {"indices": list(indices), "items": items}


def judge_transform_result(trace) -> None:
    """Each item's image is what the transform returned for it, whatever it was given."""
    for k, i in enumerate(_items(trace)):
        if not trace.data["items"][k]["calls"]:
            raise Fail(f"ds[{i}] never called the `transform` given to the constructor: call it "
                       "on the image in `__getitem__` and return its result.")
        got = trace.arrays[f"item_{k}"].astype(np.float64)
        out = trace.arrays[f"transform_output_{k}"].astype(np.float64)
        if got.shape == out.shape and np.allclose(got, out, atol=1e-6):
            continue
        given = trace.arrays[f"transform_input_{k}"].astype(np.float64)
        if got.shape == given.shape and np.allclose(got, given, atol=1e-6):
            raise Fail(f"ds[{i}][0] is the image the transform was given, not the one it "
                       "returned (a left-right flip): return the transform's result.")
        raise Fail(f"ds[{i}][0] is not what the transform returned (a left-right flip of the "
                   "image it was given): call the transform last, after converting and "
                   "scaling, and return its result unchanged.")


def transform_pass(ctx, build: Callable[[RecordingTransform], object],
                   indices: Sequence[int]) -> dict:
    """In the child: build the dataset with a recording transform, read `indices`, and record
    how many times each step called it and what the first call of each item received."""
    record = RecordingTransform()
    ds = build(record)
    init_calls = len(record.calls)
    items = []
    for k, i in enumerate(indices):
        start = len(record.calls)
        ctx.call(f"ds[{i}] with a transform", ds.__getitem__, i)
        calls = record.calls[start:]
        items.append({"calls": len(calls), "kind": calls[0][0] if calls else None})
        if calls:
            ctx.save_array(f"transform_input_{k}", calls[0][1])
    return {"indices": list(indices), "init_calls": init_calls, "items": items}


def _items(trace):
    if "not_a_pair" in trace.data:
        raise Fail(trace.data["not_a_pair"] + ".")
    return trace.data["indices"]


# The image dtypes a Dataset may return: float32 in [0, 1], ready for the model, or the stored
# uint8, four times smaller in shared and pinned memory, normalised by the consumer (01, 05).
SHIPPED_DTYPES = ("float32", "uint8")


def expected_image(stored_uint8: np.ndarray, dtype: str) -> np.ndarray:
    """The image `ds[i]` should return as float64: the stored bytes when it ships uint8, else
    the bytes / 255."""
    stored = stored_uint8.astype(np.float64)
    return stored if dtype == "uint8" else stored / 255


def judge_types(trace, height: int, width: int) -> None:
    """The image is a float32 or uint8 tensor of shape (3, H, W); the label is an integer."""
    for k, i in enumerate(_items(trace)):
        image, label = trace.data["kinds"][k]["image"], trace.data["kinds"][k]["label"]
        if image["tensor"] is False and label["tensor"] and len(label["shape"]) == 3:
            raise Fail(f"ds[{i}] returns (label, image): return (image, label) in that order.")
        if not image["tensor"]:
            raise Fail(f"ds[{i}][0] is a {image['type']}; return a torch tensor "
                       "(for example `torch.from_numpy(array)`).")
        if image["dtype"] not in SHIPPED_DTYPES:
            advice = ("NumPy's `/ 255.0` makes float64; divide a float32 tensor instead"
                      if image["dtype"] == "float64" else "convert it with `.float()` and divide "
                      "by 255")
            raise Fail(f"ds[{i}][0] has dtype {image['dtype']}; return float32 in [0, 1], or "
                       f"the stored uint8 for the consumer to normalise: {advice}.")
        if image["shape"] != [3, height, width]:
            layout = " (that is height, width, channels)" if image["shape"] == [
                height, width, 3] else ""
            raise Fail(f"ds[{i}][0] has shape {tuple(image['shape'])}{layout}; expected "
                       f"(3, {height}, {width}): channels first, as stored in the file.")


def judge_images(trace, expected_uint8: Callable[[int], np.ndarray]) -> None:
    """Images equal the stored uint8 values / 255 as float32, or the stored values as uint8."""
    for k, i in enumerate(_items(trace)):
        got = trace.arrays[f"item_{k}"].astype(np.float64)
        dtype = trace.data["kinds"][k]["image"]["dtype"]
        want = expected_image(expected_uint8(i), dtype)
        if got.shape != want.shape:
            raise Fail(f"ds[{i}][0] has shape {tuple(got.shape)}; expected {tuple(want.shape)}.")
        if np.allclose(got, want, atol=1e-6):
            continue
        if dtype == "uint8":
            raise Fail(f"ds[{i}][0] is a uint8 image but not sample {i}'s stored bytes "
                       f"({int(np.sum(got != want))} values differ).")
        top = float(got.max()) if got.size else 0.0
        if top > 1.5:
            raise Fail(f"ds[{i}][0] has values up to {top:.0f}: divide the uint8 values by 255 "
                       "so they lie in [0, 1].")
        if np.allclose(got * 256 / 255, want, atol=1e-6):
            raise Fail(f"ds[{i}][0] is divided by 256; uint8 values run to 255, so divide by "
                       "255 to map them onto [0, 1].")
        raise Fail(f"ds[{i}][0] does not hold sample {i}'s pixels divided by 255 (largest "
                   f"difference {np.abs(got - want).max():.4f}).")


def judge_labels(trace, expected_label: Callable[[int], int]) -> None:
    """Labels equal labels[i], as a Python int, a NumPy int64 or a 0-dim int64 tensor."""
    for k, i in enumerate(_items(trace)):
        got, want = int(trace.arrays["item_labels"][k]), expected_label(i)
        kind = trace.data["kinds"][k]["label"]
        if not label_kind_ok(kind):
            value = "" if got == BAD_LABEL else f" (value {got})"
            raise Fail(f"ds[{i}][1] is {describe_kind(kind)}{value}; return the label as a "
                       "Python int, a NumPy int64 or a 0-dim int64 tensor: the DataLoader "
                       "collates those into the int64 batch `CrossEntropyLoss` needs.")
        if got != want:
            raise Fail(f"ds[{i}][1] is {got}, but the file's labels[{i}] is {want}: return the "
                       "label stored at the same index as the image.")


def judge_transform_input(trace, expected_uint8: Callable[[int], np.ndarray], height: int,
                          width: int) -> None:
    """Each item called the transform once, in `__getitem__`, on its (3, H, W) image: float32
    equal to the stored values / 255, or the stored uint8 values (see `transform_pass`)."""
    data = trace.data
    if data["init_calls"]:
        raise Fail(f"`__init__` called the transform {data['init_calls']} time(s): apply it in "
                   "`__getitem__`, to the one image being returned, so a random augmentation "
                   "differs each time a sample is read.")
    for k, i in enumerate(data["indices"]):
        item = data["items"][k]
        if item["calls"] == 0:
            raise Fail(f"ds[{i}] never called the `transform` given to the constructor: call "
                       "it on the image in `__getitem__`.")
        if item["calls"] > 1:
            raise Fail(f"ds[{i}] called the transform {item['calls']} times; call it once per "
                       "item, on the finished image.")
        kind = item["kind"]
        seen = f"the transform received {describe_kind(kind)} from ds[{i}]"
        if not kind["tensor"]:
            raise Fail(f"{seen}; give it the image as the torch tensor `__getitem__` returns "
                       "(after `torch.from_numpy(...).float() / 255`).")
        if kind["dtype"] not in SHIPPED_DTYPES:
            raise Fail(f"{seen}: apply it after the conversion to float32 and the division by "
                       "255, to the image `__getitem__` returns.")
        if kind["shape"] != [3, height, width]:
            raise Fail(f"{seen}; it should get the (3, {height}, {width}) image, channels "
                       "first, as `__getitem__` returns it.")
        got = trace.arrays[f"transform_input_{k}"].astype(np.float64)
        want = expected_image(expected_uint8(i), kind["dtype"])
        if kind["dtype"] == "uint8" and (got.shape != want.shape or not np.array_equal(got, want)):
            raise Fail(f"the uint8 image the transform received from ds[{i}] is not "
                       f"images[{i}] as stored.")
        if got.shape != want.shape or not np.allclose(got, want, atol=1e-6):
            top = float(got.max()) if got.size else 0.0
            if top > 1.5:
                raise Fail(f"the transform received values up to {top:.0f} from ds[{i}], where "
                           f"images[{i}] / 255 lies in [0, 1]: call it on the image after the "
                           "division by 255.")
            raise Fail(f"the float32 image the transform received from ds[{i}] is not "
                       f"images[{i}] / 255 (largest difference "
                       f"{np.abs(got - want).max():.4f}).")


def loader_pass(ctx, ds, context: str, batch_size: int = 8, num_workers: int = 2) -> dict:
    """In the child: read every sample once through a DataLoader; keep labels and checksums.

    Afterwards the main process reads the same indices itself, so the judge can tell a sample
    the workers delivered wrongly from one the dataset gets wrong everywhere (which the value
    checks judge).
    """
    import torch  # lazy: ~2 s, and the grader imports every exercise without needing it
    from torch.utils.data import DataLoader  # lazy: torch, as on the line above

    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers,
                        multiprocessing_context=context, shuffle=False)
    labels, sums = [], []

    def run():
        for images, batch_labels in loader:
            labels.extend(int(x) for x in torch.as_tensor(batch_labels).reshape(-1))
            sums.extend(float(s) for s in images.double().reshape(len(images), -1).sum(1))

    ctx.call(f"iterating DataLoader(ds, num_workers={num_workers}, "
             f"multiprocessing_context='{context}')", run)
    ctx.save_array("loader_labels", np.array(labels, dtype=np.int64))
    ctx.save_array("loader_sums", np.array(sums, dtype=np.float64))
    main_labels, main_sums = [], []
    try:
        for i in range(len(labels)):  # shuffle=False: the k-th sample delivered is ds[k]
            image, label = ctx.call("ds[i] in the main process after the loader",
                                    ds.__getitem__, i)
            main_labels.append(_as_int(label))
            main_sums.append(float(_numbers(image).astype(np.float64).sum()))
    except Exception:  # only a reference point for the judge; the loader itself is judged
        return {"context": context}
    ctx.save_array("main_labels", np.array(main_labels, dtype=np.int64))
    ctx.save_array("main_sums", np.array(main_sums, dtype=np.float64))
    return {"context": context}


def _close_sums(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= 1e-3 * np.maximum(1.0, np.abs(b))))


def judge_loader(trace, expected_uint8: Callable[[int], np.ndarray], labels: np.ndarray) -> None:
    """Every sample arrived exactly once, with its own pixels.

    A sample the workers deliver exactly as the main process's `ds[i]` returns it passes here
    even when both are wrong: wrong values are the value checks' to judge, not the workers'.
    """
    got, sums = trace.arrays["loader_labels"], trace.arrays["loader_sums"]
    context = trace.data["context"]
    n = len(labels)
    main_labels, main_sums = trace.arrays.get("main_labels"), trace.arrays.get("main_sums")
    as_main = main_labels is not None and len(got) == n and np.array_equal(got, main_labels) \
        and _close_sums(sums, main_sums)
    if len(got) != n or sorted(got.tolist()) != sorted(labels.tolist()):
        if as_main:
            return
        seen = len(set(got.tolist()) & set(labels.tolist()))
        if len(got) == n and main_labels is not None and len(main_labels) == n:
            wrong = int(np.sum(got != main_labels))
            raise Fail(f"with `{context}` workers the DataLoader delivered {n} samples, but "
                       f"{wrong} of their labels differ from what `ds[i]` returns in the main "
                       f"process ({seen} of the file's {n} labels arrived): each worker must "
                       "read the samples it is asked for.")
        raise Fail(f"with `{context}` workers the DataLoader delivered {len(got)} samples for a "
                   f"dataset of {n} ({seen} of the file's {n} labels among them): every sample "
                   "must arrive exactly once.")
    index_of = {int(label): i for i, label in enumerate(labels)}
    for label, total in zip(got.tolist(), sums.tolist(), strict=True):
        i = index_of[label]
        stored = float(expected_uint8(i).astype(np.float64).sum())
        if all(abs(total - want) > 1e-3 * max(1.0, abs(want)) for want in (stored / 255, stored)):
            if as_main:
                return
            also = " (and from what `ds[i]` returns in the main process)" \
                if main_labels is not None else ""
            raise Fail(f"with `{context}` workers, sample {i} arrived with pixels that differ "
                       f"from the file's{also}.")


def streaming_pass(ctx, make_reference: Callable[[], object], make_learner: Callable[[], object],
                   n: int) -> None:
    """In the child: measure the reference, then the learner's dataset, each reading all n samples.

    The reference runs first (after a warm-up) so that imports, first-use allocations and the
    page cache cost the learner nothing; both are measured in the same process and run.
    """
    warm = make_reference()
    for i in range(0, n, 10):
        warm[i]
    del warm
    ctx.mark("reference_start")
    ref = make_reference()
    for i in range(n):
        ref[i]
    ctx.mark("reference_end")
    del ref
    ctx.mark("learner_start")
    ds = make_learner()
    ctx.mark("after_init")
    for i in range(n):
        ctx.call("ds[i] for every i", ds.__getitem__, i)
    ctx.mark("after_reads")


def judge_streaming(trace, data_mib: float, what: str, advice: str,
                    fixture: str | None = None) -> None:
    """The learner's private memory grew little more than the reference's (see streaming_pass).

    With `fixture`, the message also says whether the reads touched the file at all: a dataset
    that held no descriptor on it after `__init__` and opened it no more while every sample was
    read served them from memory.
    """
    reference = trace.private_growth_mib("reference_start", "reference_end")
    learner = trace.private_growth_mib("learner_start", "after_reads")
    init = trace.private_growth_mib("learner_start", "after_init")
    if learner > reference + max(8.0, 0.1 * data_mib):
        in_init = init > 0.5 * learner
        when = "in `__init__`" if in_init else "while reading the samples one by one"
        seen = (f"memory grew by {learner:.0f} MiB {when} for {data_mib:.0f} MiB of {what} "
                f"(a streaming dataset needs about {max(reference, 0):.0f} MiB)")
        if fixture is not None and trace.opens_available:
            held = sum(n for f, n in trace.mark("after_init").fds.items()
                       if f.startswith(fixture))
            opens = trace.opens_between("after_init", "after_reads", fixture)
            if not held and not opens:
                raise Fail(f"{seen}; after `__init__` no descriptor was open on the data, and "
                           "reading every sample opened no file: the samples came from memory, "
                           f"read whole {'in `__init__`' if in_init else 'beforehand'}. {advice}")
        raise Fail(f"{seen}: it reads far more than one sample, or keeps the samples it read. "
                   f"{advice}")
