package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/longlink/longlink/internal/gateway"
	"github.com/longlink/longlink/internal/redisclient"
	"github.com/longlink/longlink/internal/store"
	redisstore "github.com/longlink/longlink/internal/store/redis"
)

// A route (<p>{t}<app>:at:<device>, in the device's partition: see
// redisclient.Key) is "<node> <incarnation> <session>": the
// node holding the device's session in the app, that node's incarnation
// (one run of its process) and the session's number. The number is
// Redis's clock in µs, or one more than the route's before if that is not
// greater: it grows with each login of the (app, device) in the cluster
// (and stays below 2^53).

// route is a route as read; an empty node means none.
type route struct {
	node, incarnation string
	session           uint64
}

// parseRoute reads a route; a bare node name is one of a node of an older
// version.
func parseRoute(v string) route {
	node, rest, _ := strings.Cut(v, " ")
	inc, num, _ := strings.Cut(rest, " ")
	session, _ := strconv.ParseUint(num, 10, 64)
	return route{node: node, incarnation: inc, session: session}
}

// claimScript makes this node (ARGV[1]: "<node> <incarnation>") the holder
// of a device's session (KEYS[1] its route), and returns the route before
// ("" if none), the new session's number, and the device's place in the
// store: the last seq given to it (KEYS[2], "0" if none), its cursor in
// the app's broadcast log (KEYS[3]), the user it is bound to (KEYS[5], ""
// if none) and up to ARGV[4] members of its mailbox (KEYS[4]) after
// ARGV[3] (or after its last seq, if lower). With ARGV[2] > 0, the
// device's seq counter and cursor, if they have an expiry, live at least
// ARGV[2] ms more: a device seen keeps its seqs.
var claimScript = redisclient.NewScript("#!lua\n" + redisstore.KeepLua + `
local prev = redis.call('GET', KEYS[1]) or ''
local t = redis.call('TIME')
local session = math.max(tonumber(t[1]) * 1000000 + tonumber(t[2]), tonumber(string.match(prev, ' (%d+)$') or '0') + 1)
session = string.format('%.0f', session)
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. session)
keep(KEYS[2], tonumber(ARGV[2]), 0, false)
keep(KEYS[3], tonumber(ARGV[2]), 0, false)
local seq = redis.call('GET', KEYS[2]) or '0'
local after = ARGV[3]
if tonumber(after) > tonumber(seq) then
  after = seq
end
return {prev, session, seq, redis.call('GET', KEYS[3]) or '0', redis.call('GET', KEYS[5]) or '',
  redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. after, '+inf', 'LIMIT', 0, ARGV[4])}
`)

// releaseScript forgets a device's route (KEYS[1]) if it is still
// ARGV[1], and moves its cursor in the app's broadcast log (KEYS[2]) to
// ARGV[2] if that is further (0: the session did not move it): a claim
// that finds no route reads the cursor its session saved. A cursor made
// here lives ARGV[3] ms unused (if not 0); one there keeps its expiry,
// which the session's claim lengthened.
var releaseScript = redisclient.NewScript("#!lua\n" + redisstore.KeepLua + `
local released = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  released = redis.call('DEL', KEYS[1])
end
if ARGV[2] ~= '0' then
  local was = redis.call('GET', KEYS[2])
  if tonumber(ARGV[2]) > tonumber(was or '0') then
    redis.call('SET', KEYS[2], ARGV[2], 'KEEPTTL')
    if not was then
      keep(KEYS[2], tonumber(ARGV[3]), 0, true)
    end
  end
end
return released
`)

func (n *Node) routeKey(app, device string) string {
	return redisclient.Key(n.opts.Prefix, app, redisclient.KindRoute, device)
}

// self is this node's part of its routes: "<node> <incarnation>".
func (n *Node) self() string { return n.opts.Node + " " + n.incarnation }

// Claim implements gateway.Router: this node holds device's session in app
// now; the node that held it before, if another, is told to end it (4003).
// One script, in the device's partition, also reads the device's last
// seq, broadcast cursor, user and first mailbox messages; only when the
// user changed (a device's first login, or another uid) is the device
// moved to its new user's set before the claim returns. The cursor is the
// one the device's last session ended with (see gateway's cursors.go).
func (n *Node) Claim(ctx context.Context, app, device, user string, after uint64, limit int) (gateway.Claimed, error) {
	ctx, cancel := n.call(ctx)
	defer cancel()
	key := func(kind string) string { return redisclient.Key(n.opts.Prefix, app, kind, device) }
	keys := []string{n.routeKey(app, device), key(redisclient.KindSeq), key(redisclient.KindCursor), key(redisclient.KindMailbox),
		key(redisclient.KindUser)}
	args := []string{n.self(), strconv.FormatInt(n.opts.DeviceExpiry.Milliseconds(), 10), strconv.FormatUint(after, 10), strconv.Itoa(limit)}
	claimed, prev, bound, err := parseClaim(app, limit, claimScript.Exec(ctx, n.redis, keys, args))
	if err == nil && bound != user {
		if err = n.opts.Bindings.Rebind(ctx, redisstore.Binding{App: app, Device: device, Old: bound, User: user}); err != nil {
			n.Release(ctx, app, device, claimed.Number, 0)
		}
	}
	if err != nil {
		return gateway.Claimed{}, fmt.Errorf("cluster: route not recorded: %w", err)
	}
	if prev.node != "" {
		claimed.Cursor = n.lastCursor(ctx, app, device, prev, claimed)
	}
	return claimed, nil
}

