package cluster

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/longlink/longlink/internal/redisclient"
	"github.com/longlink/longlink/protocol"
)

// A group's members live with their connections, on whichever nodes they
// are. Each node records in Redis the groups it holds members of (its
// interest), one hash per group, <p>{t}<app>:gi:<group> (in the group's
// partition): node -> "<incarnation> <generation>". A group push reads the
// hash and sends one request to each live node in it, none to the others.
// A node records its interest at a group's first join there, before the
// join is answered (gateway.Router's Joined); a leave writes nothing.
// Instead a push that finds a node with no member left, or a node live in
// a later run (restarted), deletes its field if it is still the one the
// push read (a join since wrote a newer generation). A node whose lease
// does not run gets no request but keeps its field (its lease may only
// have lapsed); the hash expires interestKept after the last first join in
// it.

// interestKept is how long a group's interest outlives its last first join.
const interestKept = 30 * 24 * time.Hour

// kindInterest is the kind of a group's interest key.
const kindInterest = "gi"

func (n *Node) interestKey(app, group string) string {
	return redisclient.Key(n.opts.Prefix, app, kindInterest, group)
}

// Joined implements gateway.Router.
func (n *Node) Joined(ctx context.Context, app, group string) error {
	ctx, cancel := n.call(ctx)
	defer cancel()
	key := n.interestKey(app, group)
	v := n.incarnation + " " + strconv.FormatUint(n.generation.Add(1), 10)
	for _, r := range n.redis.DoMulti(ctx, n.redis.B().Hset().Key(key).FieldValue().FieldValue(n.opts.Node, v).Build(),
		n.redis.B().Pexpire().Key(key).Milliseconds(interestKept.Milliseconds()).Build()) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("cluster: group interest not recorded: %w", err)
		}
	}
	return nil
}

// forgetScript deletes the fields of a group's interest (KEYS[1]) named by
// ARGV[1], ARGV[3], … if they still hold ARGV[2], ARGV[4], ….
var forgetScript = redisclient.NewScript(`#!lua
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return 0
`)

// PushGroup implements api.Fanout: one request to each live node that
// holds members of the group, by the group's interest.
func (n *Node) PushGroup(ctx context.Context, app, group string, f protocol.Frame) (int, error) {
	ctx, cancel := n.call(ctx)
	defer cancel()
	key := n.interestKey(app, group)
	nodes, err := n.redis.Do(ctx, n.redis.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil || len(nodes) == 0 {
		return 0, err
	}
	runs, err := n.runs(ctx)
	if err != nil {
		return 0, err
	}
	req := &request{Op: opGroup, App: app, Group: group, Frame: frameOf(&f)}
	reqs := make(map[string]*request, len(nodes))
	var gone []string // node, value: fields to delete if unchanged
	for node, v := range nodes {
		inc, _, _ := strings.Cut(v, " ")
		live, ok := runs[node]
		switch {
		case ok && sameIncarnation(inc, live):
			reqs[node] = req
		case ok: // restarted since: its members went with that run
			gone = append(gone, node, v)
		}
		// A node whose lease does not run is left out, its entry kept: the
		// lease may only have lapsed (Redis stalled past it) while the node
		// still holds its members, which no join would announce again.
	}
	total := 0
	for node, out := range n.replies(ctx, reqs) {
		total += out.N
		if out.Gone {
			gone = append(gone, node, nodes[node])
		}
	}
	if len(gone) > 0 {
		if err := forgetScript.Exec(ctx, n.redis, []string{key}, gone).Error(); err != nil {
			n.warn.Warn("cluster: a group's interest not cleaned", "app", app, "group", group, "err", err)
		}
	}
	return total, nil
}
