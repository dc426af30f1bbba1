package gateway

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/protocol"
)

// ipLimits bounds, per source IP, the connections open at once and the
// new connections per second (limits.conns_per_ip, limits.conn_rate_per_ip).
// Safe for concurrent use.
type ipLimits struct {
	perIP int        // 0: no bound
	rate  rate.Limit // 0: no bound
	burst int

	mu        sync.Mutex
	ips       map[netip.Addr]*ipState
	lastSweep time.Time
}

type ipState struct {
	conns   int
	limiter *rate.Limiter // nil without a rate bound
}

func newIPLimits(l config.Limits) *ipLimits {
	return &ipLimits{perIP: l.ConnsPerIP, rate: rate.Limit(l.ConnRatePerIP), burst: max(int(l.ConnRatePerIP), 1),
		ips: make(map[netip.Addr]*ipState)}
}

func (l *ipLimits) enabled() bool { return l.perIP > 0 || l.rate > 0 }

// admit counts a new connection from ip, or returns which limit refuses it.
func (l *ipLimits) admit(ip netip.Addr) (refused string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked()
	st := l.ips[ip]
	if st == nil {
		st = &ipState{}
		if l.rate > 0 {
			st.limiter = rate.NewLimiter(l.rate, l.burst)
		}
		l.ips[ip] = st
	}
	switch {
	case l.perIP > 0 && st.conns >= l.perIP:
		return "conns_per_ip"
	case st.limiter != nil && !st.limiter.Allow():
		return "conn_rate_per_ip"
	}
	st.conns++
	return ""
}

// release forgets a connection admit counted.
func (l *ipLimits) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.ips[ip]; st != nil {
		st.conns--
	}
}

// sweepLocked drops, every 10s, the IPs with no connection whose rate
// limiter is full again: they are where a new IP starts. l.mu must be held.
func (l *ipLimits) sweepLocked() {
	now := time.Now()
	if now.Sub(l.lastSweep) < 10*time.Second {
		return
	}
	l.lastSweep = now
	for ip, st := range l.ips {
		if st.conns <= 0 && (st.limiter == nil || st.limiter.TokensAt(now) >= float64(l.burst)) {
			delete(l.ips, ip)
		}
	}
}

// ipOf is the source IP of a connection.
func ipOf(nc net.Conn) netip.Addr {
	ap, err := netip.ParseAddrPort(nc.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// maxRefusing bounds the connections refused by a per-IP limit that are
// being told why at once (4005 in their protocol, once it is known); past
// it, a refused connection is closed at accept without a word. So a flood
// from many addresses holds no more than this many sockets beyond the
// limits, and refusalTimeout bounds how long each is held.
const (
	maxRefusing    = 64
	refusalTimeout = 2 * time.Second
)

// admit applies the per-IP limits to a connection just accepted, before
// anything is read from it. It returns the refusal to tell it (nil: it was
// admitted), and ok false when it is refused and cannot be told: the
// caller closes it at once.
func (c *conn) admit() (refusal error, ok bool) {
	g := c.gw
	if !g.ipLimits.enabled() {
		return nil, true
	}
	refused := g.ipLimits.admit(ipOf(c.nc))
	if refused == "" {
		c.counted.Store(true)
		return nil, true
	}
	g.metrics.Limited.WithLabelValues(refused).Inc()
	if g.refusing.Add(1) > maxRefusing {
		g.refusing.Add(-1)
		return nil, false
	}
	return protocol.Errorf(protocol.CodeRateLimited, "too many connections from your address (%s)", refused), true
}

// block records that c's socket takes no more for now: a write waits for
// it (writeSlow), holding held bytes beyond its frames (what sealing
// added). shed looks for the offenders among these.
func (g *Gateway) block(c *conn, held int) {
	c.mu.Lock()
	c.blocked = true
	c.holdLocked(held)
	c.mu.Unlock()
	g.blockedMu.Lock()
	g.blockedConns[c] = struct{}{}
	g.blockedMu.Unlock()
}

// unblock records that c's waiting write is over.
func (g *Gateway) unblock(c *conn) {
	c.mu.Lock()
	c.blocked = false
	c.mu.Unlock()
	g.blockedMu.Lock()
	delete(g.blockedConns, c)
	g.blockedMu.Unlock()
}

// shed brings the bytes waiting over all connections back under
// limits.queue_bytes_total: it closes as too slow (4004) the connections
// whose sockets take nothing and that hold the most bytes, the offenders,
// until what they hold covers the excess (counting what those already
// closing will let go). A connection that keeps up is never closed for
// what others hold. One shed runs at a time; a call meanwhile does nothing.
func (g *Gateway) shed() {
	if !g.shedding.CompareAndSwap(false, true) {
		return
	}
	defer g.shedding.Store(false)
	type held struct {
		c *conn
		n int
	}
	var offenders []held
	excess := g.queued.Load() - g.limits.QueueBytesTotal
	g.blockedMu.Lock()
	for c := range g.blockedConns {
		c.mu.Lock()
		n, closing := c.pending, c.state >= stateClosing
		c.mu.Unlock()
		if closing {
			excess -= int64(n)
		} else {
			offenders = append(offenders, held{c, n})
		}
	}
	g.blockedMu.Unlock()
	slices.SortFunc(offenders, func(a, b held) int { return b.n - a.n })
	for _, o := range offenders {
		if excess <= 0 {
			return
		}
		o.c.close(errServerQueuesFull)
		excess -= int64(o.n)
	}
}
