"""Hints and reference solutions for people who study alone, in the spirit of Kaggle Learn.

`hint(x)` shows the next of an exercise's hints, one per call (up to three: a nudge, a pointer to
the API or the section that helps, then nearly the answer); `hint(x, level=2)` shows hint 2, and
the next plain `hint(x)` goes on from there. `solution(x)` shows the reference solution, marked as
a spoiler. The hints live with the checks (`Exercise.hints` in `autograder/exercises/`); the
solution is read from the answer cell of `solutions/<assignment>/<assignment>.ipynb`, so the
course keeps one source of truth. Neither changes a grade: the cells that call them are not
graded, and the checks never look at them.

How to name an exercise (`x`), all equivalent:

- the name of what you write, in quotes, as the exercise text and the check's title show it:
  `hint("HDF5Dataset")`, `hint("predict_bytes_in_flight")`, `hint("q4_hdf5_opens")`;
- the exercise's own name, the part after `check_` in its check function: `hint("hdf5_dataset")`;
- the check function itself, or your class or function itself: `hint(check_hdf5_dataset)`,
  `hint(HDF5Dataset)`.

Output is HTML in JupyterLab and plain text elsewhere (as the check reports are). Bad input
(an unknown name, a level out of range, no `solutions/` folder) gets a sentence, never a
traceback.
"""

from __future__ import annotations

import ast
import difflib
import html
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from autograder import cells, course
from autograder.engine.richtext import BLUE, GREY, ORANGE, inline_code, show
from autograder.exercises import all_exercises

# The next hint each plain `hint(x)` shows (1-based), by exercise and the learner objects it
# names: the five self-assessment questions are one exercise but five ladders.
_next_level: dict[tuple[str, tuple[str, ...]], int] = {}


# ----------------------------------------------------------------------------- output


@dataclass
class Panel:
    """A titled note for the learner: HTML in JupyterLab, plain text elsewhere."""

    kind: str  # "hint", "solution" or "note"
    title: str
    lines: list[str] = field(default_factory=list)  # prose; `backticks` become code
    code: list[tuple[str, str]] = field(default_factory=list)  # (caption, Python source)
    extra: list[tuple[str, str]] = field(default_factory=list)  # (caption, Markdown text)

    _COLOUR = {"hint": BLUE, "solution": ORANGE, "note": GREY}

    def __str__(self) -> str:
        out = [self.title]
        out += [f"  {line}" for line in self.lines]
        for caption, source in self.code:
            out += ["", f"  {caption}:", *(f"    {line}" for line in source.splitlines())]
        for caption, text in self.extra:
            out += ["", f"  {caption}:", *(f"    {line}" for line in text.strip().splitlines())]
        return "\n".join(out)

    __repr__ = __str__  # what a notebook shows where HTML is not rendered

    def _repr_html_(self) -> str:
        colour = self._COLOUR[self.kind]
        body = "".join(f"<div style='margin:3px 0'>{inline_code(line)}</div>"
                       for line in self.lines)
        revealed = "".join(f"<div style='margin-top:6px'><em>{inline_code(caption)}</em>"
                           f"{_highlight(source)}</div>" for caption, source in self.code)
        revealed += "".join(f"<div style='margin-top:6px'><em>{inline_code(caption)}</em>"
                            f"{_markdown(text)}</div>" for caption, text in self.extra)
        if revealed and self.kind == "solution":
            # A spoiler stays folded until the learner asks for it: one more click, on purpose.
            revealed = (f"<details class='memcourse-spoiler'><summary style='cursor:pointer;"
                        f"color:{colour};font-weight:bold'>Show the reference solution"
                        f"</summary>{revealed}</details>")
        return (f"<div class='memcourse-{self.kind}' style='border-left:4px solid {colour};"
                f"padding:4px 10px'><strong style='color:{colour}'>{html.escape(self.title)}"
                f"</strong>{body}{revealed}</div>")


def _highlight(source: str) -> str:
    """Python source as HTML with inline colours (no stylesheet needed in any frontend)."""
    try:
        # lazy: pygments (~25 ms) only to show a solution; `import autograder.hints` stays fast
        from pygments import highlight
        from pygments.formatters import HtmlFormatter  # lazy: pygments, as above
        from pygments.lexers import PythonLexer  # lazy: pygments, as above

        return highlight(source, PythonLexer(), HtmlFormatter(noclasses=True, nobackground=True))
    except ImportError:
        return f"<pre>{html.escape(source)}</pre>"


def _markdown(text: str) -> str:
    """A mark scheme's Markdown as HTML (mistune comes with nbconvert); escaped text otherwise."""
    try:
        import mistune  # lazy: ~25 ms, only to show a mark scheme; the import of hints stays fast

        return mistune.html(text)
    except (ImportError, AttributeError):
        return f"<div style='white-space:pre-wrap'>{html.escape(text)}</div>"


# ----------------------------------------------------------------------------- where things are


