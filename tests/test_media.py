"""Encrypted media (DESIGN §14): round trips at every chunk boundary and any split, the blob
format checked with libsodium directly, every way a stream can be broken, the ``media`` payload,
safe file names, and memory that does not grow with the file."""

from __future__ import annotations

import hashlib
import mmap
import ntpath
import posixpath
import random
import tracemalloc
from collections.abc import Callable
from pathlib import PurePosixPath, PureWindowsPath

import nacl.bindings as sodium
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from e2e_proto.constants import (
    MAX_MEDIA_CAPTION_LENGTH,
    MAX_MEDIA_NAME_LENGTH,
    MAX_MEDIA_SIZE,
    MEDIA_CHUNK_OVERHEAD,
    MEDIA_CHUNK_SIZE,
    MEDIA_HEADER_SIZE,
)
from e2e_proto.errors import (
    BlobHashMismatchError,
    DecryptionError,
    LocalProtocolError,
    MalformedError,
    MediaError,
    MediaSizeMismatchError,
    MediaTrailingDataError,
    MediaTruncatedError,
    RemoteProtocolError,
)
from e2e_proto.media import (
    MEDIA_KIND,
    MediaDecryptor,
    MediaEncryptor,
    MediaPayload,
    SealedMedia,
    blob_size,
    safe_file_name,
)
from e2e_proto.payload import KNOWN_KINDS, Payload

CHUNK = MEDIA_CHUNK_SIZE
SEALED = CHUNK + MEDIA_CHUNK_OVERHEAD
BOUNDARY_SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * 1024 * 1024 + 5]


def _data(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def _encrypt(data: bytes, piece: int = 100_000, **kwargs: object) -> tuple[bytes, SealedMedia]:
    encryptor = MediaEncryptor(**kwargs)  # type: ignore[arg-type]
    parts = [encryptor.feed(data[i:i + piece]) for i in range(0, len(data), piece)]
    sealed = encryptor.finish()
    return b"".join(parts) + sealed.tail, sealed


def _decrypt(blob: bytes, sealed: SealedMedia, piece: int = 100_000,
             **kwargs: object) -> bytes:
    decryptor = MediaDecryptor(sealed.key, sealed.header, sealed.size,
                               **kwargs)  # type: ignore[arg-type]
    parts = [decryptor.feed(blob[i:i + piece]) for i in range(0, len(blob), piece)]
    return b"".join(parts) + decryptor.finish()


def _libsodium_chunks(blob: bytes, sealed: SealedMedia) -> list[tuple[bytes, int]]:
    """(plaintext, tag) of each 64 KiB + 17 sealed chunk, pulled with libsodium directly."""
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, sealed.header, sealed.key)
    return [sodium.crypto_secretstream_xchacha20poly1305_pull(state, blob[i:i + SEALED])
            for i in range(0, len(blob), SEALED)]


