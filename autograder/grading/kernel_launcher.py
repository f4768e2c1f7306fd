"""Start an IPython kernel with resource limits, inside a sandbox when bubblewrap exists.

Used as a kernelspec's command: `python -m autograder.grading.kernel_launcher
{connection_file}`. The kernel may write only its working folder (the submission's scratch
copy) and the folder of its IPC sockets; $MEMCOURSE_SANDBOX_HIDE lists folders to hide.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from autograder.engine.limits import Limits, apply_in_child
from autograder.grading.sandbox import Sandbox


def main(argv: list[str]) -> None:
    connection_file = argv[0]
    limits = Limits(**json.loads(os.environ.get("MEMCOURSE_KERNEL_LIMITS", "{}")))
    apply_in_child(limits)
    with open(connection_file) as f:
        ip = json.load(f).get("ip", "")
    writable = [Path.cwd()]
    if ip.startswith("/"):
        writable.append(Path(ip).parent)
    hidden = [Path(p) for p in os.environ.get("MEMCOURSE_SANDBOX_HIDE", "").split(os.pathsep)
              if p]
    sandbox = Sandbox(writable=writable, hidden=hidden,
                      readable=[Path(connection_file)])
    os.environ.pop("JPY_PARENT_PID", None)  # the sandboxed kernel cannot see its parent's pid
    command = sandbox.wrap([sys.executable, "-m", "ipykernel_launcher", "-f", connection_file])
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
