"""07_beyond_one_machine: `choose_samples_per_shard`, a shard size that fits an HTTP budget.

Contract::

    def choose_samples_per_shard(n_samples: int, world_size: int, num_workers: int,
                                 max_requests: int) -> int

Return how many samples to put in each shard (the last shard may hold fewer) so that, when the
`n_samples` are written as tar shards and one epoch is streamed over HTTP by `world_size` ranks,
each with `num_workers` DataLoader workers (`num_workers=0`: the main process reads, one
consumer per rank), splitting whole shards among themselves:

1. the epoch makes at most `max_requests` HTTP requests (one GET per shard);
2. every consumer (rank x worker) gets at least one shard: no worker sits idle;

and, among the sizes that meet both, the smallest (the most shards), because more shards give
a finer shuffle and a more even split. When no size meets both (more consumers than the budget
allows shards, or than there are samples), raise ValueError with a sentence saying why.

The answer is judged on the shards actually written: `k` samples per shard make
`ceil(n_samples / k)` shards, which can be fewer than `max_requests` (60 samples and a budget of
18 give 4 per shard and 15 shards), so a budget equal to the number of consumers is not always
enough (10 samples, 6 consumers, 6 requests: 2 per shard make 5 shards, 1 per shard 10).

Return type: an `int`; NumPy integers are accepted (`np.int64` is a whole number). A `float`
(`7.0`, what `/` and `np.ceil` return) and a `bool` are refused with a message; an integral
float is still measured, so only `meets_request_budget` deducts for its type.

The checks measure: in the check child they write the fixture's images (3x8x8 uint8, unique
labels) as tar shards with `memcourse.shards.write_shards` and the learner's size, serve the
folder with a real HTTP server (`memcourse.objectstore.HTTPStore`), and stream one epoch with
`memcourse.shards.samples_in_shard` over `http://` URLs for the whole (rank, worker) grid,
simulated in one process and split as webdataset's `split_by_node` then `split_by_worker` split
the shard list (rank r reads `urls[r::world_size]`, and its worker w every `num_workers`-th of
those from the w-th: every consumer gets a shard exactly when there are at least as many shards
as consumers). They record the GETs the server counted, the shards written and the samples each
consumer received; the judges compare with the rule computed in the parent
(`reference_samples_per_shard`) and with the fixture's own labels (every sample exactly once).
The budget is judged on GETs, the requests that read data (`samples_in_shard` sends no other kind;
a reader that let fsspec ask for each file's size would add a HEAD per shard).
"""

from __future__ import annotations

import math
import numbers
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np

from autograder.engine.check_report import run_exercise
from autograder.engine.context import LearnerRaised
from autograder.engine.spec import Check, Exercise, Fail
from autograder.exercises import _fixtures as fixtures
from memcourse.objectstore import HTTPStore

SUBJECT = "choose_samples_per_shard"
IMAGES = "images"
FIXTURE_SHAPE = (400, 8, 8)  # samples, height, width: every case uses the first n samples
FIXTURE_SEED = 11  # `images_h5`'s default seed: the labels are `fixture_labels(400, 11)`


def make_fixtures() -> dict[str, str]:
    return {IMAGES: str(fixtures.images_h5(*FIXTURE_SHAPE, seed=FIXTURE_SEED))}


def _count(n: int, noun: str) -> str:
    """"1 shard", "2 shards"."""
    return f"{n} {noun}{'s' * (n != 1)}"


def _were(n: int) -> str:
    return "was" if n == 1 else "were"


