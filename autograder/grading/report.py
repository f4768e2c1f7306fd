"""The files a grading run leaves for the instructor: grades.csv, results.json, report.md and
feedback/ (nbgrader's feedback HTML, copied per student).

results.json is `{"submissions": [records], "unmatched_files": [{"path", "reason"}]}`, one
record per (student, assignment) as `handoffs.Record.to_json` writes it; report.md opens with
what needs the instructor's attention, then the scores.
"""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from autograder.engine.spec import PASSED
from autograder.grading.handoffs import Record
from autograder.grading.inputs import Unmatched


def write_outputs(out: Path, records: list[Record], feedback_root: Path, elapsed: float,
                  unmatched: list[Unmatched] | None = None, reused: int = 0) -> None:
    """Write grades.csv, results.json, report.md and feedback/ into `out`.

    `feedback_root` is nbgrader's feedback directory, where `<student>/<assignment>/*.html`
    are copied from; `elapsed` (seconds) is what the report says the run took; `reused` how
    many records an earlier run graded and this one kept unchanged.
    """
    out.mkdir(parents=True, exist_ok=True)
    clean = [r.to_json(with_fingerprint=False) for r in records]
    files = [{"path": u.path, "reason": u.reason} for u in unmatched or []]
    (out / "results.json").write_text(json.dumps({"submissions": clean,
                                                  "unmatched_files": files}, indent=1))
    with open(out / "grades.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "assignment", "score", "max_score", "status", "flags"])
        for r in clean:
            w.writerow([r["student"], r["assignment"], f"{r['score']:g}",
                        "" if r["max_score"] is None else f"{r['max_score']:g}", r["status"],
                        ";".join(r["flags"])])
    for r in clean:
        source = feedback_root / r["student"] / r["assignment"]
        if source.is_dir():
            dest = out / "feedback" / r["student"] / r["assignment"]
            dest.mkdir(parents=True, exist_ok=True)
            for html in source.glob("*.html"):
                shutil.copyfile(html, dest / html.name)
    (out / "report.md").write_text(report(clean, elapsed, files, reused))


# What needs the instructor, in the order the report lists it: (heading, status or flag).
ATTENTION = (
    ("Grading errors (a rerun grades them again)", "error"),
    ("Not gradable (invalid)", "invalid"),
    ("Nothing answered (identical to the release)", "unanswered"),
    ("Several notebooks for one assignment (the best was kept)", "several_notebooks"),
    ("A notebook of the assignment is missing", "missing_notebook"),
    ("Changed grading cells (restored before grading)", "tampered"),
    ("Stopped at a time limit", "timeout"),
    ("Stopped at the memory limit", "memory_limit"),
    ("Crashed the kernel", "kernel_died"),
    ("Started too many processes", "process_limit"),
    ("Output cut", "huge_output"),
)


def count_line(records: list[dict]) -> str:
    """'18 submissions (one per student and assignment): 3 graded, 15 not submitted'."""
    statuses = Counter(r["status"] for r in records)
    noun = "submission" if len(records) == 1 else "submissions"
    return (f"{len(records)} {noun} (one per student and assignment): "
            + ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(statuses.items())))


