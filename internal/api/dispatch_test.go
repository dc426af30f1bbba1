package api

import (
	"fmt"
	"math"
	"testing"

	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/nodeinfo"
)

func serving(name string, conns int) nodeinfo.Info {
	return nodeinfo.Info{Node: name, State: nodeinfo.Serving, Connections: conns, Gateway: name + ":7070", Plain: true}
}

// The least loaded first, at most max_endpoints, draining nodes never; and
// a node listed first counts one more until the next second, so that a
// burst between two lease renewals is spread.
func TestDispatchOrder(t *testing.T) {
	var d dispatcher
	cfg := config.Dispatch{MaxEndpoints: 2}
	drained := serving("n0", 0)
	drained.State = nodeinfo.Draining
	nodes := []nodeinfo.Info{serving("n1", 30), serving("n2", 10), serving("n3", 20), drained}
	got := d.order(cfg, "demo", "d1", nodes)
	if len(got) != 2 || got[0].Node != "n2" || got[1].Node != "n3" {
		t.Fatalf("order: %v", got)
	}
	firsts := map[string]int{}
	for i := range 25 { // n2 takes 9 more (to 20), then n2 and n3 take turns; n1 stays above
		firsts[d.order(cfg, "demo", fmt.Sprint("x", i), nodes)[0].Node]++
	}
	if firsts["n1"] != 0 || firsts["n2"] < 16 || firsts["n2"] > 18 || firsts["n3"] != 25-firsts["n2"] {
		t.Fatalf("a burst of 30 went to %v; want it spread over n2 and n3 by load", firsts)
	}
}

// A stable share of devices goes to the canary nodes, and only there; the
// others never go there.
func TestDispatchCanary(t *testing.T) {
	var d dispatcher
	cfg := config.Dispatch{MaxEndpoints: 3, Canary: config.Canary{Nodes: []string{"n9"}, Percent: 5}}
	nodes := []nodeinfo.Info{serving("n1", 0), serving("n2", 0), serving("n9", 0)}
	canaries := 0
	const n = 10000
	for i := range n {
		device := fmt.Sprint("device-", i)
		got := d.order(cfg, "demo", device, nodes)
		onCanary := len(got) == 1 && got[0].Node == "n9"
		for _, g := range got {
			if g.Node == "n9" && !onCanary {
				t.Fatalf("%s: %v mixes the canary with other nodes", device, got)
			}
		}
		if onCanary {
			canaries++
		}
		if again := d.order(cfg, "demo", device, nodes); (len(again) == 1 && again[0].Node == "n9") != onCanary {
			t.Fatalf("%s: not stable", device)
		}
	}
	if share := 100 * float64(canaries) / n; math.Abs(share-5) > 0.7 {
		t.Fatalf("canary share %.2f%% of %d devices, want 5%%", share, n)
	}
	// No canary node serving: its share goes to the others.
	if got := d.order(cfg, "demo", "any", nodes[:2]); len(got) != 2 {
		t.Fatalf("without the canary node: %v", got)
	}
}
