"""nbgrader settings shared by every server of the class's hub: students' and formgrader's.

jupyterhub_config.py puts this folder on each server's JUPYTER_CONFIG_PATH and sets the two
environment variables from class.toml, so the course id and the exchange are written once.
"""

import os

from nbgrader.auth import JupyterHubAuthPlugin

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = os.environ.get("MEMCOURSE_COURSE_ID", "memcourse")
c.Exchange.root = os.environ.get("MEMCOURSE_EXCHANGE", "/srv/nbgrader/exchange")
# Who takes the course is JupyterHub's group nbgrader-<course id> (formgrade-<course id> for
# graders): a user in neither sees no course in the Assignment List and cannot fetch or
# submit. Formgrader's Manage Students adds a student to the group.
c.Authenticator.plugin_class = JupyterHubAuthPlugin

# A student is their hub user name, whatever Unix account their server runs as (nbgrader
# would take the account's name: the same under JupyterHub's LocalProcessSpawner, `jovyan` or
# one shared account under others). Not for formgrader, a hub service, which acts on everyone.
if os.environ.get("JUPYTERHUB_USER") and not os.environ.get("JUPYTERHUB_SERVICE_NAME"):
    c.CourseDirectory.student_id = os.environ["JUPYTERHUB_USER"]