@dataclass(frozen=True)
class Case:
    """One call: the samples, the ranks, the DataLoader workers per rank and the budget."""

    n_samples: int
    world_size: int
    num_workers: int
    max_requests: int

    @property
    def consumers(self) -> int:
        """Readers that split the shards: every worker of every rank (one per rank without
        workers)."""
        return self.world_size * max(1, self.num_workers)

    @property
    def call(self) -> str:
        return (f"{SUBJECT}(n_samples={self.n_samples}, world_size={self.world_size}, "
                f"num_workers={self.num_workers}, max_requests={self.max_requests})")

    @property
    def grid(self) -> str:
        """The consumers in words: "6 consumers (2 ranks x 3 workers)"."""
        if self.num_workers == 0:
            return (f"{_count(self.consumers, 'consumer')} ({_count(self.world_size, 'rank')}, "
                    "each reading in its main process)")
        return (f"{_count(self.consumers, 'consumer')} ({_count(self.world_size, 'rank')} x "
                f"{_count(self.num_workers, 'worker')})")

    def consumer(self, c: int) -> str:
        """Consumer c in words: "rank 1, worker 2" (or "rank 1" without workers)."""
        if self.num_workers == 0:
            return f"rank {c}"
        return f"rank {c // self.num_workers}, worker {c % self.num_workers}"


