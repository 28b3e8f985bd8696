"""Checking what a server sends before acting on it: a client trusts no server.

Every field a client reads from a push or an answer goes through one of these checks first,
so a hostile or broken server cannot make it generate 200,000 prekeys, store an impossible
device id or crash on a wrong type.
"""

from __future__ import annotations


def bounded_int(value: object, low: int, high: int) -> int | None:
    """``value`` when it is an int (not a bool) in ``low..high``; None otherwise."""
    if type(value) is int and low <= value <= high:
        return value
    return None


def bounded_str(value: object, max_length: int) -> str | None:
    """``value`` when it is a str of at most ``max_length`` characters; None otherwise."""
    if type(value) is str and len(value) <= max_length:
        return value
    return None


def prekeys_to_add(count: object, low: int, target: int) -> int:
    """How many one-time prekeys to publish when the server says it holds ``count``.

    Nothing unless ``count`` is an int in ``0..low-1``: a negative, huge or non-integer count
    from the server is ignored rather than trusted.
    """
    held = bounded_int(count, 0, low - 1)
    return 0 if held is None else target - held
