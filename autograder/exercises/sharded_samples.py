"""07_beyond_one_machine: `ShardedSamples`, an `IterableDataset` that streams tar shards.

Contract (the notebook states it; keep these names):

```python
class ShardedSamples(torch.utils.data.IterableDataset):
    def __init__(self, shards, rank=0, world_size=1, seed=0): ...  # shards: list of paths (str)
    def set_epoch(self, epoch): ...  # called in the main process before each epoch
    def __iter__(self): ...  # yields (image, label) exactly as
                             # memcourse.shards.samples_in_shard(shard) yields them, for the
                             # shards this (rank, DataLoader worker) owns
```

For any `world_size`, `rank`, `num_workers` (0: the main process; inside a worker
`torch.utils.data.get_worker_info()` gives `.id` and `.num_workers`) and epoch, all ranks and
all their workers together yield every sample exactly once per epoch; more consumers
(`world_size * num_workers`) than shards works, the idle ones yielding nothing; the order changes
from epoch to epoch, and the same `(seed, epoch)` gives the same order (every rank must compute
the same shard permutation, or their shares overlap); it splits whole shards, not samples:
the one reader (rank and worker) that owns a shard streams it from start to end with one open
(over HTTP, one request), and no other reader opens it that epoch (an idle reader opens none;
taking every n-th sample of every shard yields each sample once but reads every shard n
times; the check counts readers per shard, not opens, since `tarfile.open(path)` alone opens
a file four times); it streams: one shard open at a time, memory flat, no shard
left open after an epoch; and it works in real `fork` and `spawn` DataLoader workers, which
receive a copy of the dataset after the main process's `set_epoch`.

Samples are told apart by their label: in the fixtures, sample `i`'s `cls` is `i`, its image a
(3, H, W) uint8 array drawn from `default_rng([seed, i])`, so the parent knows every sample
without reading the shards. Ranks and workers are simulated in one process: one dataset per
rank, and for each worker a pickled copy of it iterated while PyTorch's (private) worker-info
slot says which worker this is, as a real worker sees it; the fork and spawn checks then run
real DataLoader workers. Shard opens are counted by the parent (inotify on the check's own copy
of the fixture, between marks around each reader's pass), not by code in the learner's process.
An image of another type than samples_in_shard's (a uint8 tensor, say) is accepted: the checks
judge which samples arrive, not their container.
"""

from __future__ import annotations

import contextlib
import functools
import pickle
from pathlib import Path

import numpy as np

from autograder.engine.check_report import run_exercise
from autograder.engine.spec import Check, Exercise, Fail
from autograder.exercises import _dataset_contract as contract
from autograder.exercises import _fixtures as fixtures

SUBJECT = "ShardedSamples"
SMALL = "shards"  # 13 shards of 6 samples (the last of 3): every rank/worker split is uneven
BIG = "big_shards"  # memory and open files: holding it all stands far above the noise
SMALL_LAYOUT = (75, 6, 12, 10)  # samples, per shard, height, width (non-square)
BIG_LAYOUT = (1000, 100, 128, 128)  # 10 shards of 4.7 MiB: 47 MiB of images
FIXTURE_SEED = 5
SEED = 3  # the dataset seed the visible checks use


def _shard_name(k: int) -> str:
    """The file name of shard `k`, as `memcourse.shards.SHARD_PATTERN` makes it."""
    return f"shard-{k:06d}.tar"


def fixture_image(i: int, height: int, width: int, seed: int = FIXTURE_SEED) -> np.ndarray:
    """Sample `i`'s image in a fixture: (3, height, width) uint8, the same on every call."""
    return np.random.default_rng([seed, i]).integers(0, 256, (3, height, width), dtype=np.uint8)


def shard_folder(n: int, per_shard: int, height: int, width: int,
                 seed: int = FIXTURE_SEED) -> Path:
    """A cached folder of `ceil(n / per_shard)` WebDataset tar shards, written once.

    Sample `i` is `{i:06d}.npy` (`fixture_image(i, ...)`) and `{i:06d}.cls` (`i`), written by
    `webdataset.ShardWriter` with fixed timestamps, as `memcourse.shards.write_shards` does.
    """
    path = fixtures.fixture_dir() / (f"v{fixtures.FIXTURE_VERSION}_shards_{n}x{height}x{width}"
                                     f"_per{per_shard}_{seed}")

    def write(tmp: Path) -> None:
        # lazy: webdataset imports torch (~2 s); only the first run writes fixtures
        import webdataset as wds

        # lazy: as above (memcourse.shards imports webdataset)
        from memcourse.shards import SHARD_MTIME, SHARD_PATTERN

        tmp.mkdir()
        with wds.ShardWriter(str(tmp / SHARD_PATTERN), maxcount=per_shard,
                             maxsize=float("inf"), verbose=0, mtime=SHARD_MTIME) as sink:
            for i in range(n):
                sink.write({"__key__": f"{i:06d}", "npy": fixture_image(i, height, width, seed),
                            "cls": i})

    return fixtures._atomic(path, write)


