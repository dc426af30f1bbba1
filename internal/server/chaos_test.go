package server_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
)

// The cluster through one fault after another, with stored pushes made all
// along: 3 nodes (processes), chaosDevices devices spread over them by
// dispatch, a steady stream of stored pushes, each with an id and retried
// with it until it gets a 200, and a ledger of every 200. The faults, in
// turn: kill -9 of a node, Redis stalled 5 s, kill -9 of Redis and a
// restart from its AOF, kill -9 of NATS and a restart, a node stalled past
// its lease. At the end every device has every message of the ledger, once
// and in order; each device has one session; and after each fault every
// device was reachable again within chaosBound (the times are logged:
// docs/cluster.md, Failures).
func TestClusterChaos(t *testing.T) {
	testengine.Long(t, "a minute of faults")
	r, bus := testengine.Redis(t), testengine.NATS(t)
	var nodes []*child
	for i := range 3 {
		nodes = append(nodes, startChild(t, t.TempDir(), fmt.Sprintf("node: n%d", i+1),
			fmt.Sprintf("cluster: {redis: %q, nats: %q, lease: 2s}", r.URL(), bus.NATSURL())))
	}
	c := newChaos(t, nodes)
	stopPushing := c.push()
	c.reachable("the start")

	nodes[0].kill9(t)
	c.dead[0].Store(true)
	c.reachable("kill -9 of a node")

	r.Signal(syscall.SIGSTOP)
	time.Sleep(5 * time.Second) // the stall is the fault
	r.Signal(syscall.SIGCONT)
	c.reachable("Redis stalled 5 s")

	r.Stop()
	r.Start()
	c.reachable("kill -9 of Redis, restarted from its AOF")

	bus.Stop()
	bus.Start()
	c.reachable("kill -9 of NATS, restarted")

	nodes[1].signal(t, syscall.SIGSTOP)
	time.Sleep(3 * time.Second) // past its 2 s lease
	nodes[1].signal(t, syscall.SIGCONT)
	c.reachable("a node stalled 3 s, past its lease")

	stopPushing()
	c.check()
}

const (
	chaosDevices = 300
	chaosPushers = 6                      // each pushes to its own devices, one push at a time
	chaosPace    = 60 * time.Millisecond  // between one pusher's pushes: ~100 pushes/s in all
	chaosBound   = 20 * time.Second       // every device reachable again after a fault
	chaosRetry   = 100 * time.Millisecond // between tries of a push that failed
	chaosBetween = 100                    // pushes answered 200 between two faults
)

type chaos struct {
	t     *testing.T
	nodes []*child
	dead  []atomic.Bool // nodes killed
	devs  []*client.Client

	mu       sync.Mutex
	ledger   [][]string // per device: the ids answered 200, in order
	got      [][]string // per device: the stored ids handed to the app, in order
	reorders int        // pushes whose seq was not above the last one's
	pushes   atomic.Int64
	tries    atomic.Int64 // failed tries, retried
}

func newChaos(t *testing.T, nodes []*child) *chaos {
	c := &chaos{t: t, nodes: nodes, dead: make([]atomic.Bool, len(nodes)),
		ledger: make([][]string, chaosDevices), got: make([][]string, chaosDevices)}
	var urls []string
	for _, n := range nodes {
		urls = append(urls, "http://"+n.api)
	}
	for i := range chaosDevices {
		var last uint64
		cfg := client.Config{DispatchURL: urls[i%len(urls)], DispatchURLs: urls,
			Token:      testserver.MintToken(t, testserver.Demo, fmt.Sprint("c", i), ""),
			MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, DialTimeout: 3 * time.Second,
			OnPush: func(p client.Push) {
				if p.Seq == 0 { // a probe
					return
				}
				c.mu.Lock()
				defer c.mu.Unlock()
				if p.Seq <= last {
					c.reorders++
				}
				last = p.Seq
				c.got[i] = append(c.got[i], string(p.Data)) // the push's id
			}}
		d, err := client.Dial(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		c.devs = append(c.devs, d)
	}
	return c
}

// api makes a call to a node not killed, the next one each time.
func (c *chaos) api(turn int, body map[string]any) (int, map[string]any) {
	for k := range len(c.nodes) {
		i := (turn + k) % len(c.nodes)
		if c.dead[i].Load() {
			continue
		}
		return callChild(c.nodes[i], body)
	}
	c.t.Fatal("no node left")
	return 0, nil
}

// push starts the pushers; the function it returns stops them, and returns
// once every push begun has got its 200.
func (c *chaos) push() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range chaosPushers {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				d := w + chaosPushers*(n%(chaosDevices/chaosPushers))
				if !c.store(d, fmt.Sprintf("m%d-%d", w, n), w) {
					return
				}
				time.Sleep(chaosPace)
			}
		})
	}
	return func() { cancel(); wg.Wait() }
}