# -- Round trips and the blob format ----------------------------------------------------------


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_round_trip_and_blob_format(size: int) -> None:
    data = _data(size)
    blob, sealed = _encrypt(data, hash_plaintext=True)
    assert len(blob) == blob_size(size) == size + MEDIA_CHUNK_OVERHEAD * max(1, -(-size // CHUNK))
    assert sealed.blob_id == hashlib.sha256(blob).digest()
    assert sealed.sha256 == hashlib.sha256(data).digest()
    assert sealed.size == size
    assert len(sealed.key) == 32 and len(sealed.header) == 24
    assert _decrypt(blob, sealed, blob_id=sealed.blob_id) == data

    chunks = _libsodium_chunks(blob, sealed)
    assert b"".join(plain for plain, _ in chunks) == data
    assert [tag for _, tag in chunks] == (
        [sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE] * (len(chunks) - 1)
        + [sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL])
    assert all(len(plain) == CHUNK for plain, _ in chunks[:-1])
    assert 0 < len(chunks[-1][0]) <= CHUNK or size == 0


def test_sizes_are_libsodiums() -> None:
    assert MEDIA_CHUNK_OVERHEAD == sodium.crypto_secretstream_xchacha20poly1305_ABYTES
    assert MEDIA_HEADER_SIZE == sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES


def test_the_key_comes_from_the_random_source() -> None:
    encryptor = MediaEncryptor(random=lambda n: b"\x07" * n)
    assert encryptor.key == b"\x07" * 32
    encryptor.feed(b"x")
    sealed = encryptor.finish()
    assert sealed.key == b"\x07" * 32 and sealed.header == encryptor.header
    assert sealed.sha256 is None


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=40, deadline=None)
@given(size=st.one_of(st.sampled_from(BOUNDARY_SIZES[:-1]),
                      st.integers(min_value=0, max_value=3 * CHUNK + 50)),
       plain_cuts=st.lists(st.integers(min_value=0), max_size=6),
       blob_cuts=st.lists(st.integers(min_value=0), max_size=6),
       as_memoryview=st.booleans())
def test_any_split_round_trips(size: int, plain_cuts: list[int], blob_cuts: list[int],
                               as_memoryview: bool) -> None:
    """However plaintext and ciphertext are split (empty pieces too), the file comes back."""
    data = _data(size)
    encryptor = MediaEncryptor()
    pieces = [encryptor.feed(memoryview(p) if as_memoryview else p)
              for p in _splits(data, plain_cuts)]
    sealed = encryptor.finish()
    blob = b"".join(pieces) + sealed.tail
    assert sealed.blob_id == hashlib.sha256(blob).digest()
    decryptor = MediaDecryptor(sealed.key, sealed.header, size, sealed.blob_id)
    out = [decryptor.feed(bytearray(p) if as_memoryview else p) for p in _splits(blob, blob_cuts)]
    assert b"".join(out) + decryptor.finish() == data


def test_plaintext_comes_out_chunk_by_chunk() -> None:
    """A decryptor gives out a chunk as soon as the next one starts (not only at the end)."""
    data = _data(3 * CHUNK)
    blob, sealed = _encrypt(data)
    decryptor = MediaDecryptor(sealed.key, sealed.header, sealed.size)
    assert decryptor.feed(blob[:SEALED]) == b""  # could still be the last chunk
    assert decryptor.feed(blob[SEALED:SEALED + 1]) == data[:CHUNK]
    assert decryptor.feed(blob[SEALED + 1:]) == data[CHUNK:2 * CHUNK]
    assert decryptor.finish() == data[2 * CHUNK:]


# -- Broken streams ---------------------------------------------------------------------------

DATA = _data(3 * CHUNK + 1000)


@pytest.fixture(scope="module")
def stream() -> tuple[bytes, SealedMedia]:
    return _encrypt(DATA)


def _refused(blob: bytes, sealed: SealedMedia, error: type[Exception], *, size: int | None = None,
             key: bytes | None = None, header: bytes | None = None,
             blob_id: bytes | None = None) -> None:
    decryptor = MediaDecryptor(key or sealed.key, header or sealed.header,
                               sealed.size if size is None else size, blob_id)
    with pytest.raises(error):
        for i in range(0, len(blob), 50_000):
            decryptor.feed(blob[i:i + 50_000])
        decryptor.finish()
    with pytest.raises(LocalProtocolError):  # a failed stream stays failed
        decryptor.feed(b"")


def _sealed_chunks(blob: bytes) -> list[bytes]:
    return [blob[i:i + SEALED] for i in range(0, len(blob), SEALED)]


def test_truncation(stream: tuple[bytes, SealedMedia]) -> None:
    blob, sealed = stream
    chunks = _sealed_chunks(blob)
    _refused(b"".join(chunks[:-1]), sealed, MediaTruncatedError)  # the FINAL chunk dropped
    _refused(blob[:-1], sealed, MediaTruncatedError)  # cut inside the FINAL chunk
    _refused(blob[:SEALED + 100], sealed, MediaTruncatedError)  # cut inside a middle chunk
    _refused(b"", sealed, MediaTruncatedError)


def test_reordered_replayed_and_dropped_chunks(stream: tuple[bytes, SealedMedia]) -> None:
    blob, sealed = stream
    first, second, third, last = _sealed_chunks(blob)
    _refused(second + first + third + last, sealed, DecryptionError)
    _refused(first + first + third + last, sealed, DecryptionError)
    _refused(first + third + last, sealed, DecryptionError)
    _refused(first + second + third + third[:len(last)], sealed, DecryptionError)


@pytest.mark.parametrize("position", [0, 23, 24, SEALED - 1, SEALED + 5000, -17, -1])
def test_bit_flips(stream: tuple[bytes, SealedMedia], position: int) -> None:
    blob, sealed = stream
    tampered = bytearray(blob)
    tampered[position] ^= 0x10
    _refused(bytes(tampered), sealed, DecryptionError)


def test_extra_data_after_final(stream: tuple[bytes, SealedMedia]) -> None:
    blob, sealed = stream
    _refused(blob + b"\x00", sealed, MediaTrailingDataError)
    _refused(blob + blob, sealed, MediaTrailingDataError)


def test_data_after_a_final_chunk_inside_the_announced_length() -> None:
    """A FINAL chunk followed by a valid chunk (crafted with libsodium) is refused."""
    key = bytes(range(32))
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    header = sodium.crypto_secretstream_xchacha20poly1305_init_push(state, key)
    final = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
    blob = (sodium.crypto_secretstream_xchacha20poly1305_push(state, bytes(CHUNK), None, final)
            + sodium.crypto_secretstream_xchacha20poly1305_push(state, b"more", None, final))
    decryptor = MediaDecryptor(key, header, CHUNK + 4)
    with pytest.raises(MediaTrailingDataError):
        decryptor.feed(blob)


def test_unexpected_chunk_tag() -> None:
    key = bytes(range(32))
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    header = sodium.crypto_secretstream_xchacha20poly1305_init_push(state, key)
    push = sodium.crypto_secretstream_xchacha20poly1305_push
    blob = (push(state, bytes(CHUNK), None, sodium.crypto_secretstream_xchacha20poly1305_TAG_PUSH)
            + push(state, b"end", None, sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL))
    decryptor = MediaDecryptor(key, header, CHUNK + 3)
    with pytest.raises(MediaError):
        decryptor.feed(blob)


def test_wrong_key_or_header(stream: tuple[bytes, SealedMedia]) -> None:
    blob, sealed = stream
    _refused(blob, sealed, DecryptionError, key=bytes(32))
    _refused(blob, sealed, DecryptionError, header=bytes(24))


def test_wrong_size(stream: tuple[bytes, SealedMedia]) -> None:
    blob, sealed = stream
    _refused(blob, sealed, MediaTrailingDataError, size=sealed.size - 1)
    _refused(blob, sealed, MediaSizeMismatchError, size=sealed.size + 1)
    _refused(blob, sealed, MediaSizeMismatchError, size=sealed.size + CHUNK)
    _refused(blob, sealed, MediaTrailingDataError, size=0)


def test_wrong_blob_hash(stream: tuple[bytes, SealedMedia]) -> None:
    blob, sealed = stream
    other = hashlib.sha256(b"another blob").digest()
    _refused(blob, sealed, BlobHashMismatchError, blob_id=other)
    assert _decrypt(blob, sealed, blob_id=sealed.blob_id) == DATA


def test_all_media_errors_are_remote_errors() -> None:
    for error in (MediaTruncatedError, MediaTrailingDataError, MediaSizeMismatchError,
                  BlobHashMismatchError):
        assert issubclass(error, MediaError) and issubclass(error, RemoteProtocolError)


def test_misuse() -> None:
    encryptor = MediaEncryptor()
    with mmap.mmap(-1, MAX_MEDIA_SIZE + 1) as too_big:  # pages are never touched
        with pytest.raises(LocalProtocolError):
            encryptor.feed(memoryview(too_big))
    with pytest.raises(LocalProtocolError):
        encryptor.feed("text")  # type: ignore[arg-type]
    assert encryptor.feed(b"still fine") == b""
    sealed = encryptor.finish()
    assert sealed.size == len(b"still fine")
    for call in (lambda: encryptor.feed(b"x"), encryptor.finish):
        with pytest.raises(LocalProtocolError):
            call()
    for bad in (dict(size=-1), dict(size=MAX_MEDIA_SIZE + 1), dict(size=True),
                dict(key=bytes(31)), dict(header=bytes(23)), dict(blob_id=bytes(31))):
        arguments = {"key": sealed.key, "header": sealed.header, "size": 1, **bad}
        with pytest.raises(LocalProtocolError):
            MediaDecryptor(**arguments)  # type: ignore[arg-type]
    decryptor = MediaDecryptor(sealed.key, sealed.header, sealed.size)
    assert decryptor.feed(sealed.tail) == b""
    assert decryptor.finish() == b"still fine"
    with pytest.raises(LocalProtocolError):
        decryptor.finish()


def test_strided_buffers_are_refused_and_change_nothing() -> None:
    encryptor = MediaEncryptor()
    with pytest.raises(LocalProtocolError):
        encryptor.feed(memoryview(b"abcdefgh")[::2])
    assert encryptor.feed(b"abcd") == b""
    blob, sealed = encryptor.feed(b""), encryptor.finish()
    blob += sealed.tail
    decryptor = MediaDecryptor(sealed.key, sealed.header, sealed.size, sealed.blob_id)
    with pytest.raises(LocalProtocolError):  # before the fix: TypeError, the bytes counted
        decryptor.feed(memoryview(blob)[::2])
    assert decryptor.feed(blob) == b""
    assert decryptor.finish() == b"abcd"


def test_max_size_moves_the_limit_of_the_stream_only() -> None:
    small = MediaEncryptor(max_size=10)
    small.feed(bytes(10))
    with pytest.raises(LocalProtocolError):
        small.feed(b"x")
    blob, sealed = _encrypt(bytes(10), max_size=10)
    with pytest.raises(LocalProtocolError):
        MediaDecryptor(sealed.key, sealed.header, 10, max_size=9)
    assert _decrypt(blob, sealed, max_size=10) == bytes(10)
    big = MAX_MEDIA_SIZE + 1
    with pytest.raises(LocalProtocolError):
        MediaDecryptor(sealed.key, sealed.header, big)
    MediaDecryptor(sealed.key, sealed.header, big, max_size=big)  # accepted when raised
    for bad in (-1, True, 2**63):
        with pytest.raises(LocalProtocolError):
            MediaEncryptor(max_size=bad)  # type: ignore[arg-type]


# -- Constant memory --------------------------------------------------------------------------


def _pipeline_peak(size: int, check: Callable[[MediaEncryptor, MediaDecryptor], None]) -> int:
    """Peak traced memory of encrypting and decrypting ``size`` bytes fed 64 KiB at a time."""
    block = _data(CHUNK)
    tracemalloc.start()
    try:
        encryptor = MediaEncryptor()
        decryptor = MediaDecryptor(encryptor.key, encryptor.header, size)
        for _ in range(size // CHUNK):
            decryptor.feed(encryptor.feed(block))
            check(encryptor, decryptor)
        decryptor.feed(encryptor.finish().tail)
        decryptor.finish()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_file() -> None:
    def held_at_most_one_chunk(encryptor: MediaEncryptor, decryptor: MediaDecryptor) -> None:
        assert len(encryptor._held.data) <= CHUNK
        assert len(decryptor._held.data) <= SEALED

    small = _pipeline_peak(4 * 1024 * 1024, held_at_most_one_chunk)
    large = _pipeline_peak(32 * 1024 * 1024, held_at_most_one_chunk)
    assert large < small + 64 * 1024
    assert large < 8 * SEALED


# -- The media payload ------------------------------------------------------------------------

MIMES = st.from_regex(r"\A[a-z0-9][a-z0-9.+-]{0,20}/[a-z0-9][a-z0-9.+-]{0,20}\Z")


@given(size=st.integers(min_value=0, max_value=MAX_MEDIA_SIZE), mime=MIMES,
       name=st.none() | st.text(max_size=MAX_MEDIA_NAME_LENGTH),
       caption=st.none() | st.text(max_size=300),
       sha256=st.none() | st.binary(min_size=32, max_size=32))
def test_media_payload_round_trip(size: int, mime: str, name: str | None, caption: str | None,
                                  sha256: bytes | None) -> None:
    media = MediaPayload(b"\x01" * 32, b"\x02" * 32, b"\x03" * 24, size, mime, name, caption,
                         sha256)
    payload = media.to_payload(ts=1_700_000_000_000, random=lambda n: b"\x09" * n)
    decoded = Payload.decode(payload.encode())
    assert decoded.kind == MEDIA_KIND and MEDIA_KIND in KNOWN_KINDS
    assert MediaPayload.from_payload(decoded) == media
    assert ("name" in decoded.fields) == (name is not None)


def test_sealed_media_gives_the_payload() -> None:
    blob, sealed = _encrypt(b"hello", hash_plaintext=True)
    media = sealed.payload("text/plain", name="hello.txt", caption="hi")
    decoded = MediaPayload.from_payload(Payload.decode(media.to_payload(ts=0).encode()))
    decryptor = MediaDecryptor.for_payload(decoded)
    assert decryptor.feed(blob) == b"" and decryptor.finish() == b"hello"


def _payload_with(**changes: object) -> Payload:
    fields = {"blob_id": b"\x01" * 32, "key": b"\x02" * 32, "header": b"\x03" * 24, "size": 10,
              "mime": "image/jpeg", **changes}
    return Payload(b"\x00" * 16, 0, MEDIA_KIND, {k: v for k, v in fields.items() if v != "DROP"})


@pytest.mark.parametrize("changes", [
    {"blob_id": b"\x01" * 31}, {"key": "DROP"}, {"key": b"\x02" * 33}, {"header": None},
    {"size": -1}, {"size": MAX_MEDIA_SIZE + 1}, {"size": True}, {"size": "10"},
    {"mime": "image"}, {"mime": "image/jpeg; q=1"}, {"mime": "/jpeg"}, {"mime": "a/" + "b" * 200},
    {"mime": 5}, {"name": "n" * (MAX_MEDIA_NAME_LENGTH + 1)}, {"name": b"bytes"},
    {"caption": "c" * (MAX_MEDIA_CAPTION_LENGTH + 1)}, {"sha256": b"\x00" * 31},
])
def test_media_payload_refuses_bad_fields(changes: dict[str, object]) -> None:
    with pytest.raises(MalformedError):
        MediaPayload.from_payload(_payload_with(**changes))


def test_media_payload_optional_and_unknown_fields() -> None:
    media = MediaPayload.from_payload(_payload_with(name=None, caption=None, width=640))
    assert media.name is None and media.caption is None and media.sha256 is None
    with pytest.raises(LocalProtocolError):
        MediaPayload.from_payload(Payload(b"\x00" * 16, 0, "text", {"text": "hi"}))


# -- Safe file names --------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("../../.bashrc", "bashrc"),
    ("/etc/passwd", "passwd"),
    ("C:\\Windows\\System32\\cmd.exe", "cmd.exe"),
    ("a\x00b\x1fc", "abc"),
    ("", "attachment"),
    ("..", "attachment"),
    (" . ", "attachment"),
    ("dir/", "dir"),
    ("CON", "_CON"),
    ("nul.tar.gz", "_nul.tar.gz"),
    ("COM\u00b9.txt", "_COM1.txt"),  # NFKC: a superscript one is a one
    ("photo\u202egpj.exe", "photogpj.exe"),  # a right-to-left override hides the extension
    ("a\uff0fb", "b"),  # a fullwidth solidus is a slash after NFKC
    ("what?.txt", "what_.txt"),
    ("archive...tar", "archive.tar"),
    ("report.pdf.", "report.pdf"),
    ("résumé.pdf", "résumé.pdf"),
])
def test_safe_file_name_examples(name: str, expected: str) -> None:
    assert safe_file_name(name) == expected


