"""The Lua scripts of the Redis store: every change that touches more than one key is one script.

Redis runs a script atomically, and with ``appendfsync always`` writes its effects to the AOF
(as one MULTI/EXEC) and fsyncs before it answers. Each script checks everything first and only
then writes, so a refusal changes nothing. Keys are laid out as :mod:`server.relay.redis_keys`
says; a script that must find keys from the data (the devices a new device list removes, the
mailboxes of expired messages) builds their names from prefixes it is given, so the layout
needs one Redis primary (not Redis Cluster).

Numbers pass as decimal strings, or as MessagePack numbers in ``MAILBOX_ROUND``'s document (Lua
numbers: exact below 2^53, which seqs never reach); seqs are formatted with ``%d``, so the
expiry entry written with a message is the one deleted with it.
"""

from __future__ import annotations

CREATE_ACCOUNT = """
-- KEYS[1] account hash
-- ARGV: account key, list version, list body, list signature, max device id, now,
--       device hash prefix (e2e:dev:A:), then device id, identity key pairs
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'key', ARGV[1], 'version', ARGV[2], 'body', ARGV[3],
           'signature', ARGV[4], 'max', ARGV[5])
for i = 8, #ARGV, 2 do
  redis.call('HSET', KEYS[1], 'd' .. ARGV[i], ARGV[i + 1])
  redis.call('HSET', ARGV[7] .. ARGV[i], 'identity', ARGV[i + 1], 'name', 'primary',
             'linked', ARGV[6], 'seq', 0, 'bytes', 0)
end
return 1
"""

REPLACE_DEVICE_LIST = """
-- KEYS[1] account hash, KEYS[2] expiry index
-- ARGV[1..5] list version, body, signature, its highest device id, now
-- ARGV[6..11] prefixes: device hash, prekeys, mailbox (each e2e:...:A:), expiry entry (A:),
-- presence (e2e:presence:A:), claim (e2e:claim:A:)
-- ARGV[12] channel of device-list changes, ARGV[13] account name
-- ARGV[14] n, then n pairs: device id, identity key (the new list)
-- then per added device: id, identity key, name, spk id, spk, spk signature, link signature,
--      k, and k pairs: prekey id, prekey member
local version = redis.call('HGET', KEYS[1], 'version')
if not version or tonumber(version) >= tonumber(ARGV[1]) then
  return {'stale'}
end
local listed = {}
local i = 15
for _ = 1, tonumber(ARGV[14]) do
  listed[ARGV[i]] = ARGV[i + 1]
  i = i + 2
end
local current = redis.call('HGETALL', KEYS[1])
local removed = {}
for j = 1, #current, 2 do
  if string.sub(current[j], 1, 1) == 'd' then
    local id = string.sub(current[j], 2)
    if listed[id] ~= current[j + 1] then
      removed[#removed + 1] = id
    end
  end
end
for _, id in ipairs(removed) do
  local mailbox = ARGV[8] .. id
  local stored = redis.call('ZRANGE', mailbox, 0, -1, 'WITHSCORES')
  for j = 2, #stored, 2 do
    redis.call('ZREM', KEYS[2], ARGV[9] .. id .. ':' .. string.format('%d', tonumber(stored[j])))
  end
  redis.call('DEL', mailbox, ARGV[6] .. id, ARGV[7] .. id, ARGV[10] .. id, ARGV[11] .. id)
  redis.call('HDEL', KEYS[1], 'd' .. id)
end
local highest = math.max(tonumber(redis.call('HGET', KEYS[1], 'max')), tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'body', ARGV[2], 'signature', ARGV[3],
           'max', string.format('%d', highest))
while i <= #ARGV do
  local id = ARGV[i]
  redis.call('HSET', KEYS[1], 'd' .. id, ARGV[i + 1])
  redis.call('HSET', ARGV[6] .. id, 'identity', ARGV[i + 1], 'name', ARGV[i + 2],
             'spk_id', ARGV[i + 3], 'spk', ARGV[i + 4], 'spk_signature', ARGV[i + 5],
             'link_signature', ARGV[i + 6], 'linked', ARGV[5], 'seq', 0, 'bytes', 0)
  local count = tonumber(ARGV[i + 7])
  i = i + 8
  for _ = 1, count do
    redis.call('ZREMRANGEBYSCORE', ARGV[7] .. id, ARGV[i], ARGV[i])
    redis.call('ZADD', ARGV[7] .. id, ARGV[i], ARGV[i + 1])
    i = i + 2
  end
end
redis.call('PUBLISH', ARGV[12], ARGV[13])
table.insert(removed, 1, 'ok')
return removed
"""

