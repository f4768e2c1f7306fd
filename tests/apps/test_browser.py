"""The course in a real browser: JupyterLab in Chromium, driven the way a learner clicks.

JupyterLab is started with the command `make lab` uses, on a temporary copy of the course, and
Debian's Chromium is driven through Playwright (never a downloaded browser). Each step saves a
screenshot under test-artifacts/browser/ so a person can see what a learner would have seen.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.helpers import CHROMIUM, CHROMIUM_FLAGS, ROOT, RunningLab, copy_course

pytestmark = pytest.mark.slow

ARTIFACTS = ROOT / "test-artifacts" / "browser"
RUN_TIMEOUT_MS = 240_000  # a whole notebook with its checks, on a busy 2-core machine
STEP_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving a fresh copy of the course, with the tiny dataset and fresh settings."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed: run scripts/ensure-system-packages")
    import memcourse_apps.lab

    base = tmp_path_factory.mktemp("browser")
    root = copy_course(base / "course")
    with pytest.MonkeyPatch.context() as mp:
        # `make lab` serves the repository; serve the copy instead, with the same command.
        mp.setattr(memcourse_apps.lab, "repo_root", lambda: root)
        mp.setenv("MEMCOURSE_SIZE", "tiny")  # the kernels read the small test dataset
        # No settings or open tabs from anyone's earlier session: a learner's first visit. The
        # course's own overrides (jupyter-config/) must keep the news question away.
        mp.setenv("JUPYTERLAB_SETTINGS_DIR", str(base / "settings"))
        mp.setenv("JUPYTERLAB_WORKSPACES_DIR", str(base / "workspaces"))
        server = RunningLab(root)
    yield server, root
    server.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch_persistent_context(
            user_data_dir=str(ARTIFACTS.parent / ".chromium-profile"),
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True,
            viewport={"width": 1400, "height": 900})
        try:
            yield chromium
        finally:
            chromium.close()
            shutil.rmtree(ARTIFACTS.parent / ".chromium-profile", ignore_errors=True)


class Learner:
    """One browser tab on the lab, with the console errors it has seen and a screenshot helper."""

    def __init__(self, page, lab: RunningLab):
        self.page, self.lab = page, lab
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.set_default_timeout(STEP_TIMEOUT_MS)

    def shot(self, name: str) -> None:
        self.page.wait_for_timeout(500)  # cells scrolled into view paint on the next frames
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))

    def open(self, path: str) -> None:
        """Open a notebook and wait until its kernel is idle."""
        self.page.goto(self.lab.url(f"/lab/tree/{path}"))
        self.page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell").first.wait_for()
        self.wait_idle()

    @property
    def notebook(self):
        return self.page.locator(".jp-NotebookPanel:visible")

    def wait_idle(self, timeout: float = STEP_TIMEOUT_MS) -> None:
        """Wait until the kernel is idle, no cell is waiting to run, and it stays so for 1.5 s.

        The kernel reports idle for a moment between two queued cells, hence the second look.
        """
        deadline = time.monotonic() + timeout / 1000
        while True:
            left = max(1000.0, (deadline - time.monotonic()) * 1000)
            self.page.wait_for_function(
                """() => {
                    const panel = [...document.querySelectorAll('.jp-NotebookPanel')]
                        .find(p => p.offsetParent !== null);
                    if (!panel) return false;
                    const status = panel.querySelector('.jp-Notebook-ExecutionIndicator');
                    const prompts = [...panel.querySelectorAll('.jp-InputPrompt')]
                        .map(p => p.textContent.trim());
                    return status && status.dataset.status === 'idle'
                        && !prompts.some(t => t.includes('*'));
                }""", timeout=left, polling=250)
            self.page.wait_for_timeout(1500)
            status = self.notebook.locator(".jp-Notebook-ExecutionIndicator").get_attribute(
                "data-status")
            if status == "idle" or time.monotonic() > deadline:
                return

    def all_cells(self, selector: str = ".jp-Cell"):
        """Yield the notebook's cells in order, scrolling so JupyterLab attaches each one.

        JupyterLab attaches cells (and CodeMirror renders lines) only near the viewport.
        """
        seen = 0
        while True:
            cells = self.notebook.locator(selector)
            count = cells.count()
            for i in range(seen, count):
                cell = cells.nth(i)
                cell.scroll_into_view_if_needed()
                yield cell
            if count == seen:
                return
            seen = count
            self.page.wait_for_timeout(300)  # let the cells below the last one attach

    def code_cell(self, containing: str):
        """The first code cell whose source contains `containing`."""
        for cell in self.all_cells(".jp-CodeCell"):
            if containing in cell.locator(".jp-InputArea-editor").inner_text():
                return cell
        raise AssertionError(f"no code cell contains {containing!r}")

    def replace_source(self, cell, source: str) -> None:
        """Put `source` into the cell's editor as typed text (as a learner's paste would)."""
        cell.locator(".cm-content").click()
        self.page.keyboard.press("Control+a")
        self.page.keyboard.press("Delete")
        self.page.keyboard.insert_text(source)
        self.page.keyboard.press("Escape")

    def run_cell(self, cell) -> None:
        cell.locator(".jp-InputPrompt").click()  # select it in command mode
        self.page.keyboard.press("Control+Enter")
        self.page.wait_for_timeout(300)  # let the prompt turn to [*] before waiting on it
        self.wait_idle()

    def add_cell_below(self, cell, source: str) -> None:
        """Insert a code cell below `cell` (key B in command mode), type `source`, run it."""
        cell.locator(".jp-InputPrompt").click()
        self.page.keyboard.press("b")
        self.page.keyboard.press("Enter")
        self.page.keyboard.insert_text(source)
        self.page.keyboard.press("Control+Enter")
        self.page.wait_for_timeout(300)
        self.wait_idle()

    def menu(self, *path: str) -> None:
        """Click through the menu bar, e.g. menu("Run", "Run All Cells")."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{path[0]}$")).click()
        for item in path[1:]:
            self.page.locator(".lm-Menu:visible .lm-Menu-itemLabel",
                              has_text=re.compile(f"^{re.escape(item)}$")).click()


