"""A warm Python process that forks check children, so each starts in milliseconds.

A fresh child spends about 3 s importing torch before it can run a learner's code; a notebook
cell that checks one exercise, and the test suite that checks hundreds of implementations, pay
that again and again. The zygote imports everything once and forks a child per request; the
child sets its own session, resource limits and output file, then runs `child.main` exactly as
`python -m autograder.engine.child` would.

`ZygoteProcess` looks like `subprocess.Popen` to the runner (pid, poll, wait, returncode, kill).
Set MEMCOURSE_ZYGOTE=0 to start every child as a new interpreter instead.
"""

from __future__ import annotations

import array
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _warm_imports() -> None:
    """Import what children need, but run nothing that starts threads (fork must stay safe)."""
    import cloudpickle  # noqa: F401
    import numpy  # noqa: F401

    try:
        import h5py  # noqa: F401
        import torch  # noqa: F401
        import torch.utils.data  # noqa: F401
    except ImportError:
        pass
    import autograder.engine.child  # noqa: F401
    import autograder.engine.context  # noqa: F401
    import autograder.exercises

    autograder.exercises.all_exercises()
    try:  # what the grader's program runner needs as well
        import IPython.core.interactiveshell  # noqa: F401
        import nbformat  # noqa: F401
    except ImportError:
        pass


def _run_target(request: dict, fds: list[int]) -> int:
    """In a forked child: run what the request names with the arguments it gives."""
    if request.get("target") == "program":
        from autograder.grading.program import main as program_main

        return program_main(request["args"])
    from autograder.engine.child import main as child_main

    return child_main([request["jobdir"], str(fds[0]), str(fds[1])])


def _serve(path: str) -> None:
    """Accept one client; fork a child per request; report each child's exit."""
    from autograder.engine.limits import Limits, apply_in_child

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    print("ready", flush=True)
    conn, _ = server.accept()
    server.close()
    children: set[int] = set()
    buffer = b""
    while True:
        readable, _, _ = select.select([conn], [], [], 0.05)
        if readable:
            fds = array.array("i")
            data, ancdata, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(16 * fds.itemsize))
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            if not data:
                break  # the client went away: stop, taking no children with us
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                passed = list(fds)
                fds = array.array("i")
                pid = os.fork()
                if pid == 0:  # the child: a check process or the grader's program
                    code = 1
                    try:
                        conn.close()
                        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                        apply_in_child(Limits(**request["limits"]))
                        out = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                        devnull = os.open(os.devnull, os.O_RDONLY)
                        os.dup2(devnull, 0)
                        os.dup2(out, 1)
                        os.dup2(out, 2)
                        os.environ.clear()
                        os.environ.update(request["env"])
                        os.chdir(request["cwd"])
                        code = _run_target(request, passed)
                    except BaseException:
                        import traceback

                        traceback.print_exc()
                    finally:
                        sys.stdout.flush()
                        sys.stderr.flush()
                        os._exit(code or 0)
                for fd in passed:
                    os.close(fd)
                children.add(pid)
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        for pid in list(children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                children.discard(pid)
                continue
            if done:
                children.discard(pid)
                code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                conn.sendall(json.dumps({"exit": pid, "code": code}).encode() + b"\n")


class Zygote:
    """The client side: one warm zygote per parent process, started on first use."""

    _instances: dict[tuple, Zygote] = {}

    def __init__(self, env: dict[str, str], wrap=None):
        self._dir = tempfile.mkdtemp(prefix="mc-zygote-")
        path = os.path.join(self._dir, "sock")
        command = [sys.executable, "-m", "autograder.engine.zygote", path]
        if wrap is not None:
            # A sandboxed zygote: its children inherit the sandbox. Every job folder is made
            # under the temporary folder, which the sandbox must therefore let it write.
            command = wrap(command, [Path(tempfile.gettempdir())])
        self.proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self._path = path
        self._conn: socket.socket | None = None
        self.exits: dict[int, int] = {}
        self._buffer = b""

    @property
    def conn(self) -> socket.socket:
        """The connection, made on first use: starting returns at once, so the zygote can
        import torch while the caller does something else."""
        if self._conn is None:
            line = self.proc.stdout.readline()
            if line.strip() != b"ready":
                raise RuntimeError("the zygote did not start")
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(self._path)
            self._conn = conn
        return self._conn

    @classmethod
    def get(cls, env: dict[str, str], wrap=None) -> Zygote | None:
        """The zygote for this wrapper (None: unwrapped), or None where forking is unavailable
        or disabled; one is started per wrapper, temporary folder and process."""
        if os.environ.get("MEMCOURSE_ZYGOTE", "1") == "0" or not hasattr(os, "fork"):
            return None
        key = (wrap, tempfile.gettempdir(), os.getpid())
        inst = cls._instances.get(key)
        if inst is None or inst.proc.poll() is not None:
            try:
                inst = cls._instances[key] = cls(env, wrap)
            except (OSError, RuntimeError):
                cls._instances.pop(key, None)
                return None
        return inst

    def _messages(self, timeout: float) -> list[dict]:
        out = []
        ready, _, _ = select.select([self.conn], [], [], timeout)
        if ready:
            data = self.conn.recv(65536)
            if not data:
                raise RuntimeError("the zygote stopped")
            self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            out.append(json.loads(line))
        for message in out:
            if "exit" in message:
                self.exits[message["exit"]] = message["code"]
        return out

    def spawn(self, jobdir: str, events_fd: int, control_fd: int, cwd: str, env: dict,
              limits: dict, output: str) -> ZygoteProcess:
        """Fork a check child (autograder.engine.child) talking over the two descriptors."""
        request = {"jobdir": jobdir, "cwd": cwd, "env": env, "limits": limits,
                   "output": output}
        return self._fork(request, [events_fd, control_fd])

    def spawn_program(self, args: list[str], cwd: str, env: dict, limits: dict,
                      output: str) -> ZygoteProcess:
        """Fork the grader's program runner (autograder.grading.program) with `args`."""
        request = {"target": "program", "args": args, "cwd": cwd, "env": env,
                   "limits": limits, "output": output}
        return self._fork(request, [])

    def _fork(self, request: dict, fds: list[int]) -> ZygoteProcess:
        payload = json.dumps(request).encode() + b"\n"
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        self.conn.sendmsg([payload], ancillary)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for message in self._messages(0.5):
                if "pid" in message:
                    return ZygoteProcess(self, message["pid"])
        raise RuntimeError("the zygote did not fork a child")


class ZygoteProcess:
    """A child forked by the zygote, with the parts of Popen's interface the runner uses."""

    def __init__(self, zygote: Zygote, pid: int):
        self.zygote, self.pid, self.returncode = zygote, pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                self.zygote._messages(0)
            except RuntimeError:
                self.returncode = -signal.SIGKILL
            self.returncode = self.zygote.exits.pop(self.pid, self.returncode)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("zygote child", timeout)
            try:
                self.zygote._messages(0.05)
            except RuntimeError:
                self.returncode = -signal.SIGKILL
        return self.returncode

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


if __name__ == "__main__":
    _warm_imports()
    try:
        _serve(sys.argv[1])
    finally:
        Path(sys.argv[1]).unlink(missing_ok=True)
