package gateway

import (
	"errors"
	"hash/maphash"
	"sync"
)

const groupShards = 64

// groupKey names a group: groups are scoped by app.
type groupKey struct{ app, name string }

// groups is group -> member connections, sharded by group. Each connection
// also keeps its own groups (conn.groups), so that joining, leaving and
// leaving everything on close cost O(1) per group whatever the group's size,
// and pushing costs O(members). Safe for concurrent use.
//
// Locks are never nested: a shard lock is not held while taking a
// connection's lock, except to send to members, and join takes them one
// after the other.
type groups struct {
	seed   maphash.Seed
	shards [groupShards]groupShard
}

type groupShard struct {
	sync.RWMutex
	members map[groupKey]map[*conn]struct{}
}

func newGroups() *groups {
	g := &groups{seed: maphash.MakeSeed()}
	for i := range g.shards {
		g.shards[i].members = make(map[groupKey]map[*conn]struct{})
	}
	return g
}

func (g *groups) shard(k groupKey) *groupShard {
	var h maphash.Hash
	h.SetSeed(g.seed)
	h.WriteString(k.app)
	h.WriteByte(0)
	h.WriteString(k.name)
	return &g.shards[h.Sum64()%groupShards]
}

var (
	errNotLive       = errors.New("connection is closing")
	errTooManyGroups = errors.New("too many groups on one connection")
)

// join adds c to group k (of an app c holds a live session in); c may be
// in at most max groups.
func (g *groups) join(c *conn, k groupKey, max int) error {
	c.mu.Lock()
	if !c.liveInLocked(k.app) {
		c.mu.Unlock()
		return errNotLive
	}
	if _, in := c.groups[k]; in {
		c.mu.Unlock()
		return nil
	}
	if len(c.groups) >= max {
		c.mu.Unlock()
		return errTooManyGroups
	}
	if c.groups == nil {
		c.groups = make(map[groupKey]struct{})
	}
	c.groups[k] = struct{}{}
	c.mu.Unlock()

	s := g.shard(k)
	s.Lock()
	m := s.members[k]
	if m == nil {
		m = make(map[*conn]struct{})
		s.members[k] = m
	}
	m[c] = struct{}{}
	s.Unlock()

	// If c closed, or its session in the app ended, between the two steps,
	// leaveAll or leaveApp may have run before c was a member: undo.
	c.mu.Lock()
	closed := !c.liveInLocked(k.app)
	c.mu.Unlock()
	if closed {
		g.remove(k, c)
	}
	return nil
}

// leave removes c from group k.
func (g *groups) leave(c *conn, k groupKey) {
	c.mu.Lock()
	_, in := c.groups[k]
	delete(c.groups, k)
	c.mu.Unlock()
	if in {
		g.remove(k, c)
	}
}

// leaveAll removes c from every group it is in (c is closing).
func (g *groups) leaveAll(c *conn) {
	c.mu.Lock()
	mine := c.groups
	c.groups = nil
	c.mu.Unlock()
	for k := range mine {
		g.remove(k, c)
	}
}

// leaveApp removes c from every group of app (its session there ended).
func (g *groups) leaveApp(c *conn, app string) {
	var left []groupKey
	c.mu.Lock()
	for k := range c.groups {
		if k.app == app {
			left = append(left, k)
			delete(c.groups, k)
		}
	}
	c.mu.Unlock()
	for _, k := range left {
		g.remove(k, c)
	}
}

func (g *groups) remove(k groupKey, c *conn) {
	s := g.shard(k)
	s.Lock()
	if m := s.members[k]; m != nil {
		delete(m, c)
		if len(m) == 0 {
			delete(s.members, k)
		}
	}
	s.Unlock()
}

// each calls fn for every member of group k. fn must not block.
func (g *groups) each(k groupKey, fn func(*conn)) {
	s := g.shard(k)
	s.RLock()
	defer s.RUnlock()
	for c := range s.members[k] {
		fn(c)
	}
}
