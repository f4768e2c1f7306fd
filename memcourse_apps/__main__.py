"""Allow `python -m memcourse_apps`."""

import sys

from memcourse_apps.cli import main

sys.exit(main())
