"""06_tradeoffs: the self-assessment, five questions answered with a letter, letters or a number.

Each answer lives in a plain variable (`q1_hotspot_choice = "B"`), so a widget can set it later.
Every question has two checks: a visible `<topic>_form` check (0 points) that says at once
whether the answer is well formed, and a hidden `<topic>` check (1 point) that grades it, with
feedback that explains the misconception behind a wrong choice without naming the right one.
An answer still set to `...` (the release stub) is reported as not attempted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

from autograder.engine.check_report import run_exercise
from autograder.engine.spec import Check, Exercise, Fail

SUBJECT = "answer"


@dataclass(frozen=True)
class Question:
    """One self-assessment question: where its answer lives, its kind, and its key."""

    topic: str  # check names are self_assessment_<topic> and self_assessment_<topic>_form
    variable: str  # the learner's variable, as the notebook names it
    kind: str  # "choice" (one letter), "letters" (a set of letters) or "number"
    answer: Any
    options: str = ""
    feedback: dict[Any, str] = field(default_factory=dict)  # why a given wrong answer is wrong
    otherwise: str = ""  # for wrong answers without their own feedback


QUESTIONS = [
    Question(
        "hotspot", "q1_hotspot_choice", "choice", "C", "ABCD",
        feedback={
            "A": "A lean Dataset holds a path and small arrays, not the images: each worker "
                 "gets a copy of that small object and reads one sample at a time. A full copy "
                 "per worker happens only when the Dataset itself holds the data.",
            "B": "Page cache is shared by every process and the kernel reclaims it; summing the "
                 "workers' RSS counts each shared page once per process and overstates the total "
                 "(PSS does not). It does not grow with prefetch_factor either.",
            "D": "pin_memory copies each batch into page-locked *host* RAM; a batch reaches the "
                 "GPU only when your loop calls `.to(device)`. Prepared batches wait in host "
                 "memory.",
        },
        otherwise="Think about what grows when you raise num_workers or prefetch_factor."),
    Question(
        "loader_benefits", "q2_benefits_choice", "choice", "A", "ABCD",
        feedback={
            "B": "Workers do not split the data to save RAM: each is a process with its own "
                 "interpreter and its own copy of the Dataset object, so RAM use goes up with "
                 "workers. Pinning has nothing to do with the page cache.",
            "C": "Each worker opens its own file handle (sharing one across processes is unsafe), "
                 "and one `__getitem__` is no faster in a worker; the gain is that several run at "
                 "once, overlapped with training. pin_memory does nothing without an "
                 "accelerator: DataLoader warns and skips it.",
            "D": "Workers prepare data; the model's forward pass still runs in the main process. "
                 "Pinned memory is not compressed: it is page-locked, so the GPU can copy from "
                 "it directly and asynchronously.",
        }),
    Question(
        "format_benefit", "q3_format_choice", "choice", "D", "ABCD",
        feedback={
            "A": "A memory-mapped or chunked file is precisely *not* loaded whole: that would "
                 "need as much RAM as the data, which is what the eager dataset of notebook 03 "
                 "did.",
            "B": "HDF5 is not memory-mapped: h5py reads through the HDF5 library (a `pread` into "
                 "a new array, plus a chunk cache). NumPy memmap and LMDB are memory-mapped.",
            "C": "Compression is optional and saves disk, not RAM: a sample is decompressed when "
                 "it is read. The benefit holds for uncompressed files too.",
        }),
    Question(
        "hdf5_opens", "q4_hdf5_opens", "number", 2,
        feedback={
            1000: "That is the JPEG folder's count: one open per `__getitem__`. Dataset B opens "
                  "the file the first time `__getitem__` runs in a process and reuses that "
                  "handle afterwards.",
            1: "The two workers are separate processes and cannot share one open handle; each "
               "process that calls `__getitem__` opens its own.",
            0: "B opens the file lazily, inside `__getitem__`, not in `__init__`.",
            3: "The main process never calls `__getitem__` here, so it never opens the file "
               "lazily; only the processes that read samples do.",
        },
        otherwise="Count the processes that call `__getitem__`, and how often each one opens "
                  "the file."),
    Question(
        "video_offline", "q5_offline_steps", "letters", "ACEG", "ABCDEFG",
        otherwise="Offline work is what is deterministic, expensive and the same every epoch; "
                  "whatever must differ from epoch to epoch (random augmentation) stays in "
                  "`__getitem__`."),
]
BY_TOPIC = {q.topic: q for q in QUESTIONS}


def _question(check_name: str) -> Question:
    topic = check_name.removeprefix("self_assessment_").removesuffix("_form")
    return BY_TOPIC[topic]


# ----------------------------------------------------------------------------- in the child


def _attempted(value: Any) -> Any:
    """Raise NotImplementedError for the release stub's `...` (or None): not answered yet."""
    if value is Ellipsis or value is None:
        raise NotImplementedError
    return value


def _plain(value: Any) -> dict:
    """Describe the answer as JSON-able data; the parent interprets it."""
    out: dict[str, Any] = {"type": type(value).__name__}
    if isinstance(value, str):
        out["text"] = value
    elif isinstance(value, Real) and not isinstance(value, bool):
        out["number"] = float(value)
    elif isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, str)
                                                                  for v in value):
        out["text"] = "".join(sorted(value))
    return out


def act_read_answer(ctx, submission) -> dict:
    q = _question(ctx.check)
    value = ctx.call(f"{q.variable} = ...", _attempted, submission[SUBJECT])
    return _plain(value)


# ----------------------------------------------------------------------------- in the parent


