"""Video jobs on every backend (memory, SQLite, PostgreSQL): stored once, read back whole."""

from __future__ import annotations

from typing import Protocol

import pytest

from core.media import VideoJob, VideoJobStore, new_video_id
from core.state import AlreadyExists, Store
from tests.store.test_stores import backend

__all__ = ["backend"]  # the fixture, imported so pytest finds it here too

pytestmark = pytest.mark.anyio


class JobsStore(Store, VideoJobStore, Protocol):
    """A backend with video jobs."""


def _job(key_id: str = "key_1", size: str | None = "720x1280") -> VideoJob:
    return VideoJob(
        id=new_video_id(),
        key_id=key_id,
        model="video",
        provider="up",
        upstream_model="sim-video-1",
        upstream_id="video_upstream_1",
        seconds=4.0,
        size=size,
        created_at=1_700_000_000.5,
    )


async def test_a_saved_job_reads_back_whole(backend: JobsStore) -> None:
    job, sizeless = _job(), _job(size=None)
    await backend.save_video_job(job)
    await backend.save_video_job(sizeless)
    assert await backend.video_job(job.id) == job
    assert await backend.video_job(sizeless.id) == sizeless
    assert await backend.video_job("video_unknown") is None


async def test_a_job_id_is_stored_once(backend: JobsStore) -> None:
    job = _job()
    await backend.save_video_job(job)
    with pytest.raises(AlreadyExists):
        await backend.save_video_job(job)
    assert await backend.video_job(job.id) == job
