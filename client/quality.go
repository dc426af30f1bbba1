package client

import (
	"sync"
	"time"

	"github.com/longlink/longlink/protocol"
)

// maxRTTs bounds the ping samples one stats op carries.
const maxRTTs = 64

// quality is what the client measures of its connection for the server's
// client-quality metrics: ping round trips, how long connects take and how
// many fail. It is sent in a stats op every Config.StatsInterval. Safe for
// concurrent use.
type quality struct {
	mu        sync.Mutex
	pingAt    time.Time // the ping waiting for its pong
	rtts      []uint64  // ms
	connectMs uint64    // the last connect that succeeded
	failures  uint64    // connects that failed since the last stats
}

func (q *quality) pinged() {
	q.mu.Lock()
	q.pingAt = time.Now()
	q.mu.Unlock()
}

func (q *quality) ponged() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.pingAt.IsZero() && len(q.rtts) < maxRTTs {
		q.rtts = append(q.rtts, uint64(time.Since(q.pingAt).Milliseconds()))
	}
	q.pingAt = time.Time{}
}

func (q *quality) connected(took time.Duration, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if ok {
		q.connectMs = max(uint64(took.Milliseconds()), 1)
	} else {
		q.failures++
	}
}

// take returns the stats op of what was measured since the last one and
// starts over, or nil when there is nothing to tell.
func (q *quality) take(network, transport string) *protocol.Frame {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.rtts) == 0 && q.connectMs == 0 && q.failures == 0 {
		return nil
	}
	f := &protocol.Frame{Op: protocol.OpStats, Network: []byte(network), Transport: []byte(transport),
		RTTs: q.rtts, ConnectMs: q.connectMs, Failures: q.failures}
	q.rtts, q.connectMs, q.failures = nil, 0, 0
	return f
}
