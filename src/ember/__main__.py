"""``python -m ember ...``: the ``ember`` command."""

import sys

from ember.cli.console import main

sys.exit(main())