DEVICE_INFO = """
-- KEYS[1] account hash; ARGV[1] device hash prefix (e2e:dev:A:)
-- returns id, name, linked, seen (false: never) per device, by id
local fields = redis.call('HKEYS', KEYS[1])
local ids = {}
for _, field in ipairs(fields) do
  if string.sub(field, 1, 1) == 'd' then
    ids[#ids + 1] = tonumber(string.sub(field, 2))
  end
end
table.sort(ids)
local out = {}
for _, id in ipairs(ids) do
  local device = redis.call('HMGET', ARGV[1] .. string.format('%d', id), 'name', 'linked', 'seen')
  out[#out + 1] = {id, device[1], device[2], device[3]}
end
return out
"""

SET_DEVICE_FIELD = """
-- KEYS[1] device hash; ARGV[1] field, ARGV[2] value: set it if the device is listed
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
"""

LINK_SIGNATURES = """
-- KEYS[1] account hash; ARGV[1] device hash prefix (e2e:dev:A:)
-- returns device id, link signature pairs of the linked devices (not 0) that have one
local out = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 1) == 'd' and field ~= 'd0' then
    local id = string.sub(field, 2)
    local signature = redis.call('HGET', ARGV[1] .. id, 'link_signature')
    if signature then
      out[#out + 1] = tonumber(id)
      out[#out + 1] = signature
    end
  end
end
return out
"""

STORE_PREKEYS = """
-- KEYS[1] device hash, KEYS[2] prekeys
-- ARGV[1] '1' with a signed prekey (ARGV[2..4]: id, key, signature), else '0'; ARGV[5] the
-- most one-time prekeys a device may hold; then pairs: prekey id, prekey member.
-- Returns {'ok', how many one-time prekeys the device holds} ({'ok', 0}: no such device), or
-- {'limit', how many it holds} (nothing stored) when those given would take it past the most.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'ok', 0}
end
local held = redis.call('ZCARD', KEYS[2])
if held + (#ARGV - 5) / 2 > tonumber(ARGV[5]) then
  return {'limit', held}
end
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'spk_id', ARGV[2], 'spk', ARGV[3], 'spk_signature', ARGV[4])
end
for i = 6, #ARGV, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[2], ARGV[i], ARGV[i])
  redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1])
end
return {'ok', redis.call('ZCARD', KEYS[2])}
"""

TAKE_BUNDLE = """
-- KEYS[1] device hash, KEYS[2] prekeys; ARGV[1] '1': hand out a one-time prekey, '0': none
-- returns identity, spk id, spk, spk signature, the lowest-id prekey member (false: none),
-- and how many prekeys are left; false without a signed prekey
local device = redis.call('HMGET', KEYS[1], 'identity', 'spk_id', 'spk', 'spk_signature')
if not device[1] or not device[2] then
  return false
end
local taken = {}
if ARGV[1] == '1' then
  taken = redis.call('ZPOPMIN', KEYS[2])
end
return {device[1], device[2], device[3], device[4], taken[1] or false,
        redis.call('ZCARD', KEYS[2])}
"""

_GRANT = """
local function grant(grants, device)
  -- let device (A:N) download the blob of the hash grants (field A:N: '0' granted, '1'
  -- fetched; field '#': how many granted devices have not fetched it); granted once
  if redis.call('HSETNX', grants, device, '0') == 1 then
    redis.call('HINCRBY', grants, '#', 1)
  end
end
"""