// lastCursor returns device's cursor in app's broadcast log as its session
// of route prev ended, or ends now: the older session is ended first if it
// is live on another node. c is the claim, which read prev and the cursor
// saved.
func (n *Node) lastCursor(ctx context.Context, app, device string, prev route, c gateway.Claimed) uint64 {
	var cursor uint64
	var known bool
	switch {
	case prev.node == n.opts.Node && sameIncarnation(prev.incarnation, n.incarnation):
		cursor, known = n.gw.SessionCursor(app, device, prev.session)
	case prev.node == n.opts.Node: // of this node's earlier run: it ended with it
		return c.Cursor
	default:
		var asked bool
		if cursor, known, asked = n.tellReplaced(ctx, prev, replaced{app: app, device: device, session: c.Number}); !asked {
			return c.Cursor // its node is gone, or did not answer
		}
	}
	if !known { // its release ran after the claim read the route: it saved the cursor
		saved, err := n.redis.Do(ctx, n.redis.B().Get().Key(redisclient.Key(n.opts.Prefix, app, redisclient.KindCursor, device)).Build()).AsUint64()
		if err != nil && !rueidis.IsRedisNil(err) {
			n.warn.Warn("cluster: the cursor of a released session not read", "app", app, "device", device, "err", err)
		}
		cursor = saved
	}
	return max(c.Cursor, cursor)
}

// parseClaim reads claimScript's answer (of at most limit mailbox
// members): the claim, the route before and the device's user.
func parseClaim(app string, limit int, res rueidis.RedisResult) (c gateway.Claimed, prev route, user string, err error) {
	out, err := res.ToArray()
	if err != nil {
		return c, route{}, "", err
	}
	if len(out) != 6 {
		return c, route{}, "", errors.New("a claim's answer not understood")
	}
	var vals [5]string
	for i := range vals {
		if vals[i], err = out[i].ToString(); err != nil {
			return c, route{}, "", err
		}
	}
	members, err := out[5].AsStrSlice()
	if err == nil {
		c.Number, err = strconv.ParseUint(vals[1], 10, 64)
	}
	if err == nil {
		c.LastSeq, err = strconv.ParseUint(vals[2], 10, 64)
	}
	if err == nil {
		c.Cursor, err = strconv.ParseUint(vals[3], 10, 64)
	}
	if err == nil {
		c.Waiting, _, err = redisstore.Unexpired(nil, app, members, time.Now())
	}
	c.More = len(members) == limit
	return c, parseRoute(vals[0]), vals[4], err
}

// peerWait bounds the wait for another node's short answer where a stalled
// node must not hold things up: a login waiting for the node of the
// device's older session to end it, a node asking the others whether they
// still renew their leases.
const peerWait = 500 * time.Millisecond

// replaced is a session replaced by a newer one (its number: session).
type replaced struct {
	app, device string
	session     uint64
}

// tellReplaced tells the node of an older route to end that session
// (4003), waiting at most peerWait, and returns the session's cursor if
// that node knew it; asked is false when the node did not answer. A node
// whose lease has lapsed, or that has restarted since (the session ended
// with its process), is not asked: if it comes back, it checks its
// sessions itself (audit). One that does not answer is asked again until
// it does (untold).
func (n *Node) tellReplaced(ctx context.Context, older route, r replaced) (cursor uint64, known, asked bool) {
	if !n.holds(ctx, older) {
		return 0, false, false
	}
	ctx, cancel := context.WithTimeout(ctx, peerWait)
	defer cancel()
	out, err := n.request(ctx, older.node, replaceRequest(r.app, []replaced{r}))
	if err != nil {
		queued := n.untold.add(older, r) // else it waits for that node's audit
		n.warn.Warn("cluster: the older session was not told it was replaced", "node", older.node, "app", r.app, "device", r.device,
			"asked_again", queued, "err", err)
		return 0, false, false
	}
	cursor, known = out.Cursors[r.device]
	return cursor, known, true
}

// holds reports whether route's node may still hold the session: its
// lease runs, in the same incarnation (true when the members cannot be
// read).
func (n *Node) holds(ctx context.Context, r route) bool {
	ms, err := n.members(ctx)
	if err != nil {
		return true
	}
	for _, m := range ms {
		if m.Node == r.node {
			return sameIncarnation(r.incarnation, m.Incarnation)
		}
	}
	return false
}

