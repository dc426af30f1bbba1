package redis

import "github.com/redis/rueidis"

// The Lua scripts that make each write one atomic round trip. Mailbox and
// broadcast log members are "<seq>:<rest>", rest = "<expires ms>:<id
// length>:<id><data>" (see member.go), so that a script can check an
// entry's expiry and give it a new seq without knowing the rest.

// idempotencyLua begins the scripts that store a message: with a key
// (ARGV[2] its expiry, not "") it answers {1, first id} for a key in use,
// else records the key (KEYS[1]) for the message ARGV[4], for ARGV[3] ms.
const idempotencyLua = `
local now = tonumber(ARGV[1])
if ARGV[2] ~= "" then
  local v = redis.call('GET', KEYS[1])
  if v then
    local sep = string.find(v, ':', 1, true)
    if tonumber(string.sub(v, 1, sep - 1)) > now then
      return {1, string.sub(v, sep + 1)}
    end
  end
  redis.call('SET', KEYS[1], ARGV[2] .. ':' .. ARGV[4], 'PX', ARGV[3])
end
`

// appendScript stores one message for every device of one push, after its
// idempotency key.
//
//	KEYS[1]       the idempotency key (unused when ARGV[2] is "")
//	KEYS[3i-1]    device i's seq counter; KEYS[3i] its mailbox;
//	KEYS[3i+1]    its collapse keys (hash: key -> seq); unused, and any
//	              key, when ARGV[8] is ""
//	ARGV[1]       now (unix ms, the store's clock)
//	ARGV[2]       the key's expiry (unix ms), or "" for no key
//	ARGV[3]       the key's TTL in ms
//	ARGV[4]       the message id
//	ARGV[5]       rest (see above)
//	ARGV[6]       the mailbox limit
//	ARGV[7]       the mailbox TTL in ms (until the message expires)
//	ARGV[8]       the collapse key, or "" for none
//
// It returns {1, first id} for a repeated key, else {0, dropped, seq...}.
var appendScript = rueidis.NewLuaScript(idempotencyLua + collapseLua + `
local limit, ttl = tonumber(ARGV[6]), tonumber(ARGV[7])
local out, dropped = {0, 0}, 0
for i = 2, #KEYS, 3 do
  local seq = redis.call('INCR', KEYS[i])
  collapse(KEYS[i + 2], KEYS[i + 1], ARGV[8], seq, ttl)
  redis.call('ZADD', KEYS[i + 1], seq, seq .. ':' .. ARGV[5])
  if redis.call('ZCARD', KEYS[i + 1]) > limit then
    redis.call('ZPOPMIN', KEYS[i + 1])
    dropped = dropped + 1
  end
  if redis.call('PTTL', KEYS[i + 1]) < ttl then
    redis.call('PEXPIRE', KEYS[i + 1], ttl)
  end
  out[#out + 1] = seq
end
out[2] = dropped
return out
`)

// collapseLua defines collapse(keys, zset, key, seq, ttl): with a collapse
// key (not ""), it removes from zset (a mailbox or a log) the entry the
// key points at in the hash keys, if it is still there, and points the
// key at seq; the hash lives at least ttl ms more.
const collapseLua = `
local function collapse(keys, zset, key, seq, ttl)
  if key == "" then
    return
  end
  local old = redis.call('HGET', keys, key)
  if old then
    redis.call('ZREMRANGEBYSCORE', zset, old, old)
  end
  redis.call('HSET', keys, key, seq)
  if redis.call('PTTL', keys) < ttl then
    redis.call('PEXPIRE', keys, ttl)
  end
end
`

