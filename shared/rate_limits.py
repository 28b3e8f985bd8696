"""Rate limits: token buckets, one per connection or one per key (an account, a source address,
a requester and a target device).

Invariant: a bucket never holds more than its burst, and :class:`TokenBuckets` forgets only
buckets that are full, which are the same as new ones: forgetting never resets a limit.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Generic, NamedTuple, TypeVar

import trio

KeyT = TypeVar("KeyT", bound=Hashable)


class Rate(NamedTuple):
    """What a token bucket allows: ``per_second`` tokens a second, bursts up to ``burst``."""

    per_second: float
    burst: int


class TokenBucket:
    """A rate limit: ``rate`` tokens a second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.stamp = float(burst), trio.current_time()

    def _refill(self) -> float:
        now = trio.current_time()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens

    def take(self, count: int = 1) -> bool:
        """Spend ``count`` tokens if there are that many; False (nothing spent) if not."""
        if self._refill() < count:
            return False
        self.tokens -= count
        return True

    def give_back(self, count: int = 1) -> None:
        """Return ``count`` tokens spent on something that did not count after all."""
        self.tokens = min(self.burst, self._refill() + count)

    def retry_after(self, count: int = 1) -> float:
        """Seconds until ``count`` tokens are there (0 now; inf if never)."""
        missing = count - self._refill()
        if missing <= 0:
            return 0.0
        return math.inf if count > self.burst or self.rate <= 0 else missing / self.rate

    @property
    def full(self) -> bool:
        """Whether the bucket holds its whole burst (it is then the same as a new one)."""
        return self._refill() >= self.burst


class TokenBuckets(Generic[KeyT]):
    """A :class:`TokenBucket` per key, made full on the key's first use.

    Full buckets are forgotten whenever the number of buckets doubles, so keys an attacker
    makes up (addresses, names) cost memory only while they are being limited.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[KeyT, TokenBucket] = {}
        self._forget_at = 1024

    def _bucket(self, key: KeyT) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._forget_at:
                self._buckets = {k: b for k, b in self._buckets.items() if not b.full}
                self._forget_at = max(1024, 2 * len(self._buckets))
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket

    def take(self, key: KeyT, count: int = 1) -> bool:
        """Spend ``count`` of ``key``'s tokens if it has that many; False (nothing spent) if not."""
        return self._bucket(key).take(count)

    def give_back(self, key: KeyT, count: int = 1) -> None:
        """Return ``count`` of ``key``'s tokens (spent on something that did not count)."""
        self._bucket(key).give_back(count)

    def retry_after(self, key: KeyT, count: int = 1) -> float:
        """Seconds until ``key`` has ``count`` tokens (0 now)."""
        return self._bucket(key).retry_after(count)

    def __len__(self) -> int:
        return len(self._buckets)
