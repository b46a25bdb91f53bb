"""Request bodies as discord.py sends them: JSON, or multipart with ``payload_json`` + ``files[n]``."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from .errors import APIError
from .messages import UploadedFile

FILE_FIELD_RE = re.compile(r"files\[(\d+)\]")
INVALID_JSON = 50109


async def read_body(request: web.Request) -> tuple[Any, list[UploadedFile]]:
    """(json payload or None, uploaded files)."""
    if not request.can_read_body:
        return None, []
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        payload: Any = None
        fields: dict[str, Any] = {}
        files: list[UploadedFile] = []
        next_index = 0
        while True:
            part = await reader.next()
            if part is None:
                break
            name = part.name or ""
            if part.filename is not None:
                m = FILE_FIELD_RE.fullmatch(name)
                index = int(m.group(1)) if m else next_index
                data = bytes(await part.read(decode=False))
                files.append(
                    UploadedFile(
                        index=index,
                        filename=part.filename,
                        data=data,
                        content_type=part.headers.get("Content-Type", "application/octet-stream"),
                    )
                )
                next_index = index + 1
            elif name == "payload_json":
                payload = _loads(await part.text())
            else:
                fields[name] = await part.text()
        if payload is None:
            payload = fields
        return payload, files
    raw = await request.read()
    if not raw:
        return None, []
    return _loads(raw.decode("utf-8", errors="replace")), []


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise APIError(400, INVALID_JSON, "The request body contains invalid JSON.") from None


# Where the middleware leaves the parsed body for the handlers.
JSON_BODY: "web.RequestKey[Any]" = web.RequestKey("emulator_json", object)
FILES: "web.RequestKey[list[UploadedFile]]" = web.RequestKey("emulator_files", list)
