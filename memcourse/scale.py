"""Scale on paper, for notebook 07: what a data pipeline needs when training spreads over nodes.

`plan` turns a dataset (samples, bytes per sample), a cluster (nodes, ranks per node, DataLoader
workers per rank) and per-sample costs you measured into the numbers that decide whether the
pipeline keeps up: shards per rank and per worker, bytes in flight per node, whether the page
cache can hold the data, requests per epoch, and an epoch's time when reading and computing
overlap. It is arithmetic, not a simulation: it is as good as the costs you feed it, which is why
the notebook measures them first.

Two datasets the notebook fills it in for: the guide's dummy file (`GUIDE_FILE`: 10,000 images
of 3 x 256 x 256 uint8) and an ImageNet-sized one (`IMAGENET`: the ILSVRC-2012 training set,
1,281,167 images; about 115 KB each as JPEG: image-net.org lists 138 GB for the training archive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIB = 2**20
GIB = 2**30


@dataclass(frozen=True)
class DatasetSize:
    """A dataset as the calculator sees it: how many samples, the bytes of one as stored (what
    is read and shuffled) and as decoded (what a batch holds; default: as stored)."""

    name: str
    samples: int
    sample_bytes: int
    decoded_bytes: int = 0

    @property
    def batch_sample_bytes(self) -> int:
        return self.decoded_bytes or self.sample_bytes


GUIDE_FILE = DatasetSize("the guide's file (10,000 x 3 x 256 x 256 uint8)", 10_000, 3 * 256 * 256)
# ILSVRC-2012 train: 1,281,167 images; the archive ILSVRC2012_img_train.tar is listed as 138 GB on
# image-net.org's download page, about 115 KB per JPEG as stored.
# Decoded for training: a 224 x 224 crop, 3 channels, uint8.
IMAGENET = DatasetSize("ImageNet-1k training set (JPEG)", 1_281_167, 115_000, 3 * 224 * 224)


@dataclass(frozen=True)
class ScalePlan:
    """Inputs and the numbers derived from them; `lines()` says them in words.

    Times are seconds; sizes are bytes. `read_s` is one worker's time to read and decode one
    sample, `step_s` the training step's time for one batch on one rank: measure both.
    """

    dataset: DatasetSize
    nodes: int
    ranks_per_node: int
    workers_per_rank: int
    batch_size: int
    samples_per_shard: int
    prefetch_factor: int
    shuffle_buffer: int
    read_s: float
    step_s: float
    node_ram_bytes: int

    @property
    def world_size(self) -> int:
        return self.nodes * self.ranks_per_node

    @property
    def consumers(self) -> int:
        """Processes that read shards: every worker of every rank (the rank itself at 0)."""
        return self.world_size * max(1, self.workers_per_rank)

    @property
    def dataset_bytes(self) -> int:
        return self.dataset.samples * self.dataset.sample_bytes

    @property
    def shards(self) -> int:
        return math.ceil(self.dataset.samples / self.samples_per_shard)

    @property
    def shard_bytes(self) -> int:
        return min(self.samples_per_shard, self.dataset.samples) * self.dataset.sample_bytes

    @property
    def shards_per_worker(self) -> tuple[int, int]:
        """Fewest and most shards one reading process gets when whole shards are dealt out."""
        return self.shards // self.consumers, math.ceil(self.shards / self.consumers)

    @property
    def idle_workers(self) -> int:
        return max(0, self.consumers - self.shards)

    @property
    def samples_per_rank(self) -> int:
        return math.ceil(self.dataset.samples / self.world_size)

    @property
    def steps_per_epoch(self) -> int:
        """Batches each rank trains on per epoch (every rank must take the same number)."""
        return math.ceil(self.samples_per_rank / self.batch_size)

    @property
    def batch_bytes(self) -> int:
        return self.batch_size * self.dataset.batch_sample_bytes

    @property
    def batches_per_rank_bytes(self) -> int:
        """Prefetched batches (num_workers x prefetch_factor, notebook 01) and the one in use."""
        prefetched = self.workers_per_rank * self.prefetch_factor if self.workers_per_rank else 0
        return (prefetched + 1) * self.batch_bytes

    @property
    def buffers_per_rank_bytes(self) -> int:
        """Each reading process's shuffle buffer, of samples as stored (shuffled before
        decoding)."""
        return max(1, self.workers_per_rank) * self.shuffle_buffer * self.dataset.sample_bytes

    @property
    def in_flight_per_rank_bytes(self) -> int:
        """Batches in flight plus shuffle buffers, on one rank."""
        return self.batches_per_rank_bytes + self.buffers_per_rank_bytes

    @property
    def in_flight_per_node_bytes(self) -> int:
        return self.ranks_per_node * self.in_flight_per_rank_bytes

    @property
    def node_share_bytes(self) -> int:
        """Bytes of the dataset one node reads in an epoch."""
        return math.ceil(self.dataset_bytes / self.nodes)

    @property
    def fits_whole(self) -> bool:
        """The whole dataset fits in one node's free RAM: every epoch after the first is served
        from the page cache, however the samples are reshuffled across nodes."""
        return self.dataset_bytes + self.in_flight_per_node_bytes <= self.node_ram_bytes

    @property
    def fits_share(self) -> bool:
        """One node's share fits: warm only if each node rereads the same share every epoch."""
        return self.node_share_bytes + self.in_flight_per_node_bytes <= self.node_ram_bytes

    @property
    def samples_per_reader(self) -> int:
        """Samples the busiest reading process reads in an epoch: whole shards are dealt out,
        so one with a shard more than the others, or one huge shard, sets the pace."""
        return min(self.shards_per_worker[1] * self.samples_per_shard, self.dataset.samples)

    @property
    def data_s_per_epoch(self) -> float:
        """Time the busiest reading process needs to read and decode its samples; the rank's
        workers read in parallel, so this is the rank's time to produce its samples."""
        return self.samples_per_reader * self.read_s

    @property
    def compute_s_per_epoch(self) -> float:
        return self.steps_per_epoch * self.step_s

    @property
    def epoch_s(self) -> float:
        """With workers, reading overlaps training: the slower of the two sets the pace. At
        `workers_per_rank=0` the rank reads, then trains: the two add up."""
        if self.workers_per_rank == 0:
            return self.data_s_per_epoch + self.compute_s_per_epoch
        return max(self.data_s_per_epoch, self.compute_s_per_epoch)

    @property
    def bound(self) -> str:
        return "data" if self.data_s_per_epoch > self.compute_s_per_epoch else "compute"

    def lines(self) -> list[str]:
        """The plan in sentences, one number each."""
        few, most = self.shards_per_worker
        lines = [
            f"{self.dataset.name}: {self.dataset.samples:,} samples x "
            f"{self.dataset.sample_bytes / 2**10:,.1f} KiB = {self.dataset_bytes / GIB:,.2f} GiB",
            f"cluster: {self.nodes} node(s) x {self.ranks_per_node} rank(s) = world_size "
            f"{self.world_size}; {self.consumers:,} reading processes",
            f"shards: {self.shards:,} of {self.samples_per_shard:,} samples "
            f"({self.shard_bytes / MIB:,.1f} MiB each); one epoch streams each once: "
            f"{self.shards:,} request{'s' if self.shards != 1 else ''}",
            f"shards per reading process: {few:,} to {most:,}"
            + (f"; {self.idle_workers:,} processes get none (idle)" if self.idle_workers else ""),
            f"per rank: {self.samples_per_rank:,} samples, {self.steps_per_epoch:,} steps of "
            f"{self.batch_size}",
            f"bytes in flight per node: {self.in_flight_per_node_bytes / MIB:,.1f} MiB = "
            f"{self.ranks_per_node * self.batches_per_rank_bytes / MIB:,.1f} MiB of batches "
            f"(prefetched and in use) + "
            f"{self.ranks_per_node * self.buffers_per_rank_bytes / MIB:,.1f} MiB of shuffle "
            "buffers",
            f"page cache: the whole dataset {'fits' if self.fits_whole else 'does not fit'} in "
            f"{self.node_ram_bytes / GIB:,.0f} GiB per node; a node's share "
            f"({self.node_share_bytes / GIB:,.2f} GiB) {'fits' if self.fits_share else 'does not'}",
            f"epoch: the busiest reading process needs {self.data_s_per_epoch:,.1f} s, "
            f"training {self.compute_s_per_epoch:,.1f} s per rank -> about "
            f"{self.epoch_s:,.1f} s, {self.bound}-bound",
        ]
        return lines