ENQUEUE = """
-- (run inside MAILBOX_ROUND, beside grant)
-- KEYS[1] expiry index, then per message: device hash, mailbox, presence; then the grant hash
-- of each blob the message announces (ARGV[7] of them), then the hash of each of those blobs
-- ARGV[1] quota (messages), ARGV[2] quota (bytes), ARGV[3] now, ARGV[4] the "mail" event
-- payload, ARGV[5] the calling node, ARGV[6] '1': leave out full mailboxes and removed devices
-- (a group message), '0': refuse the whole send; ARGV[7] how many grant hashes; then per
-- message: envelope, expiry entry prefix (A:N:), event channel. An envelope already in its
-- mailbox is not stored again (and not refused: a retried send). "New mail" is published
-- unless the device's newest connection is on the calling node, which wakes it itself. Every
-- device whose message is stored (or was already) is granted every blob, once each blob is
-- found still recorded (a blob deleted after the relay checked it refuses the whole send).
-- Returns {'ok', {j...}, {j, seq...}}: the j of each message left out (ascending), and the j
-- and new seq of each message stored anew (ascending; none for one already stored), or
-- {'gone', j} / {'count', j} / {'bytes', j} for the j-th message, {'blob', b} for the b-th
-- blob, when the whole send is refused (nothing stored or granted).
local quota, quota_bytes, skip = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[6] == '1'
local blobs = tonumber(ARGV[7])
local messages = (#KEYS - 1 - 2 * blobs) / 3
for b = 1, blobs do
  if redis.call('EXISTS', KEYS[3 * messages + 1 + blobs + b]) == 0 then
    return {'blob', b}
  end
end
local kept, skipped, stored = {}, {}, {}
for j = 1, messages do
  local device, mailbox, envelope = KEYS[3 * j - 1], KEYS[3 * j], ARGV[3 * j + 5]
  local refusal = false
  if redis.call('EXISTS', device) == 0 then
    refusal = 'gone'
  elseif not redis.call('ZSCORE', mailbox, envelope) then
    if redis.call('ZCARD', mailbox) >= quota then
      refusal = 'count'
    elseif tonumber(redis.call('HGET', device, 'bytes')) + #envelope > quota_bytes then
      refusal = 'bytes'
    end
  end
  if not refusal then
    kept[#kept + 1] = j
  elseif skip then
    skipped[#skipped + 1] = j
  else
    return {refusal, j}
  end
end
for _, j in ipairs(kept) do
  local device, mailbox, envelope = KEYS[3 * j - 1], KEYS[3 * j], ARGV[3 * j + 5]
  if not redis.call('ZSCORE', mailbox, envelope) then  -- new (not a retry, nor a repeat)
    local seq = redis.call('HINCRBY', device, 'seq', 1)
    redis.call('ZADD', mailbox, seq, envelope)
    stored[#stored + 1] = j
    stored[#stored + 1] = seq
    redis.call('HINCRBY', device, 'bytes', #envelope)
    redis.call('ZADD', KEYS[1], ARGV[3], ARGV[3 * j + 6] .. string.format('%d', seq))
    if redis.call('GET', KEYS[3 * j + 1]) ~= ARGV[5] then
      redis.call('PUBLISH', ARGV[3 * j + 7], ARGV[4])
    end
  end
  for b = 1, blobs do
    grant(KEYS[3 * messages + 1 + b], string.sub(ARGV[3 * j + 6], 1, -2))
  end
end
return {'ok', skipped, stored}
"""

CLAIM = """
-- KEYS[1] presence of a device, KEYS[2] its claim; ARGV[1] the node that now serves its newest
-- connection, ARGV[2] the device's event channel, ARGV[3] the "displaced" event's msgpack up to
-- its last item, the claim. Returns the claim: one more than the device's last one.
local claim = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3] .. cmsgpack.pack(claim))
return claim
"""

ACKNOWLEDGE = """
-- (run inside MAILBOX_ROUND)
-- KEYS[1] device hash, KEYS[2] mailbox, KEYS[3] expiry index
-- ARGV[1] expiry entry prefix (A:N:), then the seqs to delete. Returns how many were deleted.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local deleted = 0
for i = 2, #ARGV do
  local found = redis.call('ZRANGE', KEYS[2], ARGV[i], ARGV[i], 'BYSCORE')
  if found[1] then
    redis.call('ZREM', KEYS[2], found[1])
    redis.call('HINCRBY', KEYS[1], 'bytes', -#found[1])
    redis.call('ZREM', KEYS[3], ARGV[1] .. string.format('%d', tonumber(ARGV[i])))
    deleted = deleted + 1
  end
end
return deleted
"""