def _answer_sources(root: Path, assignment: str) -> dict[str, str]:
    """grade_id -> the solution notebook's answer cell, solution markers removed."""
    nb = json.loads((root / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    out = {}
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if cell["cell_type"] == "code" and meta.get("solution"):
            source = "".join(cell["source"])
            out[meta["grade_id"]] = re.sub(r"[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", "", source)
    return out


def test_a_learner_solves_05_and_answers_a_quiz_in_06(lab, browser):
    """05: paste working answers, run all, see every check pass; 06: a quiz click gets feedback."""
    server, root = lab
    started = time.monotonic()
    learner = Learner(browser.new_page(), server)
    page = learner.page

    # The front page is the course folder, the assignments in order.
    page.goto(server.url("/"))  # where `make lab` opens the browser: the default_url
    listing = page.locator(".jp-DirListing-content .jp-DirListing-itemName")
    listing.first.wait_for()
    names = [n.strip() for n in listing.all_inner_texts()]
    folders = sorted(p.name for p in (root / "notebooks").iterdir() if p.is_dir())
    assert len(folders) >= 7 and names[:len(folders)] == folders
    learner.shot("01-course-folder")

    # --- 05: the HDF5 dataset, solved by pasting the reference answers
    learner.open("notebooks/05_hdf5_dataset/05_hdf5_dataset.ipynb")
    assert learner.notebook.locator("jp-button.validate-button").is_visible(), \
        "nbgrader's Validate button is missing from the notebook toolbar"
    learner.shot("02-05-opened")
    answers = _answer_sources(root, "05_hdf5_dataset")
    for grade_id, marker in (("hdf5_dataset", "class HDF5Dataset(Dataset)"),
                             ("read_batch", "def read_batch(images, indices)")):
        learner.replace_source(learner.code_cell(marker), answers[grade_id])
    sources = learner.notebook.locator(".jp-InputArea-editor").all_inner_texts()
    assert not [s for s in sources if "YOUR CODE HERE" in s], "an answer cell kept its stub"
    learner.menu("Run", "Run All Cells")
    page.wait_for_timeout(1000)
    learner.wait_idle(timeout=RUN_TIMEOUT_MS)
    for _cell in learner.all_cells():
        pass  # attach every cell, so every output can be read
    reports = learner.notebook.locator(".memcourse-check")
    texts = reports.all_text_contents()  # innerText is empty for cells scrolled away
    assert len(texts) == 5, texts  # four HDF5Dataset cells and one read_batch cell
    for text in texts:
        assert "✔ passed" in text and "failed" not in text and "not attempted" not in text, text
    tracebacks = [t for t in learner.notebook.locator(".jp-OutputArea-output").all_text_contents()
                  if "Traceback" in t]
    assert not tracebacks, tracebacks
    reports.first.scroll_into_view_if_needed()
    learner.shot("03-05-checks-passed")
    reports.last.scroll_into_view_if_needed()
    learner.shot("04-05-read-batch-passed")

    # --- The nbgrader menu, and the Assignment List working on the local exchange
    learner.menu("Nbgrader")
    items = page.locator(".lm-Menu:visible .lm-Menu-itemLabel").all_inner_texts()
    assert "Assignment List" in items and "Formgrader" in items, items
    learner.shot("05-nbgrader-menu")
    page.locator(".lm-Menu:visible .lm-Menu-itemLabel", has_text="Assignment List").click()
    page.get_by_text("Released assignments").first.wait_for()
    page.wait_for_timeout(2000)  # the panel fetches the course list after it opens
    assert page.get_by_text("Error fetching courses").count() == 0
    learner.shot("06-assignment-list")

    # --- 06: a self-assessment quiz
    learner.open("notebooks/06_tradeoffs/06_tradeoffs.ipynb")
    for source in ("from autograder.widgets import quiz",
                   "from autograder.exercises.self_assessment import check_self_assessment",
                   'quiz("hotspot")'):
        learner.run_cell(learner.code_cell(source))
    quiz = learner.notebook.locator(".memcourse-quiz").first
    quiz.wait_for()
    feedback = quiz.locator(".memcourse-quiz-feedback")
    quiz.locator("button", has_text=re.compile("^B$")).click()
    feedback.get_by_text("is not the best answer").wait_for()
    quiz.scroll_into_view_if_needed()
    learner.shot("07-06-quiz-wrong-answer")
    quiz.locator("button", has_text=re.compile("^C$")).click()
    feedback.get_by_text("Right").wait_for()
    assert 'q1_hotspot_choice = "C"' in feedback.inner_text()
    # The click is in the variable the check reads: the form check passes without editing.
    form_check = learner.code_cell('check_self_assessment(q1_hotspot_choice, "hotspot_form")')
    learner.run_cell(form_check)
    assert "✔ passed" in form_check.locator(".memcourse-check").inner_text()
    learner.shot("08-06-quiz-right-answer")

    # A self-learner asks for a hint and the solution in a new cell below.
    learner.add_cell_below(form_check, 'hint("q1_hotspot_choice")\n'
                                       'solution("q1_hotspot_choice")')
    help_cell = learner.code_cell('solution("q1_hotspot_choice")')
    help_cell.locator(".memcourse-hint").get_by_text("Hint 1 of 3").wait_for()
    spoiler = help_cell.locator("details.memcourse-spoiler")
    assert not spoiler.get_by_text('q1_hotspot_choice = "C"').is_visible()  # folded
    spoiler.locator("summary").click()
    spoiler.get_by_text("Model answer.").wait_for()
    help_cell.scroll_into_view_if_needed()
    learner.shot("09-06-hint-and-solution")

    assert not learner.errors, f"console errors: {learner.errors}"
    assert time.monotonic() - started < 300


def test_the_concept_check_and_the_calculator_respond_in_01(lab, browser):
    """01: a concept check explains a choice; the calculator follows its controls."""
    server, _root = lab
    learner = Learner(browser.new_page(), server)
    learner.open("notebooks/01_memory_footprint/01_memory_footprint.ipynb")
    for source in ("from autograder.widgets import concept_check, memory_calculator",
                   'concept_check("rss_over_counts")'):
        learner.run_cell(learner.code_cell(source))
    check = learner.notebook.locator(".memcourse-concept-check").first
    check.get_by_text("900 MiB, the sum of their RSS").click()
    check.locator(".memcourse-concept-feedback").get_by_text("counts it three times").wait_for()
    learner.shot("10-01-concept-check")

    for source in ("images = footprint.H5Images(H5_PATH)",  # sets SAMPLE_SHAPE, BATCH_SIZE
                   "def predict_bytes_in_flight(batch_size: int",
                   "memory_calculator(predict_bytes_in_flight"):
        learner.run_cell(learner.code_cell(source))
    calculator = learner.notebook.locator(".memcourse-calculator").first
    summary = calculator.locator(".memcourse-calculator-summary")
    summary.get_by_text("not written yet").wait_for()  # the release's stub: the formula only
    assert "= 5" in summary.inner_text()  # 2 workers x prefetch 2 + the batch in use
    calculator.locator("select").select_option("float32")
    shape = calculator.locator("input[type=text]").first
    shape.fill("3, 32, 32")
    shape.press("Enter")
    summary.get_by_text("32 samples of 3×32×32 float32").wait_for()
    calculator.scroll_into_view_if_needed()
    learner.shot("11-01-memory-calculator")
    assert not learner.errors, f"console errors: {learner.errors}"


def test_every_notebook_opens_without_console_errors(lab, browser):
    """Do all the notebooks open in JupyterLab in order, with no error in the browser console?"""
    server, root = lab
    learner = Learner(browser.new_page(), server)
    for name in sorted(p.name for p in (root / "notebooks").iterdir() if p.is_dir()):
        learner.open(f"notebooks/{name}/{name}.ipynb")
        title = learner.notebook.locator(".jp-MarkdownCell h1").first.inner_text()
        assert title.startswith(name[:2]), (name, title)
        # Opening a notebook must not mark it as changed ("Save changes?" on close).
        dirty = learner.page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty")
        assert dirty.count() == 0, f"{name} is marked as changed as soon as it opens"
    learner.shot("12-all-notebooks-open")
    # JupyterLab asks on a first visit unless the course's settings overrides answer for it.
    assert learner.page.get_by_text("official Jupyter news").count() == 0
    assert not learner.errors, f"console errors: {learner.errors}"