def plan(dataset: DatasetSize, *, nodes: int = 1, ranks_per_node: int = 1,
         workers_per_rank: int = 4, batch_size: int = 64, samples_per_shard: int = 1000,
         prefetch_factor: int = 2, shuffle_buffer: int = 1000, read_s: float = 1e-3,
         step_s: float = 0.05, node_ram_gib: float = 64) -> ScalePlan:
    """Derive a `ScalePlan`; raise ValueError, naming the input, for a count below its minimum
    (at least one node, rank, sample, batch sample and shard sample) or a negative time."""
    for name, value, least in (("samples", dataset.samples, 1),
                               ("sample_bytes", dataset.sample_bytes, 1),
                               ("nodes", nodes, 1), ("ranks_per_node", ranks_per_node, 1),
                               ("workers_per_rank", workers_per_rank, 0),
                               ("batch_size", batch_size, 1),
                               ("samples_per_shard", samples_per_shard, 1),
                               ("prefetch_factor", prefetch_factor, 1),
                               ("shuffle_buffer", shuffle_buffer, 0)):
        if isinstance(value, bool) or int(value) != value or value < least:
            raise ValueError(f"{name} must be a whole number of at least {least}, not {value!r}")
    for name, value in (("read_s", read_s), ("step_s", step_s), ("node_ram_gib", node_ram_gib)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a number of at least 0, not {value!r}")
    return ScalePlan(dataset, int(nodes), int(ranks_per_node), int(workers_per_rank),
                     int(batch_size), int(samples_per_shard), int(prefetch_factor),
                     int(shuffle_buffer), float(read_s), float(step_s),
                     int(node_ram_gib * GIB))
