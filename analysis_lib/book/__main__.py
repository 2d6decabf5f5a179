"""``python -m analysis_lib.book``: the book runner's command line."""

import sys

from analysis_lib.book.runner import BookError, main

try:
    sys.exit(main())
except BookError as err:
    sys.exit(f"error: {err}")