def course_root() -> Path | None:
    """The course root (the folder with `nbgrader_config.py`) above the working directory.

    A notebook runs in `notebooks/<assignment>/`, so its course is two levels up; a copy of the
    course elsewhere (a test, a fork) is found the same way. Otherwise, the repository this
    package was installed from.
    """
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / course.CONFIG_FILENAME).is_file():
            return folder
    repo = course.repo_root()
    return repo if (repo / course.CONFIG_FILENAME).is_file() else None


def solutions_dir() -> Path | None:
    """`solutions/` of the course, or None where it is not there (a release, the grader)."""
    root = course_root()
    if root is None or not (root / "solutions").is_dir():
        return None
    return root / "solutions"


def _notebooks() -> list[Path]:
    """Every notebook whose test cells can tell which learner names belong to which check."""
    found: list[Path] = []
    root = course_root()
    if root is not None:
        for tree in ("solutions", "notebooks"):
            found += sorted((root / tree).glob("*/*.ipynb"))
    found += sorted(Path.cwd().glob("*.ipynb"))  # a release fetched outside the course
    return found


@dataclass(frozen=True)
class NotebookIndex:
    """What one notebook says about exercises: who is checked by what, and where it is written."""

    checked: tuple[tuple[str, str], ...]  # (learner object name, check function), in order
    answers: tuple[tuple[str, str, str], ...]  # (object name, grade_id, answer cell source)
    schemes: tuple[tuple[str, str], ...]  # (object name, mark scheme of its written part)


def _defined_names(source: str) -> list[str]:
    """Top-level names a cell defines (classes, functions, assignments)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return list(dict.fromkeys(names))


@lru_cache(maxsize=64)
def _index(path: str, _mtime_ns: int) -> NotebookIndex:
    try:
        notebook_cells = json.loads(Path(path).read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return NotebookIndex((), (), ())
    checked, answers, schemes = [], [], []
    last_answer: list[str] = []
    for cell in notebook_cells:
        source = "".join(cell.get("source", ""))
        if cell.get("cell_type") == "code" and cells.is_answer(cell):
            last_answer = _defined_names(source)
            grade_id = cells.nbgrader_metadata(cell).get("grade_id", "")
            answers += [(name, grade_id, source) for name in last_answer]
        elif cells.is_test(cell):
            for call in cells.check_calls(source):
                checked += [(obj, call["function"]) for obj in call["objects"]
                            if obj.isidentifier()]
        elif cells.is_task(cell) and last_answer:
            # The written part of a question follows its answer cell (06's self-assessment).
            scheme = cells.mark_scheme(source)
            if scheme is not None:
                schemes += [(name, scheme.strip()) for name in last_answer]
            last_answer = []
    return NotebookIndex(tuple(dict.fromkeys(checked)), tuple(answers), tuple(schemes))


def index(path: Path) -> NotebookIndex:
    """The notebook's index, cached until the file changes."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return NotebookIndex((), (), ())
    return _index(str(path), mtime)


# ----------------------------------------------------------------------------- naming


@dataclass(frozen=True)
class Target:
    """An exercise, and (when the learner named one) the object of it they asked about."""

    exercise: Any  # autograder.engine.spec.Exercise
    check_function: str
    label: str  # how to call it back: the name the learner used, or the exercise's own
    objects: tuple[str, ...]  # the learner's names whose answer cells make the solution
    title: str  # what the panels call it


class UnknownExercise(LookupError):
    """The name matches no exercise; the message says which names exist."""


def _object_names(check_function: str) -> list[str]:
    names: list[str] = []
    for path in _notebooks():
        names += [obj for obj, fn in index(path).checked if fn == check_function]
    return list(dict.fromkeys(names))


def resolve(exercise: Any) -> Target:
    """Find the exercise `exercise` names (see the module docstring for the accepted forms)."""
    exercises = all_exercises()
    name = exercise if isinstance(exercise, str) else getattr(exercise, "__name__", None)
    if not isinstance(name, str) or not name.strip():
        raise UnknownExercise(
            f"hint() and solution() take the name of an exercise in quotes, e.g. "
            f"hint(\"HDF5Dataset\"); got {type(exercise).__name__} {exercise!r:.60}.")
    name = name.strip().strip("\"'")
    table: dict[str, tuple[str, str | None]] = {}
    learner_names: set[str] = set()
    for function, ex in exercises.items():
        table[function] = table[ex.name] = table[function.removeprefix("check_")] = (function,
                                                                                      None)
        for subject in ex.subjects:
            if subject != "answer":  # the self-assessment's generic subject is nobody's name
                table.setdefault(subject, (function, subject))
                learner_names.add(subject)
    for path in _notebooks():
        for obj, function in index(path).checked:
            if function in exercises:
                table.setdefault(obj, (function, obj))
                learner_names.add(obj)
    match = table.get(name) or next((v for k, v in table.items() if k.lower() == name.lower()),
                                    None)
    if match is None:
        close = difflib.get_close_matches(name, list(table), n=1, cutoff=0.6)
        known = sorted(learner_names or table, key=str.lower)
        suggestion = f" Did you mean \"{close[0]}\"?" if close else ""
        raise UnknownExercise(f"No exercise is called \"{name}\".{suggestion} The exercises "
                              f"of the course are named after what you write: "
                              f"{', '.join(known)}.")
    function, obj = match
    objects = (obj,) if obj else tuple(_object_names(function))
    title = obj if obj and obj != exercises[function].title else exercises[function].title
    return Target(exercises[function], function, name, objects, title)


