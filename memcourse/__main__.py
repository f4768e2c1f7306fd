"""Allow `python -m memcourse`."""

import sys

from memcourse.cli import main

sys.exit(main())
