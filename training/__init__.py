"""closecast's offline training package: CSV of closes -> verified, self-describing model bundle."""

from closecast import __version__

__all__ = ["__version__"]
