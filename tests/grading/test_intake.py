"""Intake: a submission Jupyter can open is graded, with each schema repair named; a file that
is not a notebook is refused with one sentence that says what is wrong with it."""

from __future__ import annotations

import copy
import json
import os
import random
from pathlib import Path

import nbformat
import pytest

from autograder.grading import intake
from autograder.grading.intake import Intake, read_submission

FIXTURES = Path(__file__).parents[1] / "fixtures" / "intake"
# /work/shared/field-cases/editor-extra-cell-keys: a correct notebook saved by an editor that
# writes `outputs` and `execution_count` on markdown cells.
FIELD_CASE = FIXTURES / "editor-extra-cell-keys.ipynb"
# A notebook as IPython 2 saved it (nbformat 3.0), with nbgrader metadata.
V3_FIXTURE = FIXTURES / "ipython2-v3.ipynb"
NAME = "05_hdf5_dataset.ipynb"


def notebook(minor: int = 5, ids: bool | None = None) -> dict:
    """A small valid notebook as on disk: sources as lists of lines, nbgrader metadata."""
    ids = minor >= 5 if ids is None else ids
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Title\n", "Some text."]},
        {"cell_type": "code", "execution_count": 1, "outputs": [], "source":
            ["def f(x):\n", "    return x + 1"],
         "metadata": {"nbgrader": {"grade": False, "grade_id": "f", "locked": False,
                                   "schema_version": 3, "solution": True}}},
        {"cell_type": "code", "execution_count": 2, "source": "assert f(1) == 2",
         "outputs": [{"output_type": "stream", "name": "stdout", "text": ["ok\n"]}],
         "metadata": {"nbgrader": {"grade": True, "grade_id": "f_adds_one", "locked": True,
                                   "points": 2, "schema_version": 3, "solution": False}}},
        {"cell_type": "raw", "metadata": {}, "source": "raw text"},
    ]
    if ids:
        for i, cell in enumerate(cells):
            cell["id"] = f"cell-{i}"
    return {"cells": cells, "nbformat": 4, "nbformat_minor": minor,
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                        "name": "python3"},
                         "language_info": {"name": "python"}}}


def write(tmp_path: Path, content: bytes | str | dict | list, name: str = NAME) -> Path:
    path = tmp_path / name
    if isinstance(content, (dict, list)):
        content = json.dumps(content, indent=1)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def joined(source: str | list[str]) -> str:
    return source if isinstance(source, str) else "".join(source)


def assert_graded(result: Intake, original: dict) -> None:
    """Gradable, valid, and every cell's type, source and nbgrader metadata as submitted."""
    assert result.problem is None, result.problem
    nb = result.notebook
    nbformat.validate(copy.deepcopy(nb))
    assert nb.nbformat == 4
    assert len(nb.cells) == len(original["cells"])
    for mine, theirs in zip(nb.cells, original["cells"], strict=True):
        assert mine.cell_type == theirs["cell_type"]
        assert mine.source == joined(theirs.get("source", ""))
        metadata = theirs.get("metadata")
        nbgrader = metadata.get("nbgrader") if isinstance(metadata, dict) else None
        assert mine.metadata.get("nbgrader") == nbgrader
    # It can be written for grading and read back unchanged.
    again = nbformat.reads(nbformat.writes(nb).encode("utf-8").decode("utf-8"), as_version=4)
    assert again == nb


def graded(tmp_path: Path, content: dict, expected_repairs: list[str]) -> Intake:
    """Read `content` from a file; it must be graded with exactly `expected_repairs`."""
    result = read_submission(write(tmp_path, content))
    assert_graded(result, content)
    assert result.repairs == expected_repairs
    return result


def refused(tmp_path: Path, content: bytes | str | dict | list, *words: str) -> Intake:
    """Read `content` from a file; it must be refused with a problem naming it and `words`."""
    result = read_submission(write(tmp_path, content))
    assert result.notebook is None
    assert result.problem is not None
    assert result.problem.startswith(NAME), result.problem
    for word in words:
        assert word in result.problem, result.problem
    assert "grader failed" not in result.problem
    return result


