"""Widgets for the parts of the course where a learner would rather click than read.

- `quiz(topic)` shows one self-assessment question of 06_tradeoffs as buttons. A click stores the
  answer in the variable the grader reads (`q1_hotspot_choice`, ...) for this session, and says
  at once whether it is right where the learner studies alone (the course's `solutions/` folder
  is there, so the answers are public anyway); in a class release it only confirms what was
  recorded. The grader re-runs the notebook and sees no clicks: what the answer cell's source
  sets is what counts, so the quiz starts from that value and shows the line to write there.
- `concept_check(question, right, wrong)` is an ungraded question with feedback for each option.
- `scale_calculator(dataset)` turns a dataset and a cluster into shards per rank, bytes in
  flight per node, page-cache fit and an epoch's time (`memcourse.scale`, notebook 07).
- `memory_calculator(predict)` turns a DataLoader configuration into the bytes of batches in
  flight, with a bar chart, and agrees with the learner's `predict_bytes_in_flight` (or shows
  both numbers where they differ).

Nothing here waits for input: a cell that shows a widget returns at once, so nbclient and
nbgrader run the notebooks headless and keep the widgets' state. Each widget also has a plain
text form, which frontends without widget support show instead.
"""

from __future__ import annotations

import html
import io
import math
import os
import random
import re
import zlib
from dataclasses import dataclass
from typing import Any

from autograder.engine.richtext import BLUE, GREEN, GREY, RED, inline_code
from autograder.engine.spec import Fail
from autograder.exercises import bytes_in_flight, self_assessment
from autograder.hints import solutions_dir
from memcourse import scale

MIB = 2**20
DTYPES = ("uint8", "float16", "bfloat16", "float32", "float64", "int64")
_CURRENT = object()  # "the answer the namespace holds now"


def self_study() -> bool:
    """Whether widgets may say which answer is right.

    Yes where the learner can read the reference answers anyway: the course's `solutions/`
    folder is present and no grader is running the notebook. `MEMCOURSE_SELF_STUDY=0` (or `1`)
    decides it explicitly, e.g. for a class that works from a full clone of the course.
    """
    chosen = os.environ.get("MEMCOURSE_SELF_STUDY", "").strip()
    if chosen in ("0", "1"):
        return chosen == "1"
    if os.environ.get("NBGRADER_EXECUTION"):
        return False
    return solutions_dir() is not None


def _user_namespace() -> dict:
    """The notebook's global variables, where the grader looks for the learner's answers."""
    # lazy: IPython (~70 ms), which only a notebook has (loaded already) and needs here
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise RuntimeError("quiz() stores answers in a notebook's variables; outside a notebook "
                           "pass namespace=globals()")
    return shell.user_ns


def _box(message: str, colour: str) -> str:
    return (f"<div class='memcourse-feedback' style='border-left:4px solid {colour};"
            f"padding:2px 8px;margin-top:4px'>{message}</div>")


