"""Serving a message's file to an agent, safely.

Only a file saved in ``HOME/files/`` (where the client libraries save what messages carry) is
served: a path that leads elsewhere, through a symbolic link or otherwise, is not. The sender's
MIME type is believed only for the raster image types a browser shows as pictures
(:data:`INLINE_IMAGE_TYPES`), and those are shown inline; anything else (HTML, SVG, scripts,
every other type) goes out as ``application/octet-stream`` with ``Content-Disposition:
attachment``, so the browser saves it rather than opening it. The name in the header is
:func:`~e2e_proto.media.safe_file_name` of the sender's, percent-encoded; every file response
also carries ``nosniff`` (:mod:`.security`) and a policy that lets it run nothing.
"""

from __future__ import annotations

import stat
from pathlib import Path

from starlette.responses import FileResponse

from e2e_proto.media import safe_file_name

from ..core.files import FILES_FOLDER
from .store import Attachment

INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
"""MIME types shown inline (never SVG, which can hold script)."""
FILE_POLICY = "default-src 'none'; sandbox"


def shown_inline(file: Attachment) -> bool:
    """Whether the page shows the file as a picture (a saved raster image)."""
    return file.mime in INLINE_IMAGE_TYPES and file.path is not None


def saved_file(home: Path, file: Attachment) -> Path | None:
    """The file's path if it is a regular file directly in ``HOME/files/`` (no link on the
    way); None otherwise."""
    if file.path is None:
        return None
    folder = (home / FILES_FOLDER).resolve()
    path = Path(file.path)
    try:
        if path.parent.resolve() != folder or not stat.S_ISREG(path.lstat().st_mode):
            return None
    except OSError:
        return None
    return folder / path.name


def file_response(path: Path, file: Attachment) -> FileResponse:
    """The response serving ``path`` (from :func:`saved_file`) as the module says."""
    inline = file.mime in INLINE_IMAGE_TYPES
    return FileResponse(path, media_type=file.mime if inline else "application/octet-stream",
                        filename=safe_file_name(file.name or "attachment"),
                        content_disposition_type="inline" if inline else "attachment",
                        headers={"content-security-policy": FILE_POLICY})