# --- notebooks that need no repair ------------------------------------------------------


@pytest.mark.parametrize("minor", [5, 4, 0])
def test_a_valid_notebook_is_graded_unchanged(tmp_path, minor):
    """Does a valid notebook of any 4.x come back valid, with no repair named?"""
    original = notebook(minor)
    result = graded(tmp_path, original, [])
    assert result.notebook.nbformat_minor == minor
    assert [c.get("id") for c in result.notebook.cells] == [c.get("id")
                                                            for c in original["cells"]]


@pytest.mark.parametrize("as_list", [True, False])
def test_source_as_lines_or_as_one_string_is_not_a_repair(tmp_path, as_list):
    """Is `source` as a list of lines (Jupyter's own on-disk form) or as a string just read?"""
    original = notebook()
    for cell in original["cells"]:
        text = joined(cell["source"])
        cell["source"] = text.splitlines(keepends=True) if as_list else text
    result = graded(tmp_path, original, [])
    assert result.notebook.cells[1].source == "def f(x):\n    return x + 1"


# --- the field case ---------------------------------------------------------------------


def test_field_case_markdown_cells_with_outputs_are_graded(tmp_path):
    """Is the editor-saved notebook from the field graded, its markdown cells' keys removed?"""
    original = json.loads(FIELD_CASE.read_text(encoding="utf-8"))
    result = read_submission(FIELD_CASE)
    assert_graded(result, original)
    assert result.repairs == ["removed `execution_count` from 13 markdown cells",
                              "removed `outputs` from 13 markdown cells"]
    grade_ids = [c.metadata["nbgrader"]["grade_id"] for c in result.notebook.cells
                 if "nbgrader" in c.metadata]
    assert "hdf5_dataset" in grade_ids and "read_batch_in_requested_order" in grade_ids
    assert [c.id for c in result.notebook.cells] == [c["id"] for c in original["cells"]]


# --- repairs: keys a cell type does not allow --------------------------------------------


def _extra_on_markdown(nb):
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            cell["outputs"], cell["execution_count"] = [], None


def _attachments_on_code(nb):
    nb["cells"][1]["attachments"] = {}
    nb["cells"][2]["attachments"] = {}


def _unknown_key_on_raw(nb):
    nb["cells"][3]["collapsed"] = True
    nb["cells"][3]["execution_count"] = 4


@pytest.mark.parametrize("spoil,repairs", [
    (_extra_on_markdown, ["removed `execution_count` from 1 markdown cell",
                          "removed `outputs` from 1 markdown cell"]),
    (_attachments_on_code, ["removed `attachments` from 2 code cells"]),
    (_unknown_key_on_raw, ["removed `collapsed` from 1 raw cell",
                           "removed `execution_count` from 1 raw cell"]),
])
def test_keys_a_cell_type_does_not_allow_are_removed(tmp_path, spoil, repairs):
    """Are keys outside a cell type's schema removed, each named with its cell type?"""
    original = notebook()
    spoil(original)
    graded(tmp_path, original, repairs)


# --- repairs: cell ids -------------------------------------------------------------------


@pytest.mark.parametrize("minor,with_ids,repairs", [
    (4, [0, 1, 2, 3], ["upgraded nbformat 4.4 to 4.5 to keep the cell ids it has (4.4 does "
                       "not allow cell ids)"]),
    (3, [1], ["upgraded nbformat 4.3 to 4.5 to keep the cell ids it has (4.3 does not allow "
              "cell ids)", "added missing cell ids to 3 cells (nbformat 4.5 requires them)"]),
])
def test_cell_ids_in_an_older_minor_version_upgrade_it_to_4_5(tmp_path, minor, with_ids,
                                                             repairs):
    """Are the ids a 4.4 notebook carries kept, by upgrading it to 4.5 rather than refusing?"""
    original = notebook(minor, ids=False)
    for i in with_ids:
        original["cells"][i]["id"] = f"kept-{i}"
    result = graded(tmp_path, original, repairs)
    assert result.notebook.nbformat_minor == 5
    assert [result.notebook.cells[i].id for i in with_ids] == [f"kept-{i}" for i in with_ids]


