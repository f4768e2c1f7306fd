"""01_memory_footprint: `predict_bytes_in_flight`, the bytes of collated batches a DataLoader holds.

Contract: `predict_bytes_in_flight(batch_size, sample_shape, dtype, num_workers,
prefetch_factor=2, pin_memory=False)` returns, in bytes, the collated batches that exist while
the training loop works on one batch: that batch, plus `num_workers * prefetch_factor` batches
the workers have prefetched (none when `num_workers == 0`), plus one more copy when
`pin_memory=True` on a machine with an accelerator (the pinned copy of a batch exists beside its
shared-memory original while it is made).

The checks compare the learner's predictions with values the judge computes, and with what a
real DataLoader holds, measured in the checking process: a consumer takes one batch and stalls,
and the checker adds up the /dev/shm objects the process and its workers hold.
"""

from __future__ import annotations

import math

from autograder.engine.check_report import run_exercise
from autograder.engine.spec import Check, Exercise, Fail

SUBJECT = "predict_bytes_in_flight"
ITEMSIZE = {"uint8": 1, "int8": 1, "float16": 2, "bfloat16": 2, "int16": 2, "float32": 4,
            "int32": 4, "float64": 8, "int64": 8}

# (batch_size, sample_shape, dtype, num_workers, prefetch_factor, pin_memory)
FORMULA = [
    (32, (3, 64, 64), "uint8", 2, 2, False),
    (32, (3, 64, 64), "float32", 2, 2, False),
    (8, (3, 160, 160), "uint8", 4, 3, False),
    (64, (1, 28, 28), "float32", 1, 1, False),
]
EDGE = [
    (16, (3, 32, 32), "uint8", 0, 2, False),  # no workers: nothing is prefetched
    (16, (3, 32, 32), "float32", 0, 2, True),  # no workers, pinned in the main process
    (16, (3, 32, 32), "uint8", 2, 2, True),  # a pinned copy beside the shared-memory ones
    (1, (3, 224, 224), "float16", 3, 1, False),
    (128, (), "int64", 2, 4, False),  # a batch of scalar labels
    (10, (12, 5), "float64", 6, 2, True),
]
# Configurations run for real: (batch_size, sample_shape, dtype, num_workers, prefetch_factor).
MEASURED = [
    (16, (3, 64, 64), "uint8", 1, 3),
    (24, (3, 48, 48), "float32", 2, 2),
    (8, (3, 96, 96), "uint8", 2, 1),
]
MEASURED_EDGE = [
    (16, (3, 64, 64), "float32", 0, None),
]


def batch_bytes(batch_size: int, sample_shape: tuple, dtype: str) -> int:
    return batch_size * math.prod(sample_shape) * ITEMSIZE[dtype]


def reference(batch_size, sample_shape, dtype, num_workers, prefetch_factor=2,
              pin_memory=False) -> int:
    """The expected answer, computed from the configuration alone."""
    prefetched = num_workers * prefetch_factor if num_workers > 0 else 0
    return (prefetched + 1 + int(bool(pin_memory))) * batch_bytes(batch_size, sample_shape, dtype)


# ----------------------------------------------------------------------------- in the child


def _plain_number(value):
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _predict(ctx, fn, config) -> dict:
    import torch  # lazy: ~2 s, and the grader imports every exercise without needing it

    bs, shape, dtype, nw, pf, pin = config
    call = (f"{SUBJECT}({bs}, {shape}, torch.{dtype}, num_workers={nw}, "
            f"prefetch_factor={pf}, pin_memory={pin})")
    got = ctx.call(call, fn, bs, shape, getattr(torch, dtype), nw, prefetch_factor=pf,
                   pin_memory=pin)
    return {"config": list(config), "call": call, "got": _plain_number(got),
            "got_type": type(got).__name__}


def _predictions(ctx, submission, configs) -> dict:
    return {"predictions": [_predict(ctx, submission[SUBJECT], c) for c in configs]}


