"""Put a submission's nbgrader cells back in the shape of the release, naming every change.

nbgrader's sanitizing trusts the grading metadata it finds: a copied test cell (two cells with
one `grade_id`), a grade id a student renamed, a cell whose `nbgrader` metadata an editor or an
earlier tool emptied, or a deleted read-only setup cell each ended as `error` or as a correct
answer scored 0. `reconcile` runs before nbgrader's own preprocessors and leaves them a notebook
whose graded cells match the release one for one, so nbgrader restores sources and points as
usual. Its rules, applied in this order, are deterministic:

1. Grading metadata the release does not have (an unknown `grade_id`, or an `nbgrader` entry with
   no `grade_id`) is removed: the cell becomes an ordinary cell of the student's.
2. Copies of one `grade_id`: for a test or read-only cell, the copy standing where the release
   has it (after the same graded cell) is kept, else the first; copies that are still the
   instructor's cell are removed (nbgrader restores the source anyway), and a copy the learner
   wrote code into runs as an ordinary cell, so no line of the learner's is lost. For an
   answer cell, the last copy that differs from the release's stub is graded (when every copy
   is the stub, the last one): a stub pasted again is not an answer, and of several answers
   the last is the one the learner wrote last in reading order, the copy nbgrader's own
   `DeduplicateIds` keeps. The other copies stay as ordinary cells.
3. A cell whose metadata is gone is found again. A test or read-only cell: an ordinary cell
   with the release's source. An answer cell: among the student's ordinary cells of
   the same type, the one that defines the names the release's stub defines (a `class` or
   `def`), preferring one between the same neighbours as in the release and, among equals, the
   last; for a written (markdown) answer, the one ordinary cell between the same neighbours.
4. A test or read-only cell that is missing is put back from the release, after the cell that
   precedes it in the release.
5. Every graded cell gets the release's grading metadata and cell type (points, flags, ids).

Each rule that fires adds a sentence to the list `reconcile` returns; any entry there flags the
submission `tampered`, with the `grade_id` named.
"""

from __future__ import annotations

import ast
import copy
import difflib
import re
from dataclasses import dataclass, field

from nbformat import NotebookNode
from nbgrader.utils import compute_checksum

from autograder.cells import grade_id, without_hidden_tests

GRADING_KEYS = ("grade", "solution", "locked", "points", "task")
# Code that turns off how errors are shown: nbgrader scores a test cell by its error output, so
# a submission that replaces `showtraceback` passes every failing assert (nbgrader's own
# "cheat attempt" fixtures, which nbgrader itself does not flag).
TRACEBACK_PATCH = re.compile(r"\b_?(showtraceback|showsyntaxerror)\s*=(?!=)"
                             r"|setattr\(.*(traceback|syntaxerror)"
                             r"|__dict__.*(traceback|syntaxerror)", flags=re.I)


def _is_protected(meta: dict) -> bool:
    """A test cell or read-only cell: its source is the instructor's, not the learner's."""
    return bool(meta.get("locked") or (meta.get("grade") and not meta.get("solution")))


def _defined_names(source: str) -> set[str]:
    """Top-level classes, functions and assigned names a code cell defines."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set(re.findall(r"^(?:class|def)\s+(\w+)", source, flags=re.M))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
    return names


def _same_source(a: str, b: str) -> bool:
    return a.strip() == b.strip()


def _release_index(release: NotebookNode) -> dict[str, tuple[int, NotebookNode]]:
    return {gid: (i, c) for i, c in enumerate(release.cells) if (gid := grade_id(c))}


def _previous_graded(release: NotebookNode, index: int) -> str | None:
    """The grade_id of the nearest graded cell before `index` in the release."""
    for cell in reversed(release.cells[:index]):
        if gid := grade_id(cell):
            return gid
    return None


def _drop_grading(cell: NotebookNode) -> None:
    for key in ("nbgrader", "editable", "deletable"):
        cell.metadata.pop(key, None)


def _anchor_positions(cells: list[NotebookNode], release: NotebookNode) -> dict[int, int]:
    """Map release cell index -> submission cell index for cells found unchanged or by id."""
    def key(cell: NotebookNode) -> tuple:
        gid = grade_id(cell)
        return ("id", gid) if gid else ("src", cell.cell_type, cell.source.strip())

    matcher = difflib.SequenceMatcher(None, [key(c) for c in release.cells],
                                      [key(c) for c in cells], autojunk=False)
    anchors = {}
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            anchors[block.a + k] = block.b + k
    return anchors


def _gap(anchors: dict[int, int], release_index: int, n_cells: int) -> tuple[int, int]:
    """Submission positions strictly between the anchors around a release cell."""
    before = max((s for r, s in anchors.items() if r < release_index), default=-1)
    after = min((s for r, s in anchors.items() if r > release_index), default=n_cells)
    return before, after


@dataclass
class Reconciled:
    """A submission put back in the release's shape, and what was done to it."""

    notebook: NotebookNode
    tampering: list[str]  # changes the learner's notebook made: one sentence each, flagged
    notes: list[str] = field(default_factory=list)  # changes no one should be blamed for


