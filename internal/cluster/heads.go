package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/longlink/longlink/internal/redisclient"
)

// A node keeps each app's broadcast head (the last bseq of its log) in
// memory, so that a login whose cursor is there reads nothing of the log,
// and no key is read by every login of an app. A head is read from Redis
// at the app's first login on this node, raised by each stored broadcast
// the bus hands this node, and checked against Redis once a second. One
// that grew in Redis without the bus telling this node (its message was
// lost while NATS was away, or sent before the pushing node saw this
// node's lease) is mended at the check after the one that first saw it:
// the bus had a second to tell, and this node's connections of the app
// then read the log (gateway.BroadcastLogGrew).

// heads are the broadcast heads this node knows, by app. Safe for
// concurrent use.
type heads struct {
	mu        sync.Mutex
	apps      map[string]*head
	checkedAt time.Time // the last check's
}

// headsCheck is how often the heads are checked.
const headsCheck = time.Second

type head struct {
	known uint64 // read at the first login, raised by the bus
	seen  uint64 // as the last check read it
}

func (n *Node) headKey(app string) string {
	return redisclient.Key(n.opts.Prefix, app, redisclient.KindHead, "")
}

// BroadcastHead implements gateway.Router.
func (n *Node) BroadcastHead(ctx context.Context, app string) (uint64, error) {
	h := &n.heads
	h.mu.Lock()
	if e := h.apps[app]; e != nil {
		defer h.mu.Unlock()
		return e.known, nil
	}
	h.mu.Unlock()
	ctx, cancel := n.call(ctx)
	defer cancel()
	read, err := n.redis.Do(ctx, n.redis.B().Get().Key(n.headKey(app)).Build()).AsUint64()
	if err != nil && !rueidis.IsRedisNil(err) {
		return 0, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.apps == nil {
		h.apps = make(map[string]*head)
	}
	e := h.apps[app]
	if e == nil {
		e = &head{known: read, seen: read}
		h.apps[app] = e
	}
	e.known = max(e.known, read)
	return e.known, nil
}

// announced raises app's head to bseq, a stored broadcast the bus handed
// this node.
func (n *Node) announced(app string, bseq uint64) {
	h := &n.heads
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.apps[app]; e != nil {
		e.known = max(e.known, bseq)
	}
}

// checkHeads reads the heads this node knows from Redis, in one pipeline
// (at most once per headsCheck), and mends those the last check saw grow
// and the bus has not told of since.
func (n *Node) checkHeads() {
	h := &n.heads
	h.mu.Lock()
	if time.Since(h.checkedAt) < headsCheck {
		h.mu.Unlock()
		return
	}
	h.checkedAt = time.Now()
	apps := make([]string, 0, len(h.apps))
	for app := range h.apps {
		apps = append(apps, app)
	}
	h.mu.Unlock()
	if len(apps) == 0 {
		return
	}
	keys := make([]string, len(apps))
	for i, app := range apps {
		keys[i] = n.headKey(app)
	}
	ctx, cancel := n.call(n.life)
	vals, err := redisclient.MGet(ctx, n.redis, keys)
	cancel()
	if err != nil {
		n.warn.Warn("cluster: broadcast heads not checked", "err", err)
		return
	}
	var grew []string
	h.mu.Lock()
	for i, app := range apps {
		e := h.apps[app]
		if e.seen > e.known {
			e.known = e.seen
			grew = append(grew, app)
		}
		if v, err := vals[i].AsUint64(); err == nil {
			e.seen = v
		}
	}
	h.mu.Unlock()
	for _, app := range grew {
		n.warn.Warn("cluster: the app's broadcast log grew without the bus telling this node; its connections read it now", "app", app)
		n.gw.BroadcastLogGrew(app)
	}
}