def make_fixtures() -> dict[str, str]:
    return {SMALL: str(shard_folder(*SMALL_LAYOUT)), BIG: str(shard_folder(*BIG_LAYOUT))}


class ReferenceShardedSamples:
    """The reference solution, measured beside the learner's in the same process.

    The notebook's solution subclasses `torch.utils.data.IterableDataset`; this copy does not,
    so that importing the module (every exercise is imported by the grader) imports no torch.
    """

    def __init__(self, shards, rank=0, world_size=1, seed=0):
        self.shards, self.rank, self.world_size, self.seed = list(shards), rank, world_size, seed
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        from torch.utils.data import get_worker_info  # lazy: torch, ~2 s

        from memcourse.shards import samples_in_shard  # lazy: imports webdataset and torch

        info = get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.shards))
        consumer = self.rank * num_workers + worker
        consumers = self.world_size * num_workers
        for s in order[consumer::consumers]:
            yield from samples_in_shard(self.shards[s])


# ----------------------------------------------------------------------------- in the child

_END = object()


def _shards(ctx, fixture: str, count: int | None = None) -> list[str]:
    """The fixture's shard paths (str), in order; the first `count` of them when given."""
    from memcourse.shards import shard_paths  # lazy: imports webdataset and torch

    paths = [str(p) for p in shard_paths(ctx.fixtures[fixture])]
    return paths if count is None else paths[:count]


def _build(ctx, submission, shards, rank: int = 0, world_size: int = 1, seed: int = SEED):
    return ctx.call(f"{SUBJECT}(shards, rank={rank}, world_size={world_size}, seed={seed})",
                    submission[SUBJECT], shards, rank=rank, world_size=world_size, seed=seed)


def _set_epoch(ctx, ds, epoch: int, who: str = "ds") -> None:
    # The lookup inside the call: a missing `set_epoch` is the learner's AttributeError.
    ctx.call(f"{who}.set_epoch({epoch})", lambda: ds.set_epoch(epoch))


