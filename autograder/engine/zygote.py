"""A warm Python process that forks children on request, so each starts in milliseconds.

A fresh child spends about 3 s importing torch before it can run a learner's code; a notebook
cell that checks one exercise, and the test suite that checks hundreds of implementations, pay
that again and again. The zygote imports everything once and forks a child per request; the
child sets its own session, resource limits and output file, then calls the request's target,
a function named `"package.module:function"` that takes the request's arguments and returns an
exit status: for a check, `CHECK_CHILD` runs exactly as `python -m autograder.engine.child` would.

The zygote knows nothing above the engine: its client names the modules to import beforehand
(`Zygote.get(..., preload=...)`). `ZygoteProcess` looks like `subprocess.Popen` to the runner
(pid, poll, wait, returncode, kill). Set MEMCOURSE_ZYGOTE=0 to start every child as a new
interpreter instead.
"""

from __future__ import annotations

import argparse
import array
import atexit
import ctypes
import gc
import importlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable
from pathlib import Path

from autograder.engine import child  # what a check child runs: imported here, it forks warm
from autograder.engine.limits import Limits, apply_in_child

CHECK_CHILD = "autograder.engine.child:main"  # args: jobdir; then the two passed descriptors

# Third-party modules the children need (the check child and the grader's program), each
# imported if it is installed; the engine's own modules come with `child` above. Nothing here
# may start a thread: fork must stay safe.
_WARM = ("cloudpickle", "numpy", "h5py", "torch", "torch.utils.data",
         "IPython.core.interactiveshell", "nbformat")


def _warm_imports() -> None:
    """Import the third-party modules children need, skipping any that is not installed."""
    for name in _WARM:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _preload(entries: Iterable[str], done: set[str]) -> None:
    """Import each `"module"`, or import `"module:function"` and call `function()`, once.

    A failure is reported on stderr and skipped: a child that needs the module imports it itself.
    Everything imported is then frozen out of the garbage collector (`gc.freeze`): a child's
    collection would otherwise visit, and so copy, every page of the zygote's objects.
    """
    try:
        _import_each(entries, done)
    finally:
        gc.freeze()


def _import_each(entries: Iterable[str], done: set[str]) -> None:
    for entry in entries:
        if entry in done:
            continue
        done.add(entry)
        try:
            if ":" in entry:
                child.resolve(entry)()
            else:
                importlib.import_module(entry)
        except Exception:
            print(f"memcourse zygote: could not preload {entry}:", file=sys.stderr)
            traceback.print_exc()
            sys.stderr.flush()


PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4