class _Widget:
    """A widget with a text form: the widget in JupyterLab, the text anywhere else."""

    widget: Any

    def text(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        bundle = dict(self.widget._repr_mimebundle_(include=include, exclude=exclude) or {})
        bundle["text/plain"] = self.text()
        return bundle


# ----------------------------------------------------------------------------- quizzes (graded)


def _question(topic: str) -> self_assessment.Question:
    for q in self_assessment.QUESTIONS:
        if topic in (q.topic, q.variable):
            return q
    names = ", ".join(f'"{q.topic}"' for q in self_assessment.QUESTIONS)
    raise ValueError(f"No self-assessment question {topic!r}; the questions are {names}.")


def _as_code(variable: str, value: Any) -> str:
    return f'{variable} = "{value}"' if isinstance(value, str) else f"{variable} = {value!r}"


class Quiz(_Widget):
    """One self-assessment question as buttons; its answer lives in the learner's variable."""

    def __init__(self, topic: str, namespace: dict | None = None, reveal: bool | None = None):
        import ipywidgets as w  # lazy: ~0.3 s, loaded when a notebook shows its first widget

        self.question = q = _question(topic)
        self.namespace = _user_namespace() if namespace is None else namespace
        self.reveal = self_study() if reveal is None else reveal
        # What the answer cell set: the value the grader will see, whatever is clicked later.
        self.written = self._canonical(self.namespace.get(q.variable, Ellipsis))
        start = self.written if isinstance(self.written, (str, int, float)) else None
        if q.kind == "choice":
            self.input = w.ToggleButtons(options=list(q.options), value=start,
                                         style={"button_width": "3.2em"})
            self.input.observe(lambda change: self.choose(change["new"]), names="value")
        elif q.kind == "letters":
            chosen = start or ""
            self.toggles = [w.ToggleButton(description=letter, value=letter in chosen,
                                           layout=w.Layout(width="3.2em"))
                            for letter in q.options]
            for toggle in self.toggles:
                toggle.observe(lambda _change: self.choose("".join(
                    t.description for t in self.toggles if t.value)), names="value")
            self.input = w.HBox(self.toggles)
        else:
            self.input = w.Text(value="" if start is None else f"{start:g}",
                                placeholder="a number", continuous_update=False,
                                layout=w.Layout(width="8em"))
            self.input.observe(lambda change: self.choose(change["new"]), names="value")
        label = w.HTML(f"<b>Your answer</b> (stored in <code>{q.variable}</code>):")
        self.feedback = w.HTML(self._message_html())
        self.feedback.add_class("memcourse-quiz-feedback")
        self.widget = w.VBox([label, self.input, self.feedback])
        self.widget.add_class("memcourse-quiz")

    def _canonical(self, value: Any) -> Any:
        """The answer as the checks read it ("C", "ACEG", 2), Ellipsis if unanswered, or Fail."""
        if value is Ellipsis or value is None or value == "":
            return Ellipsis
        try:
            got = self_assessment.normalise_answer(self.question, value)
        except Fail as e:
            return e
        return int(got) if isinstance(got, float) and got.is_integer() else got

    def choose(self, value: Any) -> None:
        """What a click (or a typed number) does: store the answer and show the feedback."""
        if self.question.kind == "number" and isinstance(value, str):
            text = value.strip()
            try:
                value = float(text) if text else Ellipsis
            except ValueError:
                self.feedback.value = _box(f"{html.escape(text)} is not a number: type digits, "
                                           "e.g. 5.", RED)
                return
        answer = self._canonical(value)
        if not isinstance(answer, Exception):  # an answer the checks cannot read stays out
            self.namespace[self.question.variable] = answer
        self.feedback.value = self._message_html(answer)

    @property
    def answer(self) -> Any:
        return self._canonical(self.namespace.get(self.question.variable, Ellipsis))

    def _verdict(self, answer: Any) -> tuple[str, str]:
        """(sentence, colour) for an answer."""
        q = self.question
        if answer is Ellipsis:
            if self.reveal:
                return "Choose an answer to see whether it is right.", GREY
            return (f"Choose an answer: it is stored in `{q.variable}` and graded when you hand "
                    "in.", GREY)
        if isinstance(answer, Exception):
            return str(answer), RED
        if not self.reveal:
            return (f"Recorded: `{_as_code(q.variable, answer)}`. Whether it is right is graded "
                    "when you hand in.", BLUE)
        try:
            self_assessment.judge(q, answer)
        except Fail as e:
            return f"✘ {e}", RED
        return f"✔ Right. {q.right}", GREEN

    def _keep_note(self, answer: Any) -> str:
        if answer is Ellipsis or isinstance(answer, Exception) or answer == self.written:
            return ""
        line = _as_code(self.question.variable, answer)
        return (f"Clicks are not saved in the notebook: to keep this answer when the notebook "
                f"runs again (and when it is graded), write `{line}` in the answer cell above.")

    def _message_html(self, answer: Any = _CURRENT) -> str:
        answer = self.answer if answer is _CURRENT else answer
        sentence, colour = self._verdict(answer)
        note = self._keep_note(answer)
        note_html = f"<div style='color:{GREY}'>{inline_code(note)}</div>" if note else ""
        return _box(inline_code(sentence) + note_html, colour)

    def text(self) -> str:
        sentence, _ = self._verdict(self.answer)
        note = self._keep_note(self.answer)
        return "\n".join(filter(None, [f"Quiz: {self.question.variable}", sentence, note]))


def quiz(topic: str, namespace: dict | None = None) -> Quiz:
    """A quiz for one self-assessment question (`"hotspot"` or `"q1_hotspot_choice"`).

    Put it last in a cell after the question's answer cell. It starts from the value the answer
    cell set and stores each click in the same variable of `namespace` (the notebook's).
    """
    return Quiz(topic, namespace)


# ----------------------------------------------------------------------------- concept checks


class ConceptCheck(_Widget):
    """An ungraded multiple-choice question that explains every option as it is chosen."""

    def __init__(self, question: str, right: str, wrong: dict[str, str], why: str = ""):
        import ipywidgets as w  # lazy: ~0.3 s, loaded when a notebook shows its first widget

        if not wrong or right in wrong:
            raise ValueError("a concept check needs one right option and other, wrong ones")
        self.question, self.right, self.wrong, self.why = question, right, dict(wrong), why
        self.options = [right, *wrong]
        # The same order every run, but the right answer is not always first.
        random.Random(zlib.crc32(question.encode())).shuffle(self.options)
        self.choice: str | None = None
        labels = [(option.replace("`", ""), option) for option in self.options]  # plain text
        self.input = w.RadioButtons(options=labels, value=None,
                                    layout=w.Layout(width="auto"))
        self.input.observe(lambda change: self.choose(change["new"]), names="value")
        self.feedback = w.HTML("")
        self.feedback.add_class("memcourse-concept-feedback")
        prompt = w.HTML(f"<b>Quick check.</b> {inline_code(question)}",
                        layout=w.Layout(width="95%"))
        self.widget = w.VBox([prompt, self.input, self.feedback])
        self.widget.add_class("memcourse-concept-check")

    def verdict(self, option: str | None) -> tuple[str, str]:
        """(sentence, colour) for a chosen option."""
        if option is None:
            return "", GREY
        if option == self.right:
            return f"✔ Right. {self.why}".strip(), GREEN
        if option not in self.wrong:
            return f"{option!r} is not one of the options.", RED
        return f"✘ Not quite. {self.wrong[option]}", RED

    def choose(self, option: str | None) -> None:
        self.choice = option
        sentence, colour = self.verdict(option)
        self.feedback.value = _box(inline_code(sentence), colour) if sentence else ""

    def text(self) -> str:
        lines = [f"Quick check: {self.question}"]
        lines += [f"  ({chr(97 + i)}) {option}" for i, option in enumerate(self.options)]
        sentence, _ = self.verdict(self.choice)
        return "\n".join(lines + ([sentence] if sentence else []))


@dataclass(frozen=True)
class Concept:
    """An ungraded question: the right option, each wrong one with why it is wrong, and why."""

    question: str
    right: str
    wrong: dict[str, str]
    why: str = ""


# The quick checks of the notebooks, by name. They live here rather than in the cells, so a
# learner does not read the right option in the source just above the buttons.
CONCEPTS: dict[str, Concept] = {
    # 01_memory_footprint
    "rss_over_counts": Concept(
        "Three processes each show 300 MiB of RSS, most of it pages they share. How much RAM do "
        "they occupy together?",
        right="About the sum of their PSS: each shared page counts once, split between them",
        wrong={"900 MiB, the sum of their RSS": "RSS counts a shared page in full in every "
               "process that maps it, so the sum counts it three times.",
               "The sum of their USS": "USS leaves out every shared page, so the sum misses what "
               "they share, here the largest part."},
        why="PSS gives each process an equal share of every page it shares; summed, each page "
            "counts once."),
    "copy_on_read": Concept(
        "A Dataset keeps 1,000,000 file paths, and 4 fork workers read all of them every epoch. "
        "Which way of storing the paths keeps the workers from copying them?",
        right="A NumPy array of fixed-width bytes, or a tensor of bytes plus offsets",
        wrong={"A Python list of str": "Reading a str updates its reference count, which writes "
               "to its page: each worker ends up with its own copy of most of the list.",
               "Any of them: fork shares pages until someone writes, and the workers only read":
               "In Python, reading writes: every use of an object updates its reference count. "
               "Only raw buffers, with no object per element, stay shared."},
        why="An array is one buffer of raw bytes without reference counts, so reading it writes "
            "nothing and its pages stay shared."),
    # 03_on_the_fly_loading
    "eager_copies_under_spawn": Concept(
        "EagerNpyDataset keeps every image in one NumPy array. A DataLoader with 4 workers "
        "started with spawn (macOS, Windows, Linux from Python 3.14) reads from it. How many "
        "copies of the images end up in RAM?",
        right="Five: the main process's, plus one in each worker",
        wrong={"One: the workers share the main process's array": "Sharing is what fork does "
               "with pages nobody writes to. spawn starts fresh interpreters, and each receives "
               "the Dataset pickled, NumPy arrays included (notebook 01, section 4).",
               "Four: the main process hands its copy over to the workers": "The main process "
               "keeps its Dataset; each worker unpickles a copy of its own on top."},
        why="Each spawn worker unpickles its own Dataset, arrays and all. A lazy dataset holds "
            "only paths and labels, so its copies cost next to nothing."),
    "lazy_cost": Concept(
        "Your lazy dataset keeps memory flat. What does it pay for that instead?",
        right="Every `__getitem__` opens, reads and closes a file, in every epoch",
        wrong={"`__init__` must now read every file once": "`__init__` only lists the file "
               "names and loads the small labels file; no sample is read until it is asked for.",
               "Nothing: lazy loading is faster as well as smaller": "Each sample now costs a "
               "file open and a read, every epoch; the eager dataset paid once, in `__init__`."},
        why="Only one sample is in RAM at a time, so the cost moves to reading: notebook 04 "
            "looks at formats that make each read cheap."),
    # 05_hdf5_dataset
    "open_once": Concept(
        "`__getitem__` runs thousands of times per epoch. Which of its steps should happen only "
        "once per process?",
        right="Opening the file and looking up its `images` and `labels` datasets",
        wrong={"Reading the sample": "The sample is what each call is for: it is read every "
               "time, and only that one sample.",
               "None: opening the file in every call costs little and is safer": "Opening parses "
               "the file's header and metadata each time; the timings above compared it with "
               "keeping the file open."},
        why="Keep the open file and its datasets on the Dataset object, so every later call "
            "only reads."),
    "pickle_after_use": Concept(
        "A lazy HDF5 dataset without `__getstate__` is tried out with `ds[0]` in the notebook, "
        "then given to `DataLoader(ds, num_workers=2)` with spawn. What happens?",
        right="Starting the workers fails: each needs a pickled copy of `ds`, which now holds an "
              "open h5py file",
        wrong={"Nothing special: each worker opens its own file lazily": "It would, but first "
               "each worker must receive a pickled copy of `ds`, and since `ds[0]` that copy "
               "includes an open h5py File, which cannot be pickled.",
               "The workers share the main process's open file": "A spawn worker is a fresh "
               "process: all it gets is a pickled copy of the dataset, and h5py objects refuse "
               "to be pickled."},
        why="This is the trap above, inside a DataLoader. A `__getstate__` that drops the handle "
            "fixes it, and each worker then opens its own file."),
    # 07_beyond_one_machine
    "set_epoch_forgotten": Concept(
        "You train with `DistributedSampler(ds, shuffle=True)` on 8 GPUs and never call "
        "`set_epoch`. What happens?",
        right="Every epoch, each rank gets the same share of the samples in the same order",
        wrong={"The sampler raises an error after the first epoch":
               "Nothing checks it: the sampler just uses epoch 0's permutation forever.",
               "Each rank shuffles on its own, so the shares overlap":
               "All ranks still agree, because they share `seed`; they just never change.",
               "The DataLoader calls `set_epoch` itself at the start of each epoch":
               "It does not: the training loop must, for the sampler (and for any dataset with "
               "an epoch, like the one you write in section 3)."},
        why="The permutation is drawn from `seed + epoch`, and `set_epoch` is the only way the "
            "epoch changes. The model then sees its samples in one fixed order every epoch."),
}


def concept_check(name: str | None = None, /, *, question: str = "", right: str = "",
                  wrong: dict[str, str] | None = None, why: str = "") -> ConceptCheck:
    """An ungraded question with feedback for every option.

    `concept_check("copy_on_read")` shows one of the course's questions (`CONCEPTS`); or give
    your own: `concept_check(question=..., right=..., wrong={option: why_not}, why=...)`.
    """
    if name is not None:
        if name not in CONCEPTS:
            raise ValueError(f"No concept check {name!r}; there are {', '.join(CONCEPTS)}.")
        c = CONCEPTS[name]
        return ConceptCheck(c.question, c.right, c.wrong, c.why)
    return ConceptCheck(question, right, wrong or {}, why)


# ----------------------------------------------------------------------------- memory calculator


@dataclass(frozen=True)
class InFlight:
    """The batches a DataLoader configuration holds, by the course's formula and by the learner's.

    `reference_bytes` is the formula the checks use (`autograder.exercises.bytes_in_flight`):
    the batch in use, `num_workers * prefetch_factor` prefetched ones, and one pinned copy.
    """

    batch_size: int
    sample_shape: tuple[int, ...]
    dtype: str
    num_workers: int
    prefetch_factor: int
    pin_memory: bool
    batch_bytes: int
    prefetched: int  # batches waiting in shared memory
    pinned: int  # 1 when a pinned copy exists beside them
    reference_bytes: int
    learner_bytes: float | None  # what the learner's function returned, if it is a number
    learner_note: str  # why there is no learner number ("" when there is one)

    @property
    def batches(self) -> int:
        return self.prefetched + 1 + self.pinned

    @property
    def agrees(self) -> bool | None:
        """Whether the learner's function gives the formula's answer (None: nothing to compare)."""
        if self.learner_bytes is None:
            return None
        return abs(self.learner_bytes - self.reference_bytes) <= 1e-6 * max(1, self.reference_bytes)

    def lines(self) -> list[str]:
        shape = "×".join(map(str, self.sample_shape)) or "scalar"
        if self.num_workers:
            prefetched = (f"{self.prefetched} prefetched ({self.num_workers} workers × "
                          f"prefetch_factor {self.prefetch_factor})")
        else:
            prefetched = "none prefetched (num_workers=0: each batch is built when asked for)"
        out = [f"one batch: {self.batch_size} samples of {shape} {self.dtype} = "
               f"{self.batch_bytes / MIB:,.2f} MiB",
               f"batches in flight: {prefetched} + 1 in use"
               + (" + 1 pinned copy (only on a machine with a GPU)" if self.pinned else "")
               + f" = {self.batches}",
               f"bytes in flight, course formula: {self.reference_bytes:,} "
               f"({self.reference_bytes / MIB:,.2f} MiB)"]
        if self.learner_bytes is None:
            out.append(f"your predict_bytes_in_flight: {self.learner_note}; the numbers above "
                       "come from the course's formula")
        elif self.agrees:
            out.append("your predict_bytes_in_flight gives the same number")
        else:
            out.append(f"your predict_bytes_in_flight says {self.learner_bytes:,.0f} "
                       f"({self.learner_bytes / MIB:,.2f} MiB): it disagrees with the formula")
        return out


def _dtype_name(dtype: Any) -> str:
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return name


def in_flight(batch_size: int, sample_shape: tuple[int, ...], dtype: Any, num_workers: int,
              prefetch_factor: int = 2, pin_memory: bool = False, predict=None) -> InFlight:
    """Bytes of batches in flight for a configuration; asks `predict` too when it is given."""
    name = _dtype_name(dtype)
    shape = tuple(int(s) for s in sample_shape)
    batch = bytes_in_flight.batch_bytes(batch_size, shape, name)
    expected = bytes_in_flight.reference(batch_size, shape, name, num_workers, prefetch_factor,
                                         pin_memory)
    got, note = None, ""
    if predict is None:
        note = "not given"
    else:
        # lazy: torch, about 2 s: only a calculator given the learner's function needs it
        import torch

        try:
            value = predict(batch_size, shape, getattr(torch, name), num_workers,
                            prefetch_factor=prefetch_factor, pin_memory=pin_memory)
        except NotImplementedError:
            note = "not written yet"
        except Exception as e:  # the learner's code: say what it did instead of failing
            note = f"raised {type(e).__name__}: {e}"
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    and not hasattr(value, "__float__"):
                note = f"returned a {type(value).__name__}, not a number of bytes"
            elif not math.isfinite(float(value)):
                note = f"returned {value}, not a number of bytes"
            else:
                got = float(value)
    prefetched = num_workers * prefetch_factor if num_workers > 0 else 0
    return InFlight(batch_size, shape, name, num_workers, prefetch_factor, bool(pin_memory),
                    batch, prefetched, int(bool(pin_memory)), expected, got, note)


def bar_chart_png(result: InFlight) -> bytes:
    """The batches in flight as stacked bars (formula) beside the learner's number, as PNG."""
    # lazy: matplotlib takes ~0.7 s to import, and only the memory calculator draws
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # lazy: matplotlib, as above

    fig = Figure(figsize=(7, 2.2 if result.learner_bytes is not None else 1.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    batch = result.batch_bytes / MIB
    left = 0.0
    rows = ["course formula"]
    for count, label, colour in ((1, "batch in use", "tab:blue"),
                                 (result.prefetched, "prefetched", "tab:orange"),
                                 (result.pinned, "pinned copy", "tab:purple")):
        if count:
            ax.barh(0, count * batch, left=left, color=colour, label=label)
            left += count * batch
    if result.learner_bytes is not None:
        rows.append("your function")
        ax.barh(1, result.learner_bytes / MIB, color="tab:green" if result.agrees else "tab:red")
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlabel("MiB of batches in flight")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3, fontsize="small",
              frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


class MemoryCalculator(_Widget):
    """Sliders for a DataLoader configuration; the bytes in flight, in numbers and a bar chart."""

    def __init__(self, predict=None, batch_size: int = 32, sample_shape=(3, 64, 64),
                 dtype: Any = "uint8", num_workers: int = 2, prefetch_factor: int = 2,
                 pin_memory: bool = False):
        import ipywidgets as w  # lazy: ~0.3 s, loaded when a notebook shows its first widget

        self.predict = predict
        common = {"continuous_update": False, "style": {"description_width": "9em"},
                  "layout": w.Layout(width="26em")}
        self.controls = {
            "batch_size": w.IntSlider(batch_size, 1, 512, description="batch_size", **common),
            "sample_shape": w.Text(", ".join(map(str, sample_shape)), description="sample_shape",
                                   **common),
            "dtype": w.Dropdown(options=DTYPES, value=_dtype_name(dtype), description="dtype",
                                style=common["style"], layout=common["layout"]),
            "num_workers": w.IntSlider(num_workers, 0, 16, description="num_workers", **common),
            "prefetch_factor": w.IntSlider(prefetch_factor, 1, 8, description="prefetch_factor",
                                           **common),
            "pin_memory": w.Checkbox(pin_memory, description="pin_memory (GPU only)",
                                     indent=False),
        }
        for control in self.controls.values():
            control.observe(lambda _change: self.update(), names="value")
        self.summary = w.HTML()
        self.summary.add_class("memcourse-calculator-summary")
        self.chart = w.Image(format="png", layout=w.Layout(max_width="720px"))  # not upscaled
        self.widget = w.VBox([w.HBox([w.VBox(list(self.controls.values())), self.summary]),
                              self.chart])
        self.widget.add_class("memcourse-calculator")
        self.result: InFlight | None = None
        self.update()

    def _shape(self) -> tuple[int, ...]:
        text = self.controls["sample_shape"].value.strip(" \t,()[]")
        if not text:
            return ()  # a batch of scalars, e.g. labels
        parts = re.split(r"\s*[,x×]\s*", text)
        if not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError(text)
        return tuple(int(p) for p in parts)

    def update(self) -> None:
        """Recompute from the controls and redraw."""
        c = {k: v.value for k, v in self.controls.items()}
        self.controls["prefetch_factor"].disabled = c["num_workers"] == 0
        try:
            shape = self._shape()
        except ValueError:
            self.summary.value = _box("sample_shape must be whole numbers separated by commas, "
                                      "e.g. <code>3, 64, 64</code>", RED)
            return
        self.result = r = in_flight(c["batch_size"], shape, c["dtype"], c["num_workers"],
                                    c["prefetch_factor"], c["pin_memory"], self.predict)
        colour = GREY if r.agrees is None else GREEN if r.agrees else RED
        rows = "".join(f"<div>{html.escape(line)}</div>" for line in r.lines())
        self.summary.value = _box(rows, colour)
        self.chart.value = bar_chart_png(r)

    def text(self) -> str:
        return "\n".join(["Memory calculator", *(self.result.lines() if self.result else [])])


def memory_calculator(predict=None, **start: Any) -> MemoryCalculator:
    """A calculator of the bytes in flight; pass your `predict_bytes_in_flight` to compare.

    `start` sets the first configuration shown (`batch_size`, `sample_shape`, `dtype`,
    `num_workers`, `prefetch_factor`, `pin_memory`).
    """
    return MemoryCalculator(predict, **start)


# ----------------------------------------------------------------------------- scale calculator


class ScaleCalculator(_Widget):
    """Controls for a dataset and a cluster; `memcourse.scale.plan`'s numbers, in sentences."""

    DATASETS = {"guide": scale.GUIDE_FILE, "imagenet": scale.IMAGENET}

    def __init__(self, dataset: str = "guide", *, nodes: int = 1, ranks_per_node: int = 2,
                 workers_per_rank: int = 2, batch_size: int = 64, samples_per_shard: int = 500,
                 prefetch_factor: int = 2, shuffle_buffer: int = 1000, read_ms: float = 1.0,
                 step_ms: float = 50.0, node_ram_gib: float = 64):
        import ipywidgets as w  # lazy: ~0.3 s, loaded when a notebook shows its first widget

        if dataset not in self.DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(self.DATASETS)}, "
                             f"not {dataset!r}")
        common = {"continuous_update": False, "style": {"description_width": "11em"},
                  "layout": w.Layout(width="28em")}
        ints = (("nodes", nodes, 1, 512), ("ranks_per_node", ranks_per_node, 1, 16),
                ("workers_per_rank", workers_per_rank, 0, 32), ("batch_size", batch_size, 1, 4096),
                ("samples_per_shard", samples_per_shard, 1, 10**7),
                ("prefetch_factor", prefetch_factor, 1, 16),
                ("shuffle_buffer", shuffle_buffer, 0, 10**6))
        self.controls: dict[str, Any] = {
            "dataset": w.Dropdown(options=[(d.name, k) for k, d in self.DATASETS.items()],
                                  value=dataset, description="dataset", style=common["style"],
                                  layout=common["layout"]),
            **{name: w.BoundedIntText(value, min=low, max=high, description=name, **common)
               for name, value, low, high in ints},
            "read_ms": w.BoundedFloatText(read_ms, min=0, max=10**4,
                                          description="read_s (ms/sample)", **common),
            "step_ms": w.BoundedFloatText(step_ms, min=0, max=10**6,
                                          description="step_s (ms/batch)", **common),
            "node_ram_gib": w.BoundedFloatText(node_ram_gib, min=0, max=10**5,
                                               description="free RAM/node (GiB)", **common),
        }
        for control in self.controls.values():
            control.observe(lambda _change: self.update(), names="value")
        self.summary = w.HTML()
        self.widget = w.HBox([w.VBox(list(self.controls.values())), self.summary])
        self.widget.add_class("memcourse-calculator")
        self.plan: scale.ScalePlan | None = None
        self.update()

    def update(self) -> None:
        """Recompute from the controls and redraw."""
        c = {k: v.value for k, v in self.controls.items()}
        try:
            self.plan = scale.plan(
                self.DATASETS[c.pop("dataset")], read_s=c.pop("read_ms") / 1e3,
                step_s=c.pop("step_ms") / 1e3, **c)
        except ValueError as e:
            self.plan = None
            self.summary.value = _box(html.escape(str(e)), RED)
            return
        colour = GREEN if self.plan.bound == "compute" and not self.plan.idle_workers else RED
        rows = "".join(f"<div>{html.escape(line)}</div>" for line in self.plan.lines())
        self.summary.value = _box(rows, colour)

    def text(self) -> str:
        return "\n".join(["Scale calculator", *(self.plan.lines() if self.plan else [])])


def scale_calculator(dataset: str = "guide", **start: Any) -> ScaleCalculator:
    """A calculator of what a dataset needs on a cluster (`memcourse.scale.plan`).

    `dataset` is "guide" (10,000 x 3 x 256 x 256) or "imagenet"; `start` sets the first values
    shown (`nodes`, `ranks_per_node`, `workers_per_rank`, `batch_size`, `samples_per_shard`,
    `prefetch_factor`, `shuffle_buffer`, `read_ms`, `step_ms`, `node_ram_gib`).
    """
    return ScaleCalculator(dataset, **start)
