"""closecast's offline training package: CSV of closes -> verified, self-describing model bundle."""

__version__ = "0.1.0"
