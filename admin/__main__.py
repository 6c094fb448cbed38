"""python -m admin <command>: the same as `mintline <command>`."""

import sys

from admin.cli import main

sys.exit(main())