def reference_samples_per_shard(n_samples: int, world_size: int, num_workers: int,
                                max_requests: int) -> int:
    """The rule, as the parent computes it: the fewest samples per shard whose shard count
    `ceil(n_samples / k)` stays within `max_requests`, provided those shards are at least one per
    consumer.

    That k is `ceil(n_samples / min(max_requests, n_samples))`; any larger k writes no more
    shards, so when its shards are fewer than the consumers no size works. Raises ValueError
    then, and for counts below 1 (`num_workers` below 0).
    """
    if min(n_samples, world_size, max_requests) < 1 or num_workers < 0:
        raise ValueError("n_samples, world_size and max_requests must be at least 1 and "
                         "num_workers at least 0")
    consumers = world_size * max(1, num_workers)
    per_shard = -(-n_samples // min(max_requests, n_samples))
    shards = -(-n_samples // per_shard)
    if shards < consumers:
        raise ValueError(f"{consumers} consumers need at least {consumers} shards, but "
                         f"{n_samples} samples within {max_requests} requests make at most "
                         f"{shards}")
    return per_shard


def reference_for(case: Case) -> int | None:
    """The reference's answer for `case`, or None when no size meets both limits."""
    try:
        return reference_samples_per_shard(case.n_samples, case.world_size, case.num_workers,
                                           case.max_requests)
    except ValueError:
        return None


def shards_for(n_samples: int, per_shard: int) -> int:
    """How many shards `per_shard` samples each make of `n_samples`."""
    return math.ceil(n_samples / per_shard)


# What each check calls. The visible checks share one call; the hidden ones rerun them on other
# parameter sets. Each comment gives the reference's answer.
VISIBLE = Case(130, 2, 3, 20)  # 6 consumers; 7 per shard -> 19 shards (6 per shard -> 22)
IMPOSSIBLE = [
    Case(100, 2, 4, 6),  # 8 consumers, but only 6 requests
    Case(5, 2, 4, 100),  # 8 consumers, but only 5 samples
]
OTHER_CASES = [
    Case(50, 3, 0, 7),  # no workers: 3 consumers; 8 per shard -> 7 shards
    Case(48, 2, 4, 8),  # a budget exactly equal to the 8 consumers: 6 per shard -> 8 shards
    Case(60, 1, 2, 18),  # uneven: 4 per shard -> 15 shards (no size gives exactly 18)
    Case(48, 2, 2, 12),  # even: 4 per shard -> 12 shards
    Case(12, 1, 2, 30),  # a budget above the samples: 1 per shard -> 12 shards
    Case(400, 4, 2, 23),  # large and uneven: 18 per shard -> 23 shards (17 -> 24)
]
OTHER_IMPOSSIBLE = [
    Case(50, 4, 0, 3),  # no workers: 4 ranks, 3 requests
    Case(10, 2, 3, 6),  # budget == 6 consumers, yet 2 per shard make 5 shards, 1 per shard 10
    Case(3, 1, 4, 10),  # 4 workers, 3 samples
]


# ----------------------------------------------------------------------------- in the child


def _plain(value) -> dict:
    """The learner's return value as JSON-able data: kind "int" (Python or NumPy), or another
    kind, with its value as a float when it is a real number (a string "7" is not)."""
    if isinstance(value, (bool, np.bool_)):
        return {"kind": "bool", "value": None, "shown": repr(bool(value))}
    if isinstance(value, (int, np.integer)):
        return {"kind": "int", "value": int(value), "shown": str(int(value))}
    kind = type(value).__name__
    if isinstance(value, numbers.Real):  # float, np.float64, Fraction...: a value to measure
        number = float(value)
        return {"kind": kind, "value": number if math.isfinite(number) else None,
                "shown": repr(number)}
    shown = repr(value)
    return {"kind": kind, "value": None,
            "shown": shown if len(shown) <= 60 else shown[:57] + "..."}


def _usable(answer: dict) -> int | None:
    """The number of samples per shard to measure: a whole number of at least 1, else None."""
    value = answer.get("value")
    if answer.get("kind") == "bool" or value is None or value != int(value) or value < 1:
        return None
    return int(value)


def _epoch(ctx, case: Case, per_shard: int, key: str) -> dict:
    """Write the first `case.n_samples` fixture samples as shards of `per_shard`, serve them over
    HTTP and stream one epoch for every consumer; return what the server and readers saw.

    Saves `labels_{key}` (every label received, in order) and `consumer_{key}` (who got it).
    """
    # lazy: memcourse.shards imports webdataset, which imports torch (~2 s without the zygote)
    from memcourse.shards import samples_in_shard, write_shards

    folder = tempfile.mkdtemp(prefix="shards-", dir=ctx.workdir)
    try:
        paths = write_shards(ctx.fixtures[IMAGES], folder, per_shard, n=case.n_samples)
        workers = max(1, case.num_workers)
        labels: list[int] = []
        who: list[int] = []
        with HTTPStore(folder) as store:
            store.reset()
            for rank in range(case.world_size):
                # As webdataset's split_by_node, then split_by_worker: whole shard URLs.
                mine = paths[rank::case.world_size]
                for worker in range(workers):
                    for path in mine[worker::workers]:
                        for _image, label in samples_in_shard(store.url_for(path.name)):
                            labels.append(label)
                            who.append(rank * workers + worker)
            traffic = store.traffic()
        ctx.save_array(f"labels_{key}", np.asarray(labels, dtype=np.int64))
        ctx.save_array(f"consumer_{key}", np.asarray(who, dtype=np.int64))
        per_consumer = np.bincount(np.asarray(who, dtype=np.int64), minlength=case.consumers)
        return {"shards": len(paths), "gets": traffic.gets, "requests": traffic.requests,
                "samples_per_consumer": [int(n) for n in per_consumer]}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(ctx, submission, cases: list[Case]) -> dict:
    """Call the learner's function on each case and, for a usable answer, measure its epoch.

    A raised exception is recorded, not passed on: raising is the right answer for an
    impossible case, and a judge can say what was raised where an answer exists.
    NotImplementedError still ends the check as not attempted.
    """
    results = []
    for i, case in enumerate(cases):
        try:
            value = ctx.call(case.call, submission[SUBJECT], case.n_samples, case.world_size,
                             case.num_workers, case.max_requests)
        except LearnerRaised as e:
            results.append({"answer": {"kind": "raised", "type": type(e.error).__name__,
                                       "value_error": isinstance(e.error, ValueError),
                                       "message": str(e.error)[:300]}, "measured": None})
            continue
        answer = _plain(value)
        per_shard = _usable(answer)
        measured = None if per_shard is None else _epoch(ctx, case, per_shard, str(i))
        results.append({"answer": answer, "measured": measured})
    return {"results": results}


def act_meets_request_budget(ctx, submission):
    return _run(ctx, submission, [VISIBLE])


def act_keeps_every_worker_busy(ctx, submission):
    return _run(ctx, submission, [VISIBLE])


def act_most_shards(ctx, submission):
    return _run(ctx, submission, [VISIBLE])


def act_refuses_impossible(ctx, submission):
    return _run(ctx, submission, IMPOSSIBLE)


def act_other_cases(ctx, submission):
    return _run(ctx, submission, OTHER_CASES)


def act_refuses_other_impossible(ctx, submission):
    return _run(ctx, submission, OTHER_IMPOSSIBLE)


# ----------------------------------------------------------------------------- in the parent


def _results(trace, cases: list[Case]) -> list[tuple[Case, dict]]:
    """Each case with what the child recorded for it; checks that every sample arrived once.

    A sample missing or repeated cannot be the learner's doing (they chose only a number), so
    it raises RuntimeError: the verdict is then an error of the checker, not a failure.
    """
    pairs = list(zip(cases, trace.data["results"], strict=True))
    expected = fixtures.fixture_labels(FIXTURE_SHAPE[0], FIXTURE_SEED)
    for i, (case, got) in enumerate(pairs):
        if got["measured"] is None:
            continue
        seen = np.sort(trace.arrays[f"labels_{i}"])
        if not np.array_equal(seen, np.sort(expected[:case.n_samples])):
            raise RuntimeError(f"streaming {got['measured']['shards']} shards of "
                               f"{case.n_samples} samples returned {len(seen)} samples, not "
                               "each sample once")
    return pairs


def _raised(answer: dict) -> str:
    """"ValueError: the message", or the type alone when the message is empty."""
    return f"{answer['type']}: {answer['message']}" if answer["message"] else answer["type"]


def _returned(answer: dict) -> str:
    """The return value as shown, with its type where the value does not say it ("7.5 (a
    float)", "'7' (a str)"; "None", "0")."""
    if answer["kind"] in ("int", "bool", "NoneType"):
        return answer["shown"]
    return f"{answer['shown']} (a {answer['kind']})"


def _measured(case: Case, got: dict, hidden: bool, judges_type: bool = False) -> dict:
    """What the epoch of a case that has an answer measured; Fail when there is nothing to
    measure (the function raised, or returned no whole number of at least 1)."""
    answer = got["answer"]
    if answer["kind"] == "raised":
        if hidden:
            exists = "a size exists that meets both the budget and the consumers"
        else:
            k = reference_for(case)
            exists = (f"{k} samples per shard make {shards_for(case.n_samples, k)} shards, "
                      f"within {case.max_requests} requests and enough for the {case.grid}")
        raise Fail(f"`{case.call}` raised {_raised(answer)}, yet {exists}. "
                   "Raise only when no size meets both.")
    if got["measured"] is None:
        raise Fail(f"`{case.call}` returned {_returned(answer)}: return the "
                   "number of samples per shard, a whole number of at least 1.")
    if judges_type and answer["kind"] != "int":
        raise Fail(f"`{case.call}` returned {answer['shown']}, a {answer['kind']}: a number of "
                   "samples is a whole number, so return an int (`math.ceil` and `//` give one; "
                   "`/` and `np.ceil` give floats).")
    return got["measured"]


def _shards_of(per_shard: int, n_samples: int, shards: int) -> str:
    last = n_samples - per_shard * (shards - 1)
    tail = "" if last == per_shard else f", the last of {last}"
    return f"{_count(shards, 'shard')} of {per_shard}{tail}"


def _over_budget(case: Case, got: dict, m: dict, hidden: bool) -> None:
    if m["gets"] <= case.max_requests:
        return
    k = int(got["answer"]["value"])
    why = ("" if hidden else " Round the size up: rounding down leaves a remainder that spills "
           "into extra shards.")
    raise Fail(f"with {k} samples per shard, {case.n_samples} samples made "
               f"{_shards_of(k, case.n_samples, m['shards'])}, and one epoch over HTTP made "
               f"{_count(m['gets'], 'GET request')} (counted by the server) against a budget of "
               f"{case.max_requests}: every shard costs a request.{why}")


def _idle(case: Case, got: dict, m: dict, hidden: bool) -> None:
    idle = [c for c, n in enumerate(m["samples_per_consumer"]) if n == 0]
    if not idle:
        return
    k = int(got["answer"]["value"])
    named = "; ".join(case.consumer(c) for c in idle[:3]) + ("; ..." if len(idle) > 3 else "")
    why = ("" if hidden else " Each consumer reads whole shards, so there must be at least one "
           "shard per worker of every rank.")
    raise Fail(f"with {k} samples per shard, {_count(m['shards'], 'shard')} "
               f"{_were(m['shards'])} written for {case.grid}: {len(idle)} of them ({named}) "
               f"got no shard and sat idle for the whole epoch.{why}")


def _fewer_than_allowed(case: Case, got: dict, m: dict, hidden: bool) -> None:
    k, best = int(got["answer"]["value"]), reference_for(case)
    if k <= best:
        return
    seen = (f"with {k} samples per shard, {_count(m['shards'], 'shard')} {_were(m['shards'])} "
            f"written (the epoch made {_count(m['gets'], 'GET request')}), but the budget allowed "
            f"{case.max_requests} requests")
    if hidden:
        raise Fail(f"{seen}, and a smaller size also stays within it and keeps all "
                   f"{case.grid} busy.")
    raise Fail(f"{seen}: {best} per shard makes {shards_for(case.n_samples, best)} shards, which "
               f"stays within it and keeps all {case.grid} busy. More, smaller shards give a "
               "finer shuffle and a more even split: choose the smallest size that meets both.")


def judge_meets_request_budget(trace) -> None:
    for case, got in _results(trace, [VISIBLE]):
        _over_budget(case, got, _measured(case, got, False, judges_type=True), False)


def judge_keeps_every_worker_busy(trace) -> None:
    for case, got in _results(trace, [VISIBLE]):
        _idle(case, got, _measured(case, got, False), False)


def judge_most_shards(trace) -> None:
    for case, got in _results(trace, [VISIBLE]):
        _fewer_than_allowed(case, got, _measured(case, got, False), False)


def judge_other_cases(trace) -> None:
    """On other parameter sets, the size must be the right one: within the budget, no idle
    consumer, and no smaller size that also meets both."""
    for case, got in _results(trace, OTHER_CASES):
        m = _measured(case, got, True)
        _over_budget(case, got, m, True)
        _idle(case, got, m, True)
        _fewer_than_allowed(case, got, m, True)


def _judge_refuses(cases: list[Case], hidden: bool):
    def judge(trace) -> None:
        for case, got in _results(trace, cases):
            answer = got["answer"]
            if hidden:
                why = "no size meets both the budget and the consumers here"
            else:
                most = shards_for(case.n_samples,
                                  -(-case.n_samples // min(case.max_requests, case.n_samples)))
                why = (f"no size can work: {case.n_samples} samples within {case.max_requests} "
                       f"requests make at most {most} shards, fewer than the {case.grid}")
            if answer["kind"] == "raised":
                if not answer["value_error"]:
                    raise Fail(f"`{case.call}` raised {_raised(answer)}. "
                               f"Right to refuse, as {why}, but raise ValueError, the error "
                               "the contract names, so that callers can catch it.")
                if not answer["message"].strip():
                    raise Fail(f"`{case.call}` raised ValueError with no message: {why}; say "
                               "so in a sentence, so that whoever calls it knows what to change.")
                continue
            m = got["measured"]
            if m is None:
                raise Fail(f"`{case.call}` returned {answer['shown']} instead of raising "
                           f"ValueError: {why}.")
            idle = sum(1 for n in m["samples_per_consumer"] if n == 0)
            seen = [f"{_count(m['shards'], 'shard')} for {case.grid}"]
            if idle:
                seen.append(f"{idle} of them got no shard")
            if m["gets"] > case.max_requests:
                seen.append(f"{_count(m['gets'], 'GET request')} against a budget of "
                            f"{case.max_requests}")
            raise Fail(f"`{case.call}` returned {answer['shown']} instead of raising ValueError:"
                       f" its epoch gave {', '.join(seen)}. {why[0].upper()}{why[1:]}; say so "
                       "with a ValueError instead of returning a size that breaks a limit.")
    judge.__name__ = "judge_refuses" + ("_other" if hidden else "")
    return judge


CHECKS = [
    Check("shard_budget_meets_request_budget", 1,
          "one epoch over HTTP makes no more GET requests than `max_requests`",
          act_meets_request_budget, judge_meets_request_budget, fixtures=(IMAGES,),
          hint="Every shard costs one GET, so at most `max_requests` shards: round the samples "
               "per shard up (`math.ceil(n_samples / max_requests)`), and return an int."),
    Check("shard_budget_keeps_every_worker_busy", 1,
          "every worker of every rank gets at least one shard",
          act_keeps_every_worker_busy, judge_keeps_every_worker_busy, fixtures=(IMAGES,),
          hint="The shards are split whole among `world_size * max(1, num_workers)` consumers; "
               "fewer shards than consumers leaves some with nothing to read."),
    Check("shard_budget_most_shards", 1,
          "picks the smallest shards (the most shards) that meet both limits",
          act_most_shards, judge_most_shards, fixtures=(IMAGES,),
          hint="Aim for the budget, not for one shard per consumer: the fewest samples per "
               "shard whose shard count `ceil(n_samples / k)` stays within `max_requests`."),
    Check("shard_budget_refuses_impossible", 1,
          "raises ValueError when no shard size meets both limits",
          act_refuses_impossible, _judge_refuses(IMPOSSIBLE, False), fixtures=(IMAGES,),
          hint="Count the shards your size actually writes, `ceil(n_samples / k)`; when they "
               "are fewer than the consumers, `raise ValueError('...')` with a sentence."),
    Check("shard_budget_other_cases", 1,
          "picks the right size on other parameter sets (no workers, a budget equal to the "
          "consumers, uneven and large counts)",
          act_other_cases, judge_other_cases, fixtures=(IMAGES,), hidden=True,
          extends="most_shards", timeout_s=60,
          hint="`num_workers=0` is one consumer per rank; a budget equal to the consumers is "
               "enough when the shards written reach it; counts need not divide evenly."),
    Check("shard_budget_refuses_other_impossible", 1,
          "raises ValueError on other impossible parameter sets",
          act_refuses_other_impossible, _judge_refuses(OTHER_IMPOSSIBLE, True),
          fixtures=(IMAGES,), hidden=True, extends="refuses_impossible",
          hint="Compare the consumers with the shards actually written, not with "
               "`max_requests`: rounding up can leave fewer shards than the budget; and "
               "`num_workers=0` still means one consumer per rank."),
]

EXERCISE = Exercise(
    name="shard_budget", title="choose_samples_per_shard", subjects=(SUBJECT,), checks=CHECKS,
    make_fixtures=make_fixtures,
    hints=[
        "Two limits pull in opposite directions. Each shard costs one GET, so the budget caps "
        "how many shards there can be; each consumer (a worker of a rank) reads whole shards, "
        "so the consumers set a floor. Within them, more shards are better. Start by counting "
        "the consumers, with `num_workers=0` as one per rank.",
        "`consumers = world_size * max(1, num_workers)`. `k` samples per shard make "
        "`ceil(n_samples / k)` shards, which only shrinks as `k` grows, so the fewest samples "
        "per shard within the budget, `ceil(n_samples / min(max_requests, n_samples))`, also "
        "makes the most shards; if even those are fewer than the consumers, no size works.",
        "`per_shard = math.ceil(n_samples / min(max_requests, n_samples))`, then `shards = "
        "math.ceil(n_samples / per_shard)`; `if shards < consumers: raise ValueError(f'{consumers}"
        " consumers need {consumers} shards, but only {shards} fit the budget')`; "
        "`return per_shard`.",
    ],
)


def check_shard_budget(choose_samples_per_shard, *checks: str) -> None:
    """Check the learner's `choose_samples_per_shard` in a fresh process (all checks, or those
    named)."""
    __tracebackhide__ = True
    run_exercise(EXERCISE, {SUBJECT: choose_samples_per_shard}, checks)