def _function(name: str, script: str) -> str:
    """``script`` as a Lua function ``name`` of its own KEYS and ARGV."""
    return f"local function {name}(KEYS, ARGV)\n{script}\nend\n"


MAILBOX_ROUND = _GRANT + _function("enqueue", ENQUEUE) + _function("acknowledge", ACKNOWLEDGE) + """
-- One group-commit round of mailbox calls (a node's sends, acknowledgements and reads that
-- arrived together), run in order, each on its own slice of KEYS and its own arguments: one
-- command for the round, however many calls it holds, with its arguments in one MessagePack
-- document (one argument to encode, not hundreds).
-- KEYS: every call's keys in order. ARGV[1]: MessagePack (strings and bytes as raw), an array
-- with per call: its kind ('e' ENQUEUE, 'a' ACKNOWLEDGE, 'r' read), how many keys it has, then
-- its arguments. A read has KEYS mailbox, arguments lowest score ('(' seq: after seq), at
-- most this many. Returns, in MessagePack, per call in order {1, its result} (a read: envelope,
-- seq, envelope, seq...), or {0, the error} when a Redis error stopped that call (the others
-- still run: one call's failure is its own).
local function run_call(kind, call_keys, call_args)
  if kind == 'e' then
    return enqueue(call_keys, call_args)
  elseif kind == 'a' then
    return acknowledge(call_keys, call_args)
  end
  return redis.call('ZRANGE', call_keys[1], call_args[1], '+inf', 'BYSCORE', 'LIMIT', 0,
                    call_args[2], 'WITHSCORES')
end
local results = {}
local k = 0
for c, call in ipairs(cmsgpack.unpack(ARGV[1])) do
  local call_keys, call_args = {}, {}
  for i = 1, call[2] do
    call_keys[i] = KEYS[k + i]
  end
  k = k + call[2]
  for i = 3, #call do
    call_args[i - 2] = call[i]
  end
  local ok, result = pcall(run_call, call[1], call_keys, call_args)
  if ok then
    results[c] = {1, result}
  else  -- this call only (what it wrote before the error stays: each call is idempotent)
    results[c] = {0, type(result) == 'table' and result.err or tostring(result)}
  end
end
return cmsgpack.pack(results)
"""

EXPIRE = """
-- KEYS[1] expiry index; ARGV[1] delete what was stored before this time, ARGV[2] at most
-- this many, ARGV[3] device hash prefix (e2e:dev:), ARGV[4] mailbox prefix (e2e:mbox:).
-- Returns how many messages were deleted.
local due = redis.call('ZRANGE', KEYS[1], '-inf', '(' .. ARGV[1], 'BYSCORE',
                       'LIMIT', 0, ARGV[2])
for _, entry in ipairs(due) do
  local device, seq = string.match(entry, '^(.*):(%d+)$')
  local mailbox = ARGV[4] .. device
  local found = redis.call('ZRANGE', mailbox, seq, seq, 'BYSCORE')
  if found[1] then
    redis.call('ZREM', mailbox, found[1])
    redis.call('HINCRBY', ARGV[3] .. device, 'bytes', -#found[1])
  end
  redis.call('ZREM', KEYS[1], entry)
end
return #due
"""

OFFER_LINK = """
-- KEYS[1] the offer (hash), KEYS[2] the account's offers (sorted set: lookup by expiry, ms)
-- ARGV[1] waiter, ARGV[2] account, ARGV[3] offer, ARGV[4] ttl (ms), ARGV[5] offers per account
-- at most, ARGV[6] the lookup (hex). Returns 'ok', or what refused it: 'lookup' (in use),
-- 'account' (it has its most offers waiting). Offers count until they expire.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 'lookup'
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  return 'account'
end
redis.call('HSET', KEYS[1], 'waiter', ARGV[1], 'account', ARGV[2], 'offer', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[6])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[4]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return 'ok'
"""

TAKE_LINK = """
-- KEYS[1] the offer; ARGV[1] prefix of the account's offers (e2e:links:), ARGV[2] the lookup
-- (hex). Deletes the offer; returns waiter, account, offer (false: no offer).
local link = redis.call('HMGET', KEYS[1], 'waiter', 'account', 'offer')
if not link[1] then
  return false
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', ARGV[1] .. link[2], ARGV[2])
return link
"""

