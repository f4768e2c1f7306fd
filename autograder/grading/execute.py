"""Execute a notebook the way nbgrader does, but survive what kills or hangs a kernel.

`ResilientExecute` is nbgrader's `Execute` preprocessor with three additions: when the kernel
dies (segfault, `os._exit`, out-of-memory kill) or a cell cannot be interrupted, the cell is
marked with an error that says so, a fresh kernel re-runs the cells before it, and execution
goes on after it; a whole-notebook time limit ends a run that would take too long; and what
happened is recorded in `resources["memcourse"]` so the grader can flag it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Float, Integer

from autograder.grading.settings import GradingSettings

KERNEL_NAME = "memcourse-sandbox"


def _error(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue,
                        traceback=[f"{ename}: {evalue}"])


class ResilientExecute(Execute):
    """nbgrader's Execute, restarting the kernel past a cell that killed it."""

    notebook_timeout = Float(
        GradingSettings.class_traits()["notebook_timeout_s"].default_value,
        help="Seconds the whole notebook may take; later cells are marked as timed out."
    ).tag(config=True)
    max_restarts = Integer(
        4, help="Fresh kernels to start after crashes before giving up on the rest."
    ).tag(config=True)
    max_output_bytes = Integer(
        2 * 2**20, help="Output kept per cell; a cell printing more is cut with a note, so a "
                        "print loop cannot fill the grader's memory."
    ).tag(config=True)

    def output(self, outs, msg, display_id, cell_index):
        """Keep a cell's output up to `max_output_bytes`, then note the cut and drop the rest."""
        sizes = self.__dict__.setdefault("_output_sizes", {})
        size = sizes.get(cell_index, 0)
        if size > self.max_output_bytes:
            return None
        size += len(json.dumps(msg.get("content", {}), default=str))
        sizes[cell_index] = size
        if size > self.max_output_bytes:
            self.__dict__.setdefault("_cut_cells", set()).add(cell_index)
            note = NotebookNode(output_type="stream", name="stdout",
                                text=f"\n[output cut by the grader after "
                                     f"{self.max_output_bytes // 2**20} MB]\n")
            outs.append(note)
            return note
        return super().output(outs, msg, display_id, cell_index)

    async def _async_handle_timeout(self, timeout, cell=None):
        """Note the cell that hit the time limit, then interrupt it as nbgrader does."""
        self.__dict__.setdefault("_interrupted", set()).add(self.__dict__.get("_current_index"))
        return await super()._async_handle_timeout(timeout, cell)

    def preprocess(self, nb, resources=None, km=None):
        """Execute every code cell; a crash or a hung cell costs only that cell."""
        report = {"kernel_died": [], "timeout": [], "notebook_timeout": False}
        resources = resources if resources is not None else {}
        skipped: dict[int, NotebookNode] = {}
        deadline = time.monotonic() + self.notebook_timeout
        restarts = 0
        while True:
            NotebookClient.__init__(self, nb, km)
            self.reset_execution_trackers()
            self._check_assign_resources(resources)
            current = {"index": None}
            try:
                with self.setup_kernel():
                    info = self.wait_for_reply(self.kc.kernel_info())
                    if info:
                        self.nb.metadata["language_info"] = info["content"]["language_info"]
                    for index, cell in enumerate(self.nb.cells):
                        if cell.cell_type != "code":
                            continue
                        if index in skipped:
                            cell.outputs = [skipped[index]]
                            continue
                        if time.monotonic() > deadline:
                            report["notebook_timeout"] = True
                            cell.outputs = [_error(
                                "NotebookTimeout", "not run: the notebook exceeded its "
                                f"{self.notebook_timeout:.0f} s time limit")]
                            continue
                        current["index"] = self.__dict__["_current_index"] = index
                        self.preprocess_cell(cell, resources, index)
                break
            except (DeadKernelError, CellTimeoutError, RuntimeError) as e:
                index = current["index"]
                if index is None or restarts >= self.max_restarts:
                    self._give_up(report, index, e)
                    break
                restarts += 1
                if isinstance(e, CellTimeoutError):
                    report["timeout"].append(index)
                    skipped[index] = _error(
                        "CellTimeoutError", f"this cell did not finish within {self.timeout} s "
                        "and could not be interrupted; the grader stopped its kernel and "
                        "continued with the next cell")
                else:
                    report["kernel_died"].append(index)
                    skipped[index] = _error(
                        "KernelDied", "the kernel died while running this cell (a crash, "
                        "os._exit, or running out of memory); the grader restarted it, re-ran "
                        "the cells before this one, and continued with the next cell")
        self.set_widgets_metadata()
        report["output_cut"] = sorted(self.__dict__.get("_cut_cells", ()))
        # A cell that was interrupted at the time limit goes on as an error in the notebook;
        # it is a timeout all the same, wherever the learner wrote it.
        report["timeout"] = sorted(set(report["timeout"]) | self.__dict__.get("_interrupted",
                                                                             set()))
        report["memory_error"] = [
            i for i, cell in enumerate(self.nb.cells) if cell.cell_type == "code" and any(
                o.get("output_type") == "error" and o.get("ename") == "MemoryError"
                for o in cell.get("outputs", []))]
        resources["memcourse"] = report
        return self.nb, resources

    def _give_up(self, report: dict, index: int | None, error: Exception) -> None:
        if index is None:  # not one cell ran: the kernel could not start at all
            report["kernel_failed"] = f"{type(error).__name__}: {error}"[:500]
        else:
            report["kernel_died"].append(index)
        message = _error("KernelDied", f"grading stopped here: {type(error).__name__}")
        for i, cell in enumerate(self.nb.cells):
            if cell.cell_type == "code" and (index is None or i >= index):
                cell.outputs = [message]


def install_kernelspec(base: Path, limits_json: str = "{}", provisioner: str | None = None
                       ) -> Path:
    """Write the sandboxed kernel's kernelspec under `base`; return the folder for JUPYTER_PATH.

    `provisioner` names a jupyter_client kernel provisioner to start it with (the grader's
    `warm_kernel`); its fallback is the spec's command.
    """
    spec_dir = base / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    metadata = {"kernel_provisioner": {"provisioner_name": provisioner}} if provisioner else {}
    (spec_dir / "kernel.json").write_text(json.dumps({
        "metadata": metadata,
        "argv": [sys.executable, "-m", "autograder.grading.kernel_launcher",
                 "{connection_file}"],
        "display_name": "Python 3 (memcourse grader)",
        "language": "python",
        # SIGINT sent to bubblewrap does not reach the kernel inside; interrupt by message.
        "interrupt_mode": "message",
        "env": {"MEMCOURSE_KERNEL_LIMITS": limits_json},
    }))
    return base


def ipc_directory() -> Path:
    """A short private folder for the kernel's IPC sockets (socket paths are limited to ~100
    characters, and a sandbox without network cannot use TCP on the host's loopback)."""
    return Path(tempfile.mkdtemp(prefix="mc-ipc-", dir="/tmp" if os.path.isdir("/tmp") else None))