def _label(item) -> int:
    """The item's label as an int; BAD_LABEL when the item is no (image, label) pair."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        return contract.BAD_LABEL
    return contract._as_int(item[1])


def _labels(ds) -> list[int]:
    """Every label one pass over `ds` yields (called through ctx.call: the learner's code)."""
    return [_label(item) for item in ds]


@contextlib.contextmanager
def _as_worker(worker: int, num_workers: int, dataset):
    """Make `get_worker_info()` describe worker `worker` of `num_workers` holding `dataset`.

    PyTorch sets this module-level slot in each real worker process; setting it here lets one
    process stand in for every (rank, worker) pair. It is private API, so it is restored even
    when the learner's code raises.
    """
    from torch.utils.data._utils import worker as torch_worker  # lazy: torch, ~2 s

    torch_worker._worker_info = torch_worker.WorkerInfo(
        id=worker, num_workers=num_workers, seed=1000 + worker, dataset=dataset)
    try:
        yield
    finally:
        torch_worker._worker_info = None


def _copy(ds):
    """What a worker receives: a pickled copy; the object itself when it cannot be pickled
    (fork workers get a copy without pickling; the spawn check reports pickling problems)."""
    try:
        return pickle.loads(pickle.dumps(ds))
    except Exception:
        return ds


def _grid(ctx, submission, world: int, workers: int, epochs: tuple[int, ...],
          shard_count: int | None = None, seed: int = SEED, prefix: str = "",
          marks: bool = False) -> dict:
    """One dataset per rank; per epoch, `set_epoch` on each, then each worker iterates a copy.

    Saves the labels of each (epoch, rank, worker) as `{prefix}e{epoch}_r{rank}_w{worker}`.
    With `marks`, the parent is asked to measure just before and just after each reader's
    iteration (marks `{key}_start` and `{key}`), so the opens of mark `{key}` are the shard
    files that reader opened.
    """
    shards = _shards(ctx, SMALL, shard_count)
    ranks = [_build(ctx, submission, shards, rank=r, world_size=world, seed=seed)
             for r in range(world)]
    for e in epochs:
        for r, ds in enumerate(ranks):
            _set_epoch(ctx, ds, e, f"rank {r}'s dataset")
            for w in range(max(workers, 1)):
                key = f"{prefix}e{e}_r{r}_w{w}"
                where = (f"iterating rank {r}'s dataset (world_size={world}) in the main "
                         f"process, epoch {e}") if workers == 0 else (
                    f"iterating rank {r}'s dataset (world_size={world}) as worker {w} of "
                    f"{workers}, epoch {e}")
                reader = ds if workers == 0 else _copy(ds)
                if marks:
                    ctx.mark(f"{key}_start")
                as_reader = (contextlib.nullcontext() if workers == 0 else
                             _as_worker(w, workers, reader))
                with as_reader:
                    labels = ctx.call(where, _labels, reader)
                if marks:
                    ctx.mark(key)
                ctx.save_array(key, np.array(labels, dtype=np.int64))
    return {"grids": [{"world": world, "workers": workers, "epochs": list(epochs),
                       "shards": len(shards)}]}


def _grids(ctx, submission, grids, marks: bool = False) -> dict:
    """Several grids, each saved (and marked) under its own prefix `g{k}_`."""
    out = {"grids": []}
    for k, (world, workers, epochs, count) in enumerate(grids):
        data = _grid(ctx, submission, world, workers, epochs, count, prefix=f"g{k}_",
                     marks=marks)
        out["grids"] += data["grids"]
    return out


def act_once(ctx, submission):
    """World 1, no workers: every item's label, image kind and pixel checksum."""
    _n, _per, height, width = SMALL_LAYOUT
    ds = _build(ctx, submission, _shards(ctx, SMALL))
    _set_epoch(ctx, ds, 0)
    weights = np.arange(1, 3 * height * width + 1, dtype=np.float64)
    labels, sums, kinds, pairs = [], [], [], True

    def run():
        nonlocal pairs
        for item in ds:
            labels.append(_label(item))
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                pairs = False
                kinds.append(contract._kind(item))
                sums.append(-1.0)
                continue
            kinds.append(contract._kind(item[0]))
            image = contract._numbers(item[0]).astype(np.float64).ravel()
            sums.append(float(image @ weights) if image.size == weights.size else -1.0)

    ctx.call("iterating ShardedSamples(shards) in the main process, epoch 0", run)
    ctx.save_array("labels", np.array(labels, dtype=np.int64))
    ctx.save_array("sums", np.array(sums, dtype=np.float64))
    distinct = []
    for k in kinds:  # a few distinct kinds, not one per sample
        if k not in distinct:
            distinct.append(k)
        if len(distinct) == 4:
            break
    return {"pairs": pairs, "kinds": distinct, "item_type": kinds[0]["type"] if kinds else ""}


def act_ranks_and_workers(ctx, submission):
    return _grid(ctx, submission, 2, 2, (0, 1))


def act_other_grids(ctx, submission):
    return _grids(ctx, submission, [(3, 3, (2, 5), None), (4, 1, (2, 5), None),
                                    (5, 2, (2, 5), 7)])


def act_more_consumers_than_shards(ctx, submission):
    return _grid(ctx, submission, 2, 3, (0, 1), shard_count=4)


def act_one_reader_per_shard(ctx, submission):
    """The 2 x 2 grid over 13 shards and the 2 x 3 grid over 4 (idle readers), each reader's
    iteration between two marks, so the parent counts which shard files each reader opened."""
    return _grids(ctx, submission, [(2, 2, (0, 1), None), (2, 3, (0,), 4)], marks=True)


def _order(ctx, submission, seed: int, first: int, count: int | None) -> dict:
    """One dataset through epochs `first` and `first + 1`, then a new one at `first + 1`."""
    shards = _shards(ctx, SMALL, count)
    a = _build(ctx, submission, shards, seed=seed)
    for key, e in (("a0", first), ("a1", first + 1)):
        _set_epoch(ctx, a, e)
        labels = ctx.call(f"iterating ShardedSamples(shards, seed={seed}) after "
                          f"set_epoch({e})", _labels, a)
        ctx.save_array(key, np.array(labels, dtype=np.int64))
    b = _build(ctx, submission, shards, seed=seed)
    _set_epoch(ctx, b, first + 1, "a second dataset")
    labels = ctx.call(f"iterating a second ShardedSamples(shards, seed={seed}) after "
                      f"set_epoch({first + 1})", _labels, b)
    ctx.save_array("b1", np.array(labels, dtype=np.int64))
    return {"seed": seed, "first": first, "shards": len(shards)}


def act_new_order_each_epoch(ctx, submission):
    return _order(ctx, submission, SEED, 0, None)


def act_other_seed_and_epochs(ctx, submission):
    return _order(ctx, submission, 12345, 4, 11)


def _count(ds) -> int:
    """How many items one pass over `ds` yields, keeping none of them."""
    count = 0
    for _ in ds:
        count += 1
    return count


def act_streams(ctx, submission):
    """The reference's epoch, then the learner's, in one process: how far memory rises."""
    shards = _shards(ctx, BIG)
    for _ in ReferenceShardedSamples(shards[:1]):  # warm up imports and first allocations
        pass
    ctx.mark("reference_start")
    for _ in ReferenceShardedSamples(shards):
        pass
    ctx.mark("reference_end")
    ctx.mark("learner_start")
    ds = _build(ctx, submission, shards)
    _set_epoch(ctx, ds, 0)
    yielded = ctx.call("iterating ShardedSamples(shards) in the main process, epoch 0", _count,
                       ds)
    ctx.mark("after_epoch")
    return {"yielded": yielded, "shards": len(shards),
            "bytes": BIG_LAYOUT[0] * 3 * BIG_LAYOUT[2] * BIG_LAYOUT[3]}


def act_one_shard_open(ctx, submission):
    """One epoch, the parent counting the shard files open after every sample, and after."""
    ds = _build(ctx, submission, _shards(ctx, SMALL))
    _set_epoch(ctx, ds, 0)
    operation = "iterating ShardedSamples(shards) in the main process, epoch 0"
    it = ctx.call(operation, iter, ds)
    yielded, marked = 0, {}
    while True:
        item = ctx.call(operation, next, it, _END)
        if item is _END:
            break
        label = _label(item)
        del item  # hold nothing the learner's code yielded while the parent looks
        yielded += 1
        ctx.mark(f"sample_{yielded}")
        marked[f"sample_{yielded}"] = label
    ctx.mark("after_epoch")
    return {"marked": marked}


def _loader_epoch(loader) -> list[int]:
    """Every label of one pass. When the dataset raises, the workers are stopped here: left to
    the garbage collector (the error's traceback holds the iterator), they take 5 s each."""
    batches = iter(loader)
    try:
        return [_label(item) for item in batches]
    finally:
        shutdown = getattr(batches, "_shutdown_workers", None)  # private; guarded
        if shutdown is not None:
            shutdown()


def _act_loader(ctx, submission, context: str) -> dict:
    from torch.utils.data import DataLoader, IterableDataset  # lazy: torch, ~2 s

    ds = _build(ctx, submission, _shards(ctx, SMALL))
    if not isinstance(ds, IterableDataset):
        return {"context": context, "bases": [c.__name__ for c in type(ds).__mro__[1:-1]]}
    if context == "spawn":  # what a spawn DataLoader does first; report pickle's own error
        try:
            pickle.dumps(ds)
        except Exception as e:
            return {"context": context, "pickle_error": f"{type(e).__name__}: {e}"[:300],
                    "unpicklable": contract.unpicklable_attributes(ds)}
    loader = DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context=context)
    for e in (0, 1):
        _set_epoch(ctx, ds, e)
        labels = ctx.call(f"iterating DataLoader(ds, batch_size=None, num_workers=2, "
                          f"multiprocessing_context={context!r}) after ds.set_epoch({e})",
                          _loader_epoch, loader)
        ctx.save_array(f"epoch{e}", np.array(labels, dtype=np.int64))
    return {"context": context}


