"""Token buckets (shared/rate_limits.py) on trio's virtual clock."""

from __future__ import annotations

import math

from shared.rate_limits import TokenBucket, TokenBuckets


async def test_a_bucket_refills_says_when_and_takes_back(mock_clock) -> None:
    bucket = TokenBucket(rate=0.5, burst=2)
    assert bucket.take(2) and not bucket.take()
    assert bucket.retry_after() == 2.0 and bucket.retry_after(3) == math.inf
    mock_clock.jump(1.0)
    assert bucket.retry_after() == 1.0
    bucket.give_back()
    assert bucket.take() and not bucket.take()
    mock_clock.jump(100.0)
    assert bucket.full and bucket.retry_after(2) == 0.0


async def test_buckets_forget_only_full_ones(mock_clock) -> None:
    buckets = TokenBuckets[str](rate=1.0, burst=1)
    for index in range(3000):  # an attacker's made-up keys, each used once
        assert buckets.take(f"old{index}")
    assert len(buckets) == 3000  # none has refilled yet: all are kept
    mock_clock.jump(2.0)  # now every one of them is full again
    assert buckets.take("limited")
    for index in range(2000):
        buckets.take(f"new{index}")
    assert len(buckets) < 2100  # the full ones were forgotten...
    assert not buckets.take("limited")  # ...but never a bucket that limits someone
