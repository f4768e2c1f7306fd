"""Rich text for what a learner reads in a notebook: inline code, one palette, `show`.

The check reports, the hints and the widgets all render short sentences in which
`backticked` words are code, in the same colours, and fall back to plain text outside a
notebook; this module is the one place that does it.
"""

from __future__ import annotations

import html
from typing import Any

from autograder.engine.spec import ERROR, FAILED, LIMIT_EXCEEDED, NOT_ATTEMPTED, PASSED

# GitHub's Primer colours: readable on JupyterLab's light and dark themes alike.
GREEN, RED, BLUE, ORANGE, YELLOW, GREY = (
    "#1a7f37", "#cf222e", "#0969da", "#bc4c00", "#9a6700", "#57606a")

STATUS_COLOUR = {PASSED: GREEN, FAILED: RED, NOT_ATTEMPTED: BLUE, LIMIT_EXCEEDED: ORANGE,
                 ERROR: YELLOW}
STATUS_ICON = {PASSED: "✔", FAILED: "✘", NOT_ATTEMPTED: "…", LIMIT_EXCEEDED: "⏱", ERROR: "⚠"}
STATUS_LABEL = {PASSED: "passed", FAILED: "failed", NOT_ATTEMPTED: "not attempted",
                LIMIT_EXCEEDED: "limit exceeded", ERROR: "checker error"}


def inline_code(text: str) -> str:
    """`text` as HTML: escaped, with each `backticked` part rendered as code."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def show(obj: Any) -> None:
    """Display `obj` in a notebook (its HTML, with its text as the fallback), or print it."""
    try:
        # lazy: IPython (~70 ms) only to show in a notebook, whose kernel has it loaded
        from IPython import get_ipython
        from IPython.display import display  # lazy: IPython, as above

        if get_ipython() is not None:
            display(obj)
            return
    except ImportError:  # IPython is optional outside the course's environment
        pass
    print(obj)