@pytest.mark.parametrize("without", [[0, 1, 2, 3], [2]])
def test_missing_cell_ids_in_4_5_are_added(tmp_path, without):
    """Does a 4.5 notebook with cells lacking ids get ids, counted in the repair?"""
    original = notebook(5)
    for i in without:
        del original["cells"][i]["id"]
    plural = "cell" if len(without) == 1 else "cells"
    result = graded(tmp_path, original,
                    [f"added missing cell ids to {len(without)} {plural} (nbformat 4.5 "
                     "requires them)"])
    assert len({c.id for c in result.notebook.cells}) == 4


@pytest.mark.parametrize("duplicated,repair", [
    ([1], "renamed 1 duplicate cell id"),
    ([1, 2, 3], "renamed 3 duplicate cell ids"),
])
def test_duplicate_cell_ids_are_renamed(tmp_path, duplicated, repair):
    """Are duplicate cell ids renamed (the first keeps its id), not refused?"""
    original = notebook(5)
    for i in duplicated:
        original["cells"][i]["id"] = "cell-0"
    result = graded(tmp_path, original, [repair])
    ids = [c.id for c in result.notebook.cells]
    assert ids[0] == "cell-0" and len(set(ids)) == 4


@pytest.mark.parametrize("bad_id", ["has space", "x" * 65, "", 7, None, ["a"], "é"])
def test_invalid_cell_ids_are_replaced(tmp_path, bad_id):
    """Is an id with bad characters, the wrong length or not a string replaced?"""
    original = notebook(5)
    original["cells"][2]["id"] = bad_id
    result = graded(tmp_path, original, ["replaced 1 invalid cell id (ids are 1 to 64 "
                                         "letters, digits, - or _)"])
    assert result.notebook.cells[0].id == "cell-0"
    assert result.notebook.cells[2].id not in {"cell-0", "cell-1", "cell-3"}


# --- repairs: missing or invalid metadata ------------------------------------------------


def _no_cell_metadata(nb):
    del nb["cells"][0]["metadata"]
    del nb["cells"][3]["metadata"]


def _no_notebook_metadata(nb):
    del nb["metadata"]


def _no_kernelspec(nb):
    del nb["metadata"]["kernelspec"]


def _broken_kernelspec(nb):
    del nb["metadata"]["kernelspec"]["display_name"]


def _cell_metadata_a_list(nb):
    nb["cells"][3]["metadata"] = ["not", "an", "object"]


@pytest.mark.parametrize("spoil,repairs", [
    (_no_cell_metadata, ["added the missing `metadata` to 2 cells"]),
    (_cell_metadata_a_list, ["replaced `metadata` that was not an object on 1 cell"]),
    (_no_notebook_metadata, ["added the missing notebook `metadata`",
                             "added the missing `kernelspec` (python3)"]),
    (_no_kernelspec, ["added the missing `kernelspec` (python3)"]),
    (_broken_kernelspec, ["replaced the invalid `kernelspec` with python3"]),
])
def test_missing_metadata_is_added(tmp_path, spoil, repairs):
    """Are a missing or broken cell `metadata`, notebook `metadata` or `kernelspec` repaired?"""
    original = notebook()
    spoil(original)
    result = graded(tmp_path, original, repairs)
    assert result.notebook.metadata.kernelspec.name in ("python3",)


def _tags_a_string(nb):
    nb["cells"][1]["metadata"]["tags"] = "solution"
    nb["cells"][2]["metadata"]["tags"] = 3