def _prctl(option: int, value: int) -> None:
    """Linux prctl(2); a no-op elsewhere."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _name_process(target: str) -> None:
    """Name a forked child after its target (`ps`, /proc/PID/comm): `mc-child` for a check,
    `mc-warm_kernel` for a kernel, so a glance or a profiler tells the children apart."""
    module = target.partition(":")[0].rsplit(".", 1)[-1]
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(f"mc-{module}"[:15])
    except OSError:
        pass


def _run_target(request: dict, fds: list[int]) -> int:
    """In a forked child: call the request's target with its arguments, then the numbers of
    the descriptors passed with it."""
    return child.resolve(request["target"])([*request["args"], *map(str, fds)])


def _serve(path: str, warmed: set[str]) -> None:
    """Accept one client; fork a child per request; report each child's exit.

    A request may name more modules to preload (`warmed` holds those done); the zygote imports
    them before it forks, so later children start warm.
    """
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
                _preload(request.get("preload", ()), warmed)
                passed = list(fds)
                fds = array.array("i")
                pid = os.fork()
                if pid == 0:  # the child: a check process, or what else the client asked for
                    code = 1
                    try:
                        conn.close()
                        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                        _prctl(PR_SET_DUMPABLE, 1)  # its parent measures it (smaps)
                        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # it dies with the zygote
                        _name_process(request["target"])
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


SOCKET_PREFIX = "mcz-"


def _socket_folder() -> str:
    """A new private folder for the zygote's socket, under a short path.

    A Unix socket's path may not exceed 107 bytes; a grading job's temporary folder is often
    longer (it names the student, the assignment and the notebook), and a zygote that cannot
    bind its socket would leave every child to start cold. /tmp keeps the path short.
    """
    base = "/tmp" if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK) else None
    return tempfile.mkdtemp(prefix=SOCKET_PREFIX, dir=base)


class Zygote:
    """The client side: one warm zygote per parent process, started on first use."""

    _instances: dict[tuple, Zygote] = {}
    _failed: set[tuple] = set()  # keys whose zygote stopped before serving: not restarted

    def __init__(self, env: dict[str, str], wrap=None, preload: tuple[str, ...] = ()):
        self.folder = _socket_folder()
        path = os.path.join(self.folder, "sock")
        command = [sys.executable, "-m", "autograder.engine.zygote", path]
        if preload:
            command += ["--preload", ",".join(preload)]
        self.preload = list(preload)  # what it imports; more go with the next request
        self._unsent: list[str] = []
        self.sandboxed = wrap is not None
        if wrap is not None:
            # A sandboxed zygote: its children inherit the sandbox. Every job folder is made
            # under the temporary folder, which the sandbox must therefore let it write.
            command = wrap(command, [Path(tempfile.gettempdir()), Path(self.folder)])
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

    @property
    def own_pids(self) -> set[int]:
        """The zygote's own processes: the one started (a sandbox, or the zygote) and, inside a
        sandbox, the zygote under it; never a child it forked."""
        pids = {self.proc.pid}
        if self.sandboxed:
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    pids.update(int(p) for p in f.read().split())
            except OSError:
                pass
        return pids

    def clear_folder(self) -> None:
        """Remove what children wrote into the socket's folder (it is writable in the
        sandbox), keeping the socket."""
        for entry in Path(self.folder).iterdir():
            if entry.name == "sock":
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    @classmethod
    def running(cls) -> list[Zygote]:
        """The zygotes this process started that are still running."""
        return [z for z in cls._instances.values() if z.proc.poll() is None]

    def close(self) -> None:
        """Stop the zygote and every child it forked that is still running; remove its socket.

        Its children run in sessions of their own, so each is killed by its process group.
        """
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        for key, inst in list(Zygote._instances.items()):
            if inst is self:
                del Zygote._instances[key]

    @classmethod
    def close_all(cls) -> None:
        """Stop every zygote this process started (`close`)."""
        for inst in list(cls._instances.values()):
            if inst is not None:
                inst.close()
        cls._instances.clear()

    @classmethod
    def get(cls, env: dict[str, str], wrap=None, preload: tuple[str, ...] = ()
            ) -> Zygote | None:
        """The zygote for this wrapper (None: unwrapped), or None where forking is unavailable
        or disabled; one is started per wrapper, temporary folder and process.

        `preload` names what the children will need: `"module"` is imported in the zygote,
        `"module:function"` imported and `function()` called. A zygote already running imports
        the entries it lacks before its next fork.
        """
        if os.environ.get("MEMCOURSE_ZYGOTE", "1") == "0" or not hasattr(os, "fork"):
            return None
        key = (wrap, tempfile.gettempdir(), os.getpid())
        if key in cls._failed:
            return None
        inst = cls._instances.get(key)
        if inst is not None and inst.proc.poll() is not None:
            # It stopped. One that never served a request will not start next time either:
            # every later child then starts as a fresh interpreter, without paying for a
            # zygote that imports torch and fails again.
            cls._instances.pop(key, None)
            if inst._conn is None:
                cls._failed.add(key)
                inst.close()
                return None
            inst.close()
            inst = None
        if inst is None:
            if not cls._instances:
                atexit.register(cls.close_all)  # no socket folder outlives its process
            try:
                inst = cls._instances[key] = cls(env, wrap, tuple(preload))
            except (OSError, RuntimeError):
                cls._instances.pop(key, None)
                return None
        else:
            for entry in preload:
                if entry not in inst.preload:
                    inst.preload.append(entry)
                    inst._unsent.append(entry)
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

    def spawn_target(self, target: str, args: list[str], cwd: str, env: dict, limits: dict,
                     output: str, fds: list[int] = ()) -> ZygoteProcess:
        """Fork a child that calls `target` ("package.module:function") and exits with what it
        returns. It gets `args`, then the numbers the descriptors `fds` have in it (passed over
        the socket), as strings; it runs in `cwd` with exactly `env`, under `limits` (a
        `Limits` as a dict), its stdin empty and its stdout and stderr appended to `output`."""
        request = {"target": target, "args": list(args), "cwd": cwd, "env": env,
                   "limits": limits, "output": output}
        if self._unsent:
            request["preload"] = self._unsent
        payload = json.dumps(request).encode() + b"\n"
        fds = list(fds)
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        self.conn.sendmsg([payload], ancillary)
        self._unsent = []
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


def _main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m autograder.engine.zygote")
    parser.add_argument("socket", help="the Unix socket to serve on")
    parser.add_argument("--preload", default="",
                        help="comma-separated modules to import, or module:function to call")
    options = parser.parse_args(argv)
    # Not dumpable: the children it forks (a learner's kernel among them) run as the same user,
    # and must not be able to read or write its memory (/proc/PID/mem), which every later
    # child inherits.
    _prctl(PR_SET_DUMPABLE, 0)
    _warm_imports()
    warmed: set[str] = set()
    _preload([e for e in options.preload.split(",") if e], warmed)
    try:
        _serve(options.socket, warmed)
    finally:
        Path(options.socket).unlink(missing_ok=True)
        # Its folder too, when a client that died without closing it cannot (a learner's
        # kernel stopped by a kill); inside a sandbox the folder is a mount point and stays
        # for the client, which removes it.
        folder = Path(options.socket).parent
        if folder.name.startswith(SOCKET_PREFIX):
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