WITHDRAW_LINK = """
-- KEYS[1] the offer; ARGV[1] the waiter's nonce, ARGV[2] prefix of the account's offers,
-- ARGV[3] the lookup (hex): delete the offer if that waiter made it
local link = redis.call('HMGET', KEYS[1], 'waiter', 'account')
if link[1] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', ARGV[2] .. link[2], ARGV[3])
end
"""

PUT_GROUP = """
-- KEYS[1] the group's routing copy, KEYS[2] the groups the putting account created (set of hex
-- ids); ARGV version, members, admins, body, signature, member count, the putting account, the
-- most groups an account may have created, the group id (hex), prefix of creators' sets.
-- Returns 1 when stored (or, with no members, deleted), 0 when its version is not newer than
-- the stored one, -1 when the group is new and the account created that many (0 and -1 change
-- nothing). A new group's creator is the account that puts it; a copy with no members is
-- deleted and leaves its creator's set.
local stored = redis.call('HMGET', KEYS[1], 'version', 'creator')
if stored[1] and tonumber(stored[1]) >= tonumber(ARGV[1]) then
  return 0
end
if ARGV[6] == '0' then
  if stored[1] then
    redis.call('DEL', KEYS[1])
    if stored[2] then
      redis.call('SREM', ARGV[10] .. stored[2], ARGV[9])
    end
  end
  return 1
end
if not stored[1] then
  if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[8]) then
    return -1
  end
  redis.call('SADD', KEYS[2], ARGV[9])
  redis.call('HSET', KEYS[1], 'creator', ARGV[7])
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'members', ARGV[2], 'admins', ARGV[3],
           'body', ARGV[4], 'signature', ARGV[5])
return 1
"""

BEGIN_BLOB = """
-- KEYS[1] the blob's hash, KEYS[2] its owner's usage (hash: bytes, pending), KEYS[3] unfinished
-- uploads (sorted set: blob id by begin time); ARGV owner, size, now, quota (bytes), unfinished
-- uploads at most, the blob id (hex).
-- Returns {'new'}; {'found', owner's record: size, created, complete}; {'taken'} (another
-- owner); {'pending', used} / {'quota', used} when the owner may not begin another.
local found = redis.call('HMGET', KEYS[1], 'owner', 'size', 'created', 'complete')
if found[1] then
  if found[1] ~= ARGV[1] then
    return {'taken'}
  end
  return {'found', found[2], found[3], found[4]}
end
local usage = redis.call('HMGET', KEYS[2], 'bytes', 'pending')
local used, pending = tonumber(usage[1] or '0'), tonumber(usage[2] or '0')
if pending >= tonumber(ARGV[5]) then
  return {'pending', used}
end
if used + tonumber(ARGV[2]) > tonumber(ARGV[4]) then
  return {'quota', used}
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'size', ARGV[2], 'created', ARGV[3],
           'complete', '0')
redis.call('HINCRBY', KEYS[2], 'bytes', ARGV[2])
redis.call('HINCRBY', KEYS[2], 'pending', 1)
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[6])
return {'new'}
"""

COMPLETE_BLOB = """
-- KEYS[1] the blob's hash, KEYS[2] unfinished uploads, KEYS[3] complete blobs (sorted sets by
-- begin time); ARGV[1] usage prefix (e2e:blobuse:), ARGV[2] the blob id (hex)
local blob = redis.call('HMGET', KEYS[1], 'owner', 'created', 'complete')
if not blob[1] or blob[3] == '1' then
  return 0
end
redis.call('HSET', KEYS[1], 'complete', '1')
redis.call('HINCRBY', ARGV[1] .. blob[1], 'pending', -1)
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], blob[2], ARGV[2])
return 1
"""

_FORGET_BLOB = """
local function forget(id)
  local blob = redis.call('HMGET', ARGV[1] .. id, 'owner', 'size', 'complete')
  if blob[1] then
    redis.call('HINCRBY', ARGV[2] .. blob[1], 'bytes', -tonumber(blob[2]))
    if blob[3] == '0' then
      redis.call('HINCRBY', ARGV[2] .. blob[1], 'pending', -1)
    end
  end
  redis.call('DEL', ARGV[1] .. id, ARGV[3] .. id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
"""