// broadcastScript appends a message to an app's broadcast log, after its
// idempotency key.
//
//	KEYS[1] the idempotency key; KEYS[2] the log's head; KEYS[3] the log;
//	KEYS[4] the log's collapse keys (hash: key -> bseq)
//	ARGV[1..5] as appendScript; ARGV[6] the log's TTL in ms;
//	ARGV[7] the collapse key, or "" for none
//
// It returns {1, first id} for a repeated key, else {0, bseq}.
var broadcastScript = rueidis.NewLuaScript(idempotencyLua + collapseLua + `
local bseq = redis.call('INCR', KEYS[2])
collapse(KEYS[4], KEYS[3], ARGV[7], bseq, tonumber(ARGV[6]))
redis.call('ZADD', KEYS[3], bseq, bseq .. ':' .. ARGV[5])
local ttl = tonumber(ARGV[6])
if redis.call('PTTL', KEYS[3]) < ttl then
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return {0, bseq}
`)

// catchUpScript copies the entries of an app's broadcast log that a device
// has not had, and that have not expired, into its mailbox.
//
//	KEYS[1] the device's cursor; KEYS[2] the log's head; KEYS[3] the log
//	KEYS[4] the device's seq counter; KEYS[5] its mailbox
//	ARGV[1] now (unix ms); ARGV[2] the mailbox limit
//
// It returns {copied, dropped}.
var catchUpScript = rueidis.NewLuaScript(`
local cursor = tonumber(redis.call('GET', KEYS[1]) or '0')
local head = tonumber(redis.call('GET', KEYS[2]) or '0')
if cursor >= head then
  return {0, 0}
end
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local copied, dropped, ttl = 0, 0, 0
for _, e in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. cursor, head)) do
  local rest = string.sub(e, string.find(e, ':', 1, true) + 1)
  local expires = tonumber(string.sub(rest, 1, string.find(rest, ':', 1, true) - 1))
  if expires > now then
    local seq = redis.call('INCR', KEYS[4])
    redis.call('ZADD', KEYS[5], seq, seq .. ':' .. rest)
    if redis.call('ZCARD', KEYS[5]) > limit then
      redis.call('ZPOPMIN', KEYS[5])
      dropped = dropped + 1
    end
    copied = copied + 1
    ttl = math.max(ttl, expires - now)
  end
end
if ttl > 0 and redis.call('PTTL', KEYS[5]) < ttl then
  redis.call('PEXPIRE', KEYS[5], ttl)
end
redis.call('SET', KEYS[1], head)
return {copied, dropped}
`)

// ackScript deletes a mailbox's messages up to a seq, clamped to the last
// seq given.
//
//	KEYS[1] the device's seq counter; KEYS[2] its mailbox; ARGV[1] the seq
//
// It returns 1 when the seq was clamped, else 0.
var ackScript = rueidis.NewLuaScript(`
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local seq, clamped = tonumber(ARGV[1]), 0
if seq == nil or seq > last then
  seq, clamped = last, 1
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', seq)
return clamped
`)

// ackBroadcastScript moves a device's cursor in its app's broadcast log to
// a bseq, clamped to the log's last, never back.
//
//	KEYS[1] the device's cursor; KEYS[2] the log's head; ARGV[1] the bseq
//
// It returns 1 when the bseq was clamped, else 0.
var ackBroadcastScript = rueidis.NewLuaScript(`
local head = tonumber(redis.call('GET', KEYS[2]) or '0')
local bseq, clamped = tonumber(ARGV[1]), 0
if bseq == nil or bseq > head then
  bseq, clamped = head, 1
end
if bseq > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], bseq)
end
return clamped
`)

// bindScript moves a device to a user's set (or out of every set).
//
//	KEYS[1] the device's user; ARGV[1] the prefix of user sets;
//	ARGV[2] the device; ARGV[3] the user ("" unbinds)
var bindScript = rueidis.NewLuaScript(`
local old = redis.call('GET', KEYS[1])
if old == ARGV[3] then
  return 0
end
if old then
  redis.call('SREM', ARGV[1] .. old, ARGV[2])
end
if ARGV[3] == "" then
  redis.call('DEL', KEYS[1])
else
  redis.call('SADD', ARGV[1] .. ARGV[3], ARGV[2])
  redis.call('SET', KEYS[1], ARGV[3])
end
return 1
`)
