"""Ranks for notebook 07: what `DistributedSampler` gives each process, and what each one holds.

Data-parallel training runs one process per accelerator, a *rank*. Every rank builds its own
dataset and its own `DistributedSampler`, which hands it a disjoint share of the indices
(`indices[rank::world_size]` of one shuffled order that every rank computes alike from
`seed + epoch`). Two things follow, and this module shows both measured:

- the shares: `sampler_shares` runs the real sampler for each rank without any processes, and
  `share_summary` says what came out (padding repeats samples, `drop_last` skips some, and an
  epoch without `set_epoch` repeats the previous order);
- the memory: `run_ranks` starts real processes with `torch.distributed` (gloo, CPU), once, and
  each rank measures its own PSS with a lazy dataset (a file handle per process) and with an
  eager one (a full copy of the images in every rank).

The rank function lives here, not in the notebook, so `torch.multiprocessing.spawn` can import
it in each new process under any start method.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import h5py
import numpy as np
import psutil
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.multiprocessing.spawn import ProcessException
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from memcourse.errors import CourseError
from memcourse.tradeoffs import H5Samples

MIB = 2**20


class RanksError(CourseError):
    """A rank failed, or the ranks ran past their time; the message says which and why.

    `rank` is the failing rank (None for a time-out); `child_traceback` is its traceback text.
    """

    def __init__(self, message: str, rank: int | None = None, child_traceback: str = ""):
        super().__init__(message)
        self.rank = rank
        self.child_traceback = child_traceback


# --- The shares, without processes -------------------------------------------------------------


class _Indices(Dataset):
    """A dataset of `n` samples whose sample `i` is `i`: enough for a sampler, which reads len()."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx: int) -> int:
        return idx


def sampler_shares(n: int, world_size: int, epochs: int = 2, *, shuffle: bool = True,
                   drop_last: bool = False, set_epoch: bool = True,
                   seed: int = 0) -> dict[int, list[list[int]]]:
    """Return {epoch: [indices of rank 0, indices of rank 1, ...]} from the real DistributedSampler.

    Each rank's sampler is built as its process would build it, with `num_replicas=world_size`
    and `rank=r` passed in, so no process group is needed. `set_epoch=False` leaves out the
    `sampler.set_epoch(epoch)` call a training loop must make, to show what forgetting it does.
    Raises ValueError for n < 1, world_size < 1 or epochs < 1.
    """
    if n < 1 or world_size < 1 or epochs < 1:
        raise ValueError(f"need n, world_size and epochs >= 1, got {n}, {world_size}, {epochs}")
    dataset = _Indices(n)
    samplers = [DistributedSampler(dataset, num_replicas=world_size, rank=r, shuffle=shuffle,
                                   seed=seed, drop_last=drop_last) for r in range(world_size)]
    shares: dict[int, list[list[int]]] = {}
    for epoch in range(epochs):
        for sampler in samplers:
            if set_epoch:
                sampler.set_epoch(epoch)
        shares[epoch] = [list(sampler) for sampler in samplers]
    return shares


@dataclass(frozen=True)
class ShareSummary:
    """What the ranks' shares of a dataset of `n` samples add up to, epoch by epoch.

    Per-epoch tuples are indexed by epoch. `repeated[e]`: the dataset indices that more than
    one slot got in epoch e (the sampler's padding, so every rank gets as many samples);
    `missing[e]`: the indices no rank got (what `drop_last` cut). `same_order` is True when
    every later epoch gave every rank exactly epoch 0's list (None with a single epoch).
    """

    n: int
    world_size: int
    per_rank: tuple[int, ...]  # samples each rank gets in epoch 0
    repeated: tuple[tuple[int, ...], ...]
    missing: tuple[tuple[int, ...], ...]
    same_order: bool | None

    @property
    def epochs(self) -> int:
        """How many epochs the summary covers."""
        return len(self.repeated)

    def sentences(self) -> list[str]:
        """The summary as sentences a notebook prints, one fact each."""
        counts = ", ".join(f"rank {r}: {c}" for r, c in enumerate(self.per_rank))
        out = [f"{self.n} samples over {self.world_size} ranks: {counts} samples per epoch "
               f"({sum(self.per_rank)} slots in all)."]
        rep, miss = self.repeated[0], self.missing[0]
        if rep:
            out.append(f"Padding: {len(rep)} sample(s) are seen twice or more in each epoch, "
                       f"in epoch 0 indices {_listed(rep)}.")
        if miss:
            out.append(f"drop_last: {len(miss)} sample(s) are never seen in an epoch, "
                       f"in epoch 0 indices {_listed(miss)}.")
        if not rep and not miss:
            out.append("The shares are disjoint and cover every sample exactly once per epoch.")
        if self.same_order is True:
            out.append(f"All {self.epochs} epochs gave every rank the same indices in the same "
                       "order: the shuffle never changes (was set_epoch called?).")
        elif self.same_order is False:
            out.append(f"The order changes from epoch to epoch ({self.epochs} epochs).")
        return out


