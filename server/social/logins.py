"""Back-off for password guessing: failed logins per account, per source address and per both.

Invariant: a login is checked only when all three buckets have a token; it spends one of each
before the (slow) password check, so concurrent guesses cannot overtake the count, and gives
them back when the password is right, so the owner's logins cost nothing. The bucket of one
account at one address is smaller and slower than the account's own: one address, however it
hammers, leaves the account's bucket at least ``account burst - pair burst`` tokens, and the
owner logging in from another address is never refused because of it. Attackers at many
addresses can empty the account's bucket; a login then waits for its next token (at most
``3600 / account_login_failures_per_hour`` seconds while they keep at it no faster than the
refill, and no longer than that after they stop).
"""

from __future__ import annotations

from shared.rate_limits import TokenBuckets

from .config import SocialConfig

HOUR = 3600.0


class LoginFailures:
    """Three token buckets of failed logins: per account name, source address and both."""

    def __init__(self, config: SocialConfig) -> None:
        if not (config.pair_login_failure_burst < config.account_login_failure_burst
                and config.pair_login_failures_per_hour < config.account_login_failures_per_hour):
            raise ValueError("one address's login failures must be fewer than an account's, "
                             "or that address could lock the owner out")
        self._pairs = TokenBuckets[tuple[str, str]](
            config.pair_login_failures_per_hour / HOUR, config.pair_login_failure_burst)
        self._accounts = TokenBuckets[str](config.account_login_failures_per_hour / HOUR,
                                           config.account_login_failure_burst)
        self._addresses = TokenBuckets[str](config.address_login_failures_per_hour / HOUR,
                                            config.address_login_failure_burst)

    def attempt(self, account: str, source: str) -> tuple[str, float] | None:
        """Count a login to ``account`` from ``source`` as failed (until :meth:`succeeded`);
        or, when a bucket is empty, what is limited and the seconds until it may be tried,
        and nothing counted."""
        waits = [(self._pairs.retry_after((account, source)), "for this account from this "
                  "address"), (self._accounts.retry_after(account), "for this account"),
                 (self._addresses.retry_after(source), "from this address")]
        wait, what = max(waits)
        if wait > 0:
            return what, wait
        self._pairs.take((account, source))
        self._accounts.take(account)
        self._addresses.take(source)
        return None

    def succeeded(self, account: str, source: str) -> None:
        """The password was right: the attempt does not count."""
        self._pairs.give_back((account, source))
        self._accounts.give_back(account)
        self._addresses.give_back(source)
