"""Images and videos on an OpenAI-wire upstream: `/images/generations`, `/images/edits` and
`/videos` (create, status, content).

Edits and video jobs go out as multipart forms with the (already filtered) images as files;
content is relayed as it arrives, never held whole.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

import aiohttp
import orjson

from adapters.egress.http import SharedHTTP
from adapters.egress.upstream import json_object, status_error, transport_error
from adapters.wire.openai_media import (
    OPERATION,
    image_reply_from_wire,
    media_fields,
    uploads_of,
    video_reply_from_wire,
)
from core.envelope import Envelope, Modality
from core.errors import GatewayError, UnsupportedContent

_CHUNK = 64 * 1024


class OpenAIMedia:
    """The media endpoints of one OpenAI-wire upstream (used by `OpenAIProvider`)."""

    def __init__(
        self,
        name: str,
        http: SharedHTTP,
        base: str,
        headers: Mapping[str, str],
        timeouts: tuple[aiohttp.ClientTimeout, aiohttp.ClientTimeout],
    ) -> None:
        self._name = name
        self._http = http
        self._base = base
        # Multipart and GET requests set their own content type.
        self._headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        self._timeout, self._stream_timeout = timeouts

    async def send(self, env: Envelope, headers: Mapping[str, str]) -> Envelope:
        """Generate or edit images, or create a video job.

        Raises:
            UnsupportedContent: an operation this upstream wire does not have.
            UpstreamError: or a subclass.
        """
        operation = env.params.get(OPERATION)
        if env.modality is Modality.IMAGE and operation == "generate":
            body = orjson.dumps(media_fields(env))
            json_headers = {**self._headers, **headers, "content-type": "application/json"}
            reply = await self._request("POST", "/images/generations", body, json_headers)
            return image_reply_from_wire(reply, env)
        if env.modality is Modality.IMAGE and operation == "edit":
            reply = await self._request("POST", "/images/edits", _form(env), headers)
            return image_reply_from_wire(reply, env)
        if env.modality is Modality.VIDEO and operation == "create":
            reply = await self._request("POST", "/videos", _form(env), headers)
            return video_reply_from_wire(reply, env)
        raise UnsupportedContent(f"Provider '{self._name}' cannot do {env.modality} {operation}.")

    async def video_status(self, upstream_id: str, headers: Mapping[str, str]) -> dict[str, Any]:
        return await self._request("GET", f"/videos/{upstream_id}", None, headers)

    async def video_content(
        self, upstream_id: str, variant: str | None, headers: Mapping[str, str]
    ) -> AsyncGenerator[bytes, None]:
        params = {"variant": variant} if variant else None
        try:
            async with self._http.session.get(
                f"{self._base}/videos/{upstream_id}/content",
                params=params,
                headers={**self._headers, **headers},
                timeout=self._stream_timeout,
            ) as resp:
                if resp.status >= 400:
                    raise status_error(resp.status, await resp.read())
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    yield chunk
        except GatewayError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise transport_error(self._name, exc) from exc

    async def _request(
        self, method: str, path: str, data: Any, headers: Mapping[str, str]
    ) -> dict[str, Any]:
        try:
            async with self._http.session.request(
                method,
                self._base + path,
                data=data,
                headers={**self._headers, **headers},
                timeout=self._timeout,
            ) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise status_error(resp.status, raw)
        except GatewayError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise transport_error(self._name, exc) from exc
        return json_object(raw)


def _form(env: Envelope) -> aiohttp.FormData:
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in media_fields(env).items():
        if value is None:
            continue
        form.add_field(name, value if isinstance(value, str) else orjson.dumps(value).decode())
    for upload in uploads_of(env):
        form.add_field(
            upload.field, upload.data, filename=upload.filename, content_type=upload.mime
        )
    return form