def reconcile(submitted: NotebookNode, release: NotebookNode) -> Reconciled:
    """Return a copy of `submitted` whose graded cells match the release, and what changed.

    `submitted` and `release` are nbformat v4 notebooks; neither is modified. `tampering`
    holds one sentence per change, each naming the `grade_id` involved. A read-only cell that is
    exactly as an earlier release had it (its recorded nbgrader checksum still matches) is the
    instructor's change, not the learner's: it goes in `notes`.
    """
    nb = copy.deepcopy(submitted)
    released = _release_index(release)
    changes: list[str] = []

    # 1. Grading metadata the release does not know.
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta is None:
            continue
        gid = grade_id(cell)
        if gid is None or gid not in released:
            if gid is not None:
                changes.append(f"a cell carries the grade id `{gid}`, which the assignment "
                               "does not have (renamed or invented); it was graded as an "
                               "ordinary cell")
            elif isinstance(meta, dict) and any(meta.get(k) for k in GRADING_KEYS):
                changes.append("a cell carries grading metadata without a grade id; it was "
                               "graded as an ordinary cell")
            _drop_grading(cell)

    # 2. Copies of one grade id.
    positions: dict[str, list[int]] = {}
    for i, cell in enumerate(nb.cells):
        if gid := grade_id(cell):
            positions.setdefault(gid, []).append(i)
    remove: set[int] = set()
    for gid, where in positions.items():
        if len(where) < 2:
            continue
        rel_index, rel_cell = released[gid]
        if _is_protected(rel_cell.metadata["nbgrader"]):
            previous = _previous_graded(release, rel_index)
            keep = where[0]
            for i in where:
                before = next((grade_id(c) for c in reversed(nb.cells[:i]) if grade_id(c)),
                              None)
                if before == previous:
                    keep = i
                    break
            others = [i for i in where if i != keep]
            # A copy that is still the instructor's cell goes; one the learner wrote into runs
            # as an ordinary cell, so none of the learner's lines is lost.
            pure = [i for i in others if _same_source(_release_form(nb.cells[i].source),
                                                      rel_cell.source)
                    or _unchanged_since_release(nb.cells[i], nb.cells[i].metadata["nbgrader"])]
            remove.update(pure)
            for i in others:
                if i not in pure:
                    _drop_grading(nb.cells[i])
            rule = "the copy in the release's place was kept" + (
                ", the unchanged copies removed" if pure else "") + (
                ", the copies holding other code ran as ordinary cells"
                if len(pure) < len(others) else "")
        else:
            attempted = [i for i in where if not _same_source(nb.cells[i].source,
                                                              rel_cell.source)]
            keep = (attempted or where)[-1]
            for i in where:
                if i != keep:
                    _drop_grading(nb.cells[i])
            rule = (f"cell {keep + 1}, the last copy with an answer, was graded; the others "
                    "ran as ordinary cells")
        changes.append(f"duplicated cell `{gid}` ({len(where)} copies): {rule}")
    nb.cells = [c for i, c in enumerate(nb.cells) if i not in remove]

    # 3. Answer cells whose metadata is gone; 4. missing test and read-only cells.
    present = {gid for c in nb.cells if (gid := grade_id(c))}
    for gid, (rel_index, rel_cell) in released.items():
        if gid in present:
            continue
        rel_meta = rel_cell.metadata["nbgrader"]
        anchors = _anchor_positions(nb.cells, release)
        before, after = _gap(anchors, rel_index, len(nb.cells))
        if not _is_protected(rel_meta):
            found = _find_answer(nb.cells, rel_cell, before, after)
            if found is not None:
                nb.cells[found].metadata["nbgrader"] = copy.deepcopy(rel_meta)
                changes.append(f"the answer cell `{gid}` had lost its grading metadata; it was "
                               f"found again (cell {found + 1}) and graded")
            else:
                changes.append(f"the answer cell `{gid}` was deleted; its checks found no "
                               "answer")
            continue
        same = [i for i, c in enumerate(nb.cells) if grade_id(c) is None
                and c.cell_type == rel_cell.cell_type
                and _same_source(_release_form(c.source), rel_cell.source)]
        if same:
            near = [i for i in same if before < i < after]
            found = (near or same)[0]
            nb.cells[found].metadata["nbgrader"] = copy.deepcopy(rel_meta)
            changes.append(f"the read-only cell `{gid}` had lost its grading metadata; it was "
                           f"found again (cell {found + 1})")
            present.add(gid)
            continue
        restored = copy.deepcopy(rel_cell)
        if restored.cell_type == "code":
            restored.outputs, restored.execution_count = [], None
        restored.pop("id", None)
        nb.cells.insert(before + 1, restored)
        kind = "test" if rel_meta.get("grade") else "read-only"
        changes.append(f"the {kind} cell `{gid}` was deleted or lost its grading metadata; it "
                       "was put back from the release")
        present.add(gid)

    # 5. The release's grading metadata and type on every graded cell.
    older: list[str] = []
    for cell in nb.cells:
        gid = grade_id(cell)
        if gid is None:
            continue
        rel_cell = released[gid][1]
        rel_meta = rel_cell.metadata["nbgrader"]
        meta = cell.metadata["nbgrader"]
        changed = [k for k in GRADING_KEYS if meta.get(k) != rel_meta.get(k)
                   and not (k == "points" and _same_points(meta.get(k), rel_meta.get(k)))]
        if changed:
            changes.append(f"changed {', '.join(f'`{k}`' for k in changed)} in the grading "
                           f"metadata of `{gid}`")
        if cell.cell_type != rel_cell.cell_type:
            changes.append(f"changed the type of the cell `{gid}` to {cell.cell_type}")
            _set_type(cell, rel_cell.cell_type)
        cell.metadata["nbgrader"] = copy.deepcopy(rel_meta)
        for key in ("editable", "deletable"):
            if key in rel_cell.metadata:
                cell.metadata[key] = rel_cell.metadata[key]
            else:
                cell.metadata.pop(key, None)
        if _is_protected(rel_meta) and not _same_source(_release_form(cell.source),
                                                        rel_cell.source):
            if _unchanged_since_release(cell, meta):
                # The cell is exactly as an earlier release had it: the instructor changed it
                # since, the learner did not; nbgrader puts the current one in its place.
                older.append(gid)
            else:
                changes.append(f"edited the read-only cell `{gid}`")
    changes += _runtime_tampering(nb, release)
    notes = [f"the read-only cells {', '.join(f'`{g}`' for g in older)} are from an earlier "
             "release of the assignment, unchanged by the learner; the current ones were "
             "graded"] if older else []
    return Reconciled(nb, list(dict.fromkeys(changes)), notes)


