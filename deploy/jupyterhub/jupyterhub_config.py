"""JupyterHub for one memcourse class: students, instructors and graders, formgrader as a service.

Who is in the class and where its files live is in class.toml (or the file MEMCOURSE_CLASS
names). Run the hub from the course's environment, as root so that it can start each person's
server as their own Unix account, in a folder for its state (database, cookie secret):

    sudo mkdir -p /srv/jupyterhub /srv/nbgrader/exchange && sudo chmod 1777 /srv/nbgrader/exchange
    cd /srv/jupyterhub && sudo MEMCOURSE_CLASS=/srv/class.toml \\
        /srv/memcourse/.venv/bin/jupyterhub -f /srv/memcourse/deploy/jupyterhub/jupyterhub_config.py

(README.md beside this file has every step, formgrader's own Unix account among them.)

This follows nbgrader's documented multi-user set-up ("one class, multiple graders"): a shared
exchange; the course id set for every server; formgrader as a hub service at
/services/<course id>/ that members of the group formgrade-<course id> may open; enrolment as
the group nbgrader-<course id>, which nbgrader's JupyterHubAuthPlugin reads. Login is
JupyterHub's default (PAM: the machine's accounts) unless you choose another authenticator.
tests/apps/test_hub.py starts this file with a test authenticator and one Unix account for
everyone, and walks a class through it in a browser.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path

from tornado import web

c = get_config()  # noqa: F821 (provided by traitlets when JupyterHub loads this file)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CLASS_FILE = Path(os.environ.get("MEMCOURSE_CLASS") or HERE / "class.toml").resolve()


class ClassFileError(ValueError):
    """class.toml is missing or says something the hub cannot use; the message says what."""


try:
    CLASS = tomllib.loads(CLASS_FILE.read_text())
except OSError as e:
    raise ClassFileError(f"cannot read the class file {CLASS_FILE} ({e.strerror}); set "
                         "MEMCOURSE_CLASS to its path (with sudo: sudo MEMCOURSE_CLASS=...)"
                         ) from None
except tomllib.TOMLDecodeError as e:
    raise ClassFileError(f"{CLASS_FILE} is not valid TOML: {e}") from None

COURSE_ID = str(CLASS.get("course_id", ""))
if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", COURSE_ID):
    raise ClassFileError(f"course_id {COURSE_ID!r} in {CLASS_FILE}: use letters, digits, '.', "
                         "'_' and '-' only (it names hub groups, a service URL and an exchange "
                         "folder)")
# JupyterHub's role names are stricter (lower case, ending in a letter or digit).
ROLE_ID = re.sub(r"[^a-z0-9_.-]", "-", COURSE_ID.lower()).rstrip("_.-") or "course"
COURSE_DIR = (CLASS_FILE.parent / CLASS.get("course_directory", REPO)).resolve()
if not (COURSE_DIR / "nbgrader_config.py").is_file():
    raise ClassFileError(f"course_directory {COURSE_DIR} (from {CLASS_FILE}) has no "
                         "nbgrader_config.py: point it at the course folder")
EXCHANGE = (CLASS_FILE.parent / CLASS.get("exchange", "/srv/nbgrader/exchange")).resolve()
try:
    FORMGRADER_PORT = int(CLASS.get("formgrader_port", 10101))
except (TypeError, ValueError):
    raise ClassFileError(f"formgrader_port in {CLASS_FILE} must be a port number") from None
INSTRUCTORS = list(CLASS.get("instructors", []))
GRADERS = list(CLASS.get("graders", []))
STUDENTS = list(CLASS.get("students", []))
GRADER_ACCOUNT = CLASS.get("grader_account") or f"grader-{COURSE_ID}"
FORMGRADE_GROUP = f"formgrade-{COURSE_ID}"  # nbgrader reads these two prefixes
STUDENT_GROUP = f"nbgrader-{COURSE_ID}"
BIN = Path(sys.executable).parent  # the course's environment: jupyterhub-singleuser, nbgrader

# ---------------------------------------------------------------- every server of the class
SERVER_ENV = {
    "MEMCOURSE_COURSE_ID": COURSE_ID,
    "MEMCOURSE_EXCHANGE": str(EXCHANGE),
    # nbgrader settings for the hub (jupyter-config/nbgrader_config.py here), then the course's
    # own JupyterLab settings (no first-run question about Jupyter news).
    "JUPYTER_CONFIG_PATH": os.pathsep.join([str(HERE / "jupyter-config"),
                                            str(REPO / "jupyter-config")]),
    # formgrader creates the gradebook with nbgrader's `alembic` script, found by name
    "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "/usr/bin:/bin")]),
}

# ---------------------------------------------------------------- people and groups
c.Authenticator.admin_users = set(INSTRUCTORS)
c.Authenticator.allowed_users = set(INSTRUCTORS + GRADERS + STUDENTS)
# Students an instructor adds later (formgrader's Manage Students, the admin page) may log in.
c.Authenticator.allow_existing_users = True
c.JupyterHub.load_groups = {
    FORMGRADE_GROUP: {"users": [*INSTRUCTORS, *GRADERS, GRADER_ACCOUNT]},
    # Instructors and graders too, so they can see the course as a student does.
    STUDENT_GROUP: {"users": INSTRUCTORS + GRADERS + STUDENTS},
}
c.JupyterHub.load_roles = [
    # What a user's server may ask the hub, beyond JupyterHub's default (activity, access):
    # nbgrader's Assignment List reads which groups (courses) its user is in, an instructor's
    # Course List which formgrader services there are. JupyterHub grants a server only what
    # its user also has, so students get no service list, and no server gets admin rights
    # (not "inherit": an instructor's notebooks would hold an admin token).
    {"name": "server", "scopes": [
        "users:activity!user", "access:servers!server", "read:users:name!user",
        "read:users:groups!user", "list:services", f"read:services!service={COURSE_ID}"]},
    {"name": f"formgrade-{ROLE_ID}", "groups": [FORMGRADE_GROUP],
     "scopes": [f"access:services!service={COURSE_ID}", "list:services",
                f"read:services!service={COURSE_ID}"]},
    # Formgrader reads who is enrolled, and Manage Students adds to this class's group only.
    {"name": f"formgrader-{ROLE_ID}", "services": [COURSE_ID],
     "scopes": ["read:users:name", "read:users:groups", "list:groups",
                f"groups!group={STUDENT_GROUP}"]},
]


def refuse_unenrolled(spawner) -> None:
    """Start no server for a user who is not in the class, and tell them why in a sentence.

    With a login open to a whole campus (`c.Authenticator.allow_all = True`), this is where a
    person who is not enrolled learns so, rather than in an empty Assignment List.
    """
    groups = {g.name for g in spawner.user.groups}
    if spawner.user.admin or groups & {FORMGRADE_GROUP, STUDENT_GROUP}:
        return
    # JupyterHub passes an HTTPError through to its error page and shows the exception's
    # `jupyterhub_message` there, in place of "Unhandled error starting server".
    error = web.HTTPError(403, f"{spawner.user.name} is not enrolled in {COURSE_ID}",
                          reason="Not enrolled")
    error.jupyterhub_message = (
        f"You ({spawner.user.name}) are not enrolled in {COURSE_ID}, so there is no "
        f"server for you on this hub. If you take the course, ask your instructor to add "
        f"{spawner.user.name} to the class.")
    raise error


# ---------------------------------------------------------------- students' servers
c.Spawner.pre_spawn_hook = refuse_unenrolled
c.Spawner.cmd = [str(BIN / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.environment = SERVER_ENV
# The course's server loads nbgrader's extensions; on a machine busy with fifty of them a
# start can take longer than JupyterHub's 30 s default.
c.Spawner.http_timeout = 120
c.Spawner.start_timeout = 180

# ---------------------------------------------------------------- formgrader, a hub service
formgrader = {
    "name": COURSE_ID,
    "url": f"http://127.0.0.1:{FORMGRADER_PORT}",
    "command": [str(BIN / "jupyterhub-singleuser"), f"--ServerApp.root_dir={COURSE_DIR}"],
    "cwd": str(COURSE_DIR),
    # nbgrader's hub plugin asks the hub about JUPYTERHUB_USER, which a service lacks.
    "environment": {**SERVER_ENV, "JUPYTERHUB_USER": GRADER_ACCOUNT,
                    "JUPYTERHUB_DEFAULT_URL": "/lab/tree/notebooks"},
    "oauth_no_confirm": True,  # graders open their own course's service: no consent page
}
# Formgrader's JupyterLab has a terminal: whoever grades gets a shell as this account.
FORMGRADER_ACCOUNT = str(CLASS.get("formgrader_unix_account", ""))
if FORMGRADER_ACCOUNT:
    formgrader["user"] = FORMGRADER_ACCOUNT
    if FORMGRADER_ACCOUNT == "root":
        formgrader["command"].append("--allow-root")
elif hasattr(os, "geteuid") and os.geteuid() == 0:
    raise ClassFileError(
        f"formgrader would run as root, the hub's account, and give every grader a root "
        f"terminal: set formgrader_unix_account in {CLASS_FILE} to an unprivileged account "
        f"that owns {COURSE_DIR / 'grading'} and can read the exchange (or to \"root\" to "
        "accept that)")
c.JupyterHub.services = [formgrader]

# ---------------------------------------------------------------- the proxy
# `make hub-proxy` (scripts/ensure-hub-proxy) installs a pinned configurable-http-proxy here;
# without it JupyterHub looks for `configurable-http-proxy` on PATH.
_proxy = BIN.parent / "hub-proxy" / "node_modules" / ".bin" / "configurable-http-proxy"
if _proxy.exists():
    c.ConfigurableHTTPProxy.command = [str(_proxy)]