DELETE_BLOB = _FORGET_BLOB + """
-- KEYS[1] unfinished uploads, KEYS[2] complete blobs; ARGV[1..3] prefixes of blob hashes,
-- usage hashes and grant hashes, ARGV[4] the blob id (hex): forget the blob and its grants
forget(ARGV[4])
"""

EXPIRE_BLOBS = _FORGET_BLOB + """
-- KEYS[1] unfinished uploads, KEYS[2] complete blobs; ARGV[1..3] prefixes of blob hashes,
-- usage hashes and grant hashes; ARGV[4] forget unfinished uploads begun before this time,
-- ARGV[5] complete blobs begun before this time, ARGV[6] at most this many of each.
-- Returns the ids (hex) it forgot.
local due = redis.call('ZRANGE', KEYS[1], '-inf', '(' .. ARGV[4], 'BYSCORE', 'LIMIT', 0, ARGV[6])
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], '-inf', '(' .. ARGV[5], 'BYSCORE',
                               'LIMIT', 0, ARGV[6])) do
  due[#due + 1] = id
end
for _, id in ipairs(due) do
  forget(id)
end
return due
"""

MARK_FETCHED = """
-- KEYS[1] a blob's grants; ARGV[1] the device (A:N). Returns -1 (not granted to it), else 1
-- when every granted device has fetched the blob now, 0 when not.
local state = redis.call('HGET', KEYS[1], ARGV[1])
if not state then
  return -1
end
if state == '0' then
  redis.call('HSET', KEYS[1], ARGV[1], '1')
  redis.call('HINCRBY', KEYS[1], '#', -1)
end
if tonumber(redis.call('HGET', KEYS[1], '#')) == 0 then
  return 1
end
return 0
"""

_FEDERATION = """
local function log(seq_key, list, records, hex_link, entry, record)
  -- append a sharing log entry for the link hex_link to list, with its record ('' none)
  local seq = string.format('%d', redis.call('INCR', seq_key))
  redis.call('RPUSH', list, seq .. ':' .. hex_link .. ':' .. entry)
  if record ~= '' then
    redis.call('HSET', records, seq, record)
  end
end
local function drop_share(shares, outbox, item_prefix, link)
  -- forget the queued share of link, if any
  local queued = redis.call('HGET', shares, link)
  if queued then
    redis.call('ZREM', outbox, queued)
    redis.call('DEL', item_prefix .. queued)
    redis.call('HDEL', shares, link)
  end
end
local function queue(seq_key, outbox, item_prefix, account, kind, link, body)
  -- queue an item for the social server; its seq
  local seq = string.format('%d', redis.call('INCR', seq_key))
  redis.call('HSET', item_prefix .. seq, 'account', account, 'kind', kind, 'link', link,
             'body', body)
  redis.call('ZADD', outbox, seq, seq)
  return seq
end
"""

ADD_FEDERATION_LINK = _FEDERATION + """
-- KEYS[1] the link, KEYS[2] the account's live link id, KEYS[3] seq counter, KEYS[4] the
-- account's sharing log, KEYS[5] the link's records
-- ARGV[1..6] account, statement body, private signature, social signature, linked at, link id;
-- ARGV[7] link id (hex), ARGV[8] log entry, ARGV[9] its record ('' none)
-- Returns 1, or 0 (nothing changed) when the account has a live link or the id was used.
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'account', ARGV[1], 'body', ARGV[2], 'private_signature', ARGV[3],
           'social_signature', ARGV[4], 'linked', ARGV[5])
redis.call('SET', KEYS[2], ARGV[6])
log(KEYS[3], KEYS[4], KEYS[5], ARGV[7], ARGV[8], ARGV[9])
return 1
"""

