"""Where the Redis backend keeps the relay's state, and the channels its nodes listen on.

Every name starts with ``e2e:``. Account names are ``[a-z0-9][a-z0-9_.-]*`` and device ids are
decimal, so ``ACCOUNT:DEVICE`` never needs quoting.

==============================  ======  ==========================================================
key                             type    holds
==============================  ======  ==========================================================
``e2e:acct:A``                  hash    ``key`` (account key), ``version``, ``body``, ``signature``
                                        (the signed device list), ``max`` (highest device id ever
                                        listed), ``dN`` (device N's identity key, per device)
``e2e:dev:A:N``                 hash    ``identity``, ``name``, ``linked``, ``seen``, ``spk_id``,
                                        ``spk``, ``spk_signature``, ``link_signature``, ``seq``
                                        (the last mailbox seq given out), ``bytes`` (envelope
                                        bytes in the mailbox; its message count is the ZCARD)
``e2e:opk:A:N``                 zset    one-time prekeys: score = id, member = id (4 bytes, big
                                        endian) + key
``e2e:mbox:A:N``                zset    the mailbox: score = seq, member = the envelope (so a
                                        byte-identical envelope is the same message)
``e2e:expiry``                  zset    every stored message: score = stored-at time,
                                        member = ``A:N:SEQ`` (mailbox TTL across all nodes)
``e2e:link:LOOKUP``             hash    a pending link (hex lookup): ``waiter`` (the waiting
                                        connection's nonce), ``account``, ``offer`` (msgpack of
                                        the rest); expires after ``link_timeout``
``e2e:links:A``                 zset    the link offers waiting for account A: member = hex
                                        lookup, score = its expiry (ms, Redis's clock)
``e2e:presence:A:N``            string  the node of the device's newest connection (a node that
                                        stores mail for it wakes it itself, without publishing)
``e2e:claim:A:N``               string  the claim of the device's newest connection: a count of
                                        its connections' claims, on every node (set with the
                                        presence; a node closes only connections of older claims)
``e2e:group:ID``                hash    a group's routing copy (hex id): ``version``, ``members``
                                        and ``admins`` (msgpack lists), ``body``, ``signature``,
                                        ``creator`` (the account that first put it)
``e2e:groupsof:A``              set     the hex ids of the routing copies account A created
                                        that are stored (at most ``max_groups_per_account``)
``e2e:blob:ID``                 hash    a blob's record (hex id): ``owner``, ``size``,
                                        ``created``, ``complete`` ('0' or '1'); its bytes are a
                                        file under ``--blob-dir``, which the nodes share
``e2e:blobuse:A``               hash    account A's blobs: ``bytes`` (declared sizes, complete or
                                        not) and ``pending`` (unfinished uploads)
``e2e:blobs:pending``           zset    unfinished uploads: member = hex id, score = begin time
``e2e:blobs:complete``          zset    complete blobs: member = hex id, score = begin time
``e2e:grant:ID``                hash    who may fetch a blob: ``A:N`` = '0' (granted) or '1'
                                        (fetched); ``#`` = granted devices that have not fetched
``e2e:call:ID``                 string  the node that runs a call (hex id); refreshed while the
                                        call runs, so it expires soon after its node stops
``e2e:fed:link:ID``             hash    an account link (hex link id), kept after it ends (its id
                                        is never accepted again): ``account``, ``body``,
                                        ``private_signature``, ``social_signature``, ``linked``,
                                        ``revoked`` (once it ended)
``e2e:fed:live:A``              string  the link id of account A's live link
``e2e:fed:log:A``               list    A's sharing log, oldest first: ``SEQ:ID:`` (the entry's
                                        seq, its hex link id) + msgpack ``[at, kind, summary]``
``e2e:fed:record:ID``           hash    the records logged for a link (hex id): ``SEQ`` = the
                                        shared record; deleted when the link ends
``e2e:fed:outbox``              zset    items waiting for the social server: member = score = SEQ
``e2e:fed:item:SEQ``            hash    one queued item: ``account``, ``kind`` (share, unlink),
                                        ``link`` (the link id), ``body``
``e2e:fed:shares``              hash    link id -> SEQ of its queued share (one at most)
``e2e:fed:seq``                 string  the last SEQ given to a log entry or a queued item
``e2e:fed:cross``               set     the accounts that take cross-transport chats
``e2e:fed:handover``            string  who hands queued items over now (one node's token);
                                        expires unless renewed
``e2e:limit:reg:SOURCE``        hash    a token bucket (see ``_BUCKETS`` in redis_scripts: ``t``
                                        tokens, ``s`` when, at Redis's clock; expires once full
                                        again) of registrations from a source address (an IPv4
                                        address or an IPv6 /64)
``e2e:limit:bundles:R``         hash    a token bucket of the prekey bundles account R fetched
``e2e:limit:target:R:A:N``      hash    a token bucket of the bundles of device A.N that account R
                                        fetched (R, A: account names, or ``name@social``)
``e2e:limit:opk:A:N``           hash    a token bucket of the one-time prekeys of device A.N
                                        handed out
==============================  ======  ==========================================================

Channels: ``e2e:to:A:N`` carries events for device ``A.N`` (its nodes subscribe while they serve
it), ``e2e:linked:LOOKUP`` the approval of a waiting link offer, and ``e2e:accounts`` the names
of accounts whose device list changed (nodes drop their cached copy).
"""

from __future__ import annotations

from e2e_proto.address import Address

