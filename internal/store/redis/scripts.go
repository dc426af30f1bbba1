package redis

import "github.com/longlink/longlink/internal/redisclient"

// The Lua scripts that make each write one atomic round trip per
// partition. Mailbox and broadcast log members are "<seq>:<rest>", rest =
// "<expires ms>:<id length>:<id><data>" (see member.go), so that a script
// can check an entry's expiry, or find a message by its id, and give it a
// new seq without knowing the rest.
//
// Every script begins with "#!lua" and declares every key it touches: on a
// Redis Cluster, Redis refuses a key of another slot than the first's.

// shebang begins every script: Redis then checks its keys (above).
const shebang = "#!lua\n"

// idempotencyLua begins the scripts that store a message: it defines now
// (ARGV[1]) and usedBy(key), which, with a key (ARGV[2] its expiry, not
// ""), returns the id of the message that used the key first if it is in
// use, else records it at key for the message ARGV[4], for ARGV[3] ms, and
// returns nil.
const idempotencyLua = `
local now = tonumber(ARGV[1])
local function usedBy(key)
  if ARGV[2] == "" then
    return nil
  end
  local v = redis.call('GET', key)
  if v then
    local sep = string.find(v, ':', 1, true)
    if tonumber(string.sub(v, 1, sep - 1)) > now then
      return string.sub(v, sep + 1)
    end
  end
  redis.call('SET', key, ARGV[2] .. ':' .. ARGV[4], 'PX', ARGV[3])
  return nil
end
`

// appendScript stores one message for the devices of one partition (of
// every partition, on one Redis server), after its idempotency key, and
// makes its report if asked.
//
//	KEYS[1]       the idempotency key (any key, and unused, when ARGV[2] is "")
//	KEYS[2]       the message's report; KEYS[3] where its copies are, when
//	              they are too many for the report (both any key, and
//	              unused, when ARGV[9] is "")
//	KEYS[4i]      device i's seq counter; KEYS[4i+1] its mailbox;
//	KEYS[4i+2]    its collapse keys (hash: key -> seq); any key, and
//	              unused, when ARGV[8] is ""; KEYS[4i+3] its route (the
//	              cluster's: read, to be returned)
//	ARGV[1]       now (unix ms, the store's clock)
//	ARGV[2]       the key's expiry (unix ms), or "" for no key
//	ARGV[3]       the key's TTL in ms
//	ARGV[4]       the message id
//	ARGV[5]       rest (see above)
//	ARGV[6]       the mailbox limit
//	ARGV[7]       the mailbox TTL in ms (until the message expires)
//	ARGV[8]       the collapse key, or "" for none
//	ARGV[9..14]   the report (see reportLua): its target ("" for none
//	              made here), its TTL in ms, the message's expiry (unix
//	              ms), how many devices it is for, the devices (one per
//	              line), its bseq ("" for none)
//	ARGV[15]      how long a device's seq counter lives unused, in ms (0:
//	              for ever; see keepLua)
//
// It returns {1, first id} for a repeated key, else {0, dropped, seq,
// route, seq, route...} (a route is "" for none).
var appendScript = redisclient.NewScript(shebang + idempotencyLua + KeepLua + collapseLua + reportLua + `
local first = usedBy(KEYS[1])
if first then
  return {1, first}
end
local limit, ttl = tonumber(ARGV[6]), tonumber(ARGV[7])
local out, dropped = {0, 0}, 0
for i = 4, #KEYS, 4 do
  local seq = redis.call('INCR', KEYS[i])
  keep(KEYS[i], tonumber(ARGV[15]), ttl, seq == 1)
  collapse(KEYS[i + 2], KEYS[i + 1], ARGV[8], seq, ttl)
  redis.call('ZADD', KEYS[i + 1], seq, seq .. ':' .. ARGV[5])
  local waiting = redis.call('ZCARD', KEYS[i + 1])
  if waiting > limit then
    redis.call('ZPOPMIN', KEYS[i + 1])
    dropped = dropped + 1
  end
  if waiting == 1 then -- made by this ZADD (the acks emptied it): no expiry to read
    lengthen(KEYS[i + 1], ttl)
  else
    longer(KEYS[i + 1], ttl, true)
  end
  out[#out + 1] = seq
  out[#out + 1] = redis.call('GET', KEYS[i + 3]) or ''
end
out[2] = dropped
newReport(KEYS[2], KEYS[3], 9, now, ARGV[14])
return out
`)

