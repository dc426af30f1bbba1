package gateway

import "sync"

// A device's cursor in its app's broadcast log is the last entry it acked.
// On a single node each ack moves it in the store (a local write, queued).
// In a cluster a session keeps it in its node's memory: an ack writes
// nothing to the store (the Router counts it in its entry's report), and
// the session's release saves the cursor with the route's removal, in one
// script (Router.Release). A later login of the device, wherever and
// however soon, starts from the cursor its last session ended with:
//   - a claim that finds no route reads the cursor saved with its removal;
//   - one that finds the route of a live session on another node has that
//     session ended (4003), and the answer carries its cursor (Replace);
//   - one that finds a route of this node takes the cursor from the
//     session here (SessionCursor): live, or ended and being released;
//   - one that learns of neither (the release ran after the claim read
//     the route) reads the cursor again, which the release has saved.
//
// What a node that dies (or is cut off from Redis as its sessions end)
// loses is its sessions' cursors since their logins: those devices get
// again, from the log, the broadcasts their sessions there acked (a client
// that sends its last_bseqs does not).

// ended is a session of this node whose release has not returned: its
// number and its cursor.
type ended struct{ number, cursor uint64 }

// releasing are the sessions of this node that ended and whose release has
// not returned, by (app, device): a claim that read the route of one
// before its release ran takes its cursor here. Safe for concurrent use.
type releasing struct {
	mu sync.Mutex
	m  map[loginKey]ended
}

// add lists e, the newest of its (app, device)'s sessions listed.
func (r *releasing) add(k loginKey, e ended) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[loginKey]ended)
	}
	if old, ok := r.m[k]; !ok || old.number <= e.number {
		r.m[k] = e
	}
}

// remove unlists e, once its release returned.
func (r *releasing) remove(k loginKey, e ended) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[k].number == e.number {
		delete(r.m, k)
	}
}

// older returns the listed session of k older than newer (any, with newer
// 0).
func (r *releasing) older(k loginKey, newer uint64) (ended, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[k]
	return e, ok && (newer == 0 || e.number < newer)
}

// SessionCursor returns the cursor in app's broadcast log of device's
// session numbered number on this node, live or being released; ok is
// false when it is neither (its release has returned: the cursor is
// saved).
func (g *Gateway) SessionCursor(app, device string, number uint64) (cursor uint64, ok bool) {
	if c := g.hub.lookup(app, device); c != nil {
		if s, live := c.session(app); live && s.number == number {
			c.mu.Lock()
			defer c.mu.Unlock()
			return s.cursor, true
		}
	}
	e, ok := g.releasing.older(loginKey{app, device}, 0)
	return e.cursor, ok && e.number == number
}

// ackBroadcast moves s's cursor to bseq, which the device acked (in a
// cluster here: moveCursor).
func (c *conn) ackBroadcast(s *session, bseq uint64) {
	if c.gw.router == nil {
		c.gw.mailboxes.AckBroadcast(s.app, c.device, bseq)
		return
	}
	c.moveCursor(s, bseq)
}

// ackLoginBSeq acks s's login's last_bseq: in a cluster clamped to the
// app's broadcast head as this node knows it (the replay counts that
// clamp; the session's sentBSeq is the last_bseq itself until then).
func (c *conn) ackLoginBSeq(s *session, bseq uint64) {
	r := c.gw.router
	if r == nil {
		c.gw.mailboxes.AckBroadcast(s.app, c.device, bseq)
		return
	}
	head, err := r.BroadcastHead(c.gw.storeCall(), s.app)
	if err != nil { // not acked: the replay reads the log after it all the same
		c.gw.warn.Warn("a login's last_bseq not acked: the broadcast head cannot be read", "app", s.app, "device", c.device, "err", err)
		return
	}
	c.moveCursor(s, min(bseq, head))
}

// moveCursor moves s's cursor in this node's memory to bseq (never back;
// not once the session ended), clamped to the last bseq the session was
// sent (and counted: a client cannot skip entries it was never sent), and
// has the acks of the entries it passed counted in their reports.
func (c *conn) moveCursor(s *session, bseq uint64) {
	c.mu.Lock()
	if bseq > s.sentBSeq {
		bseq = s.sentBSeq
		c.gw.metrics.SeqClamped.WithLabelValues(s.app, "ack_bseq").Inc()
	}
	from := s.cursor
	moved := !s.over.Load() && !s.final && bseq > from
	if moved {
		s.cursor, s.moved = bseq, true
	}
	c.mu.Unlock()
	if moved {
		c.gw.router.BroadcastAcked(s.app, from, bseq)
	}
}

// finalCursor returns s's cursor as the session ends, and whether the
// session moved it (to be saved): acks that come after it are not taken.
func (c *conn) finalCursor(s *session) (cursor uint64, moved bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.final = true
	return s.cursor, s.moved
}

// inherit gives s, which replaced old's session olds on this node, olds's
// cursor (acks old took after s's claim read it), and the save of it if
// olds moved it: olds saves nothing as it ends. The hub's lock for their
// (app, device) is held.
func (c *conn) inherit(s *session, old *conn, olds *session) {
	cursor, moved := old.finalCursor(olds)
	c.mu.Lock()
	defer c.mu.Unlock()
	s.cursor, s.moved = max(s.cursor, cursor), s.moved || moved
}
