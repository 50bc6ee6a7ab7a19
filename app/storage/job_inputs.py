"""A queued job's data through the object store, so replicas and workers share no directory.

The replica that takes ``POST /train`` writes the job's CSVs into its own work dir
(``<model dir>/.jobs/<id>/``) as always; before the job row is queued they are uploaded to
``<prefix>/.jobs/<id>/`` and the local copy removed. The worker that claims the job downloads them into its
own work dir before training starts. They are deleted from the store when the job ends (succeeded, failed,
cancelled, or recovered from a lost worker); a delete that fails is logged and leaves a few objects under
``.jobs/``, which a bucket lifecycle rule may expire.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.storage.job_store import DEFAULT_MODEL, Job, Owner
from app.storage.pg import Database
from app.storage.pg_jobs import PostgresJobStore
from closecast.objectstore import JOBS_PREFIX, ObjectStore, ObjectStoreError

log = logging.getLogger(__name__)


class StoreInputsJobStore(PostgresJobStore):
    """The PostgreSQL job store whose jobs carry their data through an object store."""

    def __init__(self, db: Database, objects: ObjectStore, jobs_dir: Path) -> None:
        super().__init__(db)
        self.objects = objects
        self.jobs_dir = jobs_dir

    def _prefix(self, job_id: str) -> str:
        return f"{JOBS_PREFIX}/{job_id}/"

    def enqueue(
        self,
        job_id: str,
        name: str,
        promote: str,
        spec: dict[str, Any],
        progress: dict[str, Any],
        limit: int,
        model: str = DEFAULT_MODEL,
    ) -> Job:
        """Upload the work dir's files, then queue the row (a refused row takes its uploads back). The local
        copy goes once queued: the store holds the data until a worker (maybe this process) claims it."""
        work = self.jobs_dir / job_id
        for path in sorted(work.iterdir()):
            if path.is_file():
                self.objects.upload(self._prefix(job_id) + path.name, path)
        try:
            job = super().enqueue(job_id, name, promote, spec, progress, limit, model)
        except BaseException:
            self._drop(job_id)
            raise
        shutil.rmtree(work, ignore_errors=True)
        return job

    def claim(self, owner: Owner, model: str = DEFAULT_MODEL) -> Job | None:
        """Claim as the database does, then bring the job's data into this worker's work dir; a job whose
        data cannot be fetched is failed at once with the reason (it would only fail later, in training)."""
        job = super().claim(owner, model)
        if job is None:
            return None
        work = self.jobs_dir / job.id
        try:
            keys = self.objects.keys(self._prefix(job.id))
            if not keys:
                raise ObjectStoreError(f"the object store holds no data for job {job.id}")
            work.mkdir(parents=True, exist_ok=True)
            for key in keys:
                name = key.rsplit("/", 1)[-1]
                if not (work / name).is_file():
                    self.objects.download(key, work / name)
        except OSError as exc:
            shutil.rmtree(work, ignore_errors=True)
            self.finish(job.id, "failed", error=f"could not fetch the job's data: {exc}; submit it again")
            log.warning("job %s: could not fetch its data from the object store: %s", job.id, exc)
            return None
        return job

    def finish(
        self,
        job_id: str,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        written = super().finish(job_id, status, result=result, error=error)
        if written:
            self._drop(job_id)
        return written

    def request_cancel(self, job_id: str) -> Job | None:
        job = super().request_cancel(job_id)
        if job is not None and job.status == "cancelled":
            self._drop(job_id)
        return job

    def recover_stale(self, model: str, gone: Callable[[Job], str | None]) -> list[tuple[Job, str]]:
        recovered = super().recover_stale(model, gone)
        for job, _ in recovered:
            self._drop(job.id)
        return recovered

    def _drop(self, job_id: str) -> None:
        """Delete the job's data from the store; housekeeping, so a failure is only logged."""
        try:
            self.objects.delete(self.objects.keys(self._prefix(job_id)))
        except ObjectStoreError as exc:
            log.warning("could not delete the data of job %s from the object store: %s", job_id, exc)