// reportLua defines newReport(key, copiesKey, at, created, bseq): the
// report of a stored message, made with it (unless one was made already,
// by a first try of its push), kept ARGV[at+1] ms (fields left out are 0,
// state "sent"). ARGV[at..at+4] are as appendScript's ARGV[9..13]; bseq is
// a broadcast's, or "". A few devices are kept in the report's field
// copies, more in copiesKey.
const reportLua = `
local function newReport(key, copiesKey, at, created, bseq)
  local target, ttl, n = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 3])
  if target == "" or redis.call('EXISTS', key) == 1 then
    return
  end
  local copies = ARGV[at + 4]
  if n > 8 then
    redis.call('SET', copiesKey, copies, 'PX', ttl)
    copies = ''
  end
  redis.call('HSET', key, 'target', target, 'targeted', n, 'stored', n, 'created', created, 'expires', ARGV[at + 2], 'copies', copies)
  if bseq ~= "" then
    redis.call('HSET', key, 'bseq', bseq)
  end
  redis.call('PEXPIRE', key, ttl)
end
`

// longerLua defines longer(key, ms, always): key lives at least ms more.
// When it has less left, it is given 9/8 of ms (lengthen), so that a key
// written often (a mailbox, a seq counter) has its expiry written about
// once per ms/8, not at every write: PTTL is a read, where PEXPIRE is a
// write that goes to the AOF and to every replica. A key with no expiry is
// given one only if always (else it lives for ever, as it was written); a
// key that does not exist is left alone.
const longerLua = `
local function lengthen(key, ms)
  redis.call('PEXPIRE', key, ms + math.floor(ms / 8))
end
local function longer(key, ms, always)
  local left = redis.call('PTTL', key)
  if left < ms and left ~= -2 and (left ~= -1 or always) then
    lengthen(key, ms)
  end
end
`

// keepLua defines keep(key, unused, least, new) (after longerLua): with
// unused > 0 (a device's keys expire), key (a seq counter or a cursor)
// lives at least unused ms more, from now, and at least least ms; new says
// it was just made, so has no expiry yet: one is then set. (A key that has
// none otherwise was written while devices' keys did not expire, and keeps
// none; a cursor moved keeps its expiry: SET … KEEPTTL.)
const keepLua = `
local function keep(key, unused, least, new)
  if unused > 0 then
    longer(key, math.max(unused, least), new)
  end
end
`

// KeepLua defines longer and keep, for the cluster's login script, which
// keeps a device's keys too.
const KeepLua = longerLua + keepLua

// collapseLua defines collapse(keys, zset, key, seq, ttl) (after
// longerLua): with a collapse key (not ""), it removes from zset (a
// mailbox or a log) the entry the key points at in the hash keys, if it is
// still there, and points the key at seq; the hash lives at least ttl ms
// more.
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
  longer(keys, ttl, true)
end
`

// entryLua defines entryID(e): the message id of a mailbox or log entry.
const entryLua = `
local function entryID(e)
  local a = string.find(e, ':', 1, true)
  local b = string.find(e, ':', a + 1, true)
  local c = string.find(e, ':', b + 1, true)
  return string.sub(e, c + 1, c + tonumber(string.sub(e, b + 1, c - 1)))
end
`

// broadcastScript appends a message to an app's broadcast log, after its
// idempotency key, and makes its report if asked.
//
//	KEYS[1] the idempotency key; KEYS[2] the log's head; KEYS[3] the log;
//	KEYS[4] the log's collapse keys (hash: key -> bseq); KEYS[5] the
//	message's report and KEYS[6] its copies (any key, and unused, when
//	ARGV[9] is "")
//	ARGV[1..5] as appendScript's; ARGV[6] the log's TTL in ms;
//	ARGV[7] the collapse key, or "" for none; ARGV[8] unused;
//	ARGV[9..13] as appendScript's
//
// It returns {1, first id, its bseq (0 if gone)} for a repeated key, else
// {0, bseq}.
var broadcastScript = redisclient.NewScript(shebang + entryLua + idempotencyLua + longerLua + collapseLua + reportLua + `
local first = usedBy(KEYS[1])
if first then
  for _, e in ipairs(redis.call('ZREVRANGE', KEYS[3], 0, 999)) do
    if entryID(e) == first then
      return {1, first, tonumber(string.sub(e, 1, string.find(e, ':', 1, true) - 1))}
    end
  end
  return {1, first, 0}
end
local bseq = redis.call('INCR', KEYS[2])
collapse(KEYS[4], KEYS[3], ARGV[7], bseq, tonumber(ARGV[6]))
redis.call('ZADD', KEYS[3], bseq, bseq .. ':' .. ARGV[5])
longer(KEYS[3], tonumber(ARGV[6]), true)
newReport(KEYS[5], KEYS[6], 9, now, tostring(bseq))
return {0, bseq}
`)

// catchUpScript copies the given entries of an app's broadcast log that a
// device has not had (beyond its cursor) and that have not expired into
// its mailbox, and moves its cursor to the log's head (never back).
//
//	KEYS[1] the device's cursor; KEYS[2] its seq counter; KEYS[3] its mailbox
//	ARGV[1] now (unix ms); ARGV[2] the mailbox limit; ARGV[3] the log's
//	head; ARGV[4] how long a cursor or seq counter lives unused, in ms (0:
//	for ever); ARGV[5...] the entries ("<bseq>:<rest>", in order)
//
// It returns {copied, dropped}.
var catchUpScript = redisclient.NewScript(shebang + KeepLua + `
local was = redis.call('GET', KEYS[1])
local cursor = tonumber(was or '0')
local now, limit, head, unused = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if cursor >= head then
  return {0, 0}
