"""The course's Dataset contract, shared by every exercise that asks for a Dataset.

`ds[i]` returns `(image, label)`: image a float32 tensor (3, H, W) equal to the stored uint8
values / 255 (through `transform` if one is given), label equal to `labels[i]` (a Python int, a
NumPy int64 or a 0-dim int64 tensor). `read_items` runs in the child and records what the
learner's dataset returned; the `judge_*` functions run in the parent and compare it with
values they compute themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from autograder.engine.spec import Fail

BAD_LABEL = -(10**12)  # what a label that is not an integer is recorded as


def _as_array(image) -> np.ndarray:
    try:
        import torch

        if isinstance(image, torch.Tensor):
            return image.detach().cpu().numpy()
    except ImportError:
        pass
    return np.asarray(image)


def _as_int(label) -> int:
    try:
        import torch

        if isinstance(label, torch.Tensor):
            return int(label.item()) if label.numel() == 1 and label.dim() == 0 else BAD_LABEL
    except ImportError:
        pass
    if isinstance(label, (bool, np.bool_)):
        return BAD_LABEL
    if isinstance(label, (int, np.integer)):
        return int(label)
    if isinstance(label, np.ndarray) and label.shape == () and label.dtype.kind in "iu":
        return int(label)
    return BAD_LABEL


def _kind(value) -> dict:
    try:
        import torch

        is_tensor = isinstance(value, torch.Tensor)
    except ImportError:
        is_tensor = False
    dtype = getattr(value, "dtype", None)
    return {"type": type(value).__name__, "tensor": is_tensor,
            "dtype": str(dtype).replace("torch.", "") if dtype is not None else "",
            "shape": list(getattr(value, "shape", ()) or ())}


def read_items(ctx, ds, indices: Sequence[int]) -> dict:
    """In the child: read `indices`, keep images and labels as arrays, describe their types."""
    labels, kinds = [], []
    for k, i in enumerate(indices):
        item = ctx.call(f"ds[{i}]", ds.__getitem__, i)
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            return {"indices": list(indices),
                    "not_a_pair": f"ds[{i}] returned {type(item).__name__}, not an "
                                  "(image, label) pair"}
        image, label = item
        array = _as_array(image)
        if array.dtype.kind not in "biuf":  # not numbers: judge_types says what it was
            array = np.zeros(0, dtype=np.float32)
        ctx.save_array(f"item_{k}", array)
        labels.append(_as_int(label))
        kinds.append({"image": _kind(image), "label": _kind(label)})
    ctx.save_array("item_labels", np.array(labels, dtype=np.int64))
    return {"indices": list(indices), "kinds": kinds}


def _items(trace):
    if "not_a_pair" in trace.data:
        raise Fail(trace.data["not_a_pair"] + ".")
    return trace.data["indices"]


def judge_types(trace, height: int, width: int) -> None:
    """The image is a float32 tensor of shape (3, H, W); the label is an integer."""
    for k, i in enumerate(_items(trace)):
        image, label = trace.data["kinds"][k]["image"], trace.data["kinds"][k]["label"]
        if image["tensor"] is False and label["tensor"] and len(label["shape"]) == 3:
            raise Fail(f"ds[{i}] returns (label, image): return (image, label) in that order.")
        if not image["tensor"]:
            raise Fail(f"ds[{i}][0] is a {image['type']}; return a torch tensor "
                       "(for example `torch.from_numpy(array)`).")
        if image["dtype"] != "float32":
            advice = ("convert it with `.float()` and divide by 255" if image["dtype"] == "uint8"
                      else "NumPy's `/ 255.0` makes float64; divide a float32 tensor instead")
            raise Fail(f"ds[{i}][0] has dtype {image['dtype']}; models expect float32: {advice}.")
        if image["shape"] != [3, height, width]:
            layout = " (that is height, width, channels)" if image["shape"] == [
                height, width, 3] else ""
            raise Fail(f"ds[{i}][0] has shape {tuple(image['shape'])}{layout}; expected "
                       f"(3, {height}, {width}): channels first, as stored in the file.")
        if trace.arrays["item_labels"][k] == BAD_LABEL:
            raise Fail(f"ds[{i}][1] is a {label['type']} {tuple(label['shape'])}; return the "
                       "label as a Python int, a NumPy int64 or a 0-dim int64 tensor.")


def judge_images(trace, expected_uint8: Callable[[int], np.ndarray],
                 transform: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
    """Images equal the stored uint8 values / 255 (through `transform`)."""
    for k, i in enumerate(_items(trace)):
        got = trace.arrays[f"item_{k}"].astype(np.float64)
        plain = expected_uint8(i).astype(np.float64) / 255
        want = transform(plain) if transform is not None else plain
        if got.shape != want.shape:
            raise Fail(f"ds[{i}][0] has shape {tuple(got.shape)}; expected {tuple(want.shape)}.")
        if np.allclose(got, want, atol=1e-6):
            continue
        if transform is not None and np.allclose(got, plain, atol=1e-6):
            raise Fail(f"ds[{i}][0] ignores the `transform` given to the constructor: apply it "
                       "to the image before returning it.")
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
    """Labels equal labels[i]."""
    for k, i in enumerate(_items(trace)):
        got, want = int(trace.arrays["item_labels"][k]), expected_label(i)
        if got == BAD_LABEL:
            raise Fail(f"ds[{i}][1] is not an integer label.")
        if got != want:
            raise Fail(f"ds[{i}][1] is {got}, but the file's labels[{i}] is {want}: return the "
                       "label stored at the same index as the image.")


def loader_pass(ctx, ds, context: str, batch_size: int = 8, num_workers: int = 2) -> dict:
    """In the child: read every sample once through a DataLoader; keep labels and checksums."""
    import torch
    from torch.utils.data import DataLoader

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
    return {"context": context}


def judge_loader(trace, expected_uint8: Callable[[int], np.ndarray], labels: np.ndarray) -> None:
    """Every sample arrived exactly once, with its own pixels."""
    got = trace.arrays["loader_labels"]
    context = trace.data["context"]
    if len(got) != len(labels) or sorted(got.tolist()) != sorted(labels.tolist()):
        seen = len(set(got.tolist()) & set(labels.tolist()))
        raise Fail(f"with `{context}` workers the DataLoader delivered {len(got)} samples "
                   f"({seen} distinct of {len(labels)}): every sample must arrive exactly once.")
    index_of = {int(label): i for i, label in enumerate(labels)}
    for label, total in zip(got.tolist(), trace.arrays["loader_sums"].tolist(), strict=True):
        i = index_of[label]
        want = float((expected_uint8(i).astype(np.float64) / 255).sum())
        if abs(total - want) > 1e-3 * max(1.0, abs(want)):
            raise Fail(f"with `{context}` workers, sample {i} arrived with the wrong pixels.")


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


def judge_streaming(trace, data_mib: float, what: str, advice: str) -> None:
    """The learner's private memory grew little more than the reference's (see streaming_pass)."""
    reference = trace.private_growth_mib("reference_start", "reference_end")
    learner = trace.private_growth_mib("learner_start", "after_reads")
    init = trace.private_growth_mib("learner_start", "after_init")
    if learner > reference + max(8.0, 0.1 * data_mib):
        when = ("in `__init__`" if init > 0.5 * learner
                else "while reading the samples one by one")
        raise Fail(f"memory grew by {learner:.0f} MiB {when} for {data_mib:.0f} MiB of {what} "
                   f"(a streaming dataset needs about {max(reference, 0):.0f} MiB): it reads "
                   f"far more than one sample, or keeps the samples it read. {advice}")