def act_fork_workers(ctx, submission):
    return _act_loader(ctx, submission, "fork")


def act_spawn_workers(ctx, submission):
    return _act_loader(ctx, submission, "spawn")


# ----------------------------------------------------------------------------- in the parent


def _samples_in(shard_count: int) -> int:
    """How many samples the first `shard_count` shards of the small fixture hold."""
    n, per, _h, _w = SMALL_LAYOUT
    return min(n, shard_count * per)


@functools.lru_cache(maxsize=1)
def _expected_sums() -> np.ndarray:
    n, _per, height, width = SMALL_LAYOUT
    weights = np.arange(1, 3 * height * width + 1, dtype=np.float64)
    return np.array([fixture_image(i, height, width).astype(np.float64).ravel() @ weights
                     for i in range(n)])


def _tally(labels: np.ndarray, n: int) -> dict:
    """Counts of one epoch's labels against samples 0..n-1."""
    valid = labels[(labels >= 0) & (labels < n)]
    counts = np.bincount(valid, minlength=n)
    return {"total": int(len(labels)), "twice": int(np.sum(counts > 1)),
            "never": int(np.sum(counts == 0)), "other": int(len(labels) - len(valid)),
            "counts": counts}


def _tally_words(t: dict, n: int, shards: int) -> str:
    other = (f", and {t['other']} with a label that is no sample's (the labels are 0 to "
             f"{n - 1})") if t["other"] else ""
    return (f"{t['total']} samples for the {n} in {shards} shards: {t['twice']} seen more than "
            f"once, {t['never']} never{other}")