def _measure(ctx, submission, configs) -> dict:
    import torch  # lazy: ~2 s, and the grader imports every exercise without needing it

    # lazy: memcourse.footprint imports torch (~2 s); only the measuring checks' child needs it
    from memcourse.footprint import SyntheticImages, held_batch_bytes

    rows = []
    for bs, shape, dtype, nw, pf in configs:
        held = held_batch_bytes(SyntheticImages(1000, shape, getattr(torch, dtype)), bs, nw,
                                pf, settle_s=1.0)
        rows.append({**held, "config": [bs, list(shape), dtype, nw, pf]})
    # Ask the learner only after measuring, so nothing the learner's code does can change it.
    predictions = [_predict(ctx, submission[SUBJECT], (bs, shape, dtype, nw, pf or 2, False))
                   for bs, shape, dtype, nw, pf in configs]
    return {"measured": rows, "predictions": predictions}


def act_values(ctx, submission):
    return _predictions(ctx, submission, FORMULA)


def act_edge_cases(ctx, submission):
    return {**_predictions(ctx, submission, EDGE),
            **{"edge_measured": _measure(ctx, submission, MEASURED_EDGE)}}


def act_matches_measurement(ctx, submission):
    return _measure(ctx, submission, MEASURED)


# ----------------------------------------------------------------------------- in the parent


def _config(row) -> tuple:
    bs, shape, dtype, nw, pf, pin = row["config"]
    return bs, tuple(shape), dtype, nw, pf, pin


def _same(got: float, want: float) -> bool:
    return abs(got - want) <= 1e-6 * max(1.0, abs(want))


def _diagnose(row) -> str:
    """What the wrong prediction most likely left out (for visible checks only)."""
    bs, shape, dtype, nw, pf, pin = _config(row)
    got, batch = row["got"], batch_bytes(bs, shape, dtype)
    sample = batch // bs
    if _same(got, reference(bs, shape, "uint8", nw, pf, pin)) and ITEMSIZE[dtype] != 1:
        return (f"it is what {dtype} would take at 1 byte per element; each {dtype} element "
                f"takes {ITEMSIZE[dtype]} bytes (`torch.tensor([], dtype=dtype).element_size()`).")
    if nw > 0 and _same(got, nw * pf * batch):
        return ("it counts the prefetched batches but not the batch your loop is holding, "
                "which is still alive while the workers fill their queues.")
    if nw > 0 and _same(got, (nw + 1) * batch):
        return ("it counts one batch per worker; each worker prepares `prefetch_factor` "
                "batches ahead.")
    if _same(got, nw * sample) or _same(got, nw * batch):
        return ("that is `num_workers x one item`, the guide's arithmetic; the workers hand "
                "over whole collated batches, `prefetch_factor` of them each.")
    if _same(got, sample * (nw * pf + 1)):
        return "it counts samples, not batches: each batch holds `batch_size` samples."
    return "it does not follow (prefetched batches + the one in use) x bytes per batch."


def _check_number(row) -> None:
    if row["got"] is None:
        raise Fail(f"`{row['call']}` returned a {row['got_type']}, not a number of bytes.")


def judge_values(trace) -> None:
    for row in trace.data["predictions"]:
        _check_number(row)
        want = reference(*_config(row))
        if not _same(row["got"], want):
            raise Fail(f"`{row['call']}` returned {row['got']:,.0f} bytes, but such a "
                       f"DataLoader holds {want:,} bytes of batches: {_diagnose(row)}")


def judge_edge_cases(trace) -> None:
    for row in trace.data["predictions"]:
        _check_number(row)
        bs, shape, dtype, nw, pf, pin = _config(row)
        if _same(row["got"], reference(bs, shape, dtype, nw, pf, pin)):
            continue
        # Say what the answer shows, not what the row happens to vary: a prediction that is
        # right but for the pinned copy is about pin_memory, even with num_workers=0.
        if pin and _same(row["got"], reference(bs, shape, dtype, nw, pf, False)):
            why = ("it is what the loader holds without `pin_memory`: with `pin_memory=True` on "
                   "an accelerator, each batch is copied into pinned memory while its "
                   "shared-memory original still exists.")
        elif nw == 0:
            why = ("with `num_workers=0` nothing is prefetched: the main process builds each "
                   "batch when the loop asks for it. What does it hold then?")
        else:
            why = ("check how the dtype, the shape, the batch size and the flags set the bytes "
                   "held.")
        raise Fail(f"`{row['call']}` is not what such a DataLoader holds: {why}")
    _compare_measured(trace.data["edge_measured"], hidden=True)