def _listed(indices: tuple[int, ...], limit: int = 10) -> str:
    """Up to `limit` indices as text, with how many more there are."""
    shown = ", ".join(map(str, indices[:limit]))
    return shown + (f" (and {len(indices) - limit} more)" if len(indices) > limit else "")


def share_summary(shares: dict[int, list[list[int]]], n: int) -> ShareSummary:
    """Summarize {epoch: per-rank index lists} (from `sampler_shares` or `shares_of`).

    `n` is the dataset's length, which tells the indices no rank got. Raises ValueError for no
    epochs or an index outside 0..n-1.
    """
    if not shares:
        raise ValueError("no epochs to summarize")
    epochs = sorted(shares)
    repeated, missing = [], []
    for epoch in epochs:
        counts = np.bincount(np.concatenate([np.asarray(s, dtype=np.int64)
                                             for s in shares[epoch]] + [np.zeros(0, np.int64)]),
                             minlength=n)
        if len(counts) > n:
            raise ValueError(f"epoch {epoch} has index {len(counts) - 1}, outside 0..{n - 1}")
        repeated.append(tuple(np.flatnonzero(counts > 1).tolist()))
        missing.append(tuple(np.flatnonzero(counts == 0).tolist()))
    first = shares[epochs[0]]
    same = all(shares[e] == first for e in epochs[1:]) if len(epochs) > 1 else None
    return ShareSummary(n=n, world_size=len(first), per_rank=tuple(len(s) for s in first),
                        repeated=tuple(repeated), missing=tuple(missing), same_order=same)


# --- Real ranks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankReport:
    """What one rank of `run_ranks` got and measured in its own process.

    `indices[e]`: the dataset indices the rank's DataLoader gave it in epoch e, in order.
    `pss_*_bytes`: the rank's proportional set size (bytes) after init_process_group
    (`baseline`), after its epochs over the lazy dataset, and after loading the eager dataset
    and one epoch over it. `group_pids` and `group_union` are what this rank learned from the
    others through `all_gather_object`: their process ids, and per epoch how many distinct
    samples all ranks together got. Times are seconds.
    """

    rank: int
    world_size: int
    n: int  # samples in the dataset
    pid: int
    indices: tuple[tuple[int, ...], ...]
    group_pids: tuple[int, ...]
    group_union: tuple[int, ...]
    pss_baseline_bytes: int
    pss_lazy_bytes: int
    pss_eager_bytes: int
    start_s: float  # from the launch until the rank's code ran: a new Python importing torch
    init_s: float  # init_process_group
    lazy_s: float  # building the lazy dataset and iterating its epochs
    eager_s: float  # loading the eager dataset and iterating one epoch

    @property
    def baseline_mib(self) -> float:
        """PSS before any dataset, MiB."""
        return self.pss_baseline_bytes / MIB

    @property
    def lazy_mib(self) -> float:
        """PSS after the lazy dataset's epochs, MiB."""
        return self.pss_lazy_bytes / MIB

    @property
    def eager_mib(self) -> float:
        """PSS after the eager dataset's epoch, MiB."""
        return self.pss_eager_bytes / MIB

    @property
    def eager_over_lazy_mib(self) -> float:
        """PSS of the eager stage minus the lazy one, MiB: mostly this rank's copy of the images."""
        return (self.pss_eager_bytes - self.pss_lazy_bytes) / MIB

    @property
    def lazy_growth_mib(self) -> float:
        """How far the lazy dataset raised PSS above the baseline, MiB."""
        return (self.pss_lazy_bytes - self.pss_baseline_bytes) / MIB

    @property
    def eager_growth_mib(self) -> float:
        """How far the eager dataset raised PSS above the baseline, MiB."""
        return (self.pss_eager_bytes - self.pss_baseline_bytes) / MIB

    @classmethod
    def from_dict(cls, raw: dict) -> RankReport:
        """The report from its JSON form (lists where the fields hold tuples)."""
        tuples = {"indices": tuple(tuple(e) for e in raw["indices"]),
                  "group_pids": tuple(raw["group_pids"]), "group_union": tuple(raw["group_union"])}
        return cls(**{**raw, **tuples})

    def sentence(self) -> str:
        """The rank's memory as one sentence a notebook prints."""
        return (f"rank {self.rank} (pid {self.pid}): PSS {self.baseline_mib:.0f} MiB before any "
                f"dataset, +{self.lazy_growth_mib:.1f} MiB with the lazy dataset, "
                f"+{self.eager_growth_mib:.1f} MiB with the eager one.")


