package api

import (
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/nodeinfo"
)

// dispatcher chooses the nodes /v1/dispatch lists for a device: serving
// ones, the canary nodes for the canary share of devices and the others for
// the rest, the least loaded first. A node's load is its connections as its
// lease last said, plus the devices this API listed it first for since the
// last second began, so that the devices dispatched between two lease
// renewals do not all go to the same node. Safe for concurrent use.
type dispatcher struct {
	mu    sync.Mutex
	epoch time.Time      // the second sent counts
	sent  map[string]int // node -> devices listed it first in this second
}

// order returns the nodes to list for (app, device), at most cfg's
// max_endpoints of them.
func (d *dispatcher) order(cfg config.Dispatch, app, device string, nodes []nodeinfo.Info) []nodeinfo.Info {
	canary := canaryShare(app, device) < cfg.Canary.Percent
	var pool, others []nodeinfo.Info
	for _, n := range nodes {
		switch {
		case n.State != nodeinfo.Serving:
		case slices.Contains(cfg.Canary.Nodes, n.Node) == canary:
			pool = append(pool, n)
		default:
			others = append(others, n)
		}
	}
	if len(pool) == 0 && canary { // no canary node serves: the others take them
		pool = others
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if now := time.Now(); now.Sub(d.epoch) >= time.Second {
		d.epoch, d.sent = now, make(map[string]int)
	}
	slices.SortStableFunc(pool, func(a, b nodeinfo.Info) int {
		return (a.Connections + d.sent[a.Node]) - (b.Connections + d.sent[b.Node])
	})
	pool = pool[:min(len(pool), cfg.MaxEndpoints)]
	if len(pool) > 0 {
		d.sent[pool[0].Node]++
	}
	return pool
}

// canaryShare places (app, device) in [0, 100), stably: a device in the
// canary share stays in it for as long as the share does not shrink.
func canaryShare(app, device string) float64 {
	h := fnv.New64a()
	h.Write([]byte(app))
	h.Write([]byte{0})
	h.Write([]byte(device))
	return float64(h.Sum64()%10000) / 100
}
