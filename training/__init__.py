"""closecast's offline training package: CSV of closes -> verified, self-describing model bundle."""

import time

from closecast import __version__

IMPORTED_AT = time.perf_counter()  # `python -m training`'s start, for the manifest's training.total_s

__all__ = ["IMPORTED_AT", "__version__"]