# ----------------------------------------------------------------------------- hint


def hint(exercise: Any, level: int | None = None) -> None:
    """Show the next hint for `exercise` (one more per call), or hint number `level`.

    `exercise` is the name of what you write, in quotes (`hint("HDF5Dataset")`), or any of the
    forms the module docstring lists.
    """
    show(hint_panel(exercise, level))


def hint_panel(exercise: Any, level: int | None = None) -> Panel:
    """The panel `hint` shows; advances the exercise's hint ladder."""
    try:
        target = resolve(exercise)
    except UnknownExercise as e:
        return Panel("note", "No hint found", [str(e)])
    ex, label, title = target.exercise, target.label, target.title
    hints = list(ex.hints)
    if not hints:
        return Panel("note", f"No hints for {title} yet",
                     [f"The check's messages say what they saw; `solution(\"{label}\")` shows "
                      "the reference solution."])
    total = len(hints)
    if level is not None:
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= total:
            return Panel("note", f"There is no hint {level!r} for {title}",
                         [f"Give a whole number from 1 to {total}, e.g. "
                          f"`hint(\"{label}\", level=1)`, or leave level out to get the next "
                          "hint."])
        number = level
    else:
        number = _next_level.get((ex.name, target.objects), 1)
    last_again = number > total
    number = min(number, total)
    _next_level[(ex.name, target.objects)] = number + 1
    if last_again:
        after = (f"That was the last hint. `solution(\"{label}\")` shows the reference "
                 "solution (a spoiler).")
    elif number < total:
        after = f"Run `hint(\"{label}\")` again for hint {number + 1} of {total}."
    else:
        after = (f"That is the last hint. Still stuck? `solution(\"{label}\")` shows the "
                 "reference solution (a spoiler).")
    return Panel("hint", f"Hint {number} of {total} for {title}", [hints[number - 1], after])


# ----------------------------------------------------------------------------- solution


def _grading() -> bool:
    return bool(os.environ.get("NBGRADER_EXECUTION")) or \
        os.environ.get("MEMCOURSE_CHECKS") == "outside"


def solution(exercise: Any) -> None:
    """Show the reference solution for `exercise` from `solutions/`, marked as a spoiler."""
    show(solution_panel(exercise))


def solution_panel(exercise: Any) -> Panel:
    """The panel `solution` shows."""
    try:
        target = resolve(exercise)
    except UnknownExercise as e:
        return Panel("note", "No solution found", [str(e)])
    title = target.title
    if _grading():
        return Panel("note", f"No solution shown for {title} here",
                     ["This notebook is being run by the grader, which shows no reference "
                      "solutions: your grade comes from your own code."])
    folder = solutions_dir()
    if folder is None:
        return Panel("note", f"No reference solution for {title} here",
                     ["The reference solutions live in the course's `solutions/` folder, and "
                      "this copy of the course has none (you have the student version). Ask "
                      f"your instructor, or use `hint(\"{target.label}\")`."])
    code: list[tuple[str, str]] = []
    extra: list[tuple[str, str]] = []
    sources: list[str] = []
    for path in sorted(folder.glob("*/*.ipynb")):
        found = index(path)
        answers = {obj: (grade_id, source) for obj, grade_id, source in found.answers}
        schemes = dict(found.schemes)
        for obj in target.objects:
            if obj in answers:
                grade_id, source = answers[obj]
                code.append((f"`{obj}`, from the answer cell `{grade_id}`",
                             cells.without_solution_markers(source).strip("\n")))
                sources.append(str(path.relative_to(folder.parent)))
                if obj in schemes:
                    extra.append((f"Model answer and marking guide for the written part "
                                  f"about `{obj}`", schemes[obj]))
    if not code:
        return Panel("note", f"No reference solution for {title} found",
                     [f"None of the answer cells in `{folder}` defines "
                      f"{', '.join(target.objects) or 'it'}."])
    where = ", ".join(dict.fromkeys(sources))
    lines = [f"The instructor's answer, from `{where}`. Reading it teaches less than writing "
             f"it: try `hint(\"{target.label}\")` first, and afterwards write your own version "
             "and let the check cells judge it."]
    return Panel("solution", f"Spoiler: the reference solution for {title}", lines, code, extra)