def _compare_measured(data: dict, hidden: bool) -> None:
    for measured, row in zip(data["measured"], data["predictions"], strict=True):
        _check_number(row)
        bs, shape, dtype, nw, pf = measured["config"]
        batch = batch_bytes(bs, tuple(shape), dtype)
        if measured["batch_bytes"] != batch:
            raise RuntimeError(f"the measured batch has {measured['batch_bytes']} bytes, "
                               f"not {batch}")
        # Everything collated: the shared-memory batches, plus the held batch if it is not one.
        held = measured["shm_bytes"] + (0 if measured["batch_in_shm"] else batch)
        if abs(row["got"] - held) <= 0.25 * batch:
            continue
        if abs(held - reference(bs, tuple(shape), dtype, nw, pf or 2)) > 0.25 * batch:
            # The DataLoader did not behave as documented here (another torch, another OS):
            # the learner cannot be judged against it.
            raise RuntimeError(f"measured {held} bytes of batches for {measured['config']}, "
                               "which the checker cannot explain")
        if hidden:
            raise Fail(f"`{row['call']}` returned {row['got']:,.0f} bytes, but a real "
                       f"DataLoader with this configuration held a different amount.")
        raise Fail(f"`{row['call']}` returned {row['got']:,.0f} bytes, but a real DataLoader "
                   f"with this configuration, its loop holding one batch, held {held:,} bytes "
                   f"of batches ({held / batch:.0f} batches of {batch:,} bytes): "
                   f"{_diagnose(row)}")


def judge_matches_measurement(trace) -> None:
    _compare_measured(trace.data, hidden=False)


CHECKS = [
    Check("bytes_in_flight_values", 1,
          "predictions for four configurations, uint8 and float32",
          act_values, judge_values,
          hint="bytes per batch = batch_size x elements per sample x bytes per element; count "
               "the batch in use plus `num_workers x prefetch_factor` prefetched ones."),
    Check("bytes_in_flight_edge_cases", 1,
          "num_workers=0, pin_memory=True, other dtypes and shapes",
          act_edge_cases, judge_edge_cases, hidden=True, extends="values", timeout_s=60,
          hint="Without workers nothing is prefetched, but the batch in use still exists; "
               "pinning makes one extra copy."),
    Check("bytes_in_flight_matches_measurement", 2,
          "predictions equal what real DataLoaders hold, measured with a stalled loop",
          act_matches_measurement, judge_matches_measurement, timeout_s=90,
          hint="Run the stalled-consumer cell of this notebook with your own configuration "
               "and compare its measurement with your function's answer."),
]

EXERCISE = Exercise(
    name="bytes_in_flight", title="predict_bytes_in_flight", subjects=(SUBJECT,), checks=CHECKS,
    hints=[
        "Work it out in two steps: how many bytes one batch takes, then how many batches exist "
        "at the same time while your loop holds one.",
        "One batch is `batch_size * math.prod(sample_shape) * bytes per element`, and "
        "`torch.tensor([], dtype=dtype).element_size()` gives the bytes per element. Section 5, "
        "'Batches in flight', measured how many batches a stalled loader holds.",
        "Count `num_workers * prefetch_factor` prefetched batches (none when `num_workers == "
        "0`), plus 1 in use, plus 1 more when `pin_memory` is true; return that count times "
        "the bytes of one batch, as an int.",
    ])


def check_bytes_in_flight(predict_bytes_in_flight, *checks: str) -> None:
    """Check the learner's `predict_bytes_in_flight` against set values and real DataLoaders."""
    __tracebackhide__ = True
    run_exercise(EXERCISE, {SUBJECT: predict_bytes_in_flight}, checks)
