"""Jupyter server settings for every server of the class's hub (on JUPYTER_CONFIG_PATH).

Instructors open formgrader from JupyterLab's Nbgrader menu, which shows the course's
formgrader service inside a JupyterLab tab (an iframe); the hub's servers otherwise refuse to
be shown inside another page. 'self' allows it for pages of this hub only (as nbgrader's own
multi-user demos do).
"""

c = get_config()  # noqa: F821 (provided by traitlets when the server loads this file)

c.ServerApp.tornado_settings = {
    "headers": {"Content-Security-Policy": "frame-ancestors 'self'"},
}
