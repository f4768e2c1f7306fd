"""A class on a real JupyterHub, in a browser: release, fetch, submit, collect, grade, feedback.

deploy/jupyterhub/jupyterhub_config.py is started as it ships, with its real proxy
(configurable-http-proxy from `make hub-proxy`), and only what a test machine must change on
top: a test authenticator (any name, one password, open to anyone as a campus-wide login
would be), a local spawner that runs everyone as this Unix account with their homes in a
temporary folder, free ports, and a class.toml naming a copy of the course. Chromium
(Debian's, through Playwright) then plays an instructor, two enrolled students and one who is
not. Each step saves a screenshot under test-artifacts/hub/; README.md uses them.
"""

from __future__ import annotations

import getpass
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest

from tests.helpers import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    ROOT,
    copy_course,
    free_port,
    hidden_and_visible_test_lines,
)

pytestmark = pytest.mark.slow

A = "05_hdf5_dataset"
# Not the course's default ("memcourse"): the id must reach every server from class.toml.
COURSE_ID = "data-loading-2026"
PASSWORD = "class-password"
DEPLOY = ROOT / "deploy" / "jupyterhub"
BIN = Path(sys.executable).parent
PROXY = BIN.parent / "hub-proxy" / "node_modules" / ".bin" / "configurable-http-proxy"
ARTIFACTS = ROOT / "test-artifacts" / "hub"
STEP_TIMEOUT_MS = 60_000
SPAWN_TIMEOUT_MS = 150_000  # a server's first start on a busy 2-core machine


