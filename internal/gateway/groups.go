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
//
// In a cluster, a group's first member on this node makes the node record
// its interest in the group (announce, the Router's Joined) before the
// join is answered, so that a push to the group made after the answer
// comes to this node; a join that comes meanwhile waits for it.
type groups struct {
	seed     maphash.Seed
	shards   [groupShards]groupShard
	announce func(groupKey) error // nil on a single node; set before the first join
}

type groupShard struct {
	sync.RWMutex
	members map[groupKey]*group
}

// group is a group's members on this node.
type group struct {
	conns map[*conn]struct{}
	// ready is closed once the node's interest in the group is recorded
	// (nil on a single node); err says why it could not be.
	ready chan struct{}
	err   error
}

func newGroups() *groups {
	g := &groups{seed: maphash.MakeSeed()}
	for i := range g.shards {
		g.shards[i].members = make(map[groupKey]*group)
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
	errNotAnnounced  = errors.New("the cluster cannot record the group now; retry")
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
	gr := s.members[k]
	first := gr == nil
	if first {
		gr = &group{conns: make(map[*conn]struct{})}
		if g.announce != nil {
			gr.ready = make(chan struct{})
		}
		s.members[k] = gr
	}
	gr.conns[c] = struct{}{}
	s.Unlock()

	if err := g.announced(k, gr, first); err != nil {
		g.leave(c, k)
		return err
	}
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

// announced waits until this node's interest in group gr (k) is recorded
// (first: this join records it), and returns why it could not be. A group
// whose interest could not be recorded is forgotten, so that the next
// join tries again.
func (g *groups) announced(k groupKey, gr *group, first bool) error {
	if gr.ready == nil {
		return nil
	}
	if !first {
		<-gr.ready
		return gr.err
	}
	if err := g.announce(k); err != nil {
		gr.err = errNotAnnounced
		s := g.shard(k)
		s.Lock()
		if s.members[k] == gr {
			delete(s.members, k)
		}
		s.Unlock()
	}
	close(gr.ready)
	return gr.err
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
	if gr := s.members[k]; gr != nil {
		delete(gr.conns, c)
		if len(gr.conns) == 0 {
			delete(s.members, k)
		}
	}
	s.Unlock()
}

// each calls fn for every member of group k, and reports whether the group
// has members here. fn must not block.
func (g *groups) each(k groupKey, fn func(*conn)) bool {
	s := g.shard(k)
	s.RLock()
	defer s.RUnlock()
	gr := s.members[k]
	if gr == nil {
		return false
	}
	for c := range gr.conns {
		fn(c)
	}
	return true
}
