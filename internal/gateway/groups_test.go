package gateway

import (
	"fmt"
	"testing"

	"github.com/longlink/longlink/internal/testwait"
)

// liveConn is a live connection logged into apps demo and other.
func liveConn(id uint64) *conn {
	return &conn{id: id, state: stateLive, sessions: []session{{app: "demo"}, {app: "other"}}}
}

func members(g *groups, k groupKey) int {
	n := 0
	g.each(k, func(*conn) { n++ })
	return n
}

func TestGroupsIndex(t *testing.T) {
	g := newGroups()
	a, b := liveConn(1), liveConn(2)
	room, other := groupKey{"demo", "room"}, groupKey{"other", "room"}
	for _, c := range []*conn{a, b} {
		if err := g.join(c, room, 10); err != nil {
			t.Fatal(err)
		}
	}
	g.join(a, room, 10) // joining twice is once
	g.join(a, other, 10)
	if n := members(g, room); n != 2 {
		t.Fatalf("room has %d members", n)
	}
	g.leave(b, room)
	if n := members(g, room); n != 1 {
		t.Fatalf("after leave: %d members", n)
	}
	if err := g.join(a, groupKey{"demo", "x"}, 2); err != errTooManyGroups {
		t.Fatalf("over the limit: %v", err)
	}
	a.state = stateClosing
	if err := g.join(a, groupKey{"demo", "late"}, 10); err != errNotLive {
		t.Fatalf("join while closing: %v", err)
	}
	g.leaveAll(a)
	if members(g, room)+members(g, other) != 0 || len(g.shards[0].members)+len(g.shard(room).members) != 0 {
		t.Fatal("leaveAll left memberships (or empty groups) behind")
	}
}

// A session that ended (replaced or kicked in its app) leaves that app's
// groups, and cannot join one again; the connection's other apps keep theirs.
func TestGroupsLeaveApp(t *testing.T) {
	g := newGroups()
	c := liveConn(1)
	demo, other := groupKey{"demo", "room"}, groupKey{"other", "room"}
	g.join(c, demo, 10)
	g.join(c, other, 10)
	c.sessions[0].over.Store(true)
	g.leaveApp(c, "demo")
	if members(g, demo) != 0 || members(g, other) != 1 {
		t.Fatalf("after leaveApp(demo): demo %d, other %d members", members(g, demo), members(g, other))
	}
	if err := g.join(c, demo, 10); err != errNotLive {
		t.Fatalf("join into an ended session: %v", err)
	}
	if err := g.join(c, groupKey{"nope", "room"}, 10); err != errNotLive {
		t.Fatalf("join into an app the connection is not logged into: %v", err)
	}
}

// BenchmarkGroupJoinLeave: joining and leaving a group costs the same in a
// group of 1,000 or of 100,000 members.
func BenchmarkGroupJoinLeave(b *testing.B) {
	for _, size := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("members=%d", size), func(b *testing.B) {
			g, k := newGroups(), groupKey{"demo", "big"}
			for i := range size {
				g.join(liveConn(uint64(i)), k, 10)
			}
			c := liveConn(uint64(size))
			b.ReportAllocs()
			for b.Loop() {
				g.join(c, k, 10)
				g.leave(c, k)
			}
		})
	}
}

// BenchmarkLeaveAllPerGroup: closing a connection costs the same per group
// whether it is in 10 groups or in 1,000.
func BenchmarkLeaveAllPerGroup(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("groups=%d", n), func(b *testing.B) {
			g := newGroups()
			keys := make([]groupKey, n)
			for i := range keys {
				keys[i] = groupKey{"demo", fmt.Sprint("g", i)}
			}
			b.ReportAllocs()
			for b.Loop() {
				c := liveConn(1)
				for _, k := range keys {
					g.join(c, k, n)
				}
				g.leaveAll(c)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/group")
		})
	}
}

// A group's first join here records the node's interest in it; a join that
// comes meanwhile waits for that, and both fail if it fails (the group is
// then forgotten, so that the next join records it again).
func TestGroupJoinsWaitForTheInterest(t *testing.T) {
	g := newGroups()
	started, release := make(chan groupKey, 4), make(chan error)
	g.announce = func(k groupKey) error {
		started <- k
		return <-release
	}
	room := groupKey{"demo", "room"}
	a, b := liveConn(1), liveConn(2)
	joined := make(chan error, 2)
	go func() { joined <- g.join(a, room, 10) }()
	if k := <-started; k != room {
		t.Fatalf("announced %v", k)
	}
	go func() { joined <- g.join(b, room, 10) }()
	testwait.Eventually(t, "the second join waiting", func() bool { return members(g, room) == 2 })
	select {
	case err := <-joined:
		t.Fatalf("a join answered (%v) before the interest was recorded", err)
	default:
	}
	release <- fmt.Errorf("redis away")
	for range 2 {
		if err := <-joined; err != errNotAnnounced {
			t.Fatalf("a join while the interest could not be recorded: %v", err)
		}
	}
	if n := members(g, room); n != 0 {
		t.Fatalf("%d members after the failed joins", n)
	}
	go func() { joined <- g.join(b, room, 10) }()
	<-started
	release <- nil
	if err := <-joined; err != nil || members(g, room) != 1 {
		t.Fatalf("a join once the interest is recorded: %v, %d members", err, members(g, room))
	}
}
