"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from autograder import course

ROOT = Path(__file__).resolve().parents[1]
# Debian's Chromium, driven through Playwright (never a downloaded browser), and its flags.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-quic", "--no-first-run"]


def copy_course(dest: Path) -> Path:
    """Copy what nbgrader needs of this checkout's course into `dest`."""
    return course.copy_course(ROOT, dest)


def hidden_and_visible_test_lines(solution) -> tuple[list[str], list[str]]:
    """The non-blank lines of the graded test cells inside and outside the hidden-test markers."""
    hidden, visible = [], []
    for cell in solution.cells:
        if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("grade"):
            continue
        inside = False
        for line in (x.strip() for x in cell.source.splitlines()):
            if line.startswith("### BEGIN HIDDEN TESTS"):
                inside = True
            elif line.startswith("### END HIDDEN TESTS"):
                inside = False
            elif line:
                (hidden if inside else visible).append(line)
    return hidden, visible


def free_port() -> int:
    """Return a TCP port that is free on localhost right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningLab:
    """JupyterLab started with the exact command `make lab` uses, headless, on a free port."""

    def __init__(self, cwd: Path = ROOT, timeout: float = 60.0):
        import os
        import secrets
        import subprocess
        import time
        import urllib.request

        from memcourse_apps.lab import lab_command

        self.port, self.token = free_port(), secrets.token_hex(8)
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = lab_command(port=self.port, open_browser=False, token=self.token)
        self.log = open(os.devnull, "w")
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(self.url("/api/status"), timeout=2)
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("JupyterLab did not start") from None
                time.sleep(0.3)

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}token={self.token}"

    def get(self, path: str) -> tuple[int, str]:
        """GET `path` with the token; return (status, body) without following to a login page."""
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(self.url(path), timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stop(self) -> None:
        import os
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except (ProcessLookupError, OSError):
            pass
        except Exception:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()
