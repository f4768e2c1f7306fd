"""02_workers_and_pinning: `seed_worker`, a `worker_init_fn` that gives each worker its own draws.

Contract: `seed_worker(worker_id)` is passed as `DataLoader(..., worker_init_fn=seed_worker)`.
PyTorch calls it in every worker process, after it has seeded that worker's `torch`, `random` and
legacy `np.random` from the worker's seed (`get_worker_info().seed`: the loader's base seed, drawn
from its `generator` each time workers start, plus the worker id), and before the worker loads
anything. The dataset (`get_worker_info().dataset`, the worker's own copy) draws its random
augmentations from `dataset.rng`, a NumPy `Generator` made in `__init__`, so every worker starts
with a copy of the same state. `seed_worker` replaces the worker's `dataset.rng` with a Generator
seeded from the worker's seed, so that the workers draw different augmentations, the same ones
again for a loader with the same `generator` seed, and new ones every epoch (workers restart each
epoch with a new base seed unless `persistent_workers=True`).

The checks run `AugmentDraws` (item i is `[i, worker id, one draw from dataset.rng]`, drawn from
2**62 values so that two streams never agree by chance) through fork and spawn DataLoaders, and
compare the draws in the parent. A function pickle cannot find by module and name (a lambda, a
function made inside another function) fails under spawn in the learner's own module; the child
exposes the learner's objects under their names, which would hide that, so the spawn check
pickles the function under its original name first and reports pickle's own error.
"""

from __future__ import annotations

import pickle
import types

import numpy as np

from autograder.engine.check_report import run_exercise
from autograder.engine.spec import Check, Exercise, Fail

SUBJECT = "seed_worker"
INIT_SEED = 2024  # the seed of the Generator the dataset makes in __init__
BATCH = 2
PER_WORKER = 4  # batches each worker builds in one epoch
HIGH = 2**62  # draws are integers in [0, HIGH)


class AugmentDraws:
    """`n` items; item i is `[i, worker id (-1 in the main process), a draw from self.rng]`.

    The draw stands for what a random augmentation uses (a crop offset, a flip); `self.rng` is
    made in `__init__`, as in the notebook's dataset. No torch import at module level: spawn
    workers unpickle this class by importing this module.
    """

    def __init__(self, n: int, seed: int = INIT_SEED):
        self.n = n
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        # lazy: ~2 s, and the grader imports every exercise without needing it
        from torch.utils.data import get_worker_info

        if i < 0 or i >= self.n:
            raise IndexError(i)
        info = get_worker_info()
        worker = -1 if info is None else info.id
        return np.array([i, worker, self.rng.integers(0, HIGH)], dtype=np.int64)


def untouched_draws(count: int) -> list[int]:
    """The first `count` draws of the dataset's own generator: what a worker draws when
    `seed_worker` leaves `dataset.rng` as `__init__` made it."""
    rng = np.random.default_rng(INIT_SEED)
    return [int(rng.integers(0, HIGH)) for _ in range(count)]


# ----------------------------------------------------------------------------- in the child


def _loader_text(workers: int, seed: int, context: str) -> str:
    return (f"DataLoader(dataset, batch_size={BATCH}, num_workers={workers}, "
            f"worker_init_fn=seed_worker, generator=torch.Generator().manual_seed({seed}), "
            f"multiprocessing_context={context!r})")


def _one_epoch(loader) -> np.ndarray:
    """Every row of one pass. When `seed_worker` raises, the workers are stopped here: left to
    the garbage collector (the error's traceback holds the iterator), they take 5 s each."""
    batches = iter(loader)
    try:
        return np.concatenate([np.asarray(batch) for batch in batches])
    finally:
        shutdown = getattr(batches, "_shutdown_workers", None)  # private; guarded
        if shutdown is not None:
            shutdown()


def _epochs(ctx, submission, *, workers: int, seed: int, context: str = "fork",
            epochs: int = 1) -> list[np.ndarray]:
    """Rows `[i, worker, draw]` of each epoch of one loader, in index order."""
    import torch  # lazy: ~2 s, and the grader imports every exercise without needing it
    from torch.utils.data import DataLoader  # lazy: as above

    loader = DataLoader(AugmentDraws(workers * PER_WORKER * BATCH), batch_size=BATCH,
                        num_workers=workers, worker_init_fn=submission[SUBJECT],
                        generator=torch.Generator().manual_seed(seed),
                        multiprocessing_context=context)

    def run() -> list[np.ndarray]:
        return [_one_epoch(loader) for _ in range(epochs)]

    what = "two epochs of " if epochs == 2 else ""
    return ctx.call(f"iterating {what}{_loader_text(workers, seed, context)}", run)


def _distinct(ctx, submission, workers: int, seed: int, context: str) -> dict:
    (rows,) = _epochs(ctx, submission, workers=workers, seed=seed, context=context)
    ctx.save_array("rows", rows)
    return {"workers": workers, "seed": seed, "context": context}


def act_distinct_workers(ctx, submission):
    return _distinct(ctx, submission, 2, 7, "fork")