def _language_info_without_name(nb):
    nb["metadata"]["language_info"] = {"version": "3.11"}


def _deep_cell_metadata(nb):
    nb["cells"][1]["metadata"]["execution"] = {"iopub.status.busy": 5}


@pytest.mark.parametrize("spoil,repairs", [
    (_tags_a_string, ["removed invalid cell metadata `tags` from 2 cells"]),
    (_language_info_without_name, ["removed invalid notebook metadata `language_info`"]),
    (_deep_cell_metadata, ["removed invalid cell metadata `execution` from 1 cell"]),
])
def test_invalid_metadata_is_removed_but_nbgrader_kept(tmp_path, spoil, repairs):
    """Is metadata that breaks the schema stripped, leaving nbgrader's untouched?"""
    original = notebook()
    spoil(original)
    graded(tmp_path, original, repairs)


# --- repairs: required keys, outputs and counts ------------------------------------------


def _code_cell_without_outputs(nb):
    del nb["cells"][1]["outputs"]
    del nb["cells"][1]["execution_count"]


def _markdown_without_source(nb):
    del nb["cells"][0]["source"]


@pytest.mark.parametrize("spoil,repairs", [
    (_code_cell_without_outputs, ["added the missing `execution_count` to 1 code cell",
                                  "added the missing `outputs` to 1 code cell"]),
    (_markdown_without_source, ["added the missing `source` to 1 markdown cell"]),
])
def test_missing_required_cell_keys_are_added_empty(tmp_path, spoil, repairs):
    """Are required keys a cell lacks added with empty values, inventing nothing?"""
    original = notebook()
    spoil(original)
    graded(tmp_path, original, repairs)


def _output_with_unknown_key(nb):
    nb["cells"][2]["outputs"][0]["transient"] = {"display_id": "x"}


def _unknown_output_type(nb):
    nb["cells"][2]["outputs"].append({"output_type": "widget", "data": {}})


def _stream_without_name(nb):
    del nb["cells"][2]["outputs"][0]["name"]


def _outputs_not_a_list(nb):
    nb["cells"][1]["outputs"] = {"0": "x"}


def _execution_count_a_string(nb):
    nb["cells"][1]["execution_count"] = "3"
    nb["cells"][2]["execution_count"] = -1


@pytest.mark.parametrize("spoil,repairs", [
    (_output_with_unknown_key, ["removed unknown key `transient` from 1 output"]),
    (_unknown_output_type, ["dropped 1 malformed output (grading runs the notebook again)"]),
    (_stream_without_name, ["dropped 1 malformed output (grading runs the notebook again)"]),
    (_outputs_not_a_list, ["cleared invalid `outputs` on 1 code cell"]),
    (_execution_count_a_string, ["cleared invalid `execution_count` on 2 code cells"]),
])
def test_broken_outputs_and_counts_are_cleared(tmp_path, spoil, repairs):
    """Are broken outputs and execution counts, which grading recomputes, repaired?"""
    original = notebook()
    spoil(original)
    graded(tmp_path, original, repairs)


@pytest.mark.parametrize("key", ["worksheets", "name"])
def test_unknown_top_level_keys_are_removed(tmp_path, key):
    """Is a key the notebook schema does not know removed and named?"""
    original = notebook()
    original[key] = []
    graded(tmp_path, original, [f"removed the unknown top-level key `{key}`"])


def test_attachments_that_break_the_schema_are_removed(tmp_path):
    """Are malformed attachments on a markdown cell removed, the text kept?"""
    original = notebook()
    original["cells"][0]["attachments"] = {"image.png": "not a mime bundle"}
    graded(tmp_path, original, ["removed invalid `attachments` from 1 markdown cell"])


# --- repairs: versions -------------------------------------------------------------------


