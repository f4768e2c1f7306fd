"""Read a submitted notebook the way Jupyter reads it, and repair what Jupyter only warns about.

Students' notebooks reach the grader through editors (VS Code, Colab, older and newer
JupyterLabs, hand edits) that each bend the nbformat schema a little: `outputs` on markdown
cells, cell ids in a 4.4 notebook, missing ids in a 4.5 one, duplicate ids, unknown keys.
Jupyter opens all of these with at most a validation warning, so rejecting them would give a
student 0 for work that is there. `read_submission` therefore repairs every such nit, names each
repair in one short phrase, and returns a notebook that passes `nbformat.validate`.

Only a file that cannot be read as notebook cells is refused, with one sentence that says
exactly what is wrong (not UTF-8, not JSON, JSON but not a notebook, or a part of the
notebook no repair can fix), meant to be forwarded to the student as it is.

nbformat's own machinery does the work wherever it can: its readers and `convert` upgrade
nbformat 1-3, `normalize` adds missing and renames duplicate cell ids and strips invalid
metadata, and its schemas (through `get_validator`) find everything else. The code here only
removes what nbformat reports but does not repair (keys a cell type does not allow, broken
outputs) and turns what it cannot repair into a sentence.

Two decisions worth knowing:

- A UTF-8 byte-order mark is accepted and removed (named in `repairs`). Jupyter itself refuses
  such a file ("Unreadable Notebook"), but the mark says nothing about the content: it comes
  from Windows tools (Notepad, PowerShell) the file passed through, and the notebook after it
  is intact.
- `source` written as a list of lines is the normal on-disk form, not a nit: nbformat joins it
  when reading, as Jupyter does, and no repair is named.

A repaired notebook differs from the file, so whoever grades it must grade
`Intake.notebook` (e.g. `nbformat.write` it into the grading copy), not the file's bytes.
The input file is only ever read.
"""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat.corpus.words import generate_corpus_id
from nbformat.validator import get_validator, normalize

from autograder.grading.build import KERNELSPEC

CELL_TYPES = ("code", "markdown", "raw")
OUTPUT_TYPES = ("execute_result", "display_data", "stream", "error")
NEWEST_MINOR: int = nbformat.v4.nbformat_minor
UTF8_BOM = b"\xef\xbb\xbf"
# The schema's `cell_id` definition: pattern ^[a-zA-Z0-9-_]+$, 1 to 64 characters.
CELL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# Required keys a repair may add without inventing content: all empty.
EMPTY_VALUES: dict[str, Any] = {"metadata": {}, "source": "", "outputs": [],
                                "execution_count": None}
# A JSON string escape of a UTF-16 surrogate; only then can a parsed string hold one.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


@dataclass
class Intake:
    """What reading one submitted notebook gave.

    `notebook` is the repaired, valid nbformat-4 notebook, or None when the file cannot be
    graded; then `problem` says why, in one sentence that names the file. `repairs` names each
    change made to the file's content, one short phrase per kind (empty when the file was valid
    as it is); when `problem` is set it lists the repairs made before the problem was found.
    """

    notebook: nbformat.NotebookNode | None
    repairs: list[str] = field(default_factory=list)
    problem: str | None = None


class _Unreadable(Exception):
    """Carries the problem sentence out of the nested checks; never leaves this module."""


def read_submission(path: Path) -> Intake:
    """Read the notebook at `path` as Jupyter would, repairing schema nits, without raising.

    Whatever the bytes are, this returns an `Intake`: a valid notebook and the repairs made,
    or no notebook and the problem. A failure of the grader's own code also becomes a problem
    sentence (saying so), because one odd file must not stop a class's grading. The file is
    only read, never written.
    """
    path = Path(path)
    repairs: list[str] = []
    try:
        notebook = _read(path, repairs)
    except _Unreadable as e:
        return Intake(None, repairs, str(e))
    except RecursionError:
        return Intake(None, repairs, f"{path.name} is JSON but not a Jupyter notebook: it is "
                                     "nested far more deeply than any notebook")
    except Exception as e:  # a bug here must cost one submission, not the whole batch
        return Intake(None, repairs, f"{path.name} could not be checked because the grader "
                                     f"failed ({type(e).__name__}: {_clip(str(e))}); report "
                                     "this to the course staff with the file")
    return Intake(notebook, repairs, None)