end
local copied, dropped, ttl = 0, 0, 0
for i = 5, #ARGV do
  local e = ARGV[i]
  local sep = string.find(e, ':', 1, true)
  local rest = string.sub(e, sep + 1)
  local expires = tonumber(string.sub(rest, 1, string.find(rest, ':', 1, true) - 1))
  if tonumber(string.sub(e, 1, sep - 1)) > cursor and expires > now then
    local seq = redis.call('INCR', KEYS[2])
    keep(KEYS[2], unused, expires - now, seq == 1)
    redis.call('ZADD', KEYS[3], seq, seq .. ':' .. rest)
    if redis.call('ZCARD', KEYS[3]) > limit then
      redis.call('ZPOPMIN', KEYS[3])
      dropped = dropped + 1
    end
    copied = copied + 1
    ttl = math.max(ttl, expires - now)
  end
end
if ttl > 0 then
  longer(KEYS[3], ttl, true)
end
redis.call('SET', KEYS[1], head, 'KEEPTTL')
keep(KEYS[1], unused, 0, not was)
return {copied, dropped}
`)

// The writer's scripts (writer.go) each run once for a batch of writes of
// one kind in one partition (every partition, on one Redis server): items
// of a fixed number of keys and arguments, one after the other in KEYS and
// ARGV.

// ackScript deletes mailboxes' messages up to a seq each, clamped to the
// last seq given. It returns, per item, {clamped (1 or 0), the id of each
// message deleted...}. It leaves the seq counter's expiry alone: the push
// of what is acked kept it.
//
//	item keys: the device's seq counter, its mailbox
//	item args: the seq
var ackScript = newBatchScript(2, 1, entryLua+`
local out = {}
for i = 0, #KEYS / 2 - 1 do
  local counter, mailbox = KEYS[2 * i + 1], KEYS[2 * i + 2]
  local seq, item = tonumber(ARGV[i + 1]), {0}
  local last = tonumber(redis.call('GET', counter) or '0')
  if seq == nil or seq > last then
    seq, item[1] = last, 1
  end
  for _, e in ipairs(redis.call('ZRANGEBYSCORE', mailbox, '-inf', seq)) do
    item[#item + 1] = entryID(e)
  end
  redis.call('ZREMRANGEBYSCORE', mailbox, '-inf', seq)
  out[#out + 1] = item
end
return out
`)

// sentAckScript deletes mailbox messages a session acked, each by its seq,
// and, for the last of an ack across a gap of seqs, every other message up
// to the ack's seq (one that expired unsent). It returns, per item, how
// many messages of that seq it deleted (0 or 1).
//
//	item keys: the device's mailbox
//	item args: the message's seq, and the ack's seq to sweep up to (or "")
var sentAckScript = newBatchScript(1, 2, `
local out = {}
for i = 1, #KEYS do
  local seq, upTo = ARGV[2 * i - 1], ARGV[2 * i]
  out[i] = redis.call('ZREMRANGEBYSCORE', KEYS[i], seq, seq)
  if upTo ~= '' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', upTo)
  end
end
return out
`)

// cursorScript moves devices' cursors in their app's broadcast log to a
// bseq each, clamped to the log's head, never back. It returns, per item,
// {clamped (1 or 0), the cursor before, the cursor after}.
//
//	item keys: the device's cursor
//	item args: the bseq, the log's head, how long the cursor lives unused in
//	ms (0: for ever)
var cursorScript = newBatchScript(1, 3, KeepLua+`
local out = {}
for i = 1, #KEYS do
  local bseq, head, clamped = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1]), 0
  if bseq == nil or bseq > head then
    bseq, clamped = head, 1
  end
  local was = redis.call('GET', KEYS[i])
  local cursor = tonumber(was or '0')
  if bseq > cursor then
    redis.call('SET', KEYS[i], bseq, 'KEEPTTL')
  end
  keep(KEYS[i], tonumber(ARGV[3 * i]), 0, not was)
  out[#out + 1] = {clamped, cursor, math.max(bseq, cursor)}
end
return out
`)

// addAcksScript counts acks in the reports that exist.
//
//	item keys: the report
//	item args: how many acks
var addAcksScript = newBatchScript(1, 1, `
local out = {}
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HINCRBY', KEYS[i], 'acked', ARGV[i])
  end
  out[#out + 1] = 0
end
return out
`)