def test_an_ipython_2_notebook_is_upgraded(tmp_path):
    """Is an nbformat 3 notebook (IPython 2) upgraded by nbformat and graded?"""
    result = read_submission(V3_FIXTURE)
    assert result.problem is None
    assert result.repairs == ["upgraded from nbformat 3.0 to 4.5",
                              "added the missing `kernelspec` (python3)"]
    nb = result.notebook
    nbformat.validate(copy.deepcopy(nb))
    assert [c.cell_type for c in nb.cells] == ["markdown", "markdown", "code", "code"]
    assert nb.cells[0].source == "# Reading a batch"
    assert nb.cells[2].source == ("def read_batch(dataset, indices):\n"
                                  "    return [dataset[i] for i in indices]")
    assert nb.cells[2].metadata.nbgrader.grade_id == "read_batch"
    assert nb.cells[3].metadata.nbgrader.points == 2


def test_the_field_case_saved_as_nbformat_3_is_upgraded(tmp_path):
    """Does the field case, downgraded to nbformat 3, come back with its sources and grading?"""
    v4 = nbformat.read(FIELD_CASE, as_version=4)
    path = write(tmp_path, nbformat.writes(nbformat.convert(copy.deepcopy(v4), 3)))
    result = read_submission(path)
    assert result.problem is None
    # nbformat's downgrade and upgrade carry the editor's extra keys along.
    assert result.repairs == ["upgraded from nbformat 3.0 to 4.5",
                              "removed `execution_count` from 13 markdown cells",
                              "removed `outputs` from 13 markdown cells"]
    assert [c.source for c in result.notebook.cells] == [c.source for c in v4.cells]
    assert [c.metadata.get("nbgrader") for c in result.notebook.cells] == \
        [c.metadata.get("nbgrader") for c in v4.cells]


def _v1_notebook() -> dict:
    return {"nbformat": 1, "cells": [{"cell_type": "code", "code": "y = 2", "prompt_number": 1},
                                     {"cell_type": "text", "text": "Some text."}]}


def _v2_notebook() -> dict:
    v2 = nbformat.v2
    return json.loads(v2.writes_json(v2.new_notebook(worksheets=[v2.new_worksheet(cells=[
        v2.new_code_cell(input="y = 2", prompt_number=1),
        v2.new_text_cell("markdown", source="Some text.")])])))


@pytest.mark.parametrize("make,major", [(_v1_notebook, 1), (_v2_notebook, 2)])
def test_nbformat_1_and_2_notebooks_are_upgraded(tmp_path, make, major):
    """Do even IPython 0.x notebooks come back as nbformat 4.5 with their cells?"""
    result = read_submission(write(tmp_path, make()))
    assert result.problem is None
    assert result.repairs == [f"upgraded from nbformat {major}.0 to 4.5",
                              "added the missing `kernelspec` (python3)"]
    assert [(c.cell_type, c.source) for c in result.notebook.cells] == \
        [("code", "y = 2"), ("markdown", "Some text.")]
    nbformat.validate(copy.deepcopy(result.notebook))


@pytest.mark.parametrize("minor,with_ids,repairs,final_minor", [
    ("missing", True, ["added the missing `nbformat_minor` (4.5)"], 5),
    ("missing", False, ["added the missing `nbformat_minor` (4.4)"], 4),
    ("4", False, ["replaced `nbformat_minor` '4', not a version number, with 4"], 4),
    (7, True, ["read nbformat 4.7 as 4.5, the newest version this grader knows"], 5),
])
def test_minor_versions_are_settled(tmp_path, minor, with_ids, repairs, final_minor):
    """Is a missing, malformed or future nbformat_minor read as a version nbformat knows?"""
    original = notebook(5, ids=with_ids)
    if minor == "missing":
        del original["nbformat_minor"]
    else:
        original["nbformat_minor"] = minor
    result = graded(tmp_path, original, repairs)
    assert result.notebook.nbformat_minor == final_minor


