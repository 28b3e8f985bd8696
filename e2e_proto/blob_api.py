"""The blob store's request vocabulary, the same on the relay and the social server (DESIGN §14).

A blob is the ciphertext of one attachment (:mod:`e2e_proto.media`), addressed by its
``blob_id = SHA-256(ciphertext)``. It goes up in ``upload_chunk`` frames of at most
:data:`BLOB_CHUNK_SIZE` bytes after an ``upload_begin`` that declares its id and size, is checked
by ``upload_finish``, and comes down in ``download`` frames of the same size. docs/PROTOCOL.md
§17 lists every field and error; docs/SOCIAL.md the social server's differences.
"""

from __future__ import annotations

from .constants import MAX_FRAME_SIZE, MEDIA_BLOB_ID_SIZE, MEDIA_CHUNK_OVERHEAD

BLOB_CHUNK_SIZE = MAX_FRAME_SIZE - 1024
"""The most blob bytes one ``upload_chunk`` or ``download`` frame carries: 1 MiB less 1 KiB for
the rest of the frame, so that every blob frame stays within ``MAX_FRAME_SIZE``."""
MIN_BLOB_SIZE = MEDIA_CHUNK_OVERHEAD
"""The smallest blob: an empty file is one FINAL chunk of 17 bytes."""
MAX_BLOBS_PER_MESSAGE = 16
"""The most blob ids one ``send`` may grant to its recipients."""

# Request types.
UPLOAD_BEGIN = "upload_begin"
UPLOAD_CHUNK = "upload_chunk"
UPLOAD_FINISH = "upload_finish"
DOWNLOAD = "download"
DOWNLOAD_DONE = "download_done"  # the relay only: the social server keeps blobs for history

# Error codes (``error.code``); each has one meaning a client can act on.
UNKNOWN_BLOB = "unknown_blob"
"""No such blob that this device may use: never uploaded, not this account's (upload, grant),
not sent to this device (download), deleted after every recipient fetched it, or expired."""
BLOB_TAKEN = "blob_taken"
"""Another account uploads or holds this blob id: encrypt the file again (a new key)."""
BLOB_TOO_LARGE = "blob_too_large"
"""The declared size is over the server's limit (``limit``)."""
QUOTA_EXCEEDED = "quota_exceeded"
"""The account holds too many blob bytes (``limit``, ``used``) or unfinished uploads."""
BLOB_OFFSET = "blob_offset"
"""A chunk that does not start where the stored bytes end (reordered, replayed or with a gap);
``offset`` says where the next chunk must start."""
BLOB_INCOMPLETE = "blob_incomplete"
"""``upload_finish`` (or a grant) before every declared byte arrived; ``offset`` says how many."""
BLOB_HASH_MISMATCH = "blob_hash_mismatch"
"""The uploaded bytes do not hash to the declared blob id: the upload was discarded."""


def is_blob_id(value: object) -> bool:
    """Whether ``value`` has the shape of a blob id (32 bytes)."""
    return type(value) is bytes and len(value) == MEDIA_BLOB_ID_SIZE