class Hub:
    """JupyterHub from deploy/jupyterhub/, on free ports of 127.0.0.1, with its proxy."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.course = copy_course(base / "course")
        self.exchange = base / "exchange"
        self.homes = base / "homes"
        state = base / "state"
        for folder in (self.exchange, self.homes, state):
            folder.mkdir()
        port, hub_port, api_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{port}"
        (base / "class.toml").write_text(
            f'course_id = "{COURSE_ID}"\ninstructors = ["instructor"]\ngraders = []\n'
            'students = ["alice", "bob"]\ncourse_directory = "course"\n'
            f'exchange = "{self.exchange}"\nformgrader_port = {free_port()}\n'
            # One Unix account for everyone here; a real hub names an unprivileged one.
            f'formgrader_unix_account = "{getpass.getuser()}"\n')
        config = base / "jupyterhub_test_config.py"
        config.write_text("\n".join([
            "c = get_config()  # noqa: F821",
            f"load_subconfig({str(DEPLOY / 'jupyterhub_config.py')!r})  # noqa: F821",
            # what a test machine changes: login, one Unix account, ports, state
            'c.JupyterHub.authenticator_class = "dummy"',
            f"c.DummyAuthenticator.password = {PASSWORD!r}",
            "c.Authenticator.allow_all = True  # a campus-wide login: enrolment is the groups",
            'c.JupyterHub.spawner_class = "simple"',
            "c.SimpleLocalProcessSpawner.home_dir_template = "
            f"{str(self.homes)!r} + '/{{username}}'",
            'c.Spawner.args = ["--allow-root"]' if os.geteuid() == 0 else "",
            f'c.JupyterHub.bind_url = "{self.url}"',
            f'c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"',
            f'c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"',
            f'c.JupyterHub.db_url = "sqlite:///{state}/jupyterhub.sqlite"',
            f'c.JupyterHub.cookie_secret_file = "{state}/jupyterhub_cookie_secret"',
            f'c.ConfigurableHTTPProxy.pid_file = "{state}/proxy.pid"',
            ""]))
        env = {**os.environ, "MEMCOURSE_CLASS": str(base / "class.toml"),
               "MEMCOURSE_SIZE": "tiny"}
        env.pop("JUPYTER_CONFIG_PATH", None)  # the deployment sets its own
        self.log_path = ARTIFACTS / "hub.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen([str(BIN / "jupyterhub"), "-f", str(config)], cwd=state,
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 90
        while self.status("/hub/api") != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"JupyterHub did not start; see {self.log_path}")
            time.sleep(0.5)

    def status(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def stop(self) -> None:
        """Stop the hub (it stops every server it started), then anything left of ours."""
        import psutil  # lazy: only the teardown needs it

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        # Servers run in sessions of their own; the hub stops them, this makes sure.
        for p in psutil.process_iter(["cmdline", "cwd"]):
            try:
                ours = str(self.base) in " ".join(p.info["cmdline"] or []) + (p.info["cwd"] or "")
                if ours and p.pid != os.getpid():
                    p.kill()
            except (psutil.Error, OSError):
                pass
        self.log.close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed: run scripts/ensure-system-packages")
    if not PROXY.exists() and shutil.which("configurable-http-proxy") is None:
        pytest.skip("configurable-http-proxy is not installed: run `make hub-proxy`")
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    server = Hub(tmp_path_factory.mktemp("hub"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS,
                                     headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class Person:
    """One person's browser session on the hub (cookies of their own) with a screenshot helper."""

    def __init__(self, browser, hub: Hub, name: str) -> None:
        self.hub, self.name = hub, name
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(STEP_TIMEOUT_MS)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def shot(self, name: str) -> None:
        self.page.wait_for_timeout(400)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))

    def log_in(self) -> None:
        self.page.goto(self.hub.url + "/hub/login")
        self.page.fill("#username_input", self.name)
        self.page.fill("#password_input", PASSWORD)
        self.page.click("#login_submit")

    def open_lab(self) -> None:
        """Log in and wait for the server's JupyterLab (the spawn can take a while)."""
        self.log_in()
        self.page.wait_for_url(f"**/user/{self.name}/lab**", timeout=SPAWN_TIMEOUT_MS)
        self.page.locator(".jp-LauncherCard").first.wait_for(timeout=SPAWN_TIMEOUT_MS)

    def menu(self, top: str, item: str) -> None:
        self.page.locator(".lm-MenuBar-itemLabel", has_text=top).click()
        self.page.locator(".lm-Menu:visible .lm-Menu-itemLabel").get_by_text(
            item, exact=True).click()

    def assignment_list(self):
        """Open (or refresh) the Assignment List; return its panel once the course loaded."""
        panel = self.page.locator(".jp-MainAreaWidget:visible").filter(
            has_text="Released assignments").first
        if not panel.count():
            self.menu("Nbgrader", "Assignment List")
        else:
            panel.locator("#refresh_assignments_list").click()
        panel.wait_for()
        # Each list shows "Loading, please wait..." until the server has answered.
        self.page.wait_for_timeout(300)
        deadline = time.monotonic() + STEP_TIMEOUT_MS / 1000
        while panel.locator(".list_loading:visible").count():
            assert time.monotonic() < deadline, "the Assignment List never finished loading"
            self.page.wait_for_timeout(200)
        return panel

    def xsrf(self) -> str:
        return next(c["value"] for c in self.context.cookies()
                    if c["name"] == "_xsrf" and c["path"].startswith(f"/user/{self.name}"))

    def save_notebook(self, path: str, nb) -> None:
        """Save a notebook into this person's home through their server's contents API, as
        JupyterLab's Save does."""
        r = self.page.request.put(
            f"{self.hub.url}/user/{self.name}/api/contents/{path}",
            data=json.dumps({"type": "notebook", "format": "json", "content": nb}),
            headers={"X-XSRFToken": self.xsrf(), "Content-Type": "application/json"})
        assert r.status in (200, 201), r.text()


def formgrader_row(page, assignment: str):
    row = page.locator("tr", has_text=assignment).first
    row.wait_for()
    return row


def formgrader_action(person: Person, column: str, expect: str, shot: str) -> str:
    """Click one of formgrader's per-assignment buttons and return the modal's text."""
    page = person.page
    page.goto(f"{person.hub.url}/services/{COURSE_ID}/formgrader/manage_assignments")
    formgrader_row(page, A).locator(f"td.{column} a").click()
    modal = page.locator(".modal:visible").first
    modal.get_by_text(expect).first.wait_for(timeout=120_000)
    person.shot(shot)
    text = modal.inner_text()
    modal.locator("button", has_text=re.compile("OK|Close")).first.click()
    return text


TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def submit(student: Person, shot: str | None = None) -> None:
    """Press Submit in the Assignment List and wait until the panel lists one more submission."""
    panel = student.assignment_list()
    before = panel.get_by_text(TIMESTAMP).count()
    panel.locator(".list_item", has_text=A).get_by_role("button", name="Submit").first.click()
    # The panel lists the new submission by itself once the exchange has it (no refresh: a
    # refresh empties the list while it reloads).
    deadline = time.monotonic() + 60
    while panel.get_by_text(TIMESTAMP).count() <= before:
        assert time.monotonic() < deadline, f"{student.name}'s submission never appeared"
        student.page.wait_for_timeout(500)
    if shot:
        student.shot(shot)


