package gateway

import (
	"hash/maphash"
	"sync"
)

const (
	deviceShards = 64
	appShards    = 16
)

// hub is the gateway's registry of logged-in connections: device -> conn, and
// per app the set of its connections (for broadcast) and user -> conns. Many
// small locks, so logins and pushes on different devices rarely meet.
// Safe for concurrent use.
type hub struct {
	seed    maphash.Seed
	devices [deviceShards]deviceShard

	mu   sync.RWMutex
	apps map[string]*appIndex // mu guards the map, not the indexes
}

type deviceShard struct {
	sync.RWMutex
	conns map[string]*conn
}

// appIndex is one app's connections, sharded by connection id, and its users.
type appIndex struct {
	shards [appShards]appShard
}

type appShard struct {
	sync.RWMutex
	conns map[*conn]struct{}
	users map[string][]*conn
}

func newHub() *hub {
	h := &hub{seed: maphash.MakeSeed(), apps: make(map[string]*appIndex)}
	for i := range h.devices {
		h.devices[i].conns = make(map[string]*conn)
	}
	return h
}

func (h *hub) deviceShard(device string) *deviceShard {
	return &h.devices[maphash.String(h.seed, device)%deviceShards]
}

func (h *hub) app(id string, create bool) *appIndex {
	h.mu.RLock()
	a := h.apps[id]
	h.mu.RUnlock()
	if a != nil || !create {
		return a
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if a = h.apps[id]; a == nil {
		a = &appIndex{}
		for i := range a.shards {
			a.shards[i].conns = make(map[*conn]struct{})
			a.shards[i].users = make(map[string][]*conn)
		}
		h.apps[id] = a
	}
	return a
}

func (a *appIndex) connShard(c *conn) *appShard { return &a.shards[c.id%appShards] }

func (h *hub) userShard(a *appIndex, user string) *appShard {
	return &a.shards[maphash.String(h.seed, user)%appShards]
}

// register makes c the device's connection. swap is called with the
// connection c replaces (nil if none) while the device's entry is locked, so
// that what it does for one device (status events) happens in login order.
func (h *hub) register(c *conn, swap func(old *conn)) {
	ds := h.deviceShard(c.device)
	ds.Lock()
	old := ds.conns[c.device]
	ds.conns[c.device] = c
	swap(old)
	ds.Unlock()
	for _, s := range c.sessions {
		a := h.app(s.app, true)
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
}

// unregister removes c everywhere; a newer connection of the same device
// stays registered.
func (h *hub) unregister(c *conn) {
	ds := h.deviceShard(c.device)
	ds.Lock()
	if ds.conns[c.device] == c {
		delete(ds.conns, c.device)
	}
	ds.Unlock()
	for _, s := range c.sessions {
		a := h.app(s.app, false)
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

// lookup returns the device's connection if it is logged into app.
func (h *hub) lookup(app, device string) *conn {
	ds := h.deviceShard(device)
	ds.RLock()
	c := ds.conns[device]
	ds.RUnlock()
	if c == nil || !c.serves(app) {
		return nil
	}
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

// eachConn calls fn for every registered connection. fn must not block.
func (h *hub) eachConn(fn func(*conn)) {
	for i := range h.devices {
		s := &h.devices[i]
		s.RLock()
		for _, c := range s.conns {
			fn(c)
		}
		s.RUnlock()
	}
}
