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
//	KEYS[2]       the message's report; KEYS[3] its copies (unused, and
//	              any key, when ARGV[9] is "")
//	KEYS[3i+1]    device i's seq counter; KEYS[3i+2] its mailbox;
//	KEYS[3i+3]    its collapse keys (hash: key -> seq); unused, and any
//	              key, when ARGV[8] is ""
//	ARGV[1]       now (unix ms, the store's clock)
//	ARGV[2]       the key's expiry (unix ms), or "" for no key
//	ARGV[3]       the key's TTL in ms
//	ARGV[4]       the message id
//	ARGV[5]       rest (see above)
//	ARGV[6]       the mailbox limit
//	ARGV[7]       the mailbox TTL in ms (until the message expires)
//	ARGV[8]       the collapse key, or "" for none
//	ARGV[9..11]   the report's target ("" for no report), its TTL in ms, and
//	              the message's expiry (unix ms)
//	ARGV[12]      the prefix of the app's mailbox keys
//
// It returns {1, first id} for a repeated key, else {0, dropped, seq...}.
var appendScript = rueidis.NewLuaScript(idempotencyLua + collapseLua + reportLua + `
local limit, ttl = tonumber(ARGV[6]), tonumber(ARGV[7])
local out, dropped, copies = {0, 0}, 0, {}
for i = 4, #KEYS, 3 do
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
  if ARGV[9] ~= "" then
    copies[#copies + 1] = seq .. ' ' .. string.sub(KEYS[i + 1], #ARGV[12] + 1)
  end
end
out[2] = dropped
if ARGV[9] ~= "" then
  local inline = ''
  if #copies <= 8 then
    inline = table.concat(copies, '\n')
  else
    redis.call('SET', KEYS[3], table.concat(copies, '\n'), 'PX', ARGV[10])
  end
  newReport(KEYS[2], ARGV[9], #copies, now, ARGV[11], ARGV[10], inline)
end
return out
`)

// reportLua defines newReport(key, target, n, created, expires, ttl,
// copies): the report of a stored message, written with it, kept ttl ms
// (fields left out are 0, state "sent"). n is the count of its mailbox
// copies; a few are kept in the report (copies, else ""), more in a key of
// their own.
const reportLua = `
local function newReport(key, target, n, created, expires, ttl, copies)
  redis.call('HSET', key, 'target', target, 'targeted', n, 'stored', n, 'created', created, 'expires', expires, 'copies', copies)
  redis.call('PEXPIRE', key, ttl)
end
`

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
//	KEYS[4] the log's collapse keys (hash: key -> bseq); KEYS[5] the
//	message's report
//	ARGV[1..5] as appendScript; ARGV[6] the log's TTL in ms;
//	ARGV[7] the collapse key, or "" for none; ARGV[8..10] as appendScript's
//	ARGV[9..11]
//
// It returns {1, first id} for a repeated key, else {0, bseq}.
var broadcastScript = rueidis.NewLuaScript(idempotencyLua + collapseLua + reportLua + `
local bseq = redis.call('INCR', KEYS[2])
collapse(KEYS[4], KEYS[3], ARGV[7], bseq, tonumber(ARGV[6]))
redis.call('ZADD', KEYS[3], bseq, bseq .. ':' .. ARGV[5])
local ttl = tonumber(ARGV[6])
if redis.call('PTTL', KEYS[3]) < ttl then
  redis.call('PEXPIRE', KEYS[3], ttl)
end
if ARGV[8] ~= "" then
  newReport(KEYS[5], ARGV[8], 0, now, ARGV[10], ARGV[9], '')
  redis.call('HSET', KEYS[5], 'bseq', bseq)
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

// The writer's scripts (writer.go) each run once for a batch of writes of
// one kind: items of a fixed number of keys and arguments, one after the
// other in KEYS and ARGV. Each returns one integer per item (1: its seq was
// clamped).

// ackLua defines countAcks(acked, prefix, entries), which counts in acked
// an ack in the report (the key prefix then the id) of each of the mailbox
// or log entries, and addAcks(acked), which adds them to the reports that
// exist: once per report for the whole batch.
const ackLua = `
local function countAcks(acked, prefix, entries)
  for _, e in ipairs(entries) do
    local a = string.find(e, ':', 1, true)
    local b = string.find(e, ':', a + 1, true)
    local c = string.find(e, ':', b + 1, true)
    local rk = prefix .. string.sub(e, c + 1, c + tonumber(string.sub(e, b + 1, c - 1)))
    acked[rk] = (acked[rk] or 0) + 1
  end
end
local function addAcks(acked)
  for rk, n in pairs(acked) do
    if redis.call('EXISTS', rk) == 1 then
      redis.call('HINCRBY', rk, 'acked', n)
    end
  end
end
`

// ackScript deletes mailboxes' messages up to a seq each, clamped to the
// last seq given, counting each in its report.
//
//	item keys: the device's seq counter, its mailbox
//	item args: the seq, the prefix of the app's reports
var ackScript = newBatchScript(2, 2, ackLua+`
local out, acked = {}, {}
for i = 0, #KEYS / 2 - 1 do
  local counter, mailbox = KEYS[2 * i + 1], KEYS[2 * i + 2]
  local seq, clamped = tonumber(ARGV[2 * i + 1]), 0
  local last = tonumber(redis.call('GET', counter) or '0')
  if seq == nil or seq > last then
    seq, clamped = last, 1
  end
  countAcks(acked, ARGV[2 * i + 2], redis.call('ZRANGEBYSCORE', mailbox, '-inf', seq))
  redis.call('ZREMRANGEBYSCORE', mailbox, '-inf', seq)
  out[#out + 1] = clamped
end
addAcks(acked)
return out
`)

// ackBroadcastScript moves devices' cursors in their app's broadcast log
// to a bseq each, clamped to the log's last, never back, counting each
// entry a cursor passes in its report.
//
//	item keys: the device's cursor, the log's head, the log
//	item args: the bseq, the prefix of the app's reports
var ackBroadcastScript = newBatchScript(3, 2, ackLua+`
local out, acked = {}, {}
for i = 0, #KEYS / 3 - 1 do
  local cursorKey, head, log = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local bseq, clamped = tonumber(ARGV[2 * i + 1]), 0
  local last = tonumber(redis.call('GET', head) or '0')
  if bseq == nil or bseq > last then
    bseq, clamped = last, 1
  end
  local cursor = tonumber(redis.call('GET', cursorKey) or '0')
  if bseq > cursor then
    countAcks(acked, ARGV[2 * i + 2], redis.call('ZRANGEBYSCORE', log, '(' .. cursor, bseq))
    redis.call('SET', cursorKey, bseq)
  end
  out[#out + 1] = clamped
end
addAcks(acked)
return out
`)

// bindScript moves devices to a user's set (or out of every set).
//
//	item keys: the device's user
//	item args: the prefix of user sets, the device, the user ("" unbinds)
var bindScript = newBatchScript(1, 3, `
local out = {}
for i = 0, #KEYS - 1 do
  local who, prefix, device, user = KEYS[i + 1], ARGV[3 * i + 1], ARGV[3 * i + 2], ARGV[3 * i + 3]
  local old = redis.call('GET', who)
  if old ~= user then
    if old then
      redis.call('SREM', prefix .. old, device)
    end
    if user == "" then
      redis.call('DEL', who)
    else
      redis.call('SADD', prefix .. user, device)
      redis.call('SET', who, user)
    end
  end
  out[#out + 1] = 0
end
return out
`)