def test_a_class_lives_through_an_assignment_on_the_hub(hub, browser):
    """Release, fetch, two submissions and a late one, a student who is not enrolled, collect,
    `memcourse grade`, feedback: each person sees what they should, in a real hub."""
    started = time.monotonic()
    solution = nbformat.read(hub.course / "solutions" / A / f"{A}.ipynb", as_version=4)
    release = nbformat.read(hub.course / "notebooks" / A / f"{A}.ipynb", as_version=4)

    # --- The instructor opens formgrader from JupyterLab's Nbgrader menu and releases 05.
    teacher = Person(browser, hub, "instructor")
    teacher.open_lab()
    assert teacher.page.get_by_text("official Jupyter news").count() == 0
    teacher.menu("Nbgrader", "Course List")
    courses = teacher.page.locator(".jp-MainAreaWidget:visible").filter(
        has_text="Available formgraders").first
    # "jupyterhub": the class's formgrader service ("local" would be the instructor's own).
    service = courses.locator(".list_item", has_text="jupyterhub").first
    service.wait_for()
    assert COURSE_ID in service.inner_text()
    teacher.shot("01-instructor-course-list")
    with teacher.page.expect_popup() as popup:
        service.locator("a").first.click()
    formgrader = popup.value
    formgrader.frame_locator("iframe").first.locator("tr", has_text=A).first.wait_for(
        timeout=SPAWN_TIMEOUT_MS)
    formgrader.wait_for_timeout(500)
    formgrader.screenshot(path=str(ARTIFACTS / "02-instructor-formgrader.png"))
    formgrader.close()
    text = formgrader_action(teacher, "release", "Successfully released", "03-instructor-released")
    assert f"Released as: {COURSE_ID} {A}" in text
    assert (hub.exchange / COURSE_ID / "outbound" / A / f"{A}.ipynb").is_file()

    # --- Two students see the course in the Assignment List and fetch it.
    students = {name: Person(browser, hub, name) for name in ("alice", "bob")}
    for name, student in students.items():
        student.open_lab()
        panel = student.assignment_list()
        released = panel.locator(".list_item", has_text=A).first
        released.wait_for()
        assert COURSE_ID in panel.inner_text()
        if name == "alice":
            student.shot("04-student-assignment-list")
        released.get_by_role("button", name="Fetch").click()
        student.page.get_by_text("Downloaded assignments").first.wait_for()
        panel.locator(".list_item", has_text=A).get_by_role("button", name="Submit").first \
            .wait_for()
        fetched = hub.homes / name / A / f"{A}.ipynb"
        assert fetched.is_file(), f"{name} fetched nothing"
    students["alice"].shot("05-student-fetched")

    # --- alice submits twice: first as fetched, then with the reference answers.
    alice, bob = students["alice"], students["bob"]
    submit(alice)
    alice.save_notebook(f"{A}/{A}.ipynb", _answered(release, solution))
    time.sleep(1.1)  # nbgrader's timestamps have microseconds; one second makes them plain
    submit(alice, "06-student-submitted-twice")
    inbound = sorted(p.name for p in (hub.exchange / COURSE_ID / "inbound").iterdir())
    assert len([n for n in inbound if n.startswith(f"alice+{A}+")]) == 2, inbound

    # --- The deadline passes: the instructor sets it in formgrader, then bob submits.
    page = teacher.page
    page.goto(f"{hub.url}/services/{COURSE_ID}/formgrader/manage_assignments")
    formgrader_row(page, A).locator("td.edit a").click()
    modal = page.locator(".modal:visible").first
    due = datetime.now(UTC)
    modal.locator("input.modal-duedate").fill(due.strftime("%Y-%m-%dT%H:%M:%S"))
    modal.locator("input.modal-timezone").fill("+0000")
    teacher.shot("07-instructor-sets-the-due-date")
    modal.locator("button.save").click()
    formgrader_row(page, A).get_by_text(due.strftime("%Y-%m-%d %H:%M")).first.wait_for()
    time.sleep(1.1)
    submit(bob, "08-student-submitted-late")

    # --- carol logs in but is not in the class: one clear sentence, no server, nothing fetched.
    carol = Person(browser, hub, "carol")
    carol.log_in()
    carol.page.get_by_text(f"not enrolled in {COURSE_ID}").first.wait_for(
        timeout=SPAWN_TIMEOUT_MS)
    assert "ask your instructor to add carol" in carol.page.inner_text("body")
    assert "Traceback" not in carol.page.inner_text("body")
    carol.shot("09-not-enrolled")
    assert not (hub.homes / "carol" / A).exists()
    assert not [p for p in (hub.exchange / COURSE_ID / "inbound").iterdir()
                if p.name.startswith("carol+")]

    # --- The instructor collects, grades what collect left with `memcourse grade`.
    formgrader_action(teacher, "collect", "Successfully collected submissions",
                      "10-instructor-collected")
    submitted = hub.course / "grading" / "submitted"
    assert sorted(p.name for p in submitted.iterdir()) == ["alice", "bob"]
    before = {p: p.read_bytes() for p in submitted.rglob("*") if p.is_file()}
    out = hub.course / "grading" / "results"
    graded = subprocess.run(
        [sys.executable, "-m", "memcourse_apps", "grade", str(submitted), "--out", str(out),
         "--course", str(hub.course), "--assignment", A],
        cwd=hub.course, env={**os.environ, "MEMCOURSE_SIZE": "tiny"}, capture_output=True,
        text=True, timeout=900)
    (ARTIFACTS / "grade.log").write_text(graded.stdout + graded.stderr)
    assert graded.returncode == 0, graded.stderr[-3000:]
    assert {p: p.read_bytes() for p in submitted.rglob("*") if p.is_file()} == before
    records = {r["student"]: r for r in json.loads((out / "results.json").read_text())[
        "submissions"] if r["assignment"] == A}
    assert records["alice"]["score"] == records["alice"]["max_score"] > 0, records["alice"]
    assert records["bob"]["score"] == 0 and "late" in records["bob"]["flags"], records["bob"]
    assert "late" not in records["alice"]["flags"]

    # --- Feedback: released in formgrader, fetched by each student in the Assignment List.
    formgrader_action(teacher, "release-feedback", "Successfully released feedback of",
                      "11-instructor-released-feedback")
    hidden, visible = hidden_and_visible_test_lines(solution)
    for name, student in students.items():
        panel = student.assignment_list()
        panel.get_by_role("button", name="Fetch Feedback").first.click()
        student.page.get_by_text("view feedback").first.wait_for()
        files = sorted((hub.homes / name / A / "feedback").rglob(f"{A}.html"))
        assert len(files) == 1, files  # the graded (last) submission's feedback only
        page_text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ",
                                                             files[0].read_text())))
        score, max_score = records[name]["score"], records[name]["max_score"]
        assert f"Score: {score:.1f} / {max_score:.1f}" in page_text, name
        assert not [line for line in hidden if line in page_text], name
        assert "HIDDEN TESTS" not in page_text
        assert ("Late: this work was submitted" in page_text) == (name == "bob"), name
        # The checks' own messages, not just a score.
        if name == "alice":
            assert "passed" in page_text
        else:
            assert "not attempted" in page_text or "NotImplementedError" in page_text
        # "(view feedback)" opens the feedback folder in the file browser; the student then
        # opens the page in JupyterLab's HTML viewer.
        panel.get_by_text("view feedback").first.click()
        item = student.page.locator(".jp-DirListing-item", has_text=f"{A}.html").first
        item.dblclick()
        viewer = student.page.frame_locator(".jp-HTMLViewer iframe").first
        viewer.get_by_text(f"{A} (Score:").first.wait_for()
        if name == "bob":
            viewer.get_by_text("Late:").first.wait_for()
        student.shot(f"{12 if name == 'alice' else 13}-{name}-feedback")

    for person in (teacher, alice, bob):
        assert not person.errors, f"{person.name}: {person.errors}"
    (ARTIFACTS / "timing.txt").write_text(f"{time.monotonic() - started:.0f} s\n")


def _answered(release, solution):
    """The release with the reference answers typed in (no solution markers)."""
    from memcourse_apps.bench.grading import make_submission  # lazy: the bench's helpers

    return make_submission(release, solution, "correct")