// runs returns the incarnation of each live node.
func (n *Node) runs(ctx context.Context) (map[string]string, error) {
	ms, err := n.members(ctx)
	if err != nil {
		return nil, err
	}
	runs := make(map[string]string, len(ms))
	for _, m := range ms {
		runs[m.Node] = m.Incarnation
	}
	return runs, nil
}

// sameRun reports whether r's node is live (runs: each live node's
// incarnation) in the run that recorded r (an incarnation left out, by a
// node of an older version, matches any).
func sameRun(r route, runs map[string]string) bool {
	inc, live := runs[r.node]
	return live && sameIncarnation(r.incarnation, inc)
}

// sameIncarnation reports whether a route's incarnation and a lease's name
// the same run (either left out, by a node of an older version, matches).
func sameIncarnation(route, lease string) bool {
	return route == "" || lease == "" || route == lease
}

func replaceRequest(app string, rs []replaced) *request {
	req := &request{Op: opReplace, App: app}
	for _, r := range rs {
		req.Devices, req.Sessions = append(req.Devices, r.device), append(req.Sessions, r.session)
	}
	return req
}

// Release implements gateway.Router: one script in the device's
// partition.
func (n *Node) Release(ctx context.Context, app, device string, session, cursor uint64) {
	ctx, cancel := n.call(ctx)
	defer cancel()
	keys := []string{n.routeKey(app, device), redisclient.Key(n.opts.Prefix, app, redisclient.KindCursor, device)}
	args := []string{n.self() + " " + strconv.FormatUint(session, 10), strconv.FormatUint(cursor, 10),
		strconv.FormatInt(n.opts.DeviceExpiry.Milliseconds(), 10)}
	if err := releaseScript.Exec(ctx, n.redis, keys, args).Error(); err != nil {
		n.warn.Warn("cluster: route not released", "app", app, "device", device, "err", err)
	}
}

// BroadcastAcked implements gateway.Router: the cluster's store counts the
// acks, and adds them to the reports once a second.
func (n *Node) BroadcastAcked(app string, from, to uint64) {
	n.opts.Reports.BroadcastAcked(app, from, to)
}

// Acked implements gateway.Router: the cluster's store deletes the
// messages without reading the mailbox, and counts their acks.
func (n *Node) Acked(app, device string, sent []store.Sent, sweep uint64) {
	n.opts.Reports.Acked(app, device, sent, sweep)
}

// locate groups devices by the live node that holds them in app; devices
// held by no live node are left out. routes, if not nil, are the devices'
// routes as read already (store.Appended.Routes; "" for none). Else they
// are read: on a Redis Cluster that is one MGET per slot they fall in (a
// command with several keys stays in one slot), 860 for 1,000 devices, so
// when those would be more than the live nodes, locate reads none and
// gives every live node all the devices: each finds its own.
func (n *Node) locate(ctx context.Context, app string, devices, routes []string) (map[string][]int, error) {
	if routes == nil && len(devices) > 1 && redisclient.Sharded(n.redis) {
		nodes, err := n.live(ctx)
		if err != nil {
			return nil, err
		}
		if len(nodes) < redisclient.PartitionsOf(app, devices) { // a partition is a slot
			all := make([]int, len(devices))
			for i := range all {
				all[i] = i
			}
			byNode := make(map[string][]int, len(nodes))
			for _, node := range nodes {
				byNode[node] = all
			}
			return byNode, nil
		}
	}
	runs, err := n.runs(ctx)
	if err != nil {
		return nil, err
	}
	byNode := make(map[string][]int)
	add := func(i int, r route) {
		if sameRun(r, runs) { // a route of a node's earlier run is left out: the session ended with it
			byNode[r.node] = append(byNode[r.node], i)
		}
	}
	if routes != nil {
		for i, v := range routes {
			if v != "" {
				add(i, parseRoute(v))
			}
		}
		return byNode, nil
	}
	keys := make([]string, len(devices))
	for i, d := range devices {
		keys[i] = n.routeKey(app, d)
	}
	return byNode, n.readRoutes(ctx, keys, add)
}

// routeChunk is how many routes one read asks for.
const routeChunk = 1000

// readRoutes reads the routes at keys, routeChunk at a time (each within
// cluster.timeout; one MGET per slot on a Redis Cluster), and calls fn
// with each one found and its index.
func (n *Node) readRoutes(ctx context.Context, keys []string, fn func(i int, r route)) error {
	for start := 0; start < len(keys); start += routeChunk {
		call, cancel := n.call(ctx)
		vals, err := redisclient.MGet(call, n.redis, keys[start:min(start+routeChunk, len(keys))])
		cancel()
		if err != nil {
			return fmt.Errorf("cluster: routes: %w", err)
		}
		for i, v := range vals {
			if s, err := v.ToString(); err == nil {
				fn(start+i, parseRoute(s))
			}
		}
	}
	return nil
}
