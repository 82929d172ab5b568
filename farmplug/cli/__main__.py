"""``python -m farmplug.cli``: the same as the ``farmplug`` command."""

import sys

from farmplug.cli import main

sys.exit(main())