def shares_of(reports: list[RankReport]) -> dict[int, list[list[int]]]:
    """The ranks' indices as {epoch: per-rank index lists}, the input of `share_summary`."""
    reports = sorted(reports, key=lambda r: r.rank)
    epochs = len(reports[0].indices) if reports else 0
    return {e: [list(r.indices[e]) for r in reports] for e in range(epochs)}


@dataclass(frozen=True)
class _Job:
    """Everything a rank needs, pickled once into each spawned process."""

    world_size: int
    h5_path: str
    out_dir: str
    init_file: str
    epochs: int
    set_epoch: bool
    batch_size: int
    timeout_s: float
    fail_rank: int | None
    launched_at: float  # time.time() in the parent when it started the ranks


class _WithIndex(Dataset):
    """Sample i of `base` with i appended, so a rank can record which samples it was given."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, int, int]:
        image, label = self.base[idx]
        return image, label, idx


class _EagerSamples(Dataset):
    """Every image and label read into memory in __init__: one (N, 3, H, W) uint8 array."""

    def __init__(self, h5_path: str):
        with h5py.File(h5_path, "r") as f:
            self.images = f["images"][:]
            self.labels = f["labels"][:]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.images[idx]), int(self.labels[idx])


def _pss_bytes() -> int:
    """This process's proportional set size in bytes."""
    return int(psutil.Process().memory_full_info().pss)


def _epoch_indices(loader: DataLoader) -> list[int]:
    """Iterate `loader` once and return the dataset indices of its samples, in order."""
    seen: list[int] = []
    for _images, _labels, idx in loader:
        seen.extend(idx.tolist())
    return seen


def _use_loopback() -> None:
    """Make gloo talk over the loopback interface unless the user chose one.

    By default gloo binds to the address the host name resolves to, which on some machines
    (containers, sandboxes without a network) is missing or unreachable; all ranks are on this
    machine, so loopback always works.
    """
    if "GLOO_SOCKET_IFNAME" not in os.environ and hasattr(socket, "if_nameindex"):
        names = {name for _i, name in socket.if_nameindex()}
        for name in ("lo", "lo0"):
            if name in names:
                os.environ["GLOO_SOCKET_IFNAME"] = name
                return


