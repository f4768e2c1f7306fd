"""Start the grader's kernel warm: forked from the slot's zygote instead of a new interpreter.

A kernel started as `python -m ipykernel_launcher` spends seconds importing IPython, and then
the notebook's first cell imports torch again; the slot's zygote has both imported already.
`WarmKernelProvisioner` is a jupyter_client kernel provisioner (the documented way to change
how a kernel process is started, registered under `jupyter_client.kernel_provisioners` in
pyproject.toml) that asks the zygote to fork the kernel inside the slot's sandbox, under the
kernel's limits, in a session of its own. Everything else (connection file, messages,
interrupts by message, restarts after a crash) stays jupyter_client's.

The worker names the zygote before execution (`use`); without one the provisioner starts the
kernelspec's command as jupyter_client always does (`kernel_launcher`, its own sandbox).
"""

from __future__ import annotations

import os
import signal
from dataclasses import asdict, dataclass
from importlib.metadata import EntryPoint
from typing import Any

from jupyter_client.provisioning import KernelProvisionerFactory, LocalProvisioner

from autograder.engine.limits import Limits
from autograder.engine.zygote import Zygote, ZygoteProcess

PROVISIONER_NAME = "memcourse-warm"
KERNEL_TARGET = "autograder.grading.warm_kernel:run_kernel"
# What a forked kernel needs imported beforehand, for the zygote's preload.
PRELOAD = ("ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.debugger")


@dataclass
class _Warm:
    zygote: Zygote | None = None
    limits: Limits | None = None
    output: str = os.devnull


_current = _Warm()


def use(zygote: Zygote | None, limits: Limits | None = None, output: str = os.devnull) -> None:
    """Fork the next kernels from `zygote` under `limits`, their output appended to `output`;
    `use(None)` goes back to starting the kernelspec's command."""
    _current.zygote, _current.limits, _current.output = zygote, limits, output


def register() -> None:
    """Make the provisioner known to jupyter_client even where the course's package metadata
    predates it (an install from before the entry point existed)."""
    KernelProvisionerFactory.provisioners.setdefault(PROVISIONER_NAME, EntryPoint(
        name=PROVISIONER_NAME, value=f"{__name__}:WarmKernelProvisioner",
        group=KernelProvisionerFactory.GROUP_NAME))


class _Process:
    """A forked kernel with the parts of Popen's interface LocalProvisioner uses."""

    stdin = stdout = stderr = None

    def __init__(self, child: ZygoteProcess):
        self.child, self.pid = child, child.pid

    def poll(self) -> int | None:
        return self.child.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.child.wait(timeout)

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class WarmKernelProvisioner(LocalProvisioner):
    """LocalProvisioner whose kernel process is forked by the slot's zygote (see module)."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> dict:
        zygote = _current.zygote
        if zygote is None or zygote.proc.poll() is not None:
            return await super().launch_kernel(cmd, **kwargs)
        env = dict(kwargs.get("env") or os.environ)
        env.pop("JPY_PARENT_PID", None)  # its parent is the zygote, not this process
        cwd = str(kwargs.get("cwd") or os.getcwd())
        extra = [a for a in cmd if a.startswith("--")]
        child = zygote.spawn_target(KERNEL_TARGET, ["-f", self.parent.connection_file, *extra],
                                    cwd, env, asdict(_current.limits or Limits()),
                                    _current.output)
        self.process = _Process(child)
        # The child makes itself a session (and process group) leader before it runs the
        # kernel, so signals for the group reach the kernel and the workers it starts.
        self.pid = self.pgid = child.pid
        self.cwd = cwd
        return self.connection_info


def run_kernel(args: list[str]) -> int:
    """In the forked child: run an IPython kernel, as `python -m ipykernel_launcher ARGS`."""
    from ipykernel.kernelapp import IPKernelApp  # lazy: imported by the zygote beforehand

    app = IPKernelApp.instance()
    app.initialize(args)
    app.start()
    return 0
