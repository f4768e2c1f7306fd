"""02_workers_and_pinning: `measure_throughput`, a small DataLoader benchmark the learner writes.

Contract: `measure_throughput(dataset, num_workers, batch_size=32, num_batches=20)` builds
`DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)`, fetches one batch per
worker (at least one) to warm up, since those include starting the workers, then times up to
`num_batches` further batches (fewer if the dataset ends first) and returns the samples in those
batches per second, as a float.

The checks feed it datasets whose items cost a known sleep, so the expected throughput does not
depend on how busy the machine's cores are, and compare its result with the reference function
run in the same child. Ratios are generous: the defects they catch are off by factors of 2 to 8.
The dataset given to the learner's function in the worker check logs which processes read its
items, so a wrong rate is blamed on `num_workers` only when every item was read in one process.
"""

from __future__ import annotations

import math
import os
import time

from autograder.engine.check_report import run_exercise
from autograder.engine.spec import Check, Exercise, Fail

SUBJECT = "measure_throughput"
ITEM_S = 0.004  # per item: 250 samples/s in one process, whatever the CPU load
LOW, HIGH = 0.6, 1.6  # accepted learner / reference ratios


class SleepyDataset:
    """Items that cost `item_s` seconds of waiting each (like a slow disk), plus `first_s`
    once per process (like opening files or importing libraries in a new worker).

    A plain map-style dataset (no torch import at module level); it counts the items it served
    in this process, which the checks read with num_workers=0.
    """

    def __init__(self, n: int, item_s: float = ITEM_S, first_s: float = 0.0,
                 log: str | None = None):
        self.n, self.item_s, self.first_s, self.log = n, item_s, first_s, log
        self.calls = 0
        self._started = False

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        import torch  # lazy: ~2 s, and the grader imports every exercise without needing it

        if i < 0 or i >= self.n:
            raise IndexError(i)
        if not self._started:
            self._started = True
            time.sleep(self.first_s)
        time.sleep(self.item_s)
        self.calls += 1
        if self.log is not None:  # one short append per item: which process read it
            fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, f"{os.getpid()}\n".encode())
            finally:
                os.close(fd)
        return torch.zeros(3, 4, 4), i


def reference_measure_throughput(dataset, num_workers: int, batch_size: int = 32,
                                 num_batches: int = 20) -> float:
    """The reference solution, run beside the learner's in the same child."""
    # lazy: ~2 s, and the grader imports every exercise without needing it
    from torch.utils.data import DataLoader

    batches = iter(DataLoader(dataset, batch_size=batch_size, num_workers=num_workers))
    for _ in range(max(1, num_workers)):  # warm-up: every worker starts and delivers once
        next(batches)
    samples, start = 0, time.perf_counter()
    for _, (images, _labels) in zip(range(num_batches), batches, strict=False):
        samples += len(images)
    elapsed = time.perf_counter() - start
    del batches  # stops the workers now, not at some later garbage collection
    return samples / elapsed


# ----------------------------------------------------------------------------- in the child


def _number(value) -> tuple[float | None, str]:
    """The learner's return value as a float, or None and a description of what it was."""
    if isinstance(value, bool):
        return None, "a bool"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, f"a {type(value).__name__}"
    if not math.isfinite(number):
        return None, repr(number)
    return number, type(value).__name__


def _compare(ctx, submission, dataset_factory, label: str, *, num_workers: int,
             batch_size: int, num_batches: int, references: int = 2,
             learner_dataset=None) -> dict:
    """Run reference, learner, reference (fresh datasets each time); return the numbers."""
    refs = []
    ref = reference_measure_throughput(dataset_factory(), num_workers, batch_size, num_batches)
    refs.append(ref)
    dataset = learner_dataset if learner_dataset is not None else dataset_factory()
    value = ctx.call(label, submission[SUBJECT], dataset, num_workers,
                     batch_size=batch_size, num_batches=num_batches)
    if references > 1:
        refs.append(reference_measure_throughput(dataset_factory(), num_workers, batch_size,
                                                 num_batches))
    number, kind = _number(value)
    return {"value": number, "kind": kind, "reference": sum(refs) / len(refs),
            "label": label, "batch_size": batch_size}


