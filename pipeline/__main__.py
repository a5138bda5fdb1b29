"""``python -m cardiotwin.pipeline`` is the ``cardiotwin`` command."""

import sys

from cardiotwin.pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
