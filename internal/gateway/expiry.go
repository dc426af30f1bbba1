package gateway

import (
	"container/heap"
	"sync"
	"time"
)

// expiries ends sessions whose token expired without a refresh (4011): one
// timer for the whole gateway, set to the earliest expiry of a heap of
// sessions, rather than a timer per connection. Safe for concurrent use.
type expiries struct {
	mu    sync.Mutex
	items expiryHeap
	timer *time.Timer
}

// expiry is a session's place in the heap, kept in the session (no
// allocation of its own). Its fields are guarded by expiries.mu.
type expiry struct {
	at    int64 // unix ns
	c     *conn
	s     *session
	index int // in the heap, plus one; 0 when out of it
}

func newExpiries() *expiries {
	e := &expiries{}
	e.timer = time.AfterFunc(time.Hour, e.fire)
	e.timer.Stop()
	return e
}

// set puts s (of c) in the heap to end at at, or moves it there.
func (e *expiries) set(c *conn, s *session, at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := &s.expiry
	x.c, x.s, x.at = c, s, at.UnixNano()
	if x.index == 0 {
		heap.Push(&e.items, x)
	} else {
		heap.Fix(&e.items, x.index-1)
	}
	e.armLocked()
}

// remove takes s out of the heap (its connection ended).
func (e *expiries) remove(s *session) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x := &s.expiry; x.index > 0 {
		heap.Remove(&e.items, x.index-1)
	}
}

// armLocked sets the timer to the earliest expiry. e.mu must be held.
func (e *expiries) armLocked() {
	if len(e.items) > 0 {
		e.timer.Reset(time.Until(time.Unix(0, e.items[0].at)))
	}
}

// fire ends the sessions whose time has come.
func (e *expiries) fire() {
	now := time.Now().UnixNano()
	var due []*expiry
	e.mu.Lock()
	for len(e.items) > 0 && e.items[0].at <= now {
		due = append(due, heap.Pop(&e.items).(*expiry))
	}
	e.armLocked()
	e.mu.Unlock()
	for _, x := range due {
		x.c.gw.unregister(x.c, x.s)
		x.c.dropSession(x.s, errTokenExpired)
	}
}

// stop stops the timer.
func (e *expiries) stop() { e.timer.Stop() }

// expiryHeap orders sessions by expiry; it implements heap.Interface.
type expiryHeap []*expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i+1, j+1
}
func (h *expiryHeap) Push(x any) {
	e := x.(*expiry)
	e.index = len(*h) + 1
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = 0
	*h = old[:len(old)-1]
	return e
}
