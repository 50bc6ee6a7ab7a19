"""Retraining: the job store (``store``), the queue and worker loop (``runner``), the training subprocess
(``supervisor``, ``process``), the promotion gate and registration (``promotion``) and input checks shared
with the CLI (``app/api/train_intake.py``). The bodies of ``/train`` are in ``app/api/train_schemas.py``."""