def _unchanged_since_release(cell: NotebookNode, meta: dict) -> bool:
    """True if the cell still matches the checksum nbgrader recorded when it was released."""
    recorded = meta.get("checksum")
    if not recorded:
        return False
    probe = copy.deepcopy(cell)
    probe.metadata["nbgrader"] = copy.deepcopy(meta)
    try:
        return compute_checksum(probe) == recorded
    except (KeyError, TypeError, ValueError):
        return False


def is_unanswered(submitted: NotebookNode, release: NotebookNode) -> bool:
    """True if the learner wrote nothing: every answer cell is still the released stub and
    every other code cell is one the release has (outputs and empty cells do not count).

    An answer cell counts as the stub when it matches the checksum nbgrader recorded at
    release, or the current release's source, so work from an earlier release is judged fairly.
    """
    released = _release_index(release)
    plain = {c.source.strip() for c in release.cells
             if c.cell_type == "code" and grade_id(c) is None}
    for cell in submitted.cells:
        gid = grade_id(cell)
        if gid in released:
            rel_meta = released[gid][1].metadata["nbgrader"]
            if _is_protected(rel_meta):
                continue
            meta = cell.metadata["nbgrader"]
            if not (_same_source(cell.source, released[gid][1].source)
                    or _unchanged_since_release(cell, meta)):
                return False
        elif cell.cell_type == "code" and cell.source.strip() and \
                cell.source.strip() not in plain:
            return False
    return True


def _same_points(a, b) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def _set_type(cell: NotebookNode, cell_type: str) -> None:
    cell.cell_type = cell_type
    if cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    else:
        cell.pop("outputs", None)
        cell.pop("execution_count", None)


def _release_form(source: str) -> str:
    """The source as the release shows it (a submission made from the solution keeps them)."""
    return without_hidden_tests(source).strip()


def _find_answer(cells: list[NotebookNode], rel_cell: NotebookNode, before: int,
                 after: int) -> int | None:
    """The student's ordinary cell that holds the answer for `rel_cell`, or None."""
    ordinary = [i for i, c in enumerate(cells)
                if grade_id(c) is None and c.cell_type == rel_cell.cell_type]
    in_gap = [i for i in ordinary if before < i < after]
    if rel_cell.cell_type == "code":
        wanted = _defined_names(rel_cell.source)
        if wanted:
            defining = [i for i in ordinary if wanted <= _defined_names(cells[i].source)]
            near = [i for i in defining if before < i < after]
            if near or defining:
                return (near or defining)[-1]
    return in_gap[-1] if len(in_gap) == 1 else None


def _runtime_tampering(nb: NotebookNode, release: NotebookNode) -> list[str]:
    """Changes that act when the notebook runs: tags, input transformers, hidden tracebacks."""
    found = []

    def tags_of(notebook: NotebookNode) -> set[str]:
        return {t for c in notebook.cells for t in c.get("metadata", {}).get("tags", [])}

    tags = sorted(tags_of(nb) - tags_of(release))
    if tags:
        found.append(f"tagged cells with {', '.join(tags)}")
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if "input_transformers" in cell.source or "register_transformer" in cell.source:
            found.append("installs an IPython input transformer")
        if TRACEBACK_PATCH.search(cell.source):
            found.append("replaces IPython's traceback display (`showtraceback`), which hides "
                         "failing tests from nbgrader")
    return list(dict.fromkeys(found))