def _write_json(path: Path, obj: object) -> None:
    """Write `obj` as JSON under a temporary name, then rename: a reader never sees half of it."""
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def _rank_main(rank: int, job: _Job) -> None:
    """One rank, as spawned: do the work; on any error, leave a timed record of it for the parent.

    When one rank fails, the others fail soon after in their next collective call (their peer
    is gone); the times let the parent name the rank that failed first, the cause.
    """
    start_s = time.time() - job.launched_at
    try:
        _rank_work(rank, job, start_s)
    except BaseException:
        _write_json(Path(job.out_dir) / f"rank{rank}.error.json",
                    {"time": time.time(), "traceback": traceback.format_exc()})
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    # Done and reported: skip the interpreter's teardown, which with torch loaded takes from a
    # few tenths of a second up to seconds on a busy machine. Nothing is left to clean up.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _rank_work(rank: int, job: _Job, start_s: float) -> None:
    """Join the group, read this rank's share lazily then eagerly, measure, write its report."""
    torch.set_num_threads(1)  # ranks share the machine's few cores
    _use_loopback()
    start = time.perf_counter()
    dist.init_process_group("gloo", init_method=f"file://{job.init_file}", rank=rank,
                            world_size=job.world_size, timeout=timedelta(seconds=job.timeout_s))
    init_s = time.perf_counter() - start
    if rank == job.fail_rank:
        # The other ranks will wait for this one in their next collective.
        raise RuntimeError(f"rank {rank} failed on purpose (fail_rank={job.fail_rank})")
    baseline = _pss_bytes()

    start = time.perf_counter()
    lazy = _WithIndex(H5Samples(job.h5_path))
    # num_replicas and rank come from the process group, as in a training script.
    sampler = DistributedSampler(lazy, shuffle=True, seed=0)
    loader = DataLoader(lazy, batch_size=job.batch_size, sampler=sampler, num_workers=0)
    indices = []
    for epoch in range(job.epochs):
        if job.set_epoch:
            sampler.set_epoch(epoch)
        indices.append(_epoch_indices(loader))
    lazy_s = time.perf_counter() - start
    pss_lazy = _pss_bytes()
    n = len(lazy)
    del lazy, sampler, loader
    gc.collect()  # closes the HDF5 file before the eager stage

    everyone: list[list[list[int]] | None] = [None] * job.world_size
    dist.all_gather_object(everyone, indices)
    pids: list[int | None] = [None] * job.world_size
    dist.all_gather_object(pids, os.getpid())
    union = [len(set().union(*(other[e] for other in everyone)))  # type: ignore[index]
             for e in range(job.epochs)]

    start = time.perf_counter()
    eager = _WithIndex(_EagerSamples(job.h5_path))
    sampler = DistributedSampler(eager, shuffle=True, seed=0)
    _epoch_indices(DataLoader(eager, batch_size=job.batch_size, sampler=sampler, num_workers=0))
    eager_s = time.perf_counter() - start
    pss_eager = _pss_bytes()

    _write_json(Path(job.out_dir) / f"rank{rank}.json", {
        "rank": rank, "world_size": job.world_size, "n": n, "pid": os.getpid(),
        "indices": indices, "group_pids": pids, "group_union": union,
        "pss_baseline_bytes": baseline, "pss_lazy_bytes": pss_lazy, "pss_eager_bytes": pss_eager,
        "start_s": start_s, "init_s": init_s, "lazy_s": lazy_s, "eager_s": eager_s})
    dist.barrier()  # no rank leaves while another may still need it