ACCOUNT = "e2e:acct:"
DEVICE = "e2e:dev:"
PREKEYS = "e2e:opk:"
MAILBOX = "e2e:mbox:"
EXPIRY = "e2e:expiry"
LINK = "e2e:link:"
LINKS_OF = "e2e:links:"
GROUP = "e2e:group:"
GROUPS_OF = "e2e:groupsof:"
BLOB = "e2e:blob:"
BLOB_USAGE = "e2e:blobuse:"
BLOBS_PENDING = "e2e:blobs:pending"
BLOBS_COMPLETE = "e2e:blobs:complete"
GRANTS = "e2e:grant:"
PRESENCE = "e2e:presence:"
CLAIM = "e2e:claim:"
CALL = "e2e:call:"
FED_LINK = "e2e:fed:link:"
FED_LIVE = "e2e:fed:live:"
FED_LOG = "e2e:fed:log:"
FED_RECORD = "e2e:fed:record:"
FED_OUTBOX = "e2e:fed:outbox"
FED_ITEM = "e2e:fed:item:"
FED_SHARES = "e2e:fed:shares"
FED_SEQ = "e2e:fed:seq"
FED_CROSS = "e2e:fed:cross"
FED_HAND_OVER = "e2e:fed:handover"
REGISTRATIONS_LIMIT = "e2e:limit:reg:"
BUNDLES_LIMIT = "e2e:limit:bundles:"
TARGET_LIMIT = "e2e:limit:target:"
ONE_TIME_LIMIT = "e2e:limit:opk:"
DEVICE_CHANNEL = "e2e:to:"
LINK_CHANNEL = "e2e:linked:"
ACCOUNTS_CHANNEL = "e2e:accounts"


def account_key(account: str) -> str:
    """The hash of ``account``'s key and device list."""
    return ACCOUNT + account


def device_part(account: str, device_id: int) -> str:
    """``A:N``: how keys, channels and expiry entries name a device."""
    return f"{account}:{device_id}"


def device_key(account: str, device_id: int) -> str:
    """The hash of one device."""
    return DEVICE + device_part(account, device_id)


def prekeys_key(account: str, device_id: int) -> str:
    """The sorted set of one device's one-time prekeys."""
    return PREKEYS + device_part(account, device_id)


def mailbox_key(account: str, device_id: int) -> str:
    """The sorted set of one device's stored envelopes."""
    return MAILBOX + device_part(account, device_id)


def account_prefixes(account: str) -> list[str]:
    """What a script appends a device id to for the device's hash, prekeys, mailbox, its
    expiry entries' prefix, its presence and its claim: ``e2e:dev:A:``, ``e2e:opk:A:``,
    ``e2e:mbox:A:``, ``A:``, ``e2e:presence:A:``, ``e2e:claim:A:``."""
    return [DEVICE + account + ":", PREKEYS + account + ":", MAILBOX + account + ":",
            account + ":", PRESENCE + account + ":", CLAIM + account + ":"]


def presence_key(address: Address) -> str:
    """The node that serves the device's newest connection."""
    return PRESENCE + device_part(*address)


def claim_key(address: Address) -> str:
    """The claim of the device's newest connection."""
    return CLAIM + device_part(*address)


def call_key(call_id: bytes) -> str:
    """The node that runs a call."""
    return CALL + call_id.hex()


def link_key(lookup: bytes) -> str:
    """The pending link filed under ``lookup``."""
    return LINK + lookup.hex()


def device_channel(address: Address) -> str:
    """The channel of events for one device."""
    return DEVICE_CHANNEL + device_part(*address)


def links_of_key(account: str) -> str:
    """The sorted set of the link offers waiting for ``account``."""
    return LINKS_OF + account


def group_key(group_id: bytes) -> str:
    """The hash of a group's routing copy."""
    return GROUP + group_id.hex()


def groups_of_key(account: str) -> str:
    """The set of the routing copies ``account`` created."""
    return GROUPS_OF + account


def blob_key(blob_id: bytes) -> str:
    """The hash of a blob's record."""
    return BLOB + blob_id.hex()


def blob_usage_key(owner: str) -> str:
    """The hash of what an account's blobs take."""
    return BLOB_USAGE + owner


def grants_key(blob_id: bytes) -> str:
    """The hash of the devices a blob was granted to."""
    return GRANTS + blob_id.hex()


def link_channel(lookup: bytes) -> str:
    """The channel of the approval of the link offer under ``lookup``."""
    return LINK_CHANNEL + lookup.hex()


def address_of_channel(channel: str) -> Address:
    """The device a :func:`device_channel` name is for."""
    account, _, device = channel[len(DEVICE_CHANNEL):].rpartition(":")
    return Address(account, int(device))


def fed_link_key(link_id: bytes) -> str:
    """The hash of an account link."""
    return FED_LINK + link_id.hex()


def fed_live_key(account: str) -> str:
    """The link id of ``account``'s live link."""
    return FED_LIVE + account


def fed_log_key(account: str) -> str:
    """The list of ``account``'s sharing log."""
    return FED_LOG + account


def fed_record_key(link_id: bytes) -> str:
    """The hash of the records logged for a link."""
    return FED_RECORD + link_id.hex()


def registrations_limit_key(source: str) -> str:
    """The bucket of registrations from ``source``."""
    return REGISTRATIONS_LIMIT + source


def bundles_limit_key(requester: str) -> str:
    """The bucket of the bundles ``requester`` fetched."""
    return BUNDLES_LIMIT + requester


def target_limit_key(requester: str, target: Address) -> str:
    """The bucket of the bundles of ``target`` that ``requester`` fetched."""
    return f"{TARGET_LIMIT}{requester}:{device_part(*target)}"


def one_time_limit_key(target: Address) -> str:
    """The bucket of ``target``'s one-time prekeys handed out."""
    return ONE_TIME_LIMIT + device_part(*target)