def _whole_shards_missing(counts: np.ndarray) -> list[int]:
    _n, per, _h, _w = SMALL_LAYOUT
    return [s for s in range(0, (len(counts) + per - 1) // per)
            if not counts[s * per:(s + 1) * per].any()]


def _who(world: int, r: int, w: int) -> str:
    return f"rank {r} worker {w}" if world > 1 else f"worker {w}"


def _structure(shares: dict[tuple[int, int], list[int]], world: int, workers: int) -> str:
    """What the run shows about how the shares overlap: whole ranks, a rank's workers, or the
    first two consumers that share samples ("" when no two do)."""
    per_rank = {r: sorted(x for (rr, _w), labels in shares.items() if rr == r for x in labels)
                for r in range(world)}
    if world > 1 and per_rank[0] and all(per_rank[r] == per_rank[0] for r in per_rank):
        return f" Every rank yielded the same {len(per_rank[0])} samples."
    for r in range(world):
        lists = [sorted(shares[(r, w)]) for w in range(workers)]
        if workers > 1 and lists[0] and all(x == lists[0] for x in lists):
            whose = f"rank {r}" if world > 1 else "the rank"
            return f" The {workers} workers of {whose} yielded the same {len(lists[0])} samples."
    keys = sorted(shares)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            common = set(shares[a]) & set(shares[b])
            if common:
                return (f" {_who(world, *a).capitalize()} and {_who(world, *b)} yielded "
                        f"{len(common)} of the same samples.")
    return ""


GRID_ADVICE = ("Number the consumers `rank * num_workers + worker` out of `world_size * "
               "num_workers` (`get_worker_info()` gives the worker's `.id` and `.num_workers`; "
               "None means the main process, one worker), compute one shard permutation that "
               "every rank and worker computes alike (seeded from `seed` and `epoch` only), and "
               "give each consumer its own share of it, every shard to exactly one consumer.")


def _judge_grid(hidden: bool):
    def judge(trace) -> None:
        prefixes = [""] if len(trace.data["grids"]) == 1 else [
            f"g{k}_" for k in range(len(trace.data["grids"]))]
        for prefix, grid in zip(prefixes, trace.data["grids"], strict=True):
            world, workers, count = grid["world"], grid["workers"], grid["shards"]
            n = _samples_in(count)
            slots = max(workers, 1)
            for e in grid["epochs"]:
                shares = {(r, w): trace.arrays[f"{prefix}e{e}_r{r}_w{w}"].tolist()
                          for r in range(world) for w in range(slots)}
                t = _tally(np.concatenate([np.array(s, dtype=np.int64)
                                           for s in shares.values()]), n)
                if not (t["twice"] or t["never"] or t["other"]):
                    continue
                who = "in the main process" if workers == 0 else \
                    f"{workers} DataLoader worker{'s' if workers > 1 else ''} per rank"
                seen = (f"with world_size={world} and {who} ({world * slots} consumers over "
                        f"{count} shards), epoch {e} yielded {_tally_words(t, n, count)}.")
                lost = _whole_shards_missing(t["counts"])
                if lost and t["never"]:
                    names = ", ".join(_shard_name(s) for s in lost[:4])
                    seen += (f" No rank or worker yielded any sample of {len(lost)} "
                             f"shard{'s' if len(lost) > 1 else ''} ({names}"
                             f"{', ...' if len(lost) > 4 else ''}).")
                seen += _structure(shares, world, slots)
                raise Fail(seen if hidden else f"{seen} {GRID_ADVICE}")
    judge.__name__ = "judge_grid" + ("_hidden" if hidden else "")
    return judge


def _shards_opened(mark, count: int) -> dict[str, int]:
    """How many times each of the first `count` shard files of the small fixture was opened
    since the mark before `mark` (every one of them listed, 0 included)."""
    opens = {name: 0 for name in map(_shard_name, range(count))}
    for f, k in mark.opens.items():
        name = f.removeprefix(SMALL + "/")
        if f.startswith(SMALL + "/") and name in opens:
            opens[name] += k
    return opens


def _readers_words(readers: dict[str, int], n_readers: int) -> str:
    """'each of the 13 shard files was opened by all 4 readers', or the first shards opened by
    other than one reader, with how many opened each."""
    counts = set(readers.values())
    if counts == {n_readers}:
        return f"each of the {len(readers)} shard files was opened by all {n_readers} readers"
    if len(counts) == 1:
        k = counts.pop()
        return f"each of the {len(readers)} shard files was opened by {k or 'no'} readers"
    wrong = [(name, k) for name, k in readers.items() if k != 1]
    listed = ", ".join(f"{name} by {k or 'none'}" for name, k in wrong[:4])
    return (f"{len(wrong)} of the {len(readers)} shard files were opened by other than one "
            f"reader ({listed}{', ...' if len(wrong) > 4 else ''})")


def judge_one_reader_per_shard(trace) -> None:
    """Each shard file opened by exactly one reader (rank and worker) per epoch.

    Readers are counted, not opens: `tarfile.open(path)` opens the file four times (it probes
    gzip, bz2 and xz before plain tar) and is still one reader streaming its own shard. Judged
    only where every sample arrived exactly once: which samples arrive is what the grid checks
    judge, and a split that duplicates samples is their deduction, not this one's. A reader
    that owns no shard and opens nothing is fine. Without inotify (not Linux) the parent
    cannot count opens, and the check passes.
    """
    if not trace.opens_available:
        return
    for k, grid in enumerate(trace.data["grids"]):
        world, workers, count = grid["world"], grid["workers"], grid["shards"]
        slots = max(workers, 1)
        everyone = [(r, w) for r in range(world) for w in range(slots)]
        for e in grid["epochs"]:
            keys = {rw: f"g{k}_e{e}_r{rw[0]}_w{rw[1]}" for rw in everyone}
            t = _tally(np.concatenate([trace.arrays[key] for key in keys.values()]),
                       _samples_in(count))
            if t["twice"] or t["never"] or t["other"]:
                continue
            by_reader = {rw: _shards_opened(trace.mark(key), count) for rw, key in keys.items()}
            names = list(map(_shard_name, range(count)))
            readers = {name: sum(o[name] > 0 for o in by_reader.values()) for name in names}
            if all(n == 1 for n in readers.values()):
                continue
            total = sum(sum(o.values()) for o in by_reader.values())
            who = ", ".join(f"{_who(world, *rw)} opened {sum(n > 0 for n in o.values())}"
                            for rw, o in by_reader.items())
            raise Fail(
                f"with world_size={world} and {workers} DataLoader workers per rank "
                f"({len(everyone)} readers over {count} shards), epoch {e} yielded every sample "
                f"once, but {_readers_words(readers, len(everyone))} ({who}; {total} opens in "
                "all). Every reader that opens a shard reads it (over HTTP: a request and its "
                "bytes), whatever it keeps. Split whole shards, not samples: each reader takes "
                "its own shards of the epoch's permutation (`order[consumer::consumers]`) and "
                "yields every sample of each, so that one reader opens each shard, once per "
                "epoch.")


def judge_once(trace) -> None:
    n, _per, height, width = SMALL_LAYOUT
    data = trace.data
    shards = -(-n // SMALL_LAYOUT[1])
    if not data["pairs"]:
        raise Fail(f"iterating the dataset yielded {data['item_type']} items, not (image, "
                   "label) pairs: yield each pair exactly as `samples_in_shard(shard)` yields it.")
    labels, sums = trace.arrays["labels"], trace.arrays["sums"]
    t = _tally(labels, n)
    if t["twice"] or t["never"] or t["other"]:
        lost = _whole_shards_missing(t["counts"])
        whole = (f" No sample of {len(lost)} shard{'s' if len(lost) > 1 else ''} arrived."
                 if lost and t["never"] else "")
        raise Fail(f"with rank=0, world_size=1 and no DataLoader workers (one consumer owns "
                   f"every shard), epoch 0 yielded {_tally_words(t, n, shards)}.{whole} With "
                   "one consumer, the shard permutation covers every shard once: yield every "
                   "sample of each shard in it, once.")
    for kind in data["kinds"]:
        if kind["dtype"] != "uint8" or kind["shape"] != [3, height, width]:
            raise Fail(f"the dataset yielded an image that is {contract.describe_kind(kind)}, "
                       f"where `samples_in_shard` yields a (3, {height}, {width}) uint8 array: "
                       "yield the image unchanged (the training loop converts it), so that "
                       "every epoch and every rank sees the same data.")
    wrong = [int(x) for x, s in zip(labels, sums, strict=True) if s != _expected_sums()[x]]
    if wrong:
        raise Fail(f"{len(wrong)} of the {n} images arrived with another sample's label (the "
                   f"first with label {wrong[0]}): yield the (image, label) pairs "
                   "`samples_in_shard` gives, unchanged and together.")


def _judge_order(hidden: bool):
    def judge(trace) -> None:
        data = trace.data
        seed, first = data["seed"], data["first"]
        a0, a1, b1 = (trace.arrays[k] for k in ("a0", "a1", "b1"))
        if len(a0) == 0 and len(a1) == 0:
            return  # nothing yielded: the `once` check judges that, not the order
        if a0.shape == a1.shape and np.array_equal(a0, a1):
            why = "" if hidden else (" Shuffle the shards with a generator seeded from both "
                                     "`seed` and `epoch`, for example "
                                     "`np.random.default_rng([seed, epoch])`.")
            raise Fail(f"a dataset with seed={seed} yielded its {len(a0)} samples in the same "
                       f"order after set_epoch({first}) and after set_epoch({first + 1}): every "
                       f"epoch repeats one order.{why}")
        if a1.shape != b1.shape or not np.array_equal(a1, b1):
            differ = int(np.sum(a1 != b1)) if a1.shape == b1.shape else max(len(a1), len(b1))
            why = "" if hidden else (" Each rank builds its own dataset, so the order must "
                                     "follow from `(seed, epoch)` alone, or the ranks disagree "
                                     "on the shard permutation and their shares overlap: no "
                                     "fresh entropy (`default_rng()` with no seed), no count "
                                     "of past `__iter__` calls.")
            raise Fail(f"two datasets made with seed={seed}, each iterated after "
                       f"set_epoch({first + 1}), yielded different orders ({differ} of "
                       f"{max(len(a1), len(b1))} positions differ; the first had also been "
                       f"iterated at epoch {first}).{why}")
    judge.__name__ = "judge_order" + ("_hidden" if hidden else "")
    return judge


def judge_streams(trace) -> None:
    data = trace.data
    data_mib = data["bytes"] / 2**20
    shard_mib = data_mib / data["shards"]
    reference = trace.private_growth_mib("reference_start", "reference_end")
    learner = trace.private_growth_mib("learner_start", "after_epoch")
    if learner > reference + max(8.0, 0.15 * data_mib):
        raise Fail(f"memory grew by {learner:.0f} MiB during one epoch over {data['shards']} "
                   f"shards of {shard_mib:.1f} MiB ({data_mib:.0f} MiB of images); reading one "
                   f"shard at a time, the reference grew by {max(reference, 0):.0f} MiB in the "
                   "same process. Shuffle the order of the shards, not a list of samples, and "
                   "yield each sample as `samples_in_shard` yields it, keeping none.")


def _open_shards(mark) -> list[str]:
    """The shard files of the small fixture that had a descriptor open at `mark`."""
    return sorted(f.split("/", 1)[1] for f, k in mark.fds.items()
                  if f.startswith(SMALL + "/") and k > 0)


def judge_one_shard_open(trace) -> None:
    data = trace.data
    marks = [m for m in trace.marks if m.label in data["marked"]]
    for m in marks:
        open_now = _open_shards(m)
        if len(open_now) > 1:
            count = int(m.label.removeprefix("sample_"))
            label = data["marked"][m.label]
            source = (f" (label {label}, from {_shard_name(label // SMALL_LAYOUT[1])})"
                      if label >= 0 else "")
            names = ", ".join(open_now[:4]) + (", ..." if len(open_now) > 4 else "")
            raise Fail(f"when sample {count} of the epoch{source} was yielded, {len(open_now)} "
                       f"shard files were open at once ({names}): each open shard holds a "
                       "descriptor and read buffers, and a rank with hundreds of shards runs "
                       "out of both. Read the shards one after the other: `yield from "
                       "samples_in_shard(shard)` finishes and closes one before the next opens.")
    left = _open_shards(trace.mark("after_epoch"))
    if left:
        raise Fail(f"after the epoch's last sample (the iterator was exhausted), {len(left)} "
                   f"shard file{'s were' if len(left) > 1 else ' was'} still open "
                   f"({', '.join(left[:4])}): every epoch leaks descriptors. Open each shard in "
                   "a `with` block (as `samples_in_shard` does) and keep no handle on the "
                   "instance, so that it closes once its last sample has been read.")


def judge_workers(trace) -> None:
    data = trace.data
    context = data["context"]
    if "bases" in data:
        bases = ", ".join(data["bases"]) or "object"
        raise Fail(f"`{SUBJECT}` derives from {bases}, not from "
                   "`torch.utils.data.IterableDataset`, so DataLoader treats it as a map-style "
                   "dataset (it asks for `len(ds)` and `ds[i]`): subclass `IterableDataset`.")
    if "pickle_error" in data:
        raise Fail(f"a `spawn` DataLoader sends each worker a pickled copy of the dataset, and "
                   f"pickling it raised `{data['pickle_error']}`: "
                   f"{contract.pickling_advice(data['unpicklable'])}.")
    n, per, _h, _w = SMALL_LAYOUT
    shards = -(-n // per)
    loader = f"a DataLoader with 2 `{context}` workers (world_size=1)"
    epochs = [trace.arrays["epoch0"], trace.arrays["epoch1"]]
    for e, labels in enumerate(epochs):
        t = _tally(labels, n)
        if t["twice"] or t["never"] or t["other"]:
            lost = _whole_shards_missing(t["counts"]) if t["never"] else []
            whole = (f" No worker yielded any sample of {len(lost)} "
                     f"shard{'s' if len(lost) > 1 else ''}." if lost else "")
            raise Fail(f"{loader} yielded, at epoch {e}, {_tally_words(t, n, shards)}.{whole} "
                       "Each worker runs `__iter__` on its own copy of the dataset: split the "
                       "shards by `get_worker_info().id` and `.num_workers` (and by rank), so "
                       "that each shard goes to exactly one worker.")
    if epochs[0].shape == epochs[1].shape and np.array_equal(*epochs):
        raise Fail(f"{loader} yielded the same order at epoch 1 (`ds.set_epoch(1)` in the main "
                   "process before iterating) as at epoch 0. Each epoch the workers start from a "
                   "fresh copy of the main process's dataset, and nothing they change comes "
                   "back: derive the order from `self.epoch`, as `set_epoch` stored it on the "
                   "instance, and `self.seed`.")


CHECKS = [
    Check("sharded_samples_once", 1,
          "one process (rank 0 of 1, no workers) yields every sample of every shard once, as "
          "`samples_in_shard` yields it",
          act_once, judge_once, fixtures=(SMALL,),
          hint="With `get_worker_info()` None and world_size 1 there is one consumer: it owns "
               "every shard. Loop over the permuted shards and `yield from "
               "samples_in_shard(self.shards[s])`."),
    Check("sharded_samples_ranks_and_workers", 1.5,
          "2 ranks x 2 workers together yield every sample exactly once, in epochs 0 and 1",
          act_ranks_and_workers, _judge_grid(False), fixtures=(SMALL,),
          hint="There are `world_size * num_workers` consumers; consumer `rank * num_workers + "
               "worker` takes `order[consumer::consumers]`, where `order` is the same shard "
               "permutation on every rank and worker."),
    Check("sharded_samples_other_grids", 1,
          "other grids (3 x 3, 4 x 1, 5 ranks x 2 workers on 7 shards, epochs 2 and 5) yield "
          "every sample exactly once",
          act_other_grids, _judge_grid(True), fixtures=(SMALL,), hidden=True,
          extends="ranks_and_workers",
          hint="Nothing in the split may assume a world size, a worker count or a number of "
               "shards."),
    Check("sharded_samples_more_consumers_than_shards", 1,
          "2 ranks x 3 workers over 4 shards: every sample once, idle consumers yield nothing",
          act_more_consumers_than_shards, _judge_grid(False), fixtures=(SMALL,),
          hint="A consumer whose share is empty must simply yield nothing: "
               "`order[consumer::consumers]` is then an empty slice, not an error."),
    Check("sharded_samples_one_reader_per_shard", 1,
          "2 ranks x 2 workers over 13 shards, and 2 x 3 over 4: each shard file is opened by "
          "exactly one reader per epoch",
          act_one_reader_per_shard, judge_one_reader_per_shard, fixtures=(SMALL,),
          hint="Split whole shards, not samples: a reader that opens a shard yields all of it, "
               "and no other reader opens it. Taking every n-th sample of every shard yields "
               "each sample once but reads each shard n times."),
    Check("sharded_samples_new_order_each_epoch", 1,
          "the order changes with `set_epoch`, and the same (seed, epoch) gives the same order",
          act_new_order_each_epoch, _judge_order(False), fixtures=(SMALL,),
          hint="`np.random.default_rng([self.seed, self.epoch]).permutation(len(self.shards))` "
               "is new each epoch and identical on every rank."),
    Check("sharded_samples_other_seed_and_epochs", 0.5,
          "another seed and other epochs (seed 12345, epochs 4 and 5, 11 shards)",
          act_other_seed_and_epochs, _judge_order(True), fixtures=(SMALL,), hidden=True,
          extends="new_order_each_epoch",
          hint="The permutation must depend on the seed and the epoch together."),
    Check("sharded_samples_streams", 1,
          "an epoch over 47 MiB of shards keeps memory flat (no list of samples)",
          act_streams, judge_streams, fixtures=(BIG,), timeout_s=90,
          hint="Shuffle the list of shards, then `yield from samples_in_shard(shard)` for each: "
               "never collect the samples in a list."),
    Check("sharded_samples_one_shard_open", 1,
          "one shard file open at a time, and none left open after the epoch",
          act_one_shard_open, judge_one_shard_open, fixtures=(SMALL,), timeout_s=60,
          hint="Read the shards one after another: do not interleave several open shards, and "
               "read each to its end so `samples_in_shard` closes it."),
    Check("sharded_samples_fork_workers", 1,
          "2 `fork` DataLoader workers yield every sample once, in a new order after "
          "`set_epoch(1)` in the main process",
          act_fork_workers, judge_workers, fixtures=(SMALL,), timeout_s=60,
          hint="Each worker gets a copy of the dataset as the main process holds it: split the "
               "shards by `get_worker_info()`, and take the epoch from `self.epoch`."),
    Check("sharded_samples_spawn_workers", 1,
          "2 `spawn` DataLoader workers, which receive the dataset pickled, yield every sample "
          "once, in a new order after `set_epoch(1)`",
          act_spawn_workers, judge_workers, fixtures=(SMALL,), timeout_s=120,
          hint="A spawn worker unpickles the dataset: keep only picklable things on the "
               "instance (paths, numbers), the epoch among them, and open shards inside "
               "`__iter__`."),
]

EXERCISE = Exercise(
    name="sharded_samples", title=SUBJECT, subjects=(SUBJECT,), checks=CHECKS,
    make_fixtures=make_fixtures,
    hints=[
        "The shard is the unit of work. Every (rank, DataLoader worker) pair is one consumer; "
        "all consumers must agree on one shuffled order of the shards for the epoch, and each "
        "reads its own share of it, one shard at a time.",
        "`get_worker_info()` is None in the main process (one worker, id 0), else it has `.id` "
        "and `.num_workers`. Number the consumer `rank * num_workers + worker` out of "
        "`world_size * num_workers`. `np.random.default_rng([seed, epoch])` gives the same "
        "permutation on every rank and worker, and a new one each epoch; `set_epoch` only "
        "stores the epoch, because workers get a fresh copy of the dataset each epoch.",
        "In `__iter__`: `info = get_worker_info()`; `worker, num_workers = (0, 1) if info is "
        "None else (info.id, info.num_workers)`; `order = np.random.default_rng([self.seed, "
        "self.epoch]).permutation(len(self.shards))`; `consumer = self.rank * num_workers + "
        "worker`; `for s in order[consumer::self.world_size * num_workers]: yield from "
        "samples_in_shard(self.shards[s])`.",
    ])


def check_sharded_samples(ShardedSamples, *checks: str) -> None:  # noqa: N803 (the learner's name)
    """Check the learner's `ShardedSamples` in a fresh process; name checks to run only those."""
    __tracebackhide__ = True
    run_exercise(EXERCISE, {SUBJECT: ShardedSamples}, checks)
