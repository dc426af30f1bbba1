package gateway

import (
	"sync"
	"sync/atomic"
)

// A login reads the store before its connection can be found in the hub:
// in a cluster the claim of its route reads its device's cursor and first
// mailbox messages, and elsewhere its sync loop may read before the
// connection is registered. A stored message appended meanwhile is handed
// to this node while no connection takes it (or while the device's older
// connection, which the login replaces, takes it and may never write it),
// and the read may have missed it. So each login is listed here from
// before its first read until it is registered, and every stored push or
// broadcast for a listed (app, device) tells the login, whose sync loop
// then reads again.

// loginKey is a login's session: the (app, device).
type loginKey struct{ app, device string }

// loginsInFlight are the logins between their first read and their
// registration. Safe for concurrent use.
type loginsInFlight struct {
	n  atomic.Int64 // len(m): a push finds none without the lock
	mu sync.Mutex
	m  map[loginKey][]*conn // several logins of one device may race
}

// add lists c's login l.
func (in *loginsInFlight) add(c *conn, l *login) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.m == nil {
		in.m = make(map[loginKey][]*conn)
	}
	for i := range l.sessions {
		k := loginKey{l.sessions[i].app, l.device}
		in.m[k] = append(in.m[k], c)
	}
	in.n.Store(int64(len(in.m)))
}

// remove unlists c's login l.
func (in *loginsInFlight) remove(c *conn, l *login) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for i := range l.sessions {
		k := loginKey{l.sessions[i].app, l.device}
		if cs := removeConn(in.m[k], c); len(cs) > 0 {
			in.m[k] = cs
		} else {
			delete(in.m, k)
		}
	}
	in.n.Store(int64(len(in.m)))
}

// missedDevice tells the logins of device into app that a stored message
// of theirs was handed to this node.
func (in *loginsInFlight) missedDevice(app, device string) {
	if in.n.Load() == 0 {
		return
	}
	in.mu.Lock()
	cs := append([]*conn(nil), in.m[loginKey{app, device}]...)
	in.mu.Unlock()
	for _, c := range cs {
		c.missedAtLogin()
	}
}

// missedApp tells every login into app that a stored broadcast found no
// connection for it.
func (in *loginsInFlight) missedApp(app string) {
	if in.n.Load() == 0 {
		return
	}
	var cs []*conn
	in.mu.Lock()
	for k, v := range in.m {
		if k.app == app {
			cs = append(cs, v...)
		}
	}
	in.mu.Unlock()
	for _, c := range cs {
		c.missedAtLogin()
	}
}

// missedAtLogin tells c, logging in, that a stored message may have been
// appended after its login's read: what that read found is not used, and
// its sync loop reads the store again.
func (c *conn) missedAtLogin() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.missed = true
	if c.state != stateLive { // goLive drops the first reads
		return
	}
	for i := range c.sessions {
		c.catchUpLocked(&c.sessions[i])
	}
}

// catchUpLocked makes the sync loop read s's broadcast log and mailbox
// again, from the store. c.mu must be held.
func (c *conn) catchUpLocked(s *session) {
	s.catchUp, s.first, c.dirty = true, nil, true
	c.startSyncLocked(nil)
}
