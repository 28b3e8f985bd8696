"""The Lua scripts of the Redis store: every change that touches more than one key is one script.

Redis runs a script atomically, and with ``appendfsync always`` writes its effects to the AOF
(as one MULTI/EXEC) and fsyncs before it answers. Each script checks everything first and only
then writes, so a refusal changes nothing. Keys are laid out as :mod:`server.relay.redis_keys`
says; a script that must find keys from the data (the devices a new device list removes, the
mailboxes of expired messages) builds their names from prefixes it is given, so the layout
needs one Redis primary (not Redis Cluster).

Numbers pass as decimal strings; seqs are formatted with ``%d``, so the expiry entry written
with a message is the one deleted with it.
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
-- ARGV[6..9] prefixes: device hash, prekeys, mailbox (each e2e:...:A:), expiry entry (A:)
-- ARGV[10] channel of device-list changes, ARGV[11] account name
-- ARGV[12] n, then n pairs: device id, identity key (the new list)
-- then per added device: id, identity key, name, spk id, spk, spk signature,
--      k, and k pairs: prekey id, prekey member
local version = redis.call('HGET', KEYS[1], 'version')
if not version or tonumber(version) >= tonumber(ARGV[1]) then
  return {'stale'}
end
local listed = {}
local i = 13
for _ = 1, tonumber(ARGV[12]) do
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
  redis.call('DEL', mailbox, ARGV[6] .. id, ARGV[7] .. id)
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
             'linked', ARGV[5], 'seq', 0, 'bytes', 0)
  local count = tonumber(ARGV[i + 6])
  i = i + 7
  for _ = 1, count do
    redis.call('ZREMRANGEBYSCORE', ARGV[7] .. id, ARGV[i], ARGV[i])
    redis.call('ZADD', ARGV[7] .. id, ARGV[i], ARGV[i + 1])
    i = i + 2
  end
end
redis.call('PUBLISH', ARGV[10], ARGV[11])
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

TOUCH = """
-- KEYS[1] device hash; ARGV[1] now
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'seen', ARGV[1])
end
"""

STORE_PREKEYS = """
-- KEYS[1] device hash, KEYS[2] prekeys
-- ARGV[1] '1' with a signed prekey (ARGV[2..4]: id, key, signature), else '0';
-- then pairs: prekey id, prekey member. Returns how many one-time prekeys the device holds.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'spk_id', ARGV[2], 'spk', ARGV[3], 'spk_signature', ARGV[4])
end
for i = 5, #ARGV, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[2], ARGV[i], ARGV[i])
  redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1])
end
return redis.call('ZCARD', KEYS[2])
"""

TAKE_BUNDLE = """
-- KEYS[1] device hash, KEYS[2] prekeys
-- returns identity, spk id, spk, spk signature, the lowest-id prekey member (false: none),
-- and how many prekeys are left; false without a signed prekey
local device = redis.call('HMGET', KEYS[1], 'identity', 'spk_id', 'spk', 'spk_signature')
if not device[1] or not device[2] then
  return false
end
local taken = redis.call('ZPOPMIN', KEYS[2])
return {device[1], device[2], device[3], device[4], taken[1] or false,
        redis.call('ZCARD', KEYS[2])}
"""

ENQUEUE = """
-- KEYS[1] expiry index, then per message: device hash, mailbox, presence
-- ARGV[1] quota (messages), ARGV[2] byte quota (0: none), ARGV[3] now,
-- ARGV[4] the "mail" event payload, ARGV[5] the calling node; then per message: envelope,
-- expiry entry prefix (A:N:), event channel. "New mail" is published unless the device's
-- newest connection is on the calling node, which wakes it itself.
-- Returns {'ok'}, or {'gone', j} / {'full', j} for the j-th message (nothing stored).
local quota, byte_quota = tonumber(ARGV[1]), tonumber(ARGV[2])
local fresh = {}
for j = 1, (#KEYS - 1) / 3 do
  local device, mailbox, envelope = KEYS[3 * j - 1], KEYS[3 * j], ARGV[3 * j + 3]
  if redis.call('EXISTS', device) == 0 then
    return {'gone', j}
  end
  if not redis.call('ZSCORE', mailbox, envelope) then
    if redis.call('ZCARD', mailbox) >= quota then
      return {'full', j}
    end
    if byte_quota > 0 and
        tonumber(redis.call('HGET', device, 'bytes')) + #envelope > byte_quota then
      return {'full', j}
    end
    fresh[#fresh + 1] = j
  end
end
for _, j in ipairs(fresh) do
  local device, mailbox, envelope = KEYS[3 * j - 1], KEYS[3 * j], ARGV[3 * j + 3]
  if not redis.call('ZSCORE', mailbox, envelope) then  -- not an earlier message of this send
    local seq = redis.call('HINCRBY', device, 'seq', 1)
    redis.call('ZADD', mailbox, seq, envelope)
    redis.call('HINCRBY', device, 'bytes', #envelope)
    redis.call('ZADD', KEYS[1], ARGV[3], ARGV[3 * j + 4] .. string.format('%d', seq))
    if redis.call('GET', KEYS[3 * j + 1]) ~= ARGV[5] then
      redis.call('PUBLISH', ARGV[3 * j + 5], ARGV[4])
    end
  end
end
return {'ok'}
"""

CLAIM = """
-- KEYS[1] presence of a device; ARGV[1] the node that now serves its newest connection,
-- ARGV[2] the device's event channel, ARGV[3] the "displaced" event payload
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
"""

ACKNOWLEDGE = """
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
    redis.call('ZREM', KEYS[3], ARGV[1] .. ARGV[i])
    deleted = deleted + 1
  end
end
return deleted
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

WITHDRAW_LINK = """
-- KEYS[1] pending link; ARGV[1] the waiter's nonce: delete the offer if that waiter made it
local offer = redis.call('GET', KEYS[1])
if offer and string.sub(offer, 1, #ARGV[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
"""
