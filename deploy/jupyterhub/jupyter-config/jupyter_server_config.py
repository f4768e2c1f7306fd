"""Jupyter server settings for every server of the class's hub (on JUPYTER_CONFIG_PATH).

Formgrader's JupyterLab (the course's service, opened from an instructor's Course List) shows
formgrader in a tab, inside an iframe; a hub's servers otherwise refuse to be framed. 'self'
allows pages of this hub only, as nbgrader's own multi-user demos do.
"""

import os

c = get_config()  # noqa: F821 (provided by traitlets when the server loads this file)

# Only formgrader's server (a hub service): students' and instructors' own servers keep
# JupyterHub's default, which no other page of the hub may frame.
# (A plain dict: JupyterHub's server extension reads this setting as one, not as an update.)
if os.environ.get("JUPYTERHUB_SERVICE_NAME"):
    c.ServerApp.tornado_settings = {
        "headers": {"Content-Security-Policy": "frame-ancestors 'self'"}}