def act_distinct_three_workers(ctx, submission):
    return _distinct(ctx, submission, 3, 12345, "fork")


def pickle_problem(fn) -> str:
    """Pickle's error for `fn` under the name it was defined with, or '' when it pickles.

    In the child every learner object is importable under its variable's name; a `spawn` worker
    started from the learner's own module finds a function only under the name its code was
    compiled with (`co_qualname`), which for a lambda is `<lambda>`. The copy pickled here says
    it comes from `__main__`, as a notebook's functions do, so the error reads as it would there.
    """
    code = getattr(fn, "__code__", None)
    original = getattr(code, "co_qualname", None)
    if not isinstance(fn, types.FunctionType) or not original or original.isidentifier():
        return ""
    clone = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__,
                               fn.__closure__)
    clone.__qualname__, clone.__module__ = original, "__main__"
    try:
        pickle.dumps(clone)
    except Exception as e:  # PicklingError, or AttributeError for a local object
        return f"{type(e).__name__}: {e}"
    return ""


def act_distinct_spawn_workers(ctx, submission):
    problem = pickle_problem(submission[SUBJECT])
    if problem:  # what the learner's own spawn DataLoader would raise; no worker started
        return {"pickle_error": problem, "kind": "a lambda"
                if submission[SUBJECT].__code__.co_qualname.endswith("<lambda>")
                else "a function defined inside another function"}
    return _distinct(ctx, submission, 2, 7, "spawn")


def _follows(ctx, submission, seed: int, other: int) -> dict:
    for key, s in (("a", seed), ("b", seed), ("c", other)):
        (rows,) = _epochs(ctx, submission, workers=2, seed=s)
        ctx.save_array(key, rows)
    return {"seed": seed, "other": other}


def act_follows_the_loader_seed(ctx, submission):
    return _follows(ctx, submission, 7, 8)


def act_follows_other_seeds(ctx, submission):
    return _follows(ctx, submission, 0, 2**40 + 3)


def act_new_draws_each_epoch(ctx, submission):
    first, second = _epochs(ctx, submission, workers=2, seed=7, epochs=2)
    ctx.save_array("first", first)
    ctx.save_array("second", second)
    return {"seed": 7}


# ----------------------------------------------------------------------------- in the parent


def _streams(rows: np.ndarray) -> dict[int, list[int]]:
    """Each worker's draws, in the order it drew them (index order within a worker)."""
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    return {int(w): [int(d) for d in rows[rows[:, 1] == w, 2]] for w in np.unique(rows[:, 1])}


def _shown(draws: list[int], k: int = 2) -> str:
    return ", ".join(f"{d:,}" for d in draws[:k]) + ", ..."


def _judge_distinct(hidden: bool):
    def judge(trace) -> None:
        data = trace.data
        if "pickle_error" in data:
            raise Fail(f"`seed_worker` is {data['kind']}. A `spawn` worker receives "
                       "`worker_init_fn` pickled, by module and name, and pickle cannot find it "
                       "by name: in a notebook (or any module) a spawn DataLoader raises "
                       f"`{data['pickle_error']}`. Define it with `def seed_worker(worker_id):` "
                       "at the top level of a module (or pass `functools.partial` of such a "
                       "function).")
        workers, context = data["workers"], data["context"]
        seen = f"with {workers} `{context}` workers"
        rows = trace.arrays["rows"]
        streams = _streams(rows)
        if len(rows) != workers * PER_WORKER * BATCH or sorted(streams) != list(range(workers)):
            raise Fail(f"{seen}, the loader returned {len(rows)} items from workers "
                       f"{sorted(streams)}: it should return every item once, from every worker; "
                       "`seed_worker` should change only `dataset.rng`.")
        untouched = untouched_draws(PER_WORKER * BATCH)
        if all(s == untouched[:len(s)] for s in streams.values()):
            raise Fail(f"{seen}, every worker drew exactly what the generator made in `__init__` "
                       f"draws ({_shown(streams[0])}): `seed_worker` left the worker's "
                       "`dataset.rng` as it was, a copy of the main process's generator. "
                       "Seeding `np.random`, `random` or `torch` does not change a `Generator` "
                       "object; replace `dataset.rng` itself.")
        first = streams[0]
        if all(s == first for s in streams.values()):
            why = ("" if hidden else " Seed it from something that differs per worker and per "
                   "run: `get_worker_info().seed`.")
            raise Fail(f"{seen}, every worker drew the same sequence ({_shown(first)}), not the "
                       "one of the generator made in `__init__`: `seed_worker` gave every "
                       f"worker a generator with the same seed.{why}")
        for w in range(workers):
            for v in range(w + 1, workers):
                shared = set(streams[w]) & set(streams[v])
                if shared:
                    raise Fail(f"{seen}, workers {w} and {v} drew {len(shared)} of the same "
                               f"values ({len(streams[w])} draws each): their streams overlap, "
                               "so their augmentations repeat each other. Give each worker a "
                               "generator seeded from its own seed, not a shifted copy of one "
                               "stream.")
    judge.__name__ = "judge_distinct" + ("_hidden" if hidden else "")
    return judge