def _read(path: Path, repairs: list[str]) -> nbformat.NotebookNode:
    name = path.name
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise _Unreadable(f"{name} could not be read ({e.strerror or e}); submit it "
                          "again") from None
    data = _parse(_decode(raw, name, repairs), name, repairs)
    data = _as_v4(data, name, repairs)
    _check_cells(data, name)
    minor = _settle_minor(data, repairs)
    data = _repair(data, minor, name, repairs)
    # nbformat's own reader step: join lines, drop transient keys, as Jupyter does.
    notebook = nbformat.v4.to_notebook_json(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nbformat.validate(notebook)
    except nbformat.ValidationError as e:
        raise _Unreadable(_schema_problem(name, _where(getattr(e, "path", ())),
                                          _clip(getattr(e, "message", str(e))))) from None
    return notebook


def _decode(raw: bytes, name: str, repairs: list[str]) -> str:
    """The file's text; a UTF-8 byte-order mark is dropped (see the module docstring)."""
    skipped = 0
    if raw.startswith(UTF8_BOM):
        raw, skipped = raw[len(UTF8_BOM):], len(UTF8_BOM)
        repairs.append("removed the UTF-8 byte-order mark at the start of the file (Jupyter "
                       "refuses files that start with one)")
    if not raw.strip():
        what = "0 bytes" if not raw else f"{len(raw)} bytes, all whitespace"
        raise _Unreadable(f"{name} is empty ({what}), so it is not valid JSON and not a "
                          "notebook: the upload or the save did not finish; submit the "
                          "notebook again")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        utf16 = " (it is UTF-16)" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise _Unreadable(f"{name} is not UTF-8 text (byte {e.start + skipped}){utf16}: it "
                          "was saved in another encoding or damaged in transfer; re-save it "
                          "from Jupyter and submit again") from None


def _parse(text: str, name: str, repairs: list[str]) -> Any:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise _Unreadable(f"{name} is not valid JSON (line {e.lineno}, column {e.colno}: "
                          f"{e.msg}): {_json_hint(text, e)}") from None
    except ValueError as e:  # e.g. an integer longer than Python's digit limit
        raise _Unreadable(f"{name} is not valid JSON that can be read ({_clip(str(e))}); "
                          "re-save it from Jupyter and submit again") from None
    if SURROGATE_ESCAPE.search(text):
        data, replaced = _replace_lone_surrogates(data)
        if replaced:
            repairs.append(f"replaced {_n(replaced, 'unpaired UTF-16 surrogate escape')} "
                           "with U+FFFD (they cannot be written as UTF-8)")
    return data


def _json_hint(text: str, e: json.JSONDecodeError) -> str:
    """Why the JSON is probably broken, in words a student can act on."""
    if "\x00" in text:
        return ("the file contains NUL characters, so it is UTF-16 or binary, not a notebook "
                "saved by Jupyter; re-save it from Jupyter and submit again")
    if e.msg == "Extra data":
        return ("there is more text after the end of the notebook (two files pasted together, "
                "or text appended); remove it or re-save the notebook from Jupyter")
    if e.msg.startswith("Unterminated string") or not text[e.pos:].strip():
        return ("the file stops in the middle of the notebook, so it was cut off during the "
                "upload or the save; submit the notebook again")
    return ("the file is damaged or was edited outside Jupyter; look at that line in a text "
            "editor, or re-save the notebook from Jupyter and submit again")


def _replace_lone_surrogates(value: Any) -> tuple[Any, int]:
    """Replace unpaired surrogates (legal in JSON escapes, not in UTF-8) with U+FFFD."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value, 0
        except UnicodeEncodeError:
            # Round-tripping through UTF-16 joins valid pairs and marks only the lone ones.
            fixed = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            return fixed, sum(1 for a, b in zip(value, fixed, strict=False) if a != b) or 1
    if isinstance(value, list):
        fixed_items = [_replace_lone_surrogates(v) for v in value]
        return [v for v, _ in fixed_items], sum(n for _, n in fixed_items)
    if isinstance(value, dict):
        out, total = {}, 0
        for k, v in value.items():
            k, n_key = _replace_lone_surrogates(k)
            out[k], n_value = _replace_lone_surrogates(v)
            total += n_key + n_value
        return out, total
    return value, 0


def _as_v4(data: Any, name: str, repairs: list[str]) -> dict:
    """The notebook as an nbformat-4 dict: nbformat 1-3 are upgraded by nbformat itself."""
    def not_a_notebook(detail: str) -> _Unreadable:
        return _Unreadable(f"{name} is JSON but not a Jupyter notebook: {detail}; re-save it "
                           "from Jupyter and submit again")

    if not isinstance(data, dict):
        raise not_a_notebook(f"the file holds {_kind(data)}, not an object with `cells` and "
                             "`nbformat`")
    if "nbformat" not in data:
        no_cells = "" if isinstance(data.get("cells"), list) else " and no `cells` list"
        raise not_a_notebook(f"it has no `nbformat` version{no_cells}")
    major = data["nbformat"]
    if type(major) is not int:
        raise not_a_notebook(f"its `nbformat` is {_short(major)}, not a version number")
    if major not in nbformat.versions:
        known = f"{min(nbformat.versions)} to {max(nbformat.versions)}"
        raise not_a_notebook(f"it says nbformat {major}, and Jupyter reads versions {known}")
    if major == 4:
        return data
    minor = data.get("nbformat_minor", 0)
    if major in (2, 3) and not isinstance(data.get("worksheets"), list):
        # nbformat would "upgrade" it to a notebook with no cells at all.
        raise not_a_notebook(f"it says nbformat {major} but has no `worksheets` list, where "
                             f"version {major} keeps its cells")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            upgraded = nbformat.convert(
                nbformat.versions[major].to_notebook_json(data, minor=minor), 4)
    except RecursionError:
        raise
    except Exception as e:  # nbformat's upgrades raise many kinds on a broken old notebook
        raise _Unreadable(f"{name} is an nbformat {major} notebook that could not be upgraded "
                          f"to version 4 ({type(e).__name__}: {_clip(str(e))}); open it in "
                          "Jupyter, save it, and submit again") from None
    from_version = f"{major}.{minor}" if type(minor) is int else str(major)
    repairs.append(f"upgraded from nbformat {from_version} to "
                   f"4.{upgraded.get('nbformat_minor')}")
    return upgraded


def _check_cells(data: dict, name: str) -> None:
    """Refuse what cannot be read as cells: a cell's type and source are the student's work."""
    if "cells" not in data:
        raise _Unreadable(f"{name} is JSON but not a Jupyter notebook: it has no `cells` list; "
                          "re-save it from Jupyter and submit again")
    cells = data["cells"]
    if not isinstance(cells, list):
        raise _Unreadable(f"{name} is JSON but not a Jupyter notebook: its `cells` is "
                          f"{_kind(cells)}, not a list; re-save it from Jupyter and submit "
                          "again")
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise _Unreadable(_schema_problem(name, f"cells[{i}]", f"is {_kind(cell)}, not a "
                                                                    "cell"))
        if "cell_type" not in cell:
            raise _Unreadable(_schema_problem(name, f"cells[{i}]", "has no cell_type"))
        if cell["cell_type"] not in CELL_TYPES:
            raise _Unreadable(_schema_problem(
                name, f"cells[{i}].cell_type",
                f"is {_short(cell['cell_type'])}, not one of {', '.join(CELL_TYPES)}"))
        source = cell.get("source", "")
        if not (isinstance(source, str)
                or isinstance(source, list) and all(isinstance(s, str) for s in source)):
            what = ("a list holding " + next(_kind(s) for s in source if not isinstance(s, str))
                    if isinstance(source, list) else _kind(source))
            raise _Unreadable(_schema_problem(
                name, f"cells[{i}].source",
                f"is {what}, not text (a string or a list of strings)"))


def _settle_minor(data: dict, repairs: list[str]) -> int:
    """The nbformat 4 minor version to repair against, written into `data`.

    Cell ids need 4.5. An older notebook that has them is upgraded rather than stripped, so the
    ids the student's cells carry survive; a newer one is read as the newest this grader knows.
    """
    has_ids = any("id" in cell for cell in data["cells"])
    minor = data.get("nbformat_minor")
    if type(minor) is not int or minor < 0:
        guess = NEWEST_MINOR if has_ids else 4
        if "nbformat_minor" not in data:
            repairs.append(f"added the missing `nbformat_minor` (4.{guess})")
        else:
            repairs.append(f"replaced `nbformat_minor` {_short(minor)}, not a version number, "
                           f"with {guess}")
        minor = guess
    elif minor > NEWEST_MINOR:
        repairs.append(f"read nbformat 4.{minor} as 4.{NEWEST_MINOR}, the newest version this "
                       "grader knows")
        minor = NEWEST_MINOR
    elif minor < NEWEST_MINOR and has_ids:
        repairs.append(f"upgraded nbformat 4.{minor} to 4.{NEWEST_MINOR} to keep the cell ids "
                       f"it has (4.{minor} does not allow cell ids)")
        minor = NEWEST_MINOR
    data["nbformat"], data["nbformat_minor"] = 4, minor
    return minor


def _repair(data: dict, minor: int, name: str, repairs: list[str]) -> dict:
    """Repair every schema nit in `data` (an nbformat 4.`minor` dict); return the result."""
    cells = data["cells"]
    if not isinstance(data.get("metadata"), dict):
        repairs.append("added the missing notebook `metadata`" if "metadata" not in data else
                       f"replaced notebook `metadata` that was {_kind(data['metadata'])}, not "
                       "an object")
        data["metadata"] = {}
    missing_md = sum(1 for c in cells if "metadata" not in c)
    bad_md = sum(1 for c in cells if "metadata" in c and not isinstance(c["metadata"], dict))
    for cell in cells:
        if not isinstance(cell.get("metadata"), dict):
            cell["metadata"] = {}
    if missing_md:
        repairs.append(f"added the missing `metadata` to {_n(missing_md, 'cell')}")
    if bad_md:
        repairs.append(f"replaced `metadata` that was not an object on {_n(bad_md, 'cell')}")
    if minor >= 5:
        _replace_invalid_ids(cells, repairs)

    had_kernelspec = "kernelspec" in data["metadata"]

    # nbformat's default validator (fastjsonschema) gives a verdict in milliseconds where
    # jsonschema, which says where, takes seconds on a notebook full of outputs: ask it first.
    fast = get_validator(4, minor)
    if not (_is_valid(fast, data) and _ids_unique(data["cells"], minor)):
        data, stripped = _normalize(data, minor, repairs)
        slow = get_validator(4, minor, name="jsonschema")
        _repair_top_level(data, slow, name, repairs)
        _repair_cells(data, fast, slow, name, stripped, repairs)
        for key, count in sorted(stripped.items()):
            repairs.append(f"removed invalid cell metadata `{key}` from {_n(count, 'cell')}")
    if "kernelspec" not in data["metadata"]:
        # Jupyter asks for a kernel without one; name the course's, which grading uses anyway.
        data["metadata"]["kernelspec"] = dict(KERNELSPEC)
        repairs.append(f"replaced the invalid `kernelspec` with {KERNELSPEC['name']}"
                       if had_kernelspec else
                       f"added the missing `kernelspec` ({KERNELSPEC['name']})")
    return data


def _is_valid(validator: Any, instance: Any) -> bool:
    try:
        validator.validate(instance)
    except nbformat.ValidationError:
        return False
    return True


def _ids_unique(cells: list[dict], minor: int) -> bool:
    # The schema cannot say that ids are unique; nbformat checks it separately.
    ids = [c.get("id") for c in cells]
    return minor < 5 or len(set(ids)) == len(ids)


def _replace_invalid_ids(cells: list[dict], repairs: list[str]) -> None:
    # Before `normalize`, which would fail on an unhashable id and cannot fix a bad pattern.
    taken = {c["id"] for c in cells if isinstance(c.get("id"), str)}
    replaced = 0
    for cell in cells:
        if "id" in cell and not (isinstance(cell["id"], str) and CELL_ID.fullmatch(cell["id"])):
            new_id = generate_corpus_id()
            while new_id in taken:
                new_id = generate_corpus_id()
            cell["id"] = new_id
            taken.add(new_id)
            replaced += 1
    if replaced:
        repairs.append(f"replaced {_n(replaced, 'invalid cell id')} (ids are 1 to 64 letters, "
                       "digits, - or _)")


def _normalize(data: dict, minor: int, repairs: list[str]) -> tuple[dict, Counter]:
    """nbformat's `normalize`: missing and duplicate ids, invalid metadata.

    Returns the repaired copy and, per cell metadata key it stripped, how many cells lost it
    (named later, together with the keys `_repair_cells` strips).
    """
    missing = object()
    ids_before = [c.get("id", missing) for c in data["cells"]]
    cell_keys_before = [set(c["metadata"]) for c in data["cells"]]
    nb_keys_before = set(data["metadata"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns about each id it adds or renames
        _, data = normalize(data, 4, minor, strip_invalid_metadata=True)
    cells = data["cells"]
    added = sum(1 for before, c in zip(ids_before, cells, strict=True)
                if before is missing and "id" in c)
    renamed = sum(1 for before, c in zip(ids_before, cells, strict=True)
                  if before is not missing and c.get("id") != before)
    if added:
        repairs.append(f"added missing cell ids to {_n(added, 'cell')} (nbformat 4.5 requires "
                       "them)")
    if renamed:
        repairs.append(f"renamed {_n(renamed, 'duplicate cell id')}")
    stripped = Counter(key for before, c in zip(cell_keys_before, cells, strict=True)
                       for key in before - set(c["metadata"]))
    for key in sorted(nb_keys_before - set(data["metadata"]) - {"kernelspec"}):
        repairs.append(f"removed invalid notebook metadata `{key}`")
    return data, stripped


def _errors(validator: Any, instance: Any, definition: str) -> list:
    """Schema errors of `instance` against one definition, paths relative to `instance`.

    Straight from nbformat's jsonschema validator: `iter_validate` would pass them through
    `better_validation_error`, which swaps in sub-errors whose paths no longer say where.
    """
    return list(validator.iter_errors(instance, {"$ref": f"#/definitions/{definition}"}))


def _repair_cells(data: dict, fast: Any, validator: Any, name: str, stripped: Counter,
                  repairs: list[str]) -> None:
    extra: Counter = Counter()  # (key, cell_type): cells that had the key removed
    added: Counter = Counter()
    cleared: Counter = Counter()
    bad_attachments: Counter = Counter()
    out_keys: Counter = Counter()
    dropped = 0
    shell = {**data, "cells": []}  # the notebook's own keys are repaired by now
    for i, cell in enumerate(data["cells"]):
        if _is_valid(fast, {**shell, "cells": [cell]}):
            continue
        cell_type = cell["cell_type"]
        if isinstance(cell.get("outputs"), list) and cell_type == "code":
            cell["outputs"], removed, n_dropped = _repair_outputs(cell["outputs"], validator)
            out_keys.update(removed)
            dropped += n_dropped
        for error in _errors(validator, cell, f"{cell_type}_cell"):
            path = list(error.path)
            if error.validator == "additionalProperties" and not path:
                allowed = set(error.schema.get("properties", {}))
                for key in sorted(set(cell) - allowed):
                    del cell[key]
                    extra[(key, cell_type)] += 1
            elif error.validator == "required" and not path:
                for key in error.validator_value:
                    if key not in cell and key in EMPTY_VALUES:
                        cell[key] = deepcopy(EMPTY_VALUES[key])
                        added[(key, cell_type)] += 1
                    elif key not in cell:
                        raise _Unreadable(_schema_problem(name, f"cells[{i}]", f"has no {key}"))
            elif path and path[0] in ("execution_count", "outputs", "attachments") \
                    and path[0] in cell:
                # Outputs and counts are rerun when grading; attachments are pasted images.
                if path[0] == "attachments":
                    del cell["attachments"]
                    bad_attachments[cell_type] += 1
                else:
                    cell[path[0]] = deepcopy(EMPTY_VALUES[path[0]])
                    cleared[(path[0], cell_type)] += 1
            elif len(path) >= 2 and path[0] == "metadata" and path[1] != "nbgrader":
                # nbformat strips only top-level metadata keys with errors; this one is deeper.
                if path[1] in cell["metadata"]:
                    del cell["metadata"][path[1]]
                    stripped[path[1]] += 1
            else:
                raise _Unreadable(_schema_problem(name, _where(["cells", i, *path]),
                                                  _clip(error.message)))
    for (key, cell_type), count in sorted(extra.items()):
        repairs.append(f"removed `{key}` from {_n(count, f'{cell_type} cell')}")
    for (key, cell_type), count in sorted(added.items()):
        repairs.append(f"added the missing `{key}` to {_n(count, f'{cell_type} cell')}")
    for (key, cell_type), count in sorted(cleared.items()):
        repairs.append(f"cleared invalid `{key}` on {_n(count, f'{cell_type} cell')}")
    for cell_type, count in sorted(bad_attachments.items()):
        repairs.append(f"removed invalid `attachments` from {_n(count, f'{cell_type} cell')}")
    for key, count in sorted(out_keys.items()):
        repairs.append(f"removed unknown key `{key}` from {_n(count, 'output')}")
    if dropped:
        repairs.append(f"dropped {_n(dropped, 'malformed output')} (grading runs the notebook "
                       "again)")


def _repair_outputs(outputs: list, validator: Any) -> tuple[list, Counter, int]:
    """Outputs with unknown keys removed and broken ones dropped: grading recomputes them."""
    kept, removed = [], Counter()
    for output in outputs:
        if not isinstance(output, dict) or output.get("output_type") not in OUTPUT_TYPES:
            continue
        for error in _errors(validator, output, output["output_type"]):
            if error.validator == "additionalProperties" and not list(error.path):
                for key in sorted(set(output) - set(error.schema.get("properties", {}))):
                    del output[key]
                    removed[key] += 1
        if not _errors(validator, output, output["output_type"]):
            kept.append(output)
    return kept, removed, len(outputs) - len(kept)


def _repair_top_level(data: dict, validator: Any, name: str, repairs: list[str]) -> None:
    # Validated without its cells (repaired one by one next): only the notebook's own keys.
    shell = {**data, "cells": []}
    for error in validator.iter_errors(shell):
        path = list(error.path)
        if error.validator == "additionalProperties" and not path:
            for key in sorted(set(data) - set(error.schema.get("properties", {}))):
                del data[key]
                repairs.append(f"removed the unknown top-level key `{key}`")
        elif len(path) >= 2 and path[0] == "metadata":
            # nbformat's `normalize` strips these; this only catches what it missed.
            if path[1] in data["metadata"]:
                del data["metadata"][path[1]]
                if path[1] != "kernelspec":  # named when it is replaced
                    repairs.append(f"removed invalid notebook metadata `{path[1]}`")
        else:
            raise _Unreadable(_schema_problem(name, _where(path), _clip(error.message)))


def _schema_problem(name: str, where: str, what: str) -> str:
    return (f"{name} cannot be read as a Jupyter notebook: {where} {what}; no automatic repair "
            "can fix that, so correct it in a text editor (or copy the work into a new "
            "notebook) and submit again")


def _where(path: Any) -> str:
    """A schema path as `cells[3].outputs[0].name`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the notebook"


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"the value {str(value).lower()}"
    if value is None:
        return "null"
    for kind, word in ((dict, "an object"), (list, "a list"), (str, "a string"),
                       ((int, float), "a number")):
        if isinstance(value, kind):
            return word
    return type(value).__name__


def _short(value: Any) -> str:
    """A value as the student's file spells it (JSON's null/true/false), cut short."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return _clip(repr(value), 40)


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
