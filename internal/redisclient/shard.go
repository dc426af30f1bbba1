package redisclient

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// The cluster's data is sharded by partition: a key's partition follows
// from its app and the id it is named after (a device, a user, a tag, a
// message), and the key carries the partition's hash tag, so that the keys
// of one device (its seq, mailbox, cursor, route, tags, user) share one
// slot of a Redis Cluster, and a script that touches them runs on one
// primary. The partitions map evenly onto the slots: partition p's tag
// hashes to slot p*(slots/Partitions).
//
//	<prefix>{<tag>}<app>:<kind>:<id>

// The kinds of key that both the store and the router name: a login reads
// the device's keys with its route (and keeps them from expiring), and a
// node keeps each app's broadcast head in memory.
const (
	KindSeq     = "s"  // the last seq given to the device
	KindCursor  = "c"  // its cursor in the app's broadcast log
	KindMailbox = "m"  // its mailbox
	KindUser    = "w"  // the user it is bound to
	KindRoute   = "at" // the node that holds its session (the router's)
	KindHead    = "h"  // the app's broadcast log's last bseq (id "")
)

// Partitions is how many partitions the data is sharded into.
const Partitions = 4096

// slots is how many hash slots a Redis Cluster has.
const slots = 16384

// Partition is the partition of the keys of app named after id.
func Partition(app, id string) int {
	h := fnv.New32a()
	h.Write([]byte(app))
	h.Write([]byte{0})
	h.Write([]byte(id))
	return int(h.Sum32() % Partitions)
}

// PartitionsOf is how many partitions the keys of app named after ids
// fall in.
func PartitionsOf(app string, ids []string) int {
	var seen [Partitions / 64]uint64
	n := 0
	for _, id := range ids {
		p := Partition(app, id)
		if bit := uint64(1) << (p % 64); seen[p/64]&bit == 0 {
			seen[p/64] |= bit
			n++
		}
	}
	return n
}

// Key is the key of kind named after id in app: in id's partition.
func Key(prefix, app, kind, id string) string {
	return KeyIn(Partition(app, id), prefix, app, kind, id)
}

// KeyIn is the key of kind named after id in app, in partition p.
func KeyIn(p int, prefix, app, kind, id string) string {
	tag := Tag(p)
	var b strings.Builder
	b.Grow(keyLen(prefix, tag, app, kind, id))
	writeKey(&b, prefix, tag, app, kind, id)
	return b.String()
}

// AppendKeys appends to keys the key of each of kinds named after id in
// app (Key), hashing id once and making one string for them all, of which
// each key is a part: a stored delivery names three keys of its device.
func AppendKeys(keys []string, prefix, app, id string, kinds ...string) []string {
	tag := Tag(Partition(app, id))
	n := 0
	for _, kind := range kinds {
		n += keyLen(prefix, tag, app, kind, id)
	}
	var b strings.Builder
	b.Grow(n)
	for _, kind := range kinds {
		writeKey(&b, prefix, tag, app, kind, id)
	}
	all := b.String()
	for _, kind := range kinds {
		k := keyLen(prefix, tag, app, kind, id)
		keys, all = append(keys, all[:k]), all[k:]
	}
	return keys
}

// writeKey writes the key of kind named after id in app, in the partition
// of tag: <prefix>{<tag>}<app>:<kind>:<id>.
func writeKey(b *strings.Builder, prefix, tag, app, kind, id string) {
	b.WriteString(prefix)
	b.WriteByte('{')
	b.WriteString(tag)
	b.WriteByte('}')
	b.WriteString(app)
	b.WriteByte(':')
	b.WriteString(kind)
	b.WriteByte(':')
	b.WriteString(id)
}

// keyLen is the length of the key writeKey writes.
func keyLen(prefix, tag, app, kind, id string) int {
	return len(prefix) + len(tag) + len(app) + len(kind) + len(id) + len("{}::")
}

