"""Rate limits: token buckets, one per connection or one per account."""

from __future__ import annotations

import trio


class TokenBucket:
    """A rate limit: ``rate`` tokens a second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.stamp = float(burst), trio.current_time()

    def take(self, count: int = 1) -> bool:
        """Spend ``count`` tokens if there are that many; False (nothing spent) if not."""
        now = trio.current_time()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < count:
            return False
        self.tokens -= count
        return True


class TokenBuckets:
    """A :class:`TokenBucket` per key (an account name), made full on the key's first use."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str, count: int = 1) -> bool:
        """Spend ``count`` of ``key``'s tokens if it has that many; False (nothing spent) if not."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket.take(count)
