"""The self-assessments of 06_tradeoffs (five questions) and 07_beyond_one_machine (three),
answered with a letter, letters or a number.

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
    right: str = "The written question below asks you to explain why."  # the quiz, when right


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
    # 07_beyond_one_machine
    Question(
        "sampler_padding", "q1_padded_indices", "number", 12,
        feedback={
            10: "DistributedSampler gives every rank the same number of indices, so that no rank "
                "waits for the others at the end of an epoch: ceil(10 / 4) = 3 each. Three times "
                "four is more than 10: it repeats indices from the start to fill the gap.",
            8: "That is what `drop_last=True` gives: it cuts the tail instead of padding. The "
               "default, `drop_last=False`, pads.",
            3: "That is one rank's share; the question asks for the four ranks together.",
            40: "Each rank reads its own share of the indices, not the whole dataset: 40 is what "
                "four ranks read without a DistributedSampler.",
        },
        otherwise="Each rank gets the same number of indices, ceil(N / world_size); count what "
                  "that makes for all the ranks.",
        right="ceil(10 / 4) = 3 indices for each of the 4 ranks: 2 of the 12 are repeats."),
    Question(
        "iterable_workers", "q2_iterable_choice", "choice", "B", "ABCD",
        feedback={
            "A": "The DataLoader splits the *indices* of a map-style Dataset among its workers. "
                 "An IterableDataset has no indices: each worker runs its own copy of "
                 "`__iter__`, and only the dataset can decide which part is its own, with "
                 "`get_worker_info()`.",
            "C": "Every worker starts its own iterator at once; none of them waits for another.",
            "D": "IterableDatasets work with any `num_workers`; nothing checks for duplicates, "
                 "which is why the mistake goes unnoticed.",
        },
        right="Each worker iterates its own copy of the dataset; only `get_worker_info()` lets "
              "it take its own part."),
    Question(
        "epoch_requests", "q3_epoch_requests", "number", 1200,
        feedback={
            1_200_000: "That is one request per sample, what reading samples at random from "
                       "per-sample objects costs. Shards are streamed whole: one request each.",
            32: "That is the number of reading processes (8 ranks x 4 workers); each of them "
                "streams many shards.",
            38_400: "That is every reading process streaming every shard: the duplicate bug of "
                    "an IterableDataset that ignores its rank and worker. Split the shards, and "
                    "each is read once.",
            150: "That is one rank's shards; the question asks for the whole epoch.",
        },
        otherwise="Count the shards: each is streamed once per epoch, with one request.",
        right="1,200 shards, each streamed once with one request, however many processes share "
              "them."),
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
                        "Answer from what the notebooks measured, not from habit. In 06, "
                        "question 1 draws on notebook 01, question 2 on 02, question 3 on 04 "
                        "and 05, question 4 on 05, question 5 on 06's section on offline "
                        "preprocessing. In 07, question 1 draws on its section 1 (ranks), 2 "
                        "on section 3 (the sharded dataset), 3 on section 4 (object storage).",
                        "Re-read, in 06: for question 1, 01's section 5 ('Batches in flight') "
                        "and its map of the memory; for 2, 02's sections 2 (`num_workers`) and 6 "
                        "(`pin_memory`); for 3, 04's sections 1 and 2 (memmap, and HDF5, which "
                        "is not memory-mapped); for 4, 05's Property 2; for 5, the decision "
                        "table's last row. In 07: for 1, section 1's padding cells; for 2, "
                        "section 2's pipeline and its pitfalls; for 3, section 4's first "
                        "measurement (one request per shard).",
                        "Question 1: what grows with `num_workers x prefetch_factor`? 2: "
                        "workers prepare batches in parallel with training, pinned memory "
                        "copies to the GPU faster. 3: a process reads only the bytes of the "
                        "samples it needs. 4: count the processes that call `__getitem__`. 5: "
                        "offline is what is deterministic, expensive and the same every epoch. "
                        "07's 1: every rank gets ceil(N / world_size); 2: who splits the data "
                        "of an IterableDataset among workers? 3: one request per shard.",
                    ])


def check_self_assessment(answer, *checks: str) -> None:
    """Check one self-assessment answer in a fresh process; name the question's check(s)."""
    __tracebackhide__ = True
    if not checks:
        raise TypeError("name the checks to run, e.g. "
                        "check_self_assessment(q1_hotspot_choice, 'hotspot_form')")
    run_exercise(EXERCISE, {SUBJECT: answer}, checks)
