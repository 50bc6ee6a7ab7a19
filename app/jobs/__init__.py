"""Retraining: the queue and worker loop (``runner``), the training subprocess
(``supervisor``, ``process``), a tune job's shards (``shards``), the promotion gate and registration
(``promotion``, ``gate``) and a job's plain spec and files (``spec``). The stores are ``app/storage/``; the
``/train`` intake (request checks, uploads) is ``app/api/train_intake.py`` and ``train_many.py``."""