REVOKE_FEDERATION_LINK = _FEDERATION + """
-- KEYS[1] the account's live link id, KEYS[2] the link, KEYS[3] its records, KEYS[4] queued
-- shares, KEYS[5] the outbox, KEYS[6] seq counter, KEYS[7] the account's sharing log
-- ARGV[1] link id, ARGV[2] now, ARGV[3] link id (hex), ARGV[4] item prefix, ARGV[5] account,
-- ARGV[6] kind and ARGV[7] body of the item to queue, ARGV[8] log entry.
-- Returns 1, or 0 (nothing changed) when ARGV[1] is not the account's live link.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], 'revoked', ARGV[2])
drop_share(KEYS[4], KEYS[5], ARGV[4], ARGV[1])
queue(KEYS[6], KEYS[5], ARGV[4], ARGV[5], ARGV[6], ARGV[1], ARGV[7])
redis.call('DEL', KEYS[3])
log(KEYS[6], KEYS[7], KEYS[3], ARGV[3], ARGV[8], '')
return 1
"""

QUEUE_FEDERATION_ITEM = _FEDERATION + """
-- KEYS[1] queued shares, KEYS[2] the outbox, KEYS[3] seq counter
-- ARGV[1] item prefix, ARGV[2] account, ARGV[3] kind, ARGV[4] link id, ARGV[5] body,
-- ARGV[6] '1': a share (it replaces the link's queued share)
if ARGV[6] == '1' then
  drop_share(KEYS[1], KEYS[2], ARGV[1], ARGV[4])
end
local seq = queue(KEYS[3], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[1], ARGV[4], seq)
end
"""

FEDERATION_ITEMS = """
-- KEYS[1] the outbox; ARGV[1] at most this many, ARGV[2] item prefix
-- returns seq, account, kind, link id, body per item, oldest first
local out = {}
for _, seq in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)) do
  local item = redis.call('HMGET', ARGV[2] .. seq, 'account', 'kind', 'link', 'body')
  out[#out + 1] = {seq, item[1], item[2], item[3], item[4]}
end
return out
"""

FEDERATION_ITEM_DONE = _FEDERATION + """
-- KEYS[1] the outbox, KEYS[2] queued shares, KEYS[3] seq counter, KEYS[4] the records of the
-- entry's link; ARGV[1] the item's seq, ARGV[2] item prefix, ARGV[3] sharing log prefix,
-- ARGV[4] '1' with a log entry: ARGV[5] its link id (hex), ARGV[6] the entry, ARGV[7] its
-- record ('' none). Removes the item and logs the entry in its account's log; an item that
-- is gone already (dropped by an unlink) logs nothing.
local key = ARGV[2] .. ARGV[1]
local item = redis.call('HMGET', key, 'account', 'link')
if not item[1] then
  return 0
end
redis.call('DEL', key)
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[2], item[2]) == ARGV[1] then
  redis.call('HDEL', KEYS[2], item[2])
end
if ARGV[4] == '1' then
  log(KEYS[3], ARGV[3] .. item[1], KEYS[4], ARGV[5], ARGV[6], ARGV[7])
end
return 1
"""

SHARING_LOG = """
-- KEYS[1] an account's sharing log; ARGV[1] its newest this many, ARGV[2] records prefix
-- returns entry, record (false: none) pairs, oldest first
local out = {}
for _, entry in ipairs(redis.call('LRANGE', KEYS[1], -tonumber(ARGV[1]), -1)) do
  local seq, link = string.match(entry, '^(%d+):(%x+):')
  out[#out + 1] = entry
  out[#out + 1] = redis.call('HGET', ARGV[2] .. link, seq)
end
return out
"""

CLAIM_HAND_OVER = """
-- KEYS[1] the hand-over claim; ARGV[1] the holder, ARGV[2] for this many ms.
-- Returns 1 (claimed or renewed), or 0 while another holder's claim lives.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

RELEASE_HAND_OVER = """
-- KEYS[1] the hand-over claim; ARGV[1] the holder: end its claim (not another's)
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
"""

_BUCKETS = """
-- Token buckets as shared/rate_limits.py keeps them, at Redis's clock (the same for every
-- node): a hash of 't' (tokens) and 's' (when they were counted), ARGV-given rate (tokens a
-- second) and burst. A missing bucket is full; a bucket is deleted once full again (its TTL is
-- the time until then), so idle buckets vanish and a forgotten bucket is a new one.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

local function level(key, rate, burst)
  local held = redis.call('HMGET', key, 't', 's')
  if not held[1] then
    return burst
  end
  return math.min(burst, tonumber(held[1]) + math.max(0, now - tonumber(held[2])) * rate)
end