// Tag is partition p's hash tag: the shortest string (digits and letters)
// that hashes to slot p*(slots/Partitions).
func Tag(p int) string {
	tagsOnce.Do(findTags)
	return tags[p]
}

var (
	tagsOnce sync.Once
	tags     []string
)

// findTags finds each partition's tag, trying strings in order of length
// (base 36 numbers); it takes a few milliseconds, once.
func findTags() {
	tags = make([]string, Partitions)
	left := Partitions
	for n := 0; left > 0; n++ {
		s := strconv.FormatInt(int64(n), 36)
		slot := Slot(s)
		if slot%(slots/Partitions) != 0 || tags[slot/(slots/Partitions)] != "" {
			continue
		}
		tags[slot/(slots/Partitions)] = s
		left--
	}
}

// Slot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of its hash
// tag (what is between its first '{' and the next '}', if not empty), or of
// the whole key, modulo 16384.
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % slots
}

// Sharded reports whether c is a Redis Cluster's client: its keys live on
// several primaries, and one command or script may touch one slot only.
func Sharded(c rueidis.Client) bool { return c.Mode() == rueidis.ClientModeCluster }

// Group splits the indexes of keys into the groups one command or script
// may touch together: by slot on a Redis Cluster, all in one otherwise.
// Groups keep the keys' order, and come in the order of their first key.
func Group(c rueidis.Client, n int, key func(i int) string) [][]int {
	if !Sharded(c) {
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		return [][]int{all}
	}
	var groups [][]int
	at := make(map[int]int) // slot -> index in groups
	for i := range n {
		slot := Slot(key(i))
		g, ok := at[slot]
		if !ok {
			g = len(groups)
			at[slot] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

// MGet reads the string keys, one MGET per group (Group), pipelined, and
// returns their values in the keys' order.
func MGet(ctx context.Context, c rueidis.Client, keys []string) ([]rueidis.RedisMessage, error) {
	groups := Group(c, len(keys), func(i int) string { return keys[i] })
	cmds := make(rueidis.Commands, len(groups))
	for g, idx := range groups {
		ks := make([]string, len(idx))
		for j, i := range idx {
			ks[j] = keys[i]
		}
		cmds[g] = c.B().Mget().Key(ks...).Build()
	}
	out := make([]rueidis.RedisMessage, len(keys))
	for g, res := range c.DoMulti(ctx, cmds...) {
		vals, err := res.ToArray()
		if err == nil && len(vals) != len(groups[g]) {
			err = errAnswer
		}
		if err != nil {
			return nil, err
		}
		for j, i := range groups[g] {
			out[i] = vals[j]
		}
	}
	return out, nil
}

var (
	errAnswer = errors.New("redis: an answer of the wrong length")
	errNotRun = errors.New("redis: the script was not run")
)

// Script is a Lua script, run by its SHA-1 (loaded on every primary when
// one says it does not have it): one call (Exec), or several pipelined,
// each on the primary of its keys' slot (ExecMulti). A call that a Redis
// Cluster answers TRYAGAIN (its slot is migrating, and its keys are split
// between the two primaries for now) did not run, and is sent again after
// a pause, until the context ends.
type Script struct {
	src, sha string
}

// NewScript makes a Script of src. src should begin with a "#!lua" line,
// so that a Redis Cluster refuses a key of another slot than the first
// key's.
func NewScript(src string) *Script {
	sum := sha1.Sum([]byte(src))
	return &Script{src: src, sha: hex.EncodeToString(sum[:])}
}

// Exec runs the script once.
func (s *Script) Exec(ctx context.Context, c rueidis.Client, keys, args []string) rueidis.RedisResult {
	out, _ := s.run(ctx, c, []rueidis.LuaExec{{Keys: keys, Args: args}}, 0, 0)
	return out[0]
}

// ExecMulti runs the script once per call, pipelined, and returns each
// call's result in order. (rueidis's own ExecMulti loads the script on
// every node at every use.)
func (s *Script) ExecMulti(ctx context.Context, c rueidis.Client, calls []rueidis.LuaExec) []rueidis.RedisResult {
	out, _ := s.run(ctx, c, calls, 0, 0)
	return out
}

// ErrNotReplicated fails writes that fewer replicas than asked for
// confirmed in time.
var ErrNotReplicated = errors.New("redis: fewer replicas than asked for have the writes")

// ExecMultiReplicated is ExecMulti, then WAIT for replicas replicas (at
// most timeout) on each slot written to, in the same pipeline on one
// connection per primary (rueidis sends a pipeline with a blocking command
// on a connection of its own): an error wrapping ErrNotReplicated when
// fewer confirm. (On a Redis Cluster, a call moved to another primary
// while its slot migrates is not waited for there.)
func (s *Script) ExecMultiReplicated(ctx context.Context, c rueidis.Client, calls []rueidis.LuaExec, replicas int,
	timeout time.Duration) ([]rueidis.RedisResult, error) {
	return s.run(ctx, c, calls, replicas, timeout)
}

// run runs the calls, pipelined, each followed by a WAIT for its slot when
// replicas is not 0, and returns each call's result (an error for one that
// could not be run), and an error when the calls could not all be run or
// waited for. A call that did not run (the script not loaded yet, or
// TRYAGAIN) is run again.
func (s *Script) run(ctx context.Context, c rueidis.Client, calls []rueidis.LuaExec, replicas int,
	timeout time.Duration) ([]rueidis.RedisResult, error) {
	results := make([]rueidis.RedisResult, len(calls)) // an error until run
	pending := make([]int, len(calls))                 // the calls to run
	for i := range pending {
		pending[i], results[i] = i, rueidis.NewErrorResult(errNotRun)
	}
	pause, loaded := 10*time.Millisecond, false
	for len(pending) > 0 {
		var cmds rueidis.Commands
		var of []int // the call of each command; -1 for a WAIT
		waited := make(map[int]bool)
		for _, i := range pending {
			call := calls[i]
			cmds = append(cmds, c.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(call.Keys))).Key(call.Keys...).Arg(call.Args...).Build())
			of = append(of, i)
			if slot := Slot(call.Keys[0]); replicas > 0 && !waited[slot] {
				waited[slot] = true
				cmds = append(cmds, c.B().Wait().Numreplicas(int64(replicas)).Timeout(timeout.Milliseconds()).Build().SetSlot(call.Keys[0]))
				of = append(of, -1)
			}
		}
		var again []int
		unknown := false // the script
		for j, r := range c.DoMulti(ctx, cmds...) {
			i := of[j]
			if i < 0 {
				n, err := r.AsInt64()
				if err != nil {
					return results, err
				}
				if n < int64(replicas) {
					return results, fmt.Errorf("%w: %d of %d within %v", ErrNotReplicated, n, replicas, timeout)
				}
				continue
			}
			results[i] = r
			err, ok := rueidis.IsRedisErr(r.Error())
			switch {
			case ok && err.IsNoScript() && !loaded:
				again, unknown = append(again, i), true
			case ok && err.IsTryAgain():
				again = append(again, i)
			}
		}
		pending = again
		switch {
		case len(pending) == 0:
		case unknown:
			for _, node := range c.Nodes() {
				if res := node.Do(ctx, node.B().ScriptLoad().Script(s.src).Build().ToRetryable()); res.Error() != nil {
					for _, i := range pending {
						results[i] = res
					}
					return results, res.Error()
				}
			}
			loaded = true
		default:
			select {
			case <-ctx.Done():
				return results, nil
			case <-time.After(pause):
				pause = min(2*pause, 100*time.Millisecond)
			}
		}
	}
	return results, nil
}

// PartitionOfKey is the partition of a key named by Key or KeyIn.
func PartitionOfKey(key string) int { return Slot(key) / (slots / Partitions) }
