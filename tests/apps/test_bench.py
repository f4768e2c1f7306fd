"""Does `memcourse bench` run end to end and write its outputs? (No timing is asserted: the
numbers are the benchmark's business, not the tests'.) Plus the helpers it builds on."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys

import h5py
import nbformat
import numpy as np
import pytest

from autograder import cells
from memcourse_apps.bench import README_END, README_START, BenchError, update_readme
from memcourse_apps.bench.common import Stat, ratio
from memcourse_apps.bench.grading import _answered, make_submission, plan
from memcourse_apps.bench.loaders import (
    BatchRequestDataset,
    MappedBatchDataset,
    write_one_row_per_sample,
)
from tests.helpers import ROOT

A = "03_on_the_fly_loading"


@pytest.mark.slow
def test_bench_smoke_run_on_tiny_writes_every_output(tmp_path):
    """Does a tiny bench run write results.md with all five sections, plots, JSON and the
    README block, touching nothing outside the block?"""
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n\n{README_START}\nold table\n{README_END}\n\nafter\n")
    out = tmp_path / "bench"
    done = subprocess.run(
        [sys.executable, "-m", "memcourse_apps", "bench", "--size", "tiny", "--out", str(out),
         "--repeats", "1", "--grading-submissions", "2", "--assignment", A,
         "--readme", str(readme)],
        capture_output=True, text=True, cwd=ROOT, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    results = (out / "results.md").read_text()
    for heading in ("## 1. Random single-sample reads per format",
                    "## 2. The reference `HDF5Dataset` through `DataLoader`",
                    "## 3. Memory", "## 4. Grading throughput",
                    "## 5. WebDataset shards: shard size, and local against HTTP"):
        assert heading in results
    assert re.search(r"^grading speed-up vs plain nbgrader: \d+\.\dx$", results, re.M)
    assert "### The fast path: one request per batch, uint8" in results
    assert re.search(r"^\*\*Best batch-request loader: [\d.]+ .* of the warm memmap ceiling\*\*",
                     results, re.M)
    assert "load average" in results and "CPU:" in results
    for name in ("reads", "loaders", "memory", "grading", "shards"):
        assert (out / f"{name}.png").stat().st_size > 1000
    data = json.loads((out / "results.json").read_text())
    assert set(data) == {"meta", "reads", "loaders", "memory", "grading", "shards"}
    assert not (out / "scratch").exists()  # format copies and course copies are removed
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n\n" + README_START)
    assert text.endswith(README_END + "\n\nafter\n")
    assert "old table" not in text and "grading speed-up vs plain nbgrader:" in text
    assert "batch-request uint8 loader (notebook 05's fast path), num_workers=0" in text


def test_batch_request_dataset_reads_asked_rows_in_file_order(tiny_h5, tmp_path):
    """Does the fast-path loader return the rows asked for (sorted, repeats dropped) as uint8
    (B, 3, H, W) with their int64 labels, from the one-row-per-sample copy as from the file,
    and still pickle after use?"""
    rows_path = write_one_row_per_sample(str(tiny_h5), tmp_path / "rows.h5")
    with h5py.File(tiny_h5, "r") as f:
        images, labels = f["images"][:], f["labels"][:]
    with h5py.File(rows_path, "r") as f:
        assert f["images"].shape == (len(images), images[0].size)
        assert f["images"].chunks is None
    for path in (tiny_h5, rows_path):
        ds = BatchRequestDataset(path)
        got_images, got_labels = ds[[9, 2, 5, 2]]
        assert str(got_images.dtype) == "torch.uint8" and str(got_labels.dtype) == "torch.int64"
        np.testing.assert_array_equal(got_images.numpy(), images[[2, 5, 9]])
        np.testing.assert_array_equal(got_labels.numpy(), labels[[2, 5, 9]])
        assert pickle.loads(pickle.dumps(ds))._file is None
    mapped = MappedBatchDataset(rows_path)
    got_images, got_labels = mapped[[9, 2, 5, 2]]
    np.testing.assert_array_equal(got_images.numpy(), images[[2, 5, 9]])
    np.testing.assert_array_equal(got_labels.numpy(), labels[[2, 5, 9]])
    assert pickle.loads(pickle.dumps(mapped))._images is None  # the map is not pickled


def test_map_contiguous_maps_only_contiguous_uncompressed_data(tiny_h5, tmp_path):
    """Does `map_contiguous` give the HDF5 dataset's exact bytes, and refuse chunked data with a
    sentence?"""
    from memcourse.formats import map_contiguous

    with h5py.File(tiny_h5, "r") as f:
        images = f["images"][:]
    np.testing.assert_array_equal(map_contiguous(tiny_h5, "images")[[3, 1]], images[[3, 1]])
    chunked = tmp_path / "chunked.h5"
    with h5py.File(chunked, "w") as f:
        f.create_dataset("images", data=images, chunks=(1, *images.shape[1:]))
    with pytest.raises(ValueError, match="chunked or compressed"):
        map_contiguous(chunked, "images")


def test_update_readme_needs_both_markers(tmp_path):
    """Does replacing the bench block refuse, with a sentence, a README without markers?"""
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    with pytest.raises(BenchError, match="bench:start"):
        update_readme(readme, f"{README_START}\nx\n{README_END}")
    assert readme.read_text() == "# no markers here\n"


def test_stat_reports_median_and_range_and_pairs_ratios():
    """Is a figure its median with the lowest and highest run, and a ratio paired by run?"""
    s = Stat([3.0, 1.0, 2.0])
    assert (s.median, s.low, s.high) == (2.0, 1.0, 3.0)
    assert s.fmt() == "2.00 (1.00–3.00)"
    assert ratio(Stat([2.0, 6.0]), Stat([1.0, 2.0])).values == [2.0, 3.0]


def _nb(tree):
    return nbformat.read(ROOT / tree / A / f"{A}.ipynb", as_version=4)


def _answers(nb):
    return [c for c in nb.cells if cells.is_answer(c)]


def test_submissions_are_releases_with_answers_filled_in():
    """Are 'correct' submissions the release plus marker-free answers, 'blank' the release,
    and does 'kernel crash' add exactly one cell that exits?"""
    release, solution = _nb("notebooks"), _nb("solutions")
    correct = make_submission(release, solution, "correct")
    assert len(correct.cells) == len(release.cells)
    for cell in _answers(correct):
        assert "BEGIN SOLUTION" not in cell.source and "NotImplementedError" not in cell.source
    assert make_submission(release, solution, "blank") == release
    crashed = make_submission(release, solution, "kernel crash")
    assert len(crashed.cells) == len(release.cells) + 1
    assert sum("os._exit" in c.source for c in crashed.cells) == 1


def test_an_answer_is_the_solution_without_markers_or_mark_scheme():
    """Is a submitted code answer the solution's lines less its marker lines, and a written
    one the solution less its mark scheme and the blank lines after it?"""
    code = nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n"
                                     "    ### END SOLUTION\n")
    assert _answered(code) == "def f():\n    return 1"
    written = nbformat.v4.new_markdown_cell(
        "Because...\n=== BEGIN MARK SCHEME ===\nKey points.\n=== END MARK SCHEME ===\n\n\nEnd.\n")
    assert _answered(written) == "Because...\nEnd."


def test_plan_covers_every_assignment_before_variations():
    """Does the plan answer each assignment correctly once before any variation?"""
    chosen = plan(["a1", "a2", "a3"], 5)
    assert [(a, v) for _, a, v in chosen] == [("a1", "correct"), ("a2", "correct"),
                                              ("a3", "correct"), ("a1", "blank"),
                                              ("a2", "half answered")]
    assert len({s for s, _, _ in chosen}) == 5
