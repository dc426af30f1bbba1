package cluster

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/redis/rueidis"
)

// claimScript makes this node the holder of a device's session and returns
// the node that held it before ("" if none).
var claimScript = rueidis.NewLuaScript(`
local prev = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
return prev or ''
`)

// releaseScript forgets a device's route if this node still holds it.
var releaseScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

func (n *Node) routeKey(app, device string) string { return n.opts.Prefix + app + ":r:" + device }

// Claim implements gateway.Router: this node holds device's session in app
// now; the node that held it before, if another, is told to end it (4003).
func (n *Node) Claim(ctx context.Context, app, device string) error {
	ctx, cancel := n.call(ctx)
	defer cancel()
	prev, err := claimScript.Exec(ctx, n.redis, []string{n.routeKey(app, device)}, []string{n.opts.Node}).ToString()
	if err != nil {
		return fmt.Errorf("cluster: route not recorded: %w", err)
	}
	if prev != "" && prev != n.opts.Node {
		n.tellReplaced(ctx, prev, app, device)
	}
	return nil
}

// peerWait bounds the wait for another node's short answer where a stalled
// node must not hold things up: a login waiting for the node of the
// device's older session to end it, a node asking the others whether they
// still renew their leases.
const peerWait = 500 * time.Millisecond

// tellReplaced tells node (the holder of device's older session in app)
// to end it (4003), waiting at most peerWait; a node whose lease has
// lapsed is not waited for at all.
func (n *Node) tellReplaced(ctx context.Context, node, app, device string) {
	live, err := n.live(ctx)
	if err == nil && !slices.Contains(live, node) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, peerWait)
	defer cancel()
	if _, err := n.request(ctx, node, &request{Op: opReplace, App: app, Devices: []string{device}}); err != nil {
		n.warn.Warn("cluster: the older session was not told it was replaced", "node", node, "app", app, "device", device, "err", err)
	}
}

// Release implements gateway.Router.
func (n *Node) Release(ctx context.Context, app, device string) {
	ctx, cancel := n.call(ctx)
	defer cancel()
	if err := releaseScript.Exec(ctx, n.redis, []string{n.routeKey(app, device)}, []string{n.opts.Node}).Error(); err != nil {
		n.warn.Warn("cluster: route not released", "app", app, "device", device, "err", err)
	}
}

// locate groups devices by the live node that holds them in app; devices
// held by no live node are left out.
func (n *Node) locate(ctx context.Context, app string, devices []string) (map[string][]int, error) {
	live, err := n.live(ctx)
	if err != nil {
		return nil, err
	}
	alive := make(map[string]bool, len(live))
	for _, node := range live {
		alive[node] = true
	}
	keys := make([]string, len(devices))
	for i, d := range devices {
		keys[i] = n.routeKey(app, d)
	}
	byNode := make(map[string][]int)
	for start := 0; start < len(keys); start += 1000 {
		chunk := keys[start:min(start+1000, len(keys))]
		nodes, err := n.redis.Do(ctx, n.redis.B().Mget().Key(chunk...).Build()).ToArray()
		if err != nil {
			return nil, fmt.Errorf("cluster: routes: %w", err)
		}
		for i, v := range nodes {
			if node, err := v.ToString(); err == nil && alive[node] {
				byNode[node] = append(byNode[node], start+i)
			}
		}
	}
	return byNode, nil
}