-- seconds until a bucket that holds ``tokens`` holds ``count``, as a string (Redis would
-- truncate a number): '0' now, 'inf' never
local function wait(tokens, count, rate, burst)
  local missing = count - tokens
  if missing <= 0 then
    return '0'
  end
  if count > burst or rate <= 0 then
    return 'inf'
  end
  return string.format('%.17g', missing / rate)
end

local function keep(key, tokens, rate, burst)
  if tokens >= burst then
    redis.call('DEL', key)
    return
  end
  redis.call('HSET', key, 't', string.format('%.17g', tokens), 's', string.format('%.17g', now))
  local full_in = (burst - tokens) / rate * 1000
  if rate > 0 and full_in < 1e15 then
    redis.call('PEXPIRE', key, string.format('%d', math.ceil(full_in)))
  else
    redis.call('PERSIST', key)  -- it never fills up again
  end
end

local function take(key, count, rate, burst)
  local tokens = level(key, rate, burst)
  if tokens < count then
    return false
  end
  keep(key, tokens - count, rate, burst)
  return true
end
"""

TAKE_TOKENS = _BUCKETS + """
-- KEYS[1] a bucket; ARGV rate, burst, count. Returns '0' (taken), or how many seconds until
-- the bucket holds count (nothing taken).
local rate, burst, count = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if take(KEYS[1], count, rate, burst) then
  return '0'
end
return wait(level(KEYS[1], rate, burst), count, rate, burst)
"""

GIVE_BACK_TOKENS = _BUCKETS + """
-- KEYS[1] a bucket; ARGV rate, burst, count: return count tokens (never past the burst)
local rate, burst, count = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
keep(KEYS[1], math.min(burst, level(KEYS[1], rate, burst) + count), rate, burst)
"""

ADMIT_BUNDLES = _BUCKETS + """
-- A requester's bundles of n target devices (server/common/bundle_limits.py), counted whole or
-- refused whole. KEYS[1] the requester's bucket, KEYS[2..n+1] the requester's bucket of each
-- target, KEYS[n+2..2n+1] each target's one-time prekey bucket. ARGV[1] n, then rate and
-- burst of the requester's, the per-target and the one-time prekey buckets.
-- Returns {'target', i, seconds} (the i-th target's bucket is empty), {'requester', seconds}
-- (nothing counted either way), or {'ok', n flags}: '1' where the i-th target's bundle may
-- carry a one-time prekey (the budget never refuses).
local n = tonumber(ARGV[1])
local rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
local target_rate, target_burst = tonumber(ARGV[4]), tonumber(ARGV[5])
local opk_rate, opk_burst = tonumber(ARGV[6]), tonumber(ARGV[7])
for i = 1, n do
  local seconds = wait(level(KEYS[1 + i], target_rate, target_burst), 1, target_rate,
                       target_burst)
  if seconds ~= '0' then
    return {'target', i, seconds}
  end
end
if not take(KEYS[1], n, rate, burst) then
  return {'requester', wait(level(KEYS[1], rate, burst), n, rate, burst)}
end
local admitted = {'ok'}
for i = 1, n do
  take(KEYS[1 + i], 1, target_rate, target_burst)
  admitted[1 + i] = take(KEYS[1 + n + i], 1, opk_rate, opk_burst) and '1' or '0'
end
return admitted
"""

ALL = (CREATE_ACCOUNT, REPLACE_DEVICE_LIST, DEVICE_INFO, SET_DEVICE_FIELD, LINK_SIGNATURES,
       STORE_PREKEYS, TAKE_BUNDLE, MAILBOX_ROUND, CLAIM, EXPIRE, OFFER_LINK, TAKE_LINK,
       WITHDRAW_LINK, PUT_GROUP, BEGIN_BLOB, COMPLETE_BLOB, DELETE_BLOB, EXPIRE_BLOBS,
       MARK_FETCHED, ADD_FEDERATION_LINK, REVOKE_FEDERATION_LINK,
       QUEUE_FEDERATION_ITEM, FEDERATION_ITEMS, FEDERATION_ITEM_DONE, SHARING_LOG,
       CLAIM_HAND_OVER, RELEASE_HAND_OVER, TAKE_TOKENS, GIVE_BACK_TOKENS, ADMIT_BUNDLES)
"""Every script, as a node loads them when it starts."""
