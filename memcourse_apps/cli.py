"""The `memcourse` command: a thin layer over the course's Python functions."""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Callable
from pathlib import Path

from autograder.course import repo_root
from memcourse.data import DEFAULT_SIZE, SIZES, ensure_dataset
from memcourse.errors import CourseError
from memcourse_apps.bench import SECTIONS, run_bench
from memcourse_apps.lab import run_lab


def _data(args: argparse.Namespace) -> None:
    path = ensure_dataset(args.size, out_dir=args.out)
    print(f"dataset ready: {path}")


def _notebooks(args: argparse.Namespace) -> None:
    # lazy: build imports nbformat and nbgrader (~1 s); only `memcourse notebooks` needs them
    from autograder.grading.build import generate_notebooks

    built = generate_notebooks(Path(args.course) if args.course else None,
                               assignments=args.assignment or None, force=args.force)
    print(f"regenerated notebooks/ for {len(built)} assignment(s): {', '.join(built)}")


def _lab(args: argparse.Namespace) -> None:
    run_lab(port=args.port, open_browser=not args.no_browser)


def _grade(args: argparse.Namespace) -> None:
    # lazy: the pipeline imports nbgrader (~2 s); only `memcourse grade` needs it
    from autograder.grading import report
    from autograder.grading.pipeline import grade  # lazy: nbgrader, as above
    from autograder.grading.settings import GradingSettings  # lazy: imports nbgrader too

    root = Path(args.course).resolve() if args.course else repo_root()
    if not (root / "nbgrader_config.py").is_file():
        raise CourseError(f"{root} is not a course folder: it has no nbgrader_config.py "
                          "(--course names the folder formgrader runs in).")
    settings = GradingSettings.for_course(
        root, jobs=args.jobs, cell_timeout_s=args.cell_timeout,
        notebook_timeout_s=args.notebook_timeout, kernel_memory_mib=args.memory)
    records = grade(Path(args.submissions), Path(args.out), assignment=args.assignment,
                    force=args.force, root=root, settings=settings, scheduler=args.scheduler)
    print(f"{report.count_line(records)}; see {args.out}/report.md")


def _bench(args: argparse.Namespace) -> None:
    out = Path(args.out) if args.out else repo_root() / "bench"
    readme = None if args.no_readme else (
        Path(args.readme) if args.readme else
        repo_root() / "README.md" if args.out is None and args.only is None else None)
    run_bench(size=args.size, out=out,
              sections=tuple(args.only.split(",")) if args.only else SECTIONS,
              repeats=args.repeats, grading_submissions=args.grading_submissions,
              grading_repeats=args.grading_repeats, jobs=args.jobs,
              assignments=args.assignment, readme=readme)
    print(f"benchmark written: {out / 'results.md'}" + (f"; updated {readme}" if readme else ""))