def report(records: list[dict], elapsed: float, unmatched: list[dict] | None = None,
           reused: int = 0) -> str:
    """A Markdown summary that opens with what needs the instructor, then the scores."""
    unmatched = unmatched or []
    lines = ["# Grading report", ""]
    kept = (f" ({reused} of them unchanged since an earlier run, with the same tests and limits: "
            "their grades were kept; `--force` grades them again)") if reused else ""
    lines += [f"{count_line(records)}; {elapsed:.0f} s{kept}.", ""]
    lines += ["## Needs your attention", ""]
    attention = 0
    for heading, key in ATTENTION:
        hits = [r for r in records if r["status"] == key or key in r["flags"]]
        if not hits:
            continue
        attention += len(hits)
        lines += [f"### {heading}: {len(hits)}", ""]
        for r in hits:
            out_of = "" if r["max_score"] is None else f"/{r['max_score']:g}"
            lines.append(f"- **{r['student']} / {r['assignment']}** ({r['status']}, "
                         f"{r['score']:g}{out_of}): " + ("; ".join(r["problems"]) or r["status"]))
        lines.append("")
    manual = defaultdict(list)
    for r in records:
        if r["status"] == "graded" and r.get("needs_manual_grade"):
            manual[r["assignment"]].append(r["student"])
    if manual:
        attention += sum(len(names) for names in manual.values())
        lines += [f"### Written answers to grade by hand: {sum(map(len, manual.values()))}", "",
                  "Their scores hold only the autograded points until you grade the written "
                  "answers in formgrader (Manage Submissions) and run the same `memcourse "
                  "grade` command again.", ""]
        lines += [f"- {a}: {len(names)} — {', '.join(sorted(names))}"
                  for a, names in sorted(manual.items())]
        lines.append("")
    if unmatched:
        attention += len(unmatched)
        lines += [f"### Notebooks graded nowhere: {len(unmatched)}", ""]
        lines += [f"- `{u['path']}`: {u['reason']}" for u in unmatched]
        lines.append("")
    if not attention:
        lines += ["Nothing: every submission was graded without a problem.", ""]
    by_assignment = defaultdict(list)
    for r in records:
        by_assignment[r["assignment"]].append(r)
    missing = {a: sorted(r["student"] for r in rs if r["status"] == "not_submitted")
               for a, rs in sorted(by_assignment.items())}
    if any(missing.values()):
        lines += ["### Not submitted", ""]
        lines += [f"- {a}: {len(names)} — {', '.join(names)}" for a, names in missing.items()
                  if names]
        lines.append("")
    lines += ["## Scores", "", "| assignment | graded | mean | median | min | max | out of |",
              "|---|---|---|---|---|---|---|"]
    for assignment, rs in sorted(by_assignment.items()):
        scores = [r["score"] for r in rs if r["status"] == "graded"]
        top = next((r["max_score"] for r in rs if r["max_score"] is not None), None)
        out_of = "–" if top is None else f"{top:g}"
        if scores:
            lines.append(f"| {assignment} | {len(scores)} | {statistics.mean(scores):.2f} | "
                         f"{statistics.median(scores):.2f} | {min(scores):g} | {max(scores):g} "
                         f"| {out_of} |")
        else:
            lines.append(f"| {assignment} | 0 | – | – | – | – | – |")
    lines += ["", "### Score distribution", ""]
    for assignment, rs in sorted(by_assignment.items()):
        graded = [r for r in rs if r["status"] == "graded" and r["max_score"]]
        if not graded:
            continue
        buckets = Counter(min(4, int(5 * r["score"] / r["max_score"])) for r in graded)
        bars = ", ".join(f"{20 * b}-{20 * b + 20}%: {buckets.get(b, 0)}" for b in range(5))
        lines.append(f"- {assignment}: {bars}")
    lines += ["", "## Checks most often missed", "",
              "| assignment | check | passed | of | pass rate |", "|---|---|---|---|---|"]
    tally: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        for cell in r.get("cells", []):
            for v in cell.get("verdicts", []):
                t = tally[r["assignment"], v["check"]]
                t[0] += v["status"] == PASSED
                t[1] += 1
    for (assignment, check), (passed, total) in sorted(
            tally.items(), key=lambda kv: kv[1][0] / max(1, kv[1][1])):
        lines.append(f"| {assignment} | {check} | {passed} | {total} | "
                     f"{passed / max(1, total):.0%} |")
    other = [r for r in records if r["status"] in ("graded",) and r["flags"] and not any(
        r["status"] == key or key in r["flags"] for _, key in ATTENTION)]
    lines += ["", "## Other flags", ""]
    lines += [f"- **{r['student']} / {r['assignment']}** [{', '.join(r['flags'])}]: "
              + ("; ".join(r["problems"]) or "–") for r in other] or ["None."]
    return "\n".join(lines) + "\n"
