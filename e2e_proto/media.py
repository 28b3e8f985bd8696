"""Encrypted media attachments (DESIGN §14), streamed in constant memory.

Invariant: nothing a :class:`MediaDecryptor` gives out may be used before its ``finish()``
returns. Every chunk is authenticated as it arrives, but truncation, trailing data, the size
and the blob hash are only settled at the end; on any error the caller discards everything the
stream produced, and the decryptor refuses further use.

The format (all sizes in ``constants.py``):

* The sender draws a 32-byte media key and starts libsodium's
  ``crypto_secretstream_xchacha20poly1305``, whose 24-byte header travels beside the key.
* The plaintext is cut into 64 KiB chunks; the last chunk holds the remaining 1..64 KiB (an
  empty file is one empty chunk) and is tagged FINAL, every other chunk is tagged MESSAGE. No
  additional data. Each chunk's ciphertext is 17 bytes longer than its plaintext, so a file of
  ``size`` bytes gives a blob of ``blob_size(size)`` bytes.
* ``blob_id = SHA-256(ciphertext)``: the blob store's address, which it checks on upload.
* The ``media`` payload carries ``blob_id, key, header, size, mime`` and optionally ``name``,
  ``caption`` and ``sha256`` (of the plaintext, for deduplication; integrity comes from the
  AEAD). A name from a message is never a path: :func:`safe_file_name` makes one.

The secretstream header's nonce is drawn by libsodium inside ``init_push`` (PyNaCl offers no way
to supply it), so it is the one random value here that the injected ``RandomSource`` does not
give.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import primitives
from .constants import (
    MAX_MEDIA_CAPTION_LENGTH,
    MAX_MEDIA_MIME_LENGTH,
    MAX_MEDIA_NAME_LENGTH,
    MAX_MEDIA_SIZE,
    MAX_SAFE_FILE_NAME_BYTES,
    MEDIA_BLOB_ID_SIZE,
    MEDIA_CHUNK_OVERHEAD,
    MEDIA_CHUNK_SIZE,
    MEDIA_HEADER_SIZE,
    MEDIA_KEY_SIZE,
    MEDIA_SHA256_SIZE,
    SAFE_FILE_NAME_FALLBACK,
)
from .errors import (
    BlobHashMismatchError,
    E2EProtoError,
    LocalProtocolError,
    MalformedError,
    MediaError,
    MediaSizeMismatchError,
    MediaTrailingDataError,
    MediaTruncatedError,
)
from .payload import Payload
from .primitives import STREAM_TAG_FINAL, STREAM_TAG_MESSAGE, RandomSource, system_random

MEDIA_KIND = "media"
_SEALED_CHUNK_SIZE = MEDIA_CHUNK_SIZE + MEDIA_CHUNK_OVERHEAD


def blob_size(size: int) -> int:
    """The ciphertext length of a ``size``-byte file: 17 bytes more per chunk (at least one)."""
    return size + MEDIA_CHUNK_OVERHEAD * max(1, -(-size // MEDIA_CHUNK_SIZE))


def _check_size(size: object, limit: int = MAX_MEDIA_SIZE) -> None:
    if type(size) is not int or not 0 <= size <= limit:
        raise LocalProtocolError(f"media size must be in 0 .. {limit}")


def _byte_count(data: bytes) -> int:
    """The length of a bytes-like ``data``; :class:`LocalProtocolError` for anything else.

    A strided view (``memoryview(b)[::2]``) is refused here, before a stream counts or hashes
    it: it cannot be cut into chunks without a copy.
    """
    try:
        view = memoryview(data)
    except TypeError:
        raise LocalProtocolError("media data must be bytes-like") from None
    if not view.c_contiguous:
        raise LocalProtocolError("media data must be a contiguous buffer")
    return view.nbytes


class _Held:
    """The 0..chunk bytes a stream holds back between feeds: its last chunk is only known at
    the end. A whole ``bytes`` input is held by reference; small pieces gather in a bytearray.
    """

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: bytes | bytearray = b""


def _chunks(held: _Held, data: bytes, size: int) -> Iterator[bytes]:
    """Cut ``held.data + data`` into ``size``-byte chunks; the last 0..size bytes stay held.

    A chunk costs at most one copy, and none when ``data`` arrives as whole ``bytes`` chunks
    (as files are read, and as :class:`MediaEncryptor` hands out ciphertext).
    """
    view = memoryview(data).cast("B")
    kept = held.data
    if len(kept) + len(view) <= size:
        if not kept:
            held.data = data if type(data) is bytes else bytes(view)
        else:
            if type(kept) is bytes:
                kept = held.data = bytearray(kept)
            kept += view
        return
    pos = 0
    if kept:
        pos = size - len(kept)
        if type(kept) is bytes:
            yield kept + view[:pos]  # kept itself when it is a whole chunk
        else:
            kept += view[:pos]
            yield bytes(kept)
    while len(view) - pos > size:
        yield bytes(view[pos:pos + size])
        pos += size
    held.data = data if pos == 0 and type(data) is bytes else bytes(view[pos:])


@dataclass(frozen=True, slots=True)
class SealedMedia:
    """What :meth:`MediaEncryptor.finish` returns: the last ciphertext bytes and the secrets."""

    tail: bytes
    blob_id: bytes
    key: bytes
    header: bytes
    size: int
    sha256: bytes | None

    def payload(self, mime: str, name: str | None = None,
                caption: str | None = None) -> MediaPayload:
        """The ``media`` payload fields that let a receiver fetch and decrypt this blob."""
        return MediaPayload(self.blob_id, self.key, self.header, self.size, mime, name, caption,
                            self.sha256)


class MediaEncryptor:
    """Encrypts one file as it is fed: ``feed`` plaintext of any size, then ``finish``.

    Memory stays constant: at most one chunk (64 KiB) is held between calls. ``feed`` returns
    the ciphertext of every chunk it completed, ``finish`` the last chunk (FINAL) and the blob
    id, hashed as the ciphertext was produced. ``max_size`` bounds the plaintext: the protocol's
    ``MAX_MEDIA_SIZE`` unless a caller streams more outside a ``media`` payload (a benchmark).
    """

    __slots__ = ("_blob_hash", "_finished", "_header", "_held", "_key", "_limit", "_plain_hash",
                 "_size", "_state")

    def __init__(self, random: RandomSource = system_random, hash_plaintext: bool = False,
                 max_size: int = MAX_MEDIA_SIZE) -> None:
        _check_size(max_size, 2**63 - 1)
        key = random(MEDIA_KEY_SIZE)
        self._state, self._header = primitives.secretstream_init_push(key)
        self._key = key
        self._held = _Held()
        self._blob_hash = hashlib.sha256()
        self._plain_hash = hashlib.sha256() if hash_plaintext else None
        self._size = 0
        self._limit = max_size
        self._finished = False

    @property
    def key(self) -> bytes:
        """The 32-byte media key (known from the start, so the blob can stream out at once)."""
        return self._key

    @property
    def header(self) -> bytes:
        """The 24-byte secretstream header."""
        return self._header

    def feed(self, data: bytes) -> bytes:
        """Ciphertext of the chunks ``data`` completes (often ``b""``); ``data`` is bytes-like.

        :class:`LocalProtocolError` (changing nothing) past ``max_size`` or after finish.
        """
        if self._finished:
            raise LocalProtocolError("the media stream is already finished")
        size = self._size + _byte_count(data)
        _check_size(size, self._limit)
        out = []
        push, state, blob_hash = primitives.secretstream_push, self._state, self._blob_hash
        for chunk in _chunks(self._held, data, MEDIA_CHUNK_SIZE):
            sealed = push(state, chunk, None, STREAM_TAG_MESSAGE)
            blob_hash.update(sealed)
            out.append(sealed)
        if self._plain_hash is not None:
            self._plain_hash.update(data)
        self._size = size
        return b"".join(out)

    def finish(self) -> SealedMedia:
        """Seal the last chunk (FINAL); the result holds it and everything the message needs."""
        if self._finished:
            raise LocalProtocolError("the media stream is already finished")
        self._finished = True
        tail = primitives.secretstream_push(self._state, bytes(self._held.data), None,
                                            STREAM_TAG_FINAL)
        self._held.data = b""
        self._blob_hash.update(tail)
        return SealedMedia(tail, self._blob_hash.digest(), self._key, self._header, self._size,
                           None if self._plain_hash is None else self._plain_hash.digest())


class MediaDecryptor:
    """Decrypts one blob as it is fed: ``feed`` ciphertext split anywhere, then ``finish``.

    The announced ``size`` fixes the blob's exact length (:func:`blob_size`) and so every
    chunk boundary. Each chunk is verified before its plaintext is returned. Refused:

    * a chunk that does not verify (reordered, replayed, dropped, altered, another key):
      :class:`DecryptionError`; a chunk tagged neither MESSAGE nor FINAL: :class:`MediaError`;
    * ciphertext after a FINAL chunk or past the announced length: :class:`MediaTrailingDataError`;
    * a stream that ends without a verified FINAL chunk: :class:`MediaTruncatedError`;
    * a complete stream (FINAL verified) shorter than announced: :class:`MediaSizeMismatchError`;
    * when ``blob_id`` is given, a ciphertext hashing to another id: :class:`BlobHashMismatchError`.

    After an error the decryptor refuses further use, and the caller must discard all the
    plaintext it returned: only a ``finish()`` that returns accepts the file. Memory stays
    constant (at most one sealed chunk is held). ``max_size`` is the largest ``size`` accepted
    (``MAX_MEDIA_SIZE``, as for :class:`MediaEncryptor`).
    """

    __slots__ = ("_blob_hash", "_blob_id", "_done", "_expected", "_held", "_received",
                 "_state")

    def __init__(self, key: bytes, header: bytes, size: int,
                 blob_id: bytes | None = None, max_size: int = MAX_MEDIA_SIZE) -> None:
        _check_size(max_size, 2**63 - 1)
        _check_size(size, max_size)
        if blob_id is not None and (type(blob_id) is not bytes
                                    or len(blob_id) != MEDIA_BLOB_ID_SIZE):
            raise LocalProtocolError("blob id must be 32 bytes")
        self._state = primitives.secretstream_init_pull(header, key)
        self._expected = blob_size(size)
        self._blob_id = blob_id
        self._blob_hash = None if blob_id is None else hashlib.sha256()
        self._held = _Held()
        self._received = 0
        self._done = False

    @classmethod
    def for_payload(cls, media: MediaPayload, check_blob_id: bool = True) -> MediaDecryptor:
        """A decryptor for the blob a ``media`` payload announces (checking its hash)."""
        return cls(media.key, media.header, media.size,
                   media.blob_id if check_blob_id else None)

    def _close(self) -> None:
        self._done = True
        self._held.data = b""

    def _fail(self, error: E2EProtoError) -> E2EProtoError:
        self._close()
        return error

    def _check_open(self) -> None:
        if self._done:
            raise LocalProtocolError("the media stream is finished or has failed")

    def feed(self, data: bytes) -> bytes:
        """Plaintext of the chunks ``data`` completes and verifies (often ``b""``)."""
        self._check_open()
        self._received += _byte_count(data)
        if self._received > self._expected:
            raise self._fail(MediaTrailingDataError(
                "the blob continues past the end the announced size implies"))
        if self._blob_hash is not None:
            self._blob_hash.update(data)
        out = []
        pull, state = primitives.secretstream_pull, self._state
        try:
            for chunk in _chunks(self._held, data, _SEALED_CHUNK_SIZE):
                plain, tag = pull(state, chunk)
                if tag != STREAM_TAG_MESSAGE:
                    raise (MediaTrailingDataError("data follows the FINAL chunk")
                           if tag == STREAM_TAG_FINAL else MediaError(f"chunk tag {tag}"))
                out.append(plain)
        except E2EProtoError as error:
            raise self._fail(error) from None
        return b"".join(out)

    def finish(self) -> bytes:
        """The last plaintext bytes, once the whole stream is verified; then the file is good."""
        self._check_open()
        short = self._received < self._expected
        try:
            plain, tag = primitives.secretstream_pull(self._state, bytes(self._held.data))
        except E2EProtoError as error:
            raise self._fail(MediaTruncatedError("the blob ends inside a chunk") if short
                             else error) from None
        if tag != STREAM_TAG_FINAL:
            raise self._fail(MediaTruncatedError("the media stream ends without its FINAL chunk"))
        if short:
            raise self._fail(MediaSizeMismatchError(
                "the media stream is complete but shorter than the announced size"))
        if self._blob_hash is not None and self._blob_hash.digest() != self._blob_id:
            raise self._fail(BlobHashMismatchError("the blob's SHA-256 is not its blob id"))
        self._close()
        return plain


# -- The media payload ------------------------------------------------------------------------

_MIME = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}",
                   re.ASCII)


def _check_bytes(value: object, size: int, what: str) -> None:
    if type(value) is not bytes or len(value) != size:
        raise LocalProtocolError(f"media {what} must be {size} bytes")


def _check_text(value: object, limit: int, what: str) -> None:
    if value is not None and (type(value) is not str or len(value) > limit):
        raise LocalProtocolError(f"media {what} must be a string of at most {limit} characters")


@dataclass(frozen=True, slots=True)
class MediaPayload:
    """The fields of a ``media`` payload, validated when made (:class:`LocalProtocolError`)."""

    blob_id: bytes
    key: bytes
    header: bytes
    size: int
    mime: str
    name: str | None = None
    caption: str | None = None
    sha256: bytes | None = None

    def __post_init__(self) -> None:
        _check_bytes(self.blob_id, MEDIA_BLOB_ID_SIZE, "blob id")
        _check_bytes(self.key, MEDIA_KEY_SIZE, "key")
        _check_bytes(self.header, MEDIA_HEADER_SIZE, "header")
        if self.sha256 is not None:
            _check_bytes(self.sha256, MEDIA_SHA256_SIZE, "sha256")
        _check_size(self.size)
        if (type(self.mime) is not str or len(self.mime) > MAX_MEDIA_MIME_LENGTH
                or not _MIME.fullmatch(self.mime)):
            raise LocalProtocolError("media mime must be a 'type/subtype' (RFC 6838 names)")
        _check_text(self.name, MAX_MEDIA_NAME_LENGTH, "name")
        _check_text(self.caption, MAX_MEDIA_CAPTION_LENGTH, "caption")

    def fields(self) -> dict[str, Any]:
        """The payload's kind-specific fields; absent optional ones are left out."""
        fields: dict[str, Any] = {"blob_id": self.blob_id, "key": self.key, "header": self.header,
                                  "size": self.size, "mime": self.mime}
        for name in ("name", "caption", "sha256"):
            if getattr(self, name) is not None:
                fields[name] = getattr(self, name)
        return fields

    def to_payload(self, ts: int, random: RandomSource = system_random) -> Payload:
        """A ``media`` payload (fresh random id) carrying these fields."""
        return Payload.new(MEDIA_KIND, ts, random, **self.fields())

    @classmethod
    def from_payload(cls, payload: Payload) -> MediaPayload:
        """The media fields of a decoded payload; :class:`MalformedError` if they are invalid.

        Fields this version does not know are ignored; a missing optional field, or nil, is
        ``None``.
        """
        if payload.kind != MEDIA_KIND:
            raise LocalProtocolError(f"not a media payload: {payload.kind!r}")
        return cls.from_fields(payload.fields)

    @classmethod
    def from_fields(cls, fields: object) -> MediaPayload:
        """The media fields of a map (as :meth:`fields` gives, or a peer sent them);
        :class:`MalformedError` if they are invalid or ``fields`` is not a map."""
        if not isinstance(fields, dict):
            raise MalformedError("media fields must be a map")
        try:
            return cls(fields["blob_id"], fields["key"], fields["header"], fields["size"],
                       fields["mime"], fields.get("name"), fields.get("caption"),
                       fields.get("sha256"))
        except (KeyError, LocalProtocolError) as exc:
            raise MalformedError(f"media payload fields are invalid: {exc}") from None


