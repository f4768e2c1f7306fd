"""Do the read_batch checks catch wrong batch readers and pass other correct ones?"""

from __future__ import annotations

import pytest

from autograder.exercises.read_batch import EXERCISE
from tests.exercises.catalogue import aimed, define, describe, failing, verdicts

pytestmark = pytest.mark.slow

WRONG = {
    "sorted_order_returned": ("""
import numpy as np
def read_batch(images, indices):
    return images[np.unique(indices)]
""", "read_batch_shuffled"),
    "reads_everything": ("""
import numpy as np
def read_batch(images, indices):
    return images[:][np.asarray(indices)]
""", "read_batch_no_full_read"),
    "repeats_dropped": ("""
import numpy as np
def read_batch(images, indices):
    order = np.argsort(indices)
    out = np.empty((len(indices),) + images.shape[1:], images.dtype)
    out[order] = images[np.asarray(indices)[order]]
    return out
""", "read_batch_repeats"),
    "float_output": ("""
import numpy as np
def read_batch(images, indices):
    u, inv = np.unique(indices, return_inverse=True)
    return images[u][inv].astype(np.float32) / 255
""", "read_batch_shuffled"),
}

def test_memory_message_says_what_was_seen():
    """Is a reader of the span between the smallest and largest index told what it did (read far
    more rows than it returns), not that it read the whole dataset?"""
    source = """
import numpy as np
def read_batch(images, indices):
    idx = np.asarray(indices)
    lo, hi = int(idx.min()), int(idx.max())
    return images[lo:hi + 1][idx - lo]
"""
    results = verdicts(EXERCISE, {"read_batch": define(source, "read_batch")}, ["no_full_read"])
    message = results["read_batch_no_full_read"].message
    assert "far more rows than it returns" in message, describe(results)
    assert "whole dataset (" not in message, describe(results)


CORRECT = {
    "unique_inverse": """
import numpy as np
def read_batch(images, indices):
    u, inv = np.unique(np.asarray(indices), return_inverse=True)
    return images[u][inv]
""",
    "loop": """
import numpy as np
def read_batch(images, indices):
    return np.stack([images[int(i)] for i in indices])
""",
    "preallocated_read_direct": """
import numpy as np
def read_batch(images, indices):
    out = np.empty((len(indices),) + images.shape[1:], dtype=images.dtype)
    for row, i in enumerate(indices):
        images.read_direct(out, np.s_[int(i)], np.s_[row])
    return out
""",
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_read_batch_loses_points(name):
    """Is each wrong read_batch caught by the check aimed at its defect?"""
    source, expected = WRONG[name]
    results = verdicts(EXERCISE, {"read_batch": define(source, "read_batch")}, aimed(expected))
    assert expected in failing(results), describe(results)


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_read_batch_gets_full_marks(name):
    """Does every correct read_batch pass every check?"""
    results = verdicts(EXERCISE, {"read_batch": define(CORRECT[name], "read_batch")})
    assert not failing(results), describe(results)