def test_safe_file_name_shortens_keeping_the_extension() -> None:
    name = safe_file_name("é" * 300 + ".jpeg")
    assert name.endswith(".jpeg") and len(name.encode()) <= 255
    assert safe_file_name("x" * 1000) == "x" * 255


@settings(max_examples=300)
@given(name=st.text(st.characters(codec=None), max_size=400)
       | st.lists(st.sampled_from(["..", ".", "/", "\\", "\x00", " ", "CON", "a", "\u202e",
                                   "\uff0f", ":", "é"]), max_size=30).map("".join))
@example(name="../../.bashrc")
@example(name="\ud800")
def test_safe_file_name_properties(name: str) -> None:
    safe = safe_file_name(name)
    assert safe and safe not in (".", "..")
    assert ".." not in safe and "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert not safe.startswith((".", " ")) and not safe.endswith((".", " "))
    assert len(safe.encode("utf-8")) <= 255
    assert posixpath.basename(safe) == safe == ntpath.basename(safe)
    assert PurePosixPath(safe).name == safe == PureWindowsPath(safe).name
    assert safe_file_name(safe) == safe


def test_media_fields_from_a_map() -> None:
    media = MediaPayload(bytes(32), bytes(32), bytes(24), 5, "text/plain", name="a.txt")
    assert MediaPayload.from_fields(media.fields()) == media
    assert MediaPayload.from_fields({**media.fields(), "later": 1}) == media
    for bad in ([1], None, {"blob_id": bytes(32)}, {**media.fields(), "size": -1}):
        with pytest.raises(MalformedError):
            MediaPayload.from_fields(bad)