def test_a_future_minor_version_loses_only_keys_this_version_lacks(tmp_path):
    """Is a 4.7 notebook with a key 4.5 lacks read as 4.5, that key removed and named?"""
    original = notebook(5)
    original["nbformat_minor"] = 7
    original["cells"][1]["future_key"] = {"x": 1}
    graded(tmp_path, original, ["read nbformat 4.7 as 4.5, the newest version this grader "
                                "knows", "removed `future_key` from 1 code cell"])


# --- repairs: encoding -------------------------------------------------------------------


@pytest.mark.parametrize("original", [notebook(5), notebook(4)])
def test_a_utf8_byte_order_mark_is_removed(tmp_path, original):
    """Is a notebook after a UTF-8 BOM (Windows tools add one) graded, the BOM named?"""
    path = write(tmp_path, b"\xef\xbb\xbf" + json.dumps(original).encode("utf-8"))
    result = read_submission(path)
    assert_graded(result, original)
    assert result.repairs == ["removed the UTF-8 byte-order mark at the start of the file "
                              "(Jupyter refuses files that start with one)"]


@pytest.mark.parametrize("where", ["source", "metadata"])
def test_unpaired_surrogates_are_replaced(tmp_path, where):
    """Is a lone surrogate escape (valid JSON, not writable as UTF-8) replaced with U+FFFD?"""
    original = notebook()
    text = json.dumps(original)
    if where == "source":
        text = text.replace("Some text.", "Some \\ud800text.")
    else:
        text = text.replace('"language_info"', '"\\udc00odd": 1, "language_info"')
    result = read_submission(write(tmp_path, text))
    assert result.problem is None
    assert result.repairs == ["replaced 1 unpaired UTF-16 surrogate escape with U+FFFD (they "
                              "cannot be written as UTF-8)"]
    nbformat.writes(result.notebook).encode("utf-8")
    if where == "source":
        assert result.notebook.cells[0].source == "# Title\nSome \ufffdtext."


def test_a_valid_surrogate_pair_is_kept(tmp_path):
    """Is an escaped surrogate pair (an emoji) read as the character, not repaired?"""
    original = notebook()
    text = json.dumps(original).replace("Some text.", "Some \\ud83d\\ude00 text.")
    result = read_submission(write(tmp_path, text))
    assert result.repairs == []
    assert result.notebook.cells[0].source == "# Title\nSome \U0001F600 text."


# --- refused: not UTF-8 ------------------------------------------------------------------


@pytest.mark.parametrize("content,words", [
    (b"\xff\xfe\x00not utf-8 at all", ["not UTF-8", "(byte 0)", "(it is UTF-16)"]),
    (b'{"cells": ["caf\xe9"]}', ["not UTF-8", "(byte 15)", "re-save it from Jupyter"]),
    (b'\xef\xbb\xbf{"a": "\x80"}', ["not UTF-8", "(byte 10)"]),
])
def test_a_file_that_is_not_utf8_is_refused_with_the_byte(tmp_path, content, words):
    """Does the problem say the file is not UTF-8 and at which byte of the file?"""
    refused(tmp_path, content, *words)


def test_utf16_without_a_bom_is_refused_as_not_json(tmp_path):
    """Is UTF-16 text without a BOM (valid UTF-8 bytes, full of NULs) explained?"""
    refused(tmp_path, json.dumps(notebook()).encode("utf-16-le"),
            "not valid JSON", "NUL characters", "UTF-16")


# --- refused: not JSON -------------------------------------------------------------------


@pytest.mark.parametrize("content,words", [
    (b'{"cells": [', ["not valid JSON", "(line 1, column 12", "cut off"]),
    (FIELD_CASE.read_bytes()[:12000], ["not valid JSON", "cut off"]),
    (b'{\n "cells": [],\n "nbformat": 4,\n}', ["not valid JSON", "(line 4, column 1",
                                              "edited outside Jupyter"]),
    (b'{"cells": []}\n{"cells": []}', ["not valid JSON", "(line 2, column 1", "Extra data",
                                       "more text after the end"]),
    (b'{"cells": [' + b"1" * 5000 + b"]}", ["not valid JSON", "digits"]),
])
def test_a_file_that_is_not_json_is_refused_with_line_and_column(tmp_path, content, words):
    """Does the problem say "not valid JSON", where, and what probably happened?"""
    refused(tmp_path, content, *words)


