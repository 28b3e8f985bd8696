"""The social server's refusals, as the one-line :class:`~client.core.errors.ClientError` the
user sees, with the server's error code kept."""

from __future__ import annotations

from ..core.connection import ServerError
from ..core.errors import ClientError


class SocialError(ClientError):
    """The social server refused a request; ``code`` is its error code."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def refused(exc: ServerError) -> SocialError:
    """The refusal ``exc`` as a :class:`SocialError`."""
    return SocialError(f"the social server refused: {exc} ({exc.code})", exc.code)
