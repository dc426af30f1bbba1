package gateway

import (
	"net"
	"net/netip"
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

// admit applies the per-IP limits to c, once it spoke our protocol (so that
// it can be told why: 4005).
func (c *conn) admit() error {
	g := c.gw
	if !g.ipLimits.enabled() {
		return nil
	}
	if refused := g.ipLimits.admit(ipOf(c.nc)); refused != "" {
		g.metrics.Limited.WithLabelValues(refused).Inc()
		return protocol.Errorf(protocol.CodeRateLimited, "too many connections from your address (%s)", refused)
	}
	c.counted.Store(true)
	return nil
}
