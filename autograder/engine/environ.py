"""Keep the grader's secrets out of the processes that run a learner's code.

`memcourse grade` is often started where credentials sit in the environment: a terminal of
formgrader on JupyterHub (`JUPYTERHUB_API_TOKEN`, with the rights of the formgrader service),
a cloud shell (`AWS_SECRET_ACCESS_KEY`), a CI job (`GITHUB_TOKEN`). Every kernel and check
inherits the environment, and whatever a submission prints ends up in the feedback its
author fetches: the grading worker therefore removes such variables from its own environment
before it starts anything (`remove_secrets`).
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping

# Names that are credentials by convention, or belong to a hub or cloud login.
SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSW(OR)?D|CREDENTIAL|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|AUTH|COOKIE|SESSION"
    r"|^JUPYTERHUB_|^JPY_|^AWS_|^AZURE_|^GOOGLE_|^GCP_|^GITHUB_|^GITLAB_|^DASK_GATEWAY",
    re.IGNORECASE)
# A URL with a user and password in it (a database or proxy URL), whatever its name.
SECRET_VALUE = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


def is_secret(name: str, value: str) -> bool:
    """Whether the variable `name=value` looks like a credential (see the module doc)."""
    return bool(SECRET_NAME.search(name) or SECRET_VALUE.search(value))


def remove_secrets(env: MutableMapping[str, str] | None = None) -> list[str]:
    """Remove credential-like variables from `env` (default: this process's environment),
    so that nothing this process starts inherits them. Returns the names removed, sorted."""
    env = os.environ if env is None else env
    names = sorted(k for k, v in list(env.items()) if is_secret(k, v))
    for name in names:
        del env[name]
    return names