def _same_items(x: np.ndarray, y: np.ndarray) -> int:
    return int(np.sum(x[:, 2] == y[:, 2])) if x.shape == y.shape else 0


def _judge_follows(hidden: bool):
    def judge(trace) -> None:
        seed, other = trace.data["seed"], trace.data["other"]
        a, b, c = (trace.arrays[k] for k in "abc")
        n = len(a)
        if a.shape != b.shape or _same_items(a, b) != n:
            why = ("" if hidden else " Derive the generator's seed from the worker's seed, "
                   "`get_worker_info().seed`, which the loader's generator decides; "
                   "`default_rng()` with no seed takes fresh entropy from the system.")
            raise Fail(f"two loaders, each with `generator=torch.Generator().manual_seed({seed})`"
                       f", drew different augmentations for {n - _same_items(a, b)} of {n} "
                       f"items: a run with the same seed cannot be repeated.{why}")
        same = _same_items(a, c)
        if same:
            why = ("" if hidden else " A seed computed from `worker_id` alone, or fixed in "
                   "advance, is the same whatever the loader's seed; `get_worker_info().seed` "
                   "follows it.")
            raise Fail(f"loaders seeded {seed} and {other} drew the same augmentation for "
                       f"{same} of {n} items: the workers' generators ignore the loader's "
                       f"`generator`.{why}")
    judge.__name__ = "judge_follows" + ("_hidden" if hidden else "")
    return judge


def judge_new_draws_each_epoch(trace) -> None:
    first, second = trace.arrays["first"], trace.arrays["second"]
    n = len(first)
    same = _same_items(first, second)
    if same:
        raise Fail(f"epoch 2 of one loader (2 `fork` workers) drew the same augmentation as "
                   f"epoch 1 for {same} of {n} items, so the model sees the same augmented "
                   "images every epoch. Each epoch starts new workers (unless "
                   "`persistent_workers=True`), and a generator seeded from `worker_id` alone, "
                   "or from a number fixed before the loader started, starts the same way each "
                   "time; `get_worker_info().seed` changes every epoch.")


CHECKS = [
    Check("worker_seeding_distinct_workers", 2,
          "two `fork` workers draw different augmentations",
          act_distinct_workers, _judge_distinct(False),
          hint="Each worker holds its own copy of the dataset, generator included: in "
               "`seed_worker`, replace that copy's generator with one seeded from something "
               "that differs from worker to worker."),
    Check("worker_seeding_follows_the_loader_seed", 1,
          "loaders with the same `generator` seed draw the same augmentations, another seed "
          "draws others",
          act_follows_the_loader_seed, _judge_follows(False),
          hint="Seed the generator from `get_worker_info().seed`: the loader's generator "
               "decides it, so the same seed gives the same draws."),
    Check("worker_seeding_new_draws_each_epoch", 1,
          "a second epoch draws new augmentations",
          act_new_draws_each_epoch, judge_new_draws_each_epoch,
          hint="`worker_id` is the same every epoch; `get_worker_info().seed` is not."),
    Check("worker_seeding_distinct_three_workers", 1,
          "three `fork` workers draw different augmentations",
          act_distinct_three_workers, _judge_distinct(True), hidden=True,
          extends="distinct_workers",
          hint="Seed each worker's generator from that worker's own seed."),
    Check("worker_seeding_follows_other_seeds", 1,
          "the draws follow other `generator` seeds too",
          act_follows_other_seeds, _judge_follows(True), hidden=True,
          extends="follows_the_loader_seed",
          hint="Use the whole worker seed, whatever its size."),
    Check("worker_seeding_distinct_spawn_workers", 1,
          "two `spawn` workers, which receive `seed_worker` pickled, draw different "
          "augmentations",
          act_distinct_spawn_workers, _judge_distinct(False), timeout_s=120,
          hint="A spawn worker gets `seed_worker` pickled and must give its own dataset copy a "
               "generator of its own, as a fork worker does; pickle finds only a function "
               "defined with `def` at the top level (no lambda, not inside another function)."),
]

EXERCISE = Exercise(
    name="worker_seeding", title="seed_worker", subjects=(SUBJECT,), checks=CHECKS,
    hints=[
        "The worker's copy of the dataset still holds the generator made in `__init__`, the "
        "same state in every worker. Which number does PyTorch already make different for each "
        "worker, and for each epoch, from the loader's `generator`?",
        "`torch.utils.data.get_worker_info()`, called inside a worker, returns `.id`, `.seed` "
        "(base seed + worker id, new every epoch) and `.dataset` (this worker's copy). "
        "`np.random.default_rng(seed)` makes a Generator from any non-negative int.",
        "`info = get_worker_info()`, then `info.dataset.rng = np.random.default_rng(info.seed)`."
        " Keep it a plain `def` at the top level so spawn workers can unpickle it.",
    ],
)


def check_worker_seeding(seed_worker, *checks: str) -> None:
    """Check the learner's `seed_worker` in a fresh process (all checks, or those named)."""
    __tracebackhide__ = True
    run_exercise(EXERCISE, {SUBJECT: seed_worker}, checks)
