"""Retraining: the job store (``store``), the runner that trains in a subprocess (``runner``, ``process``),
the promotion gate (``promotion``), input checks shared with the CLI (``validation``) and the bodies of
``/train`` and ``/models`` (``schemas``)."""