def _end(processes: list) -> None:
    """Stop the ranks still alive: SIGTERM, then SIGKILL after a moment; reap them all."""
    for p in processes:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + 2.0
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def run_ranks(h5_path: str | Path, world_size: int = 2, epochs: int = 2, *,
              set_epoch: bool = True, batch_size: int = 64, timeout_s: float = 60,
              fail_rank: int | None = None) -> list[RankReport]:
    """Start `world_size` real ranks once (gloo, CPU) over the HDF5 dataset; return their reports.

    Each rank joins the process group, reads its `DistributedSampler` share of `h5_path` through
    a DataLoader for `epochs` epochs with a lazy dataset (calling `set_epoch` unless told not
    to), swaps notes with the others through `all_gather_object`, then loads the whole file
    into an eager dataset for one epoch, measuring its PSS at each stage. Costs about 5 s on
    2 cores, mostly each process importing torch. `fail_rank` makes that rank raise right after
    joining, to show what a failed rank does to the others.

    Returns one RankReport per rank, by rank. Raises FileNotFoundError if `h5_path` is missing,
    ValueError for a bad argument, and RanksError (the failing rank's error and traceback in
    its message) when a rank fails or the ranks run past `timeout_s` seconds; either way every
    rank process has ended when it returns or raises.
    """
    h5_path = Path(h5_path)
    if not h5_path.is_file():
        raise FileNotFoundError(f"No dataset at {h5_path}: call data.ensure_dataset() first.")
    if world_size < 1 or epochs < 1 or batch_size < 1 or timeout_s <= 0:
        raise ValueError("world_size, epochs and batch_size must be >= 1 and timeout_s > 0")
    with tempfile.TemporaryDirectory(prefix="memcourse-ranks-") as tmp:
        job = _Job(world_size=world_size, h5_path=str(h5_path.resolve()), out_dir=tmp,
                   init_file=str(Path(tmp) / "rendezvous"), epochs=epochs, set_epoch=set_epoch,
                   batch_size=batch_size, timeout_s=timeout_s, fail_rank=fail_rank,
                   launched_at=time.time())
        deadline = time.monotonic() + timeout_s
        # spawn: each rank is a fresh interpreter that imports this module, which works from a
        # notebook, and no rank inherits the notebook's threads or memory.
        context = mp.spawn(_rank_main, args=(job,), nprocs=world_size, join=False)
        failure: ProcessException | None = None
        try:
            while not context.join(timeout=0.1, grace_period=1.0):
                if time.monotonic() > deadline:
                    raise RanksError(
                        f"The {world_size} ranks did not finish within {timeout_s:g} s, so "
                        "run_ranks ended them. Raise timeout_s for a larger dataset.")
        except ProcessException as e:
            failure = e
        finally:
            _end(context.processes)  # also on KeyboardInterrupt: no rank outlives the call
        if failure is not None:
            raise _rank_failure(failure, Path(tmp), world_size) from None
        return [RankReport.from_dict(json.loads((Path(tmp) / f"rank{r}.json").read_text()))
                for r in range(world_size)]


def _last_line(text: str) -> str:
    """The last non-empty line of a traceback: the exception and its message."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no message)"


def _rank_failure(e: ProcessException, folder: Path, world_size: int) -> RanksError:
    """The RanksError for a failed launch, naming the rank that failed first and why."""
    records = []
    for path in folder.glob("rank*.error.json"):
        record = json.loads(path.read_text())
        records.append((record["time"], int(path.name[4:].split(".")[0]), record["traceback"]))
    records.sort()
    if records:
        _, rank, text = records[0]
        message = f"Rank {rank} of {world_size} failed with {_last_line(text)}\n"
        for _, other, other_text in records[1:]:
            message += (f"Rank {other} failed after it, as a rank does when a peer is gone: "
                        f"{_last_line(other_text)[:160]}\n")
        message += ("run_ranks ended the ranks still running, which would otherwise wait for it "
                    f"in their next collective call.\n\nRank {rank}'s traceback:\n{text}")
        return RanksError(message, rank=rank, child_traceback=text)
    if isinstance(e, mp.ProcessExitedException) and e.signal_name:
        why = f"was killed by {e.signal_name}; SIGKILL usually means the machine ran out of memory"
    elif isinstance(e, mp.ProcessExitedException):
        why = (f"exited with code {e.exit_code} before it could report an error; its own output "
               "(stderr, or the terminal that runs Jupyter) says why. From a script, call "
               "run_ranks under `if __name__ == \"__main__\":`, since each rank imports the "
               "script again")
    else:
        why = f"failed before its code ran: {_last_line(str(e))}"
    return RanksError(f"Rank {e.error_index} of {world_size} {why}. run_ranks ended the other "
                      "ranks.", rank=e.error_index)


__all__ = ["RankReport", "RanksError", "ShareSummary", "run_ranks", "sampler_shares",
           "share_summary", "shares_of"]