// store pushes id to device d (from the turn-th node on), trying again with
// the same id until it gets a 200, and records it in the ledger; false if
// it got none within chaosBound.
func (c *chaos) store(d int, id string, turn int) bool {
	body := map[string]any{"app": "demo", "devices": []string{fmt.Sprint("c", d)}, "data": id, "ttl": 600, "id": id}
	for deadline := time.Now().Add(chaosBound); ; turn++ {
		if status, _ := c.api(turn, body); status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			c.t.Errorf("push %s got no 200 within %v", id, chaosBound)
			return false
		}
		c.tries.Add(1)
		time.Sleep(chaosRetry)
	}
	c.mu.Lock()
	c.ledger[d] = append(c.ledger[d], id)
	c.mu.Unlock()
	c.pushes.Add(1)
	return true
}

// reachable waits until a broadcast reaches every device once, and logs
// how long that took after the fault named what.
func (c *chaos) reachable(what string) {
	c.t.Helper()
	start := time.Now()
	turn := 0
	ctx, cancel := context.WithTimeout(context.Background(), chaosBound)
	defer cancel()
	for {
		turn++
		status, out := c.api(turn, map[string]any{"app": "demo", "broadcast": true, "data": "probe"})
		if status == http.StatusOK && out["online"] == float64(chaosDevices) {
			break
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("after %s: a broadcast reached %v of %d devices (%d) for %v", what, out["online"], chaosDevices, status, chaosBound)
		case <-time.After(50 * time.Millisecond):
		}
	}
	c.t.Logf("%s: every device reachable after %v (%d pushes answered 200 so far, %d tries retried)",
		what, time.Since(start).Round(time.Millisecond), c.pushes.Load(), c.tries.Load())
	// Pushes flow between the faults.
	more := c.pushes.Load() + chaosBetween
	testwait.Eventually(c.t, "pushes after "+what, func() bool { return c.pushes.Load() >= more || c.t.Failed() })
}

// check waits until every device has every message of the ledger, and
// fails on a message lost, handed over twice or out of order, or a device
// with more than one session.
func (c *chaos) check() {
	c.t.Helper()
	// A message stored while its device could not be told comes with the
	// next one: one more push to each device brings them.
	for i := range chaosDevices {
		if !c.store(i, fmt.Sprint("last-", i), i) {
			c.t.FailNow()
		}
	}
	testwait.EventuallyNil(c.t, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i := range chaosDevices {
			if len(c.got[i]) < len(c.ledger[i]) {
				return fmt.Errorf("c%d has %d of the %d messages answered 200", i, len(c.got[i]), len(c.ledger[i]))
			}
		}
		return nil
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	lost, dups, total := 0, 0, 0
	for i := range chaosDevices {
		total += len(c.ledger[i])
		seen := map[string]int{}
		for _, id := range c.got[i] {
			if seen[id]++; seen[id] == 2 {
				dups++
			}
		}
		missing := 0
		for _, id := range c.ledger[i] {
			if seen[id] == 0 {
				missing++
			}
		}
		// In the order of their 200s (one push at a time per device), less
		// what got no 200 and arrived all the same (a try that failed).
		var answered []string
		for _, id := range slices.Compact(slices.Clone(c.got[i])) {
			if slices.Contains(c.ledger[i], id) {
				answered = append(answered, id)
			}
		}
		if lost += missing; missing == 0 && !slices.Equal(answered, c.ledger[i]) {
			c.reorders++
		}
	}
	c.t.Logf("%d messages answered 200: %d lost, %d handed over twice, %d out of order", total, lost, dups, c.reorders)
	if lost+dups+c.reorders > 0 {
		c.t.Fatalf("%d lost, %d duplicated, %d reordered", lost, dups, c.reorders)
	}
	sessions := 0
	for i, n := range c.nodes {
		if !c.dead[i].Load() {
			sessions += connections(c.t, n)
		}
	}
	if sessions != chaosDevices {
		c.t.Fatalf("%d sessions over the live nodes for %d devices", sessions, chaosDevices)
	}
}

// callChild makes a push to a child node with the demo key, bounded by
// 10 s; status 0 when there was no answer.
func callChild(n *child, body map[string]any) (int, map[string]any) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return testserver.TryAPI(ctx, "http://"+n.api, http.MethodPost, "/v1/push", testserver.Demo.APIKey, body)
}

// connections sums a node's longlink_connections gauges of the demo app.
func connections(t *testing.T, n *child) int {
	total := 0
	for _, m := range regexp.MustCompile(`(?m)^longlink_connections\{app="demo",[^}]*\} (\d+)$`).FindAllStringSubmatch(n.metrics(t), -1) {
		v, _ := strconv.Atoi(m[1])
		total += v
	}
	return total
}