def act_samples_per_second(ctx, submission):
    return _compare(ctx, submission, lambda: SleepyDataset(400),
                    "measure_throughput(dataset, 0, batch_size=8, num_batches=8)",
                    num_workers=0, batch_size=8, num_batches=8)


def act_uses_num_workers(ctx, submission):
    # Three workers on waiting (not computing) items deliver about three times the rate of one
    # process on any machine, so a benchmark that ignores `num_workers` is off by a factor ~3.
    # The timed window is long (24 batches of 8 ms items) so that a benchmark whose clock also
    # covers stopping the workers, a few hundred ms on a busy machine, stays well inside bounds.
    log = ctx.workdir / "readers.log"
    data = _compare(ctx, submission, lambda: SleepyDataset(400, item_s=0.008),
                    "measure_throughput(dataset, 3, batch_size=8, num_batches=24)",
                    num_workers=3, batch_size=8, num_batches=24,
                    learner_dataset=SleepyDataset(400, item_s=0.008, log=str(log)))
    pids = log.read_text().split() if log.exists() else []
    return {**data, "low": 0.5, "items_read": len(pids), "readers": len(set(pids)),
            "read_in_main": sorted(set(pids)) == [str(os.getpid())]}


def act_skips_start_up(ctx, submission):
    # In the main process (0 workers), so stopping workers cannot blur the timing: the first
    # item costs half a second more, like a dataset that opens its files on first use.
    return _compare(ctx, submission, lambda: SleepyDataset(400, first_s=0.5),
                    "measure_throughput(dataset_with_slow_first_item, 0, batch_size=8, "
                    "num_batches=10)", num_workers=0, batch_size=8, num_batches=10,
                    references=1)


def act_stops_at_the_end(ctx, submission):
    # 29 items in batches of 8: a warm-up batch, then 8 + 8 + 5 samples, not 10 full batches.
    return _compare(ctx, submission, lambda: SleepyDataset(29),
                    "measure_throughput(dataset_of_29_items, 0, batch_size=8, num_batches=10)",
                    num_workers=0, batch_size=8, num_batches=10)


def act_reads_what_it_is_asked(ctx, submission):
    ds = SleepyDataset(400)
    value = ctx.call("measure_throughput(dataset, 0, batch_size=4, num_batches=5)",
                     submission[SUBJECT], ds, 0, batch_size=4, num_batches=5)
    number, kind = _number(value)
    return {"calls": ds.calls, "value": number, "kind": kind}


# ----------------------------------------------------------------------------- in the parent


def _judge_ratio(trace, what: str) -> None:
    data = trace.data
    label, ref, value = data["label"], data["reference"], data["value"]
    if value is None:
        raise Fail(f"`{label}` returned {data['kind']}; return the samples per second as a "
                   "float.")
    if value <= 0:
        raise Fail(f"`{label}` returned {value:g}; a throughput is a positive number of "
                   "samples per second.")
    ratio = value / ref
    if data.get("low", LOW) <= ratio <= HIGH:
        return
    seen = f"`{label}` returned {value:,.4g}, where the reference measured {ref:,.0f} samples/s"
    batch = data["batch_size"]
    if abs(ratio * batch - 1) < 0.35:
        raise Fail(f"{seen}: about {batch} times less, which looks like batches per second. "
                   "Count the samples in each batch (its length), not the batches.")
    if value < 1 and abs(value * ref - 1) < 0.5:
        raise Fail(f"{seen}: that looks like seconds per sample; return samples per second.")
    raise Fail(f"{seen} ({ratio:.2f} times as much). {what}")


def judge_samples_per_second(trace) -> None:
    _judge_ratio(trace, "Time only the batches after the warm-up batch, and divide the samples "
                        "they hold by the seconds they took.")
    # The type is judged here only; the other checks compare the number.
    kind = trace.data["kind"]
    if kind not in ("float", "float64", "float32"):
        article = "an" if kind[:1] in "aeiou" else "a"
        raise Fail(f"`{trace.data['label']}` returned {trace.data['value']:,.4g} as {article} "
                   f"{kind}: the rate is right, but return it as a float (do not round it).")


