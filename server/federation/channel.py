"""One authenticated server-to-server connection: the handshake, then sealed frames.

:func:`accept` and :func:`connect` run the two sides of :mod:`e2e_proto.peer_link`'s
handshake over a trio stream within :data:`HANDSHAKE_TIMEOUT`; either yields a
:class:`PeerChannel` whose frames are sealed in order. Anything wrong (a bad MAC, a frame that
does not open, a malformed frame, a timeout) raises :class:`PeerLinkError`; the caller closes
the stream. Nothing here logs a frame's content.
"""

from __future__ import annotations

import secrets
from typing import Any

import trio

from e2e_proto.constants import MAX_FRAME_SIZE, PEER_NONCE_SIZE
from e2e_proto.errors import E2EProtoError
from e2e_proto.peer_link import FrameOpener, FrameSealer, Handshake
from e2e_proto.wire import FrameDecoder, decode_frame_body, encode_frame

HANDSHAKE_TIMEOUT = 10.0
"""Seconds a handshake may take."""
MAX_PEER_FRAME = MAX_FRAME_SIZE + 1024
"""The largest outer frame: a sealed frame of up to 1 MiB, its tag and the outer map."""


class PeerLinkError(Exception):
    """The other server failed the handshake, sent a frame that does not open, or went away."""


class PeerChannel:
    """Sealed request and response frames over one authenticated stream."""

    def __init__(self, stream: trio.abc.Stream, sealer: FrameSealer, opener: FrameOpener,
                 decoder: FrameDecoder, peer_role: str) -> None:
        self.stream = stream
        self.peer_role = peer_role
        self._sealer = sealer
        self._opener = opener
        self._decoder = decoder

    async def send(self, frame: dict[str, Any]) -> None:
        """Seal and write one frame."""
        sealed = self._sealer.seal(encode_frame(frame)[4:])
        await _send(self.stream, {"sealed": sealed})

    async def receive(self) -> dict[str, Any]:
        """The next frame, opened; :class:`PeerLinkError` when the stream ends or it does not
        open (then the channel is unusable)."""
        outer = await _receive(self.stream, self._decoder)
        try:
            return decode_frame_body(self._opener.open(outer.get("sealed")))
        except E2EProtoError as exc:
            raise PeerLinkError(f"a sealed frame does not open: {exc}") from None

    async def aclose(self) -> None:
        """Close the stream."""
        await trio.aclose_forcefully(self.stream)


async def _send(stream: trio.abc.Stream, frame: dict[str, Any]) -> None:
    try:
        await stream.send_all(encode_frame(frame, MAX_PEER_FRAME))
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise PeerLinkError(f"the other server went away ({exc})") from None


async def _receive(stream: trio.abc.Stream, decoder: FrameDecoder) -> dict[str, Any]:
    try:
        while (frame := decoder.next_frame()) is None:
            data = await stream.receive_some(65536)
            if not data:
                raise PeerLinkError("the other server closed the connection")
            decoder.feed(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise PeerLinkError(f"the other server went away ({exc})") from None
    except E2EProtoError as exc:
        raise PeerLinkError(f"the other server sent a malformed frame: {exc}") from None
    return frame


async def accept(stream: trio.abc.Stream, key: bytes, role: str) -> PeerChannel:
    """The acceptor's side: challenge, check the hello, answer with the welcome."""
    decoder = FrameDecoder(MAX_PEER_FRAME)
    nonce = secrets.token_bytes(PEER_NONCE_SIZE)
    with trio.move_on_after(HANDSHAKE_TIMEOUT):
        await _send(stream, {"type": "peer_challenge", "role": role, "nonce": nonce})
        hello = await _receive(stream, decoder)
        try:
            if hello.get("type") != "peer_hello":
                raise PeerLinkError("expected a peer_hello")
            handshake = Handshake(key, hello.get("role"), role,  # type: ignore[arg-type]
                                  nonce, hello.get("nonce"))  # type: ignore[arg-type]
            handshake.check_hello(hello.get("mac"))
        except E2EProtoError as exc:
            raise PeerLinkError(f"the peer's hello is refused: {exc}") from None
        await _send(stream, {"type": "peer_welcome", "mac": handshake.welcome()})
        sealer, opener = handshake.channel(connector_side=False)
        return PeerChannel(stream, sealer, opener, decoder, handshake.connector)
    raise PeerLinkError("the handshake did not complete in time")


async def connect(stream: trio.abc.Stream, key: bytes, role: str) -> PeerChannel:
    """The connector's side: answer the challenge with the hello, check the welcome."""
    decoder = FrameDecoder(MAX_PEER_FRAME)
    nonce = secrets.token_bytes(PEER_NONCE_SIZE)
    with trio.move_on_after(HANDSHAKE_TIMEOUT):
        challenge = await _receive(stream, decoder)
        try:
            if challenge.get("type") != "peer_challenge":
                raise PeerLinkError("expected a peer_challenge")
            handshake = Handshake(key, role, challenge.get("role"),  # type: ignore[arg-type]
                                  challenge.get("nonce"), nonce)  # type: ignore[arg-type]
        except E2EProtoError as exc:
            raise PeerLinkError(f"the peer's challenge is refused: {exc}") from None
        await _send(stream, {"type": "peer_hello", "role": role, "nonce": nonce,
                             "mac": handshake.hello()})
        welcome = await _receive(stream, decoder)
        try:
            handshake.check_welcome(welcome.get("mac"))
        except E2EProtoError as exc:
            raise PeerLinkError(f"the peer's welcome is refused: {exc}") from None
        sealer, opener = handshake.channel(connector_side=True)
        return PeerChannel(stream, sealer, opener, decoder, handshake.acceptor)
    raise PeerLinkError("the handshake did not complete in time")
