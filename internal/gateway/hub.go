package gateway

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

const (
	deviceShards = 64
	appShards    = 16
)

// hub is the gateway's registry of logged-in sessions: per app, device ->
// conn, the set of the app's connections (for broadcast) and user -> conns.
// Device identity is scoped by app: a login of device D to app A replaces
// only the session of (A, D), whatever other apps either connection serves.
// Many small locks, so logins and pushes on different devices rarely meet,
// and the apps are found without a lock. Safe for concurrent use.
//
// Lock order: a device shard, then an app shard, then a connection's mu.
type hub struct {
	seed maphash.Seed
	apps atomic.Pointer[map[string]*appIndex] // copied on write, under mu
	mu   sync.Mutex
}

// appIndex is one app's sessions: its devices, sharded by device id; its
// connections, sharded by connection id; and its users.
type appIndex struct {
	devices [deviceShards]deviceShard
	shards  [appShards]appShard
}

type deviceShard struct {
	sync.RWMutex
	conns map[string]*conn // device -> the connection holding its session
}

type appShard struct {
	sync.RWMutex
	conns map[*conn]struct{}
	users map[string][]*conn
}

func newHub() *hub {
	h := &hub{seed: maphash.MakeSeed()}
	h.apps.Store(&map[string]*appIndex{})
	return h
}

// app returns app id's index, creating it if create is set (else nil when
// the app has no session yet).
func (h *hub) app(id string, create bool) *appIndex {
	if a := (*h.apps.Load())[id]; a != nil || !create {
		return a
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := *h.apps.Load()
	if a := cur[id]; a != nil {
		return a
	}
	a := &appIndex{}
	for i := range a.devices {
		a.devices[i].conns = make(map[string]*conn)
	}
	for i := range a.shards {
		a.shards[i].conns = make(map[*conn]struct{})
		a.shards[i].users = make(map[string][]*conn)
	}
	next := make(map[string]*appIndex, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[id] = a
	h.apps.Store(&next)
	return a
}

func (h *hub) deviceShard(a *appIndex, device string) *deviceShard {
	return &a.devices[maphash.String(h.seed, device)%deviceShards]
}

func (a *appIndex) connShard(c *conn) *appShard { return &a.shards[c.id%appShards] }

func (h *hub) userShard(a *appIndex, user string) *appShard {
	return &a.shards[maphash.String(h.seed, user)%appShards]
}

// register makes c the connection of each of its sessions' (app, device).
// swap is called with each session, the connection it replaces in that app
// and that connection's session there (nil if none) while that (app,
// device) is locked, so that what it does for one device of one app
// (status events) happens in login order; the replaced connection is out of
// the app's indexes by then. A session whose (app, device) is held by a
// newer session (a greater number: a later login that was registered
// first) is not registered: stale is called with it instead, under the
// same lock.
func (h *hub) register(c *conn, swap func(s *session, old *conn, olds *session), stale func(s *session)) {
	for i := range c.sessions {
		s := &c.sessions[i]
		a := h.app(s.app, true)
		ds := h.deviceShard(a, c.device)
		ds.Lock()
		old := ds.conns[c.device]
		var olds *session
		if old != nil {
			olds, _ = old.session(s.app)
		}
		if olds != nil && olds.number > s.number {
			stale(s)
		} else {
			ds.conns[c.device] = c
			if olds != nil {
				h.unindexLocked(a, old, olds)
			}
			h.index(a, c, s)
			swap(s, old, olds)
		}
		ds.Unlock()
	}
}

// unregister removes c's session s, unless a newer connection holds its
// (app, device) now; it reports whether it did.
func (h *hub) unregister(c *conn, s *session) bool {
	a := h.app(s.app, false)
	if a == nil {
		return false
	}
	ds := h.deviceShard(a, c.device)
	ds.Lock()
	defer ds.Unlock()
	if ds.conns[c.device] != c {
		return false
	}
	delete(ds.conns, c.device)
	h.unindexLocked(a, c, s)
	return true
}

// index adds c to app a's connections, and to its user's.
func (h *hub) index(a *appIndex, c *conn, s *session) {
	cs := a.connShard(c)
	cs.Lock()
	cs.conns[c] = struct{}{}
	cs.Unlock()
	if s.user != "" {
		us := h.userShard(a, s.user)
		us.Lock()
		us.users[s.user] = append(us.users[s.user], c)
		us.Unlock()
	}
}

// unindexLocked undoes index; the device's shard must be locked.
func (h *hub) unindexLocked(a *appIndex, c *conn, s *session) {
	cs := a.connShard(c)
	cs.Lock()
	delete(cs.conns, c)
	cs.Unlock()
	if s.user != "" {
		us := h.userShard(a, s.user)
		us.Lock()
		us.users[s.user] = removeConn(us.users[s.user], c)
		if len(us.users[s.user]) == 0 {
			delete(us.users, s.user)
		}
		us.Unlock()
	}
}

func removeConn(cs []*conn, c *conn) []*conn {
	for i, x := range cs {
		if x == c {
			cs[i] = cs[len(cs)-1]
			cs[len(cs)-1] = nil
			return cs[:len(cs)-1]
		}
	}
	return cs
}

// lookup returns the connection holding device's session in app.
func (h *hub) lookup(app, device string) *conn {
	a := h.app(app, false)
	if a == nil {
		return nil
	}
	ds := h.deviceShard(a, device)
	ds.RLock()
	c := ds.conns[device]
	ds.RUnlock()
	return c
}

// eachUserConn calls fn for every connection of user in app.
func (h *hub) eachUserConn(app, user string, fn func(*conn)) {
	a := h.app(app, false)
	if a == nil {
		return
	}
	us := h.userShard(a, user)
	us.RLock()
	defer us.RUnlock()
	for _, c := range us.users[user] {
		fn(c)
	}
}

// eachAppConn calls fn for every connection of app. fn must not block.
func (h *hub) eachAppConn(app string, fn func(*conn)) {
	a := h.app(app, false)
	if a == nil {
		return
	}
	for i := range a.shards {
		s := &a.shards[i]
		s.RLock()
		for c := range s.conns {
			fn(c)
		}
		s.RUnlock()
	}
}

// eachConn calls fn for every registered connection, once per session it
// holds (with that session's app). fn must not block.
func (h *hub) eachConn(fn func(app string, c *conn)) {
	for app, a := range *h.apps.Load() {
		for i := range a.devices {
			s := &a.devices[i]
			s.RLock()
			for _, c := range s.conns {
				fn(app, c)
			}
			s.RUnlock()
		}
	}
}

// sessionNumbers numbers the sessions of a single node: each is the time
// in µs, or one more than the last if that is not greater, so that a
// device's sessions are numbered in login order across restarts too (as
// long as the clock does not go back). The numbers stay below 2^53.
type sessionNumbers struct{ last atomic.Uint64 }

func (n *sessionNumbers) next() uint64 {
	for {
		last := n.last.Load()
		next := max(uint64(time.Now().UnixMicro()), last+1)
		if n.last.CompareAndSwap(last, next) {
			return next
		}
	}
}
