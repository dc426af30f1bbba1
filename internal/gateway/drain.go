package gateway

import (
	"context"
	"time"

	"github.com/longlink/longlink/protocol"
)

// drainTick is how often Drain moves the connections that are due.
const drainTick = 10 * time.Millisecond

// Drain refuses new logins (4013) and moves the logged-in connections away,
// spread evenly over period so that they do not all come back elsewhere at
// once: each gets a redirect frame naming the endpoints of nodes (none on a
// single node), then a close with 4009. Frames queued before are written
// first. The list of nodes is rotated from one connection to the next, so
// that clients taking the first endpoint spread over them. It returns once
// every connection has closed, or with ctx's error.
func (g *Gateway) Drain(ctx context.Context, period time.Duration, nodes [][]protocol.Endpoint) error {
	g.StopLogins()
	return g.moveAll(ctx, period, nodes)
}

// Fence moves every device away at once, each told where to go, and
// refuses logins (4013) until Unfence: this node lost the cluster (it
// cannot renew its lease), so its devices would receive nothing here.
func (g *Gateway) Fence(nodes [][]protocol.Endpoint) {
	if !g.fenced.CompareAndSwap(false, true) {
		return
	}
	g.log.Warn("fenced: this node cannot renew its lease; its devices are sent to the other nodes, and logins refused until it can")
	ctx, cancel := context.WithCancel(g.life)
	g.mu.Lock()
	g.endFence = cancel
	g.mu.Unlock()
	g.track(func() { g.moveAll(ctx, 0, nodes) })
}

// Unfence takes logins again, once the node renewed its lease (and stops
// moving away the devices that log in from now on).
func (g *Gateway) Unfence() {
	if !g.fenced.CompareAndSwap(true, false) {
		return
	}
	g.mu.Lock()
	if g.endFence != nil {
		g.endFence()
	}
	g.mu.Unlock()
	g.log.Info("unfenced: the lease is renewed; logins are taken again")
}

// moveAll sends every connection away, as Drain says, over period.
func (g *Gateway) moveAll(ctx context.Context, period time.Duration, nodes [][]protocol.Endpoint) error {
	var conns []*conn
	seen := make(map[*conn]bool)
	g.hub.eachConn(func(_ string, c *conn) { // a connection of several apps is listed once per app
		if !seen[c] {
			seen[c] = true
			conns = append(conns, c)
		}
	})
	redirects := make([]*Message, max(len(nodes), 1)) // one per rotation of nodes
	for r := range redirects {
		var eps []protocol.Endpoint
		for i := range nodes {
			eps = append(eps, nodes[(r+i)%len(nodes)]...)
		}
		redirects[r] = NewMessage(&protocol.Frame{Op: protocol.OpRedirect, Endpoints: eps})
	}
	g.redirects.Store(&redirects)     // also for the logins refused from now on (see conn.close)
	move := func(_ string, c *conn) { // a second time does nothing: the connection is no longer live
		c.send(g.nextRedirect().bytes(c.kind))
		c.close(errMoveAway)
	}
	start := time.Now()
	t := time.NewTicker(drainTick)
	defer t.Stop()
	for moved := 0; moved < len(conns) || g.live.Load() > 0; {
		// Connection i is due at start + i*period/n; the last ones a tick
		// before the period ends.
		due := len(conns)
		if elapsed := time.Since(start) + drainTick; elapsed < period {
			due = int(int64(len(conns)) * int64(elapsed) / int64(period))
		}
		for ; moved < due; moved++ {
			move("", conns[moved])
		}
		if moved == len(conns) { // and a login that raced the drain, if any
			g.hub.eachConn(move)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// nextRedirect returns the redirect frame for the next connection sent
// away, or nil before Drain has made them.
func (g *Gateway) nextRedirect() *Message {
	rs := g.redirects.Load()
	if rs == nil {
		return nil
	}
	return (*rs)[g.redirectTurn.Add(1)%uint64(len(*rs))]
}

// StopLogins makes every later login fail with 4013 (draining: reconnect
// elsewhere), as Drain does first.
func (g *Gateway) StopLogins() { g.draining.Store(true) }

// Draining reports whether logins are stopped for a drain.
func (g *Gateway) Draining() bool { return g.draining.Load() }
