"""Video jobs (migration 9): agentgw's job id mapped to the upstream's, owned by one key.

The SQL is portable (the PostgreSQL backend runs the same statements); `MemoryVideoJobs` is the
in-memory twin `store.memory` delegates to.
"""

from __future__ import annotations

from dataclasses import astuple, fields
from typing import Any

from core.media import VideoJob
from core.state import AlreadyExists

VIDEO_JOB_COLUMNS = tuple(f.name for f in fields(VideoJob))
INSERT_VIDEO_JOB = (
    f"INSERT INTO video_jobs ({', '.join(VIDEO_JOB_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in VIDEO_JOB_COLUMNS)})"
)
SELECT_VIDEO_JOB = f"SELECT {', '.join(VIDEO_JOB_COLUMNS)} FROM video_jobs WHERE id = ?"


def video_job_row(job: VideoJob) -> tuple[Any, ...]:
    return astuple(job)


def video_job_from(row: Any) -> VideoJob:
    """A job from a row that can be indexed by column name (sqlite3.Row, a mapping)."""
    return VideoJob(
        id=str(row["id"]),
        key_id=str(row["key_id"]),
        model=str(row["model"]),
        provider=str(row["provider"]),
        upstream_model=str(row["upstream_model"]),
        upstream_id=str(row["upstream_id"]),
        seconds=float(row["seconds"]),
        size=None if row["size"] is None else str(row["size"]),
        created_at=float(row["created_at"]),
    )


class MemoryVideoJobs:
    """Video jobs in a dict (the memory backend's table)."""

    def __init__(self) -> None:
        self._jobs: dict[str, VideoJob] = {}

    def save(self, job: VideoJob) -> None:
        """Store a new job.

        Raises:
            AlreadyExists: a job with that id is stored already.
        """
        if job.id in self._jobs:
            raise AlreadyExists(f"video job {job.id} exists")
        self._jobs[job.id] = job

    def get(self, job_id: str) -> VideoJob | None:
        return self._jobs.get(job_id)