def _positive(kind: type, zero_means: str = "") -> Callable[[str], float]:
    """An argparse type: a number above zero (or zero, when `zero_means` says what it means),
    else one sentence saying what was given."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
        if value < 0 or (value == 0 and not zero_means):
            also = f" (0 means {zero_means})" if zero_means else ""
            raise argparse.ArgumentTypeError(f"{text} is not above zero{also}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser; each subcommand's help is its function's job in one line."""
    parser = argparse.ArgumentParser(
        prog="memcourse",
        description="Memory-efficient data handling for PyTorch training: an autograded course.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="write a course dataset (images.h5) if it is missing")
    p.add_argument("--size", choices=list(SIZES), default=DEFAULT_SIZE,
                   help=f"tiny (tests), small (notebooks, default) or seed (1.97 GB); "
                        f"default {DEFAULT_SIZE}")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="folder to write images.h5 into (default data/<size>/)")
    p.set_defaults(func=_data)

    p = sub.add_parser("notebooks", help="regenerate notebooks/ from solutions/ with nbgrader")
    p.add_argument("--assignment", action="append", metavar="NAME",
                   help="only this assignment (repeatable); default all")
    p.add_argument("--force", action="store_true",
                   help="replace release notebooks even where a learner's work would be lost "
                        "(files in scratch/ are always kept)")
    p.add_argument("--course", metavar="DIR", default=None,
                   help="the course root to rebuild (default: this repository)")
    p.set_defaults(func=_notebooks)

    p = sub.add_parser("grade", help="grade a class: grades.csv, results.json, feedback, report",
                       description="Grade every submission under SUBMISSIONS (nbgrader's "
                       "<student>/<assignment>/<notebook>.ipynb layout, or an LMS bulk-download "
                       ".zip named as Canvas does, <student>_<userid>_<submissionid>_<file>.ipynb "
                       "with optional _LATE_ and -1 resubmission suffixes; set "
                       "c.FileNameCollectorPlugin.named_regexp in nbgrader_config.py for another "
                       "LMS) into DIR. Near-match file names (' (1)', '-Copy1', 'Copy of ...') "
                       "are graded and flagged misnamed; every other notebook is listed in "
                       "results.json and report.md with the reason it was not graded.")
    p.add_argument("submissions", metavar="SUBMISSIONS", help="folder or .zip of submissions")
    p.add_argument("--out", metavar="DIR", required=True, help="where to write the results")
    p.add_argument("--jobs", type=_positive(int, "one per core"), default=None,
                   help="parallel workers, 0 for one per core (default: "
                   "c.GradingSettings.jobs in nbgrader_config.py, else one per core)")
    p.add_argument("--cell-timeout", type=_positive(float), metavar="SECONDS", default=None,
                   help="time limit of one cell (default: c.Execute.timeout in "
                   "nbgrader_config.py)")
    p.add_argument("--notebook-timeout", type=_positive(float), metavar="SECONDS", default=None,
                   help="time limit of a whole notebook (default: "
                   "c.GradingSettings.notebook_timeout_s)")
    p.add_argument("--memory", type=_positive(int), metavar="MIB", default=None,
                   help="memory of a notebook's kernel and its DataLoader workers together "
                   "(default: c.GradingSettings.kernel_memory_mib)")
    p.add_argument("--assignment", metavar="NAME", default=None, help="grade only this one")
    p.add_argument("--force", action="store_true", help="re-grade what was already graded")
    p.add_argument("--course", metavar="DIR", default=None,
                   help="the course folder whose nbgrader_config.py, solutions/, gradebook and "
                   "feedback/ to use, e.g. the one formgrader runs in on a hub (default: this "
                   "repository)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="prepare the notebooks on this Dask cluster (tcp://host:8786, or a "
                   "scheduler file) instead of on this machine; every worker needs the same "
                   "commit of the course, installed with pip install -e '.[cluster]' "
                   "(--jobs is then ignored: the workers' threads decide)")
    p.set_defaults(func=_grade)

    p = sub.add_parser("bench", help="measure what each technique costs: bench/results.md",
                       description="Time random reads per format, the reference HDF5Dataset "
                       "through DataLoader, eager vs lazy memory and bytes in flight, and "
                       "`memcourse grade` against plain nbgrader; write results.md and plots "
                       "into --out and, by default, the table into README.md's bench block.")
    p.add_argument("--size", choices=list(SIZES), default=DEFAULT_SIZE,
                   help=f"dataset to measure on (default {DEFAULT_SIZE})")
    p.add_argument("--out", metavar="DIR", default=None, help="output folder (default bench/)")
    p.add_argument("--only", metavar="LIST", default=None,
                   help="comma-separated sections: reads,loaders,memory,grading,shards "
                   "(default all)")
    p.add_argument("--repeats", type=int, default=5,
                   help="runs per figure in reads, loaders, memory and shards (default 5)")
    p.add_argument("--grading-submissions", type=int, default=10, metavar="N",
                   help="submissions graded by each grader (default 10)")
    p.add_argument("--grading-repeats", type=int, default=3, metavar="N",
                   help="runs of each grader, alternating which goes first (default 3; each "
                        "run takes minutes)")
    p.add_argument("--jobs", type=_positive(int), default=2,
                   help="memcourse grade --jobs (default 2)")
    p.add_argument("--assignment", action="append", metavar="NAME",
                   help="grade only these assignments (repeatable; default all)")
    p.add_argument("--readme", metavar="PATH", default=None,
                   help="README whose bench block to replace (default README.md when --out "
                        "and --only are not given)")
    p.add_argument("--no-readme", action="store_true", help="leave every README alone")
    p.set_defaults(func=_bench)

    p = sub.add_parser("lab", help="start JupyterLab on the course (what `make lab` runs)")
    p.add_argument("--port", type=int, default=None, help="port to serve on")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.set_defaults(func=_lab)
    return parser


def describe_os_error(error: OSError, command: str | None = None) -> str:
    """One sentence for a filesystem error: what failed, where, and what to do about it."""
    where = f" ({error.filename})" if getattr(error, "filename", None) else ""
    text = str(error)
    if error.errno == errno.ENOSPC or "No space left on device" in text:
        what = f"the disk is full{where}. Free some space or write elsewhere (--out), then " \
               "run the command again"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = f"no permission to write{where}. Choose a folder you can write (--out)"
    else:
        what = f"{error.strerror or text}{where}"
    if command == "grade":
        what += "; submissions graded so far are kept, and the rerun resumes after them"
    return what + "."


def main(argv: list[str] | None = None) -> int:
    """Run the command line; errors the user can fix print one sentence and exit with 2."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CourseError as e:
        print(f"memcourse: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only or vanished folder: say so in a sentence
        print(f"memcourse: {describe_os_error(e, args.command)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