@pytest.mark.parametrize("content,words", [
    (b"", ["is empty (0 bytes)", "not valid JSON"]),
    (b"  \n\t ", ["is empty (5 bytes, all whitespace)"]),
    (b"\xef\xbb\xbf", ["is empty (0 bytes)"]),
])
def test_an_empty_file_is_refused_as_empty(tmp_path, content, words):
    """Is an empty upload called empty rather than a JSON error at line 1?"""
    refused(tmp_path, content, *words, "submit the notebook again")


# --- refused: JSON but not a notebook ----------------------------------------------------


@pytest.mark.parametrize("content,words", [
    ([], ["JSON but not a Jupyter notebook", "holds a list, not an object"]),
    (5, ["JSON but not a Jupyter notebook", "holds a number"]),
    ("text", ["JSON but not a Jupyter notebook", "holds a string"]),
    ({"cells": 5}, ["no `nbformat` version and no `cells` list"]),
    ({"cells": []}, ["no `nbformat` version;"]),
    ({"nbformat": 4, "nbformat_minor": 5, "metadata": {}}, ["has no `cells` list"]),
    ({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": 5},
     ["its `cells` is a number, not a list"]),
    ({"nbformat": 5, "nbformat_minor": 0, "metadata": {}, "cells": []},
     ["says nbformat 5", "versions 1 to 4"]),
    ({"nbformat": "4", "nbformat_minor": 5, "metadata": {}, "cells": []},
     ["`nbformat` is '4', not a version number"]),
    ({"nbformat": True, "cells": []}, ["`nbformat` is true, not a version number"]),
    ({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "cells": []},
     ["says nbformat 3 but has no `worksheets` list"]),
])
def test_json_that_is_not_a_notebook_is_refused(tmp_path, content, words):
    """Does the problem say it is JSON but not a notebook, and what is missing?"""
    if not isinstance(content, (dict, list)):
        content = json.dumps(content)
    refused(tmp_path, content, *words)


def test_a_broken_nbformat_3_notebook_says_it_could_not_be_upgraded(tmp_path):
    """Is an nbformat 3 file that nbformat cannot upgrade refused with the reason?"""
    v3 = json.loads(V3_FIXTURE.read_text(encoding="utf-8"))
    del v3["worksheets"][0]["cells"][2]["outputs"]
    refused(tmp_path, v3, "nbformat 3 notebook that could not be upgraded to version 4")
    v3["worksheets"] = [{"cells": "x"}]
    refused(tmp_path, v3, "nbformat 3 notebook that could not be upgraded to version 4")


# --- refused: what no repair can fix -----------------------------------------------------


def _cell_type_misspelled(nb):
    nb["cells"][2]["cell_type"] = "codee"


def _cell_without_type(nb):
    del nb["cells"][1]["cell_type"]


def _cell_a_string(nb):
    nb["cells"][0] = "# Title"


def _source_a_number(nb):
    nb["cells"][3]["source"] = 12


def _source_lines_not_text(nb):
    nb["cells"][1]["source"] = ["x = 1\n", None]


@pytest.mark.parametrize("spoil,detail", [
    (_cell_type_misspelled, "cells[2].cell_type is 'codee', not one of code, markdown, raw"),
    (_cell_without_type, "cells[1] has no cell_type"),
    (_cell_a_string, "cells[0] is a string, not a cell"),
    (_source_a_number, "cells[3].source is a number, not text"),
    (_source_lines_not_text, "cells[1].source is a list holding null, not text"),
])
def test_cells_that_cannot_be_read_are_refused_with_their_path(tmp_path, spoil, detail):
    """Does the problem name the cell and the property that no repair can fix?"""
    original = notebook()
    spoil(original)
    refused(tmp_path, original, "cannot be read as a Jupyter notebook", detail)


def test_deeply_nested_json_is_refused(tmp_path):
    """Is JSON nested past Python's recursion limit refused, not raised?"""
    refused(tmp_path, "[" * 100_000 + "]" * 100_000, "nested far more deeply")
    nested = notebook()
    nested["metadata"]["deep"] = json.loads("[" * 900 + "]" * 900)
    result = read_submission(write(tmp_path, nested))
    assert result.problem is None or "grader failed" not in result.problem


# --- never raises, never writes ----------------------------------------------------------


def test_a_grader_bug_becomes_a_problem_not_an_exception(tmp_path, monkeypatch):
    """Does a failure inside intake come back as a problem sentence, not an exception?"""
    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(intake, "_repair", broken)
    result = read_submission(write(tmp_path, notebook()))
    assert result.notebook is None
    assert result.problem.startswith(NAME)
    assert "grader failed (KeyError" in result.problem


def test_an_unreadable_path_is_a_problem(tmp_path):
    """Is a path that cannot be read (a folder, a missing file) a problem, not an error?"""
    folder = tmp_path / NAME
    folder.mkdir()
    assert "could not be read" in read_submission(folder).problem
    assert "could not be read" in read_submission(tmp_path / "gone.ipynb").problem


def _random_json(rng: random.Random, depth: int = 0):
    choices = [None, True, 0, -1, 2.5, "", "code", "markdown", "x" * 70]
    if depth < 4:
        choices += ["list", "dict"] * 3
    value = rng.choice(choices)
    if value == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if value == "dict":
        keys = ["cells", "nbformat", "nbformat_minor", "metadata", "cell_type", "source",
                "outputs", "id", "execution_count", "output_type", "nbgrader", "worksheets"]
        return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return value


def _mutations(rng: random.Random) -> list[bytes]:
    """Inputs an upload can produce: truncations, flipped bytes, notebooks with random parts."""
    base = FIELD_CASE.read_bytes()
    found = [base[:rng.randrange(len(base))] for _ in range(25)]
    for _ in range(25):
        data = bytearray(base)
        for _ in range(rng.randint(1, 5)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        found.append(bytes(data))
    for _ in range(60):
        nb = notebook(rng.choice([3, 4, 5]))
        target = rng.choice([nb, nb["metadata"], *nb["cells"], nb["cells"][2]["outputs"][0]])
        target[rng.choice(list(target) + ["extra"])] = _random_json(rng)
        found.append(json.dumps(nb).encode())
    found += [json.dumps(_random_json(rng)).encode() for _ in range(40)]
    return found


def test_never_raises_and_never_writes_on_damaged_inputs(tmp_path):
    """Does every damaged input give a valid notebook or a problem, and leave the file as is?"""
    rng = random.Random(11)
    for i, content in enumerate(_mutations(rng)):
        path = write(tmp_path, content, name=f"fuzz{i}.ipynb")
        os.chmod(path, 0o444)
        before = (path.read_bytes(), path.stat().st_mtime_ns)
        result = read_submission(path)
        assert (path.read_bytes(), path.stat().st_mtime_ns) == before
        if result.problem is None:
            nbformat.validate(copy.deepcopy(result.notebook))
            nbformat.writes(result.notebook).encode("utf-8")
        else:
            assert result.notebook is None
            assert result.problem.startswith(f"fuzz{i}.ipynb"), result.problem
            assert "grader failed" not in result.problem, (content[:300], result.problem)


def test_the_input_file_is_never_modified(tmp_path):
    """Is a file that needs repairs left byte for byte as it was (read-only, too)?"""
    original = notebook()
    _extra_on_markdown(original)
    del original["cells"][1]["id"]
    path = write(tmp_path, original)
    os.chmod(path, 0o444)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    result = read_submission(path)
    assert result.repairs and result.problem is None
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