# -- File names -------------------------------------------------------------------------------

_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_SEPARATORS = re.compile(r"[/\\]")
_RESERVED_CHARACTERS = str.maketrans(dict.fromkeys(':*?"<>|', "_"))
_DOT_RUNS = re.compile(r"\.{2,}")
_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in range(10)})
_MAX_EXTENSION = 16  # characters after the last dot that truncation keeps


def _truncate(name: str) -> str:
    """``name`` cut to ``MAX_SAFE_FILE_NAME_BYTES`` UTF-8 bytes, keeping a short extension."""
    if len(name.encode()) <= MAX_SAFE_FILE_NAME_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension) > _MAX_EXTENSION:
        stem, extension = name, ""
    suffix = "." + extension if extension else ""
    budget = MAX_SAFE_FILE_NAME_BYTES - len(suffix.encode())
    stem = stem.encode()[:budget].decode(errors="ignore").rstrip(" .")
    return (stem or SAFE_FILE_NAME_FALLBACK) + suffix


def safe_file_name(name: str) -> str:
    """A file name to save an attachment under, made from the untrusted ``name`` of a message.

    The result is one non-empty path component of at most 255 UTF-8 bytes: the last component
    of ``name`` (after NFKC, so look-alike slashes count as slashes) with control, format
    (bidirectional overrides), unassigned and private-use characters removed; ``: * ? " < > |``
    replaced by ``_``; runs of dots collapsed and leading or trailing dots and spaces removed (so
    never ``.``, ``..``, a hidden file or a Windows-trimmed name); a Windows device name (``CON``,
    ``NUL.txt``, ``COM1``...) prefixed with ``_``. It never contains ``/``, ``\\``, NUL or
    ``..``; when nothing is left it is ``"attachment"``.
    """
    if type(name) is not str:
        raise LocalProtocolError("file name must be a string")
    kept = "".join(ch for ch in name if unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    text = unicodedata.normalize("NFKC", kept)  # NFKC makes no dropped characters
    parts = [part for part in _SEPARATORS.split(text) if part.strip(" .")]
    text = parts[-1] if parts else ""
    text = _DOT_RUNS.sub(".", text.translate(_RESERVED_CHARACTERS)).strip(" .")
    if text.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        text = "_" + text
    return _truncate(text) if text else SAFE_FILE_NAME_FALLBACK