def judge_uses_num_workers(trace) -> None:
    """Blame `num_workers` only when every item was read in the calling process."""
    data = trace.data
    if data.get("read_in_main"):
        why = (f"All {data['items_read']} items it read were read in the calling process, by "
               "no worker: pass `num_workers` to the DataLoader, so three workers load items in "
               "parallel.")
    elif data.get("readers"):
        why = (f"Its {data['items_read']} items were read by {data['readers']} processes, so "
               "workers did run: the rate is off in how it is timed or counted. Time only the "
               "batches after the warm-up, one batch per worker, and divide the samples they "
               "hold by the seconds they took.")
    else:
        why = "It read no item of the dataset it was given."
    _judge_ratio(trace, why)


def judge_skips_start_up(trace) -> None:
    _judge_ratio(trace, "Here the first item costs half a second more (like opening files on "
                        "first use, or starting a worker): start the clock only after the "
                        "warm-up batch has arrived.")


def judge_stops_at_the_end(trace) -> None:
    _judge_ratio(trace, "When the dataset ends before `num_batches` batches, divide the samples "
                        "that did arrive (the last batch may be short) by the time they took.")


def judge_reads_what_it_is_asked(trace) -> None:
    data = trace.data
    if data["value"] is None:
        raise Fail(f"it returned {data['kind']}; return the samples per second as a float.")
    calls = data["calls"]
    expected = (1 + 5) * 4  # one warm-up batch (0 workers), then num_batches of batch_size
    if not expected - 4 <= calls <= expected + 4:
        raise Fail(f"asked for batches of 4, 0 workers and 5 timed batches, it read {calls} "
                   "items from the dataset: use the `batch_size` and `num_batches` arguments, "
                   "and stop after `num_batches` batches.")


CHECKS = [
    Check("measure_throughput_samples_per_second", 2,
          "returns samples per second, matching a reference measurement with 0 workers",
          act_samples_per_second, judge_samples_per_second,
          hint="`next(batches)` once per worker (at least once), then `start = "
               "time.perf_counter()`, add up `len(images)` over the next `num_batches` batches, "
               "and return `samples / elapsed`."),
    Check("measure_throughput_uses_num_workers", 1,
          "with 3 workers it measures what 3 workers deliver",
          act_uses_num_workers, judge_uses_num_workers, timeout_s=60,
          hint="`DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)`."),
    Check("measure_throughput_skips_start_up", 1,
          "the warm-up batch, which includes one-off start-up costs, is not timed",
          act_skips_start_up, judge_skips_start_up, timeout_s=60,
          hint="Take one batch per worker (at least one) before you start the clock."),
    Check("measure_throughput_stops_at_the_end", 1,
          "a dataset shorter than `num_batches` batches is measured on the samples it has",
          act_stops_at_the_end, judge_stops_at_the_end, hidden=True,
          extends="samples_per_second",
          hint="Loop with `zip(range(num_batches), batches)` or a `for` loop with a counter and "
               "`break`; count `len(images)` of each batch."),
    Check("measure_throughput_reads_what_it_is_asked", 1,
          "with 0 workers, reads one warm-up batch plus `num_batches` batches of "
          "`batch_size`, no more",
          act_reads_what_it_is_asked, judge_reads_what_it_is_asked,
          hint="Pass `batch_size` to the DataLoader and stop after `num_batches` timed batches."),
]

EXERCISE = Exercise(
    name="measure_throughput", title="measure_throughput", subjects=(SUBJECT,), checks=CHECKS,
    hints=[
        "Three phases: build the loader, take the batches that only measure start-up, then "
        "start the clock and count the samples in the batches that follow.",
        "`iter(DataLoader(dataset, batch_size=batch_size, num_workers=num_workers))` gives the "
        "batches one `next()` at a time; every worker delivers its first batch at about the same "
        "moment (section 2's sweep timed start-up with the rest), so skip `max(1, num_workers)` "
        "of them. `time.perf_counter()` is the clock.",
        "After the warm-up, `start = time.perf_counter()`; loop over `zip(range(num_batches), "
        "batches)` (it stops early when the dataset ends) and add `len(images)` of each batch; "
        "return `samples / (time.perf_counter() - start)`.",
    ],
)


def check_measure_throughput(measure_throughput, *checks: str) -> None:
    """Check the learner's `measure_throughput` in a fresh process (all checks, or those named)."""
    __tracebackhide__ = True
    run_exercise(EXERCISE, {SUBJECT: measure_throughput}, checks)