def _normalise(q: Question, data: dict) -> Any:
    """The answer in canonical form (a letter, a sorted string of letters, a number), or Fail."""
    shown = data.get("text", data.get("number", f"a {data['type']}"))
    if q.kind == "number":
        if "number" not in data:
            if "text" in data and re.fullmatch(r"\s*-?\d+(\.\d*)?\s*", data["text"]):
                raise Fail(f"`{q.variable}` is the string {data['text']!r}; write the number "
                           f"without quotes: `{q.variable} = {data['text'].strip()}`.")
            raise Fail(f"`{q.variable}` should be a number, but it is {shown}.")
        if not math.isfinite(data["number"]):
            raise Fail(f"`{q.variable}` is {data['number']}; give a finite number.")
        return data["number"]
    if "text" not in data:
        raise Fail(f"`{q.variable}` should be a letter in quotes, e.g. `{q.variable} = \"A\"`, "
                   f"but it is {shown}.")
    letters = re.sub(r"[^A-Za-z]", "", data["text"]).upper()
    options = ", ".join(q.options)
    if q.kind == "choice":
        if len(letters) != 1 or letters not in q.options:
            raise Fail(f"`{q.variable}` is {data['text']!r}; choose exactly one of {options}.")
        return letters
    unknown = sorted(set(letters) - set(q.options))
    if not letters or unknown:
        raise Fail(f"`{q.variable}` is {data['text']!r}; list the letters of your choice among "
                   f"{options}, e.g. `{q.variable} = \"{q.options[1]}{q.options[3]}\"`.")
    return "".join(sorted(set(letters)))


def _judge(q: Question, data: dict) -> None:
    """Raise Fail, with the feedback for its misconception, unless `data` is the right answer."""
    given = _normalise(q, data)
    if q.kind == "number":
        if math.isclose(given, q.answer, rel_tol=1e-9, abs_tol=1e-9):
            return
        key = int(given) if float(given).is_integer() else given
        raise Fail(f"{q.variable} = {key:g} is not right. " + q.feedback.get(key, q.otherwise))
    if q.kind == "letters":
        wrong = len(set(given) ^ set(q.answer))
        if wrong:
            raise Fail(f"{wrong} of the {len(q.options)} steps are on the wrong side. "
                       + q.otherwise)
        return
    if given != q.answer:
        raise Fail(f"{q.variable} = {given!r} is not the best answer. "
                   + q.feedback.get(given, q.otherwise))


def judge_form(trace) -> None:
    _normalise(_question(trace.check), trace.data)


def judge_answer(trace) -> None:
    _judge(_question(trace.check), trace.data)


# ----------------------------------------------------------------------------- for the quiz widget


def normalise_answer(question: Question, value: Any) -> Any:
    """`value`, as a notebook variable holds it, in the form the checks read: a letter, a
    sorted string of letters or a float; raises Fail, with the form check's message, otherwise.
    """
    return _normalise(question, _plain(value))


def judge(question: Question, value: Any) -> None:
    """Raise Fail, with the hidden check's feedback, unless `value` answers `question` right."""
    _judge(question, _plain(value))


def _checks() -> list[Check]:
    out = []
    for q in QUESTIONS:
        if q.kind == "choice":
            form = f"`{q.variable}` is one of the letters {', '.join(q.options)}"
        elif q.kind == "letters":
            form = f"`{q.variable}` lists letters among {', '.join(q.options)}"
        else:
            form = f"`{q.variable}` is a number"
        out.append(Check(f"self_assessment_{q.topic}_form", 0,
                         form + " (whether it is right is graded when you hand in)",
                         act_read_answer, judge_form, timeout_s=20,
                         hint=f"Set `{q.variable}` in the cell above and run that cell again."))
        out.append(Check(f"self_assessment_{q.topic}", 1, f"`{q.variable}` is right",
                         act_read_answer, judge_answer, hidden=True, timeout_s=20,
                         extends=f"{q.topic}_form",
                         hint="Re-read the question and the section of the course it names."))
    return out


CHECKS = _checks()

EXERCISE = Exercise(name="self_assessment", title="Self-assessment", subjects=(SUBJECT,),
                    checks=CHECKS,
                    not_attempted="Not answered yet: replace `{op}` with your answer.",
                    hints=[
                        "Answer from what the notebooks measured, not from habit: question 1 "
                        "draws on notebook 01, question 2 on 02, question 3 on 04 and 05, "
                        "question 4 on 05, question 5 on this notebook's section on offline "
                        "preprocessing.",
                        "Re-read: for question 1, 01's section 5 ('Batches in flight') and its "
                        "map of the memory; for 2, 02's sections 2 (`num_workers`) and 6 "
                        "(`pin_memory`); for 3, 04's sections 1 and 2 (memmap, and HDF5, which "
                        "is not memory-mapped); for 4, 05's Property 2; for 5, the decision "
                        "table's last row.",
                        "Question 1: what grows with `num_workers x prefetch_factor`? 2: "
                        "workers prepare batches in parallel with training, pinned memory "
                        "copies to the GPU faster. 3: a process reads only the bytes of the "
                        "samples it needs. 4: count the processes that call `__getitem__`. 5: "
                        "offline is what is deterministic, expensive and the same every epoch.",
                    ])


def check_self_assessment(answer, *checks: str) -> None:
    """Check one self-assessment answer in a fresh process; name the question's check(s)."""
    __tracebackhide__ = True
    if not checks:
        raise TypeError("name the checks to run, e.g. "
                        "check_self_assessment(q1_hotspot_choice, 'hotspot_form')")
    run_exercise(EXERCISE, {SUBJECT: answer}, checks)
