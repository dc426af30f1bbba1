package server_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
	"github.com/longlink/longlink/protocol"
)

// mover is a device that records what it receives and when it was cut off.
type mover struct {
	*client.Client
	mu       sync.Mutex
	got      map[string]bool // data received
	cutAt    []time.Time     // disconnects
	cutCodes []protocol.Code
}

func dialMover(t *testing.T, addr, token string) *mover {
	t.Helper()
	m := &mover{got: make(map[string]bool)}
	c, err := client.Dial(context.Background(), client.Config{Addr: addr, Token: token, MinBackoff: 200 * time.Millisecond,
		OnPush: func(p client.Push) {
			m.mu.Lock()
			m.got[string(p.Data)] = true
			m.mu.Unlock()
		},
		OnDisconnect: func(err error) {
			m.mu.Lock()
			m.cutAt = append(m.cutAt, time.Now())
			m.cutCodes = append(m.cutCodes, upCode(err))
			m.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m.Client = c
	return m
}

func (m *mover) cutCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.cutAt)
}

// spread checks that the first disconnects of movers are spread over most
// of period (not all at once), and returns their span.
func spread(t *testing.T, movers []*mover, period time.Duration) time.Duration {
	t.Helper()
	var cuts []time.Time
	for _, m := range movers {
		m.mu.Lock()
		if len(m.cutAt) == 0 || m.cutCodes[0] != protocol.CodeGoingAway {
			t.Fatalf("a device was not closed with 4009: %v", m.cutCodes)
		}
		cuts = append(cuts, m.cutAt[0])
		m.mu.Unlock()
	}
	slices.SortFunc(cuts, func(a, b time.Time) int { return a.Compare(b) })
	span := cuts[len(cuts)-1].Sub(cuts[0])
	if span < period*2/3 || span > period+time.Second {
		t.Errorf("the closes took %v; want them spread over the period (%v)", span, period)
	}
	// No slice of a sixth of the period takes more than a third of them.
	for i := range cuts {
		j, _ := slices.BinarySearchFunc(cuts, cuts[i].Add(period/6), func(a, b time.Time) int { return a.Compare(b) })
		if j-i > len(cuts)/3 {
			t.Fatalf("%d of %d closes within %v", j-i, len(cuts), period/6)
		}
	}
	return span
}

// TestClusterDrain: draining n1 while 300 devices are connected to it and
// stored pushes flow through n2: n1 leaves dispatch and refuses logins
// (4013); each device gets a redirect to n2 or n3, then 4009, spread over
// the drain period; every device ends on n2 or n3; nothing stored is lost.
func TestClusterDrain(t *testing.T) {
	const period = 3 * time.Second
	nodes := testserver.StartCluster(t, 3, withOpsToken, func(c *config.Config) { c.Gateway.DrainPeriod = period })
	const n = 300
	movers := make([]*mover, n)
	for i := range movers {
		movers[i] = dialMover(t, nodes[0].GatewayAddr(), nodes[0].Token(fmt.Sprint("m", i), ""))
	}

	// Stored pushes, 10 devices a call, through n2, before, during and
	// after the drain.
	want := make([]map[string]bool, n)
	for i := range want {
		want[i] = make(map[string]bool)
	}
	stop, pushed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(pushed)
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			data := fmt.Sprint("stored ", k)
			var to []string
			for _, i := range rand.Perm(n)[:10] {
				to = append(to, fmt.Sprint("m", i))
				want[i][data] = true
			}
			if status, out := nodes[1].Call(http.MethodPost, "/v1/push", testserver.Demo.APIKey,
				map[string]any{"app": "demo", "devices": to, "data": data, "ttl": 600}); status != http.StatusOK {
				t.Errorf("push: %d %v", status, out)
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)

	if status, out := nodes[0].Call(http.MethodGet, "/healthz", "", nil); status != http.StatusOK || out["status"] != "ok" {
		t.Fatalf("/healthz while serving: %d %v", status, out)
	}
	status, out := nodes[0].Call(http.MethodPost, "/v1/admin/drain", opsToken, nil)
	if node, _ := out["node"].(map[string]any); status != http.StatusAccepted || node["state"] != "draining" {
		t.Fatalf("drain: %d %v", status, out)
	}
	// A load balancer that asks /healthz takes the node out.
	if status, out := nodes[0].Call(http.MethodGet, "/healthz", "", nil); status != http.StatusServiceUnavailable ||
		out["status"] != "draining" || out["node"] != "n1" {
		t.Fatalf("/healthz while draining: %d %v", status, out)
	}
	// Out of dispatch (n2 learns it from n1's lease), and logins refused.
	testwait.Eventually(t, "n1 out of dispatch", func() bool {
		_, out := nodes[1].Call(http.MethodGet, "/v1/dispatch?app=demo&device=x", "", nil)
		for _, e := range out["endpoints"].([]any) {
			if e.(map[string]any)["address"] == nodes[0].GatewayAddr() {
				return false
			}
		}
		return true
	})
	// A login refused while the devices are being moved is told where to
	// go too.
	testwait.Eventually(t, "the first move", func() bool {
		return slices.ContainsFunc(movers, func(m *mover) bool { return m.cutCount() > 0 })
	})
	late := rawDial(t, nodes[0], client.TCP)
	late.WriteFrame(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(nodes[0].Token("late", ""))}, time.Second)
	if f := readUntilAny(t, late); f.Op != protocol.OpRedirect || len(f.Endpoints) != 4 {
		t.Fatalf("a login on the draining node: %s %v, want a redirect to n2 and n3", f.Op, f.Endpoints)
	}
	if f := readUntilAny(t, late); f.Op != protocol.OpError || f.Code != protocol.CodeDraining {
		t.Fatalf("a login on the draining node: %s %d %q, want 4013", f.Op, f.Code, f.Reason)
	}

	select {
	case <-nodes[0].Drained():
	case <-time.After(period + 5*time.Second):
		t.Fatal("the drain did not end")
	}
	span := spread(t, movers, period)
	close(stop)
	<-pushed

	on := map[any]int{}
	for i, m := range movers {
		testwait.Eventually(t, fmt.Sprint("m", i, " on n2 or n3"), func() bool {
			_, out := admin(t, nodes[1], fmt.Sprint("/v1/admin/devices/demo/m", i))
			if out["online"] == true && (out["node"] == "n2" || out["node"] == "n3") {
				on[out["node"]]++
				return true
			}
			return false
		})
		testwait.EventuallyNil(t, func() error {
			m.mu.Lock()
			defer m.mu.Unlock()
			var missing []string
			for data := range want[i] {
				if !m.got[data] {
					missing = append(missing, data)
				}
			}
			if len(missing) > 0 {
				slices.Sort(missing)
				return fmt.Errorf("m%d lacks %q of %d stored messages (disconnects %v, at %v)", i, missing, len(want[i]), m.cutCodes, m.cutAt)
			}
			return nil
		})
	}
	if on["n2"] < n/3 || on["n3"] < n/3 { // the redirects alternate between them
		t.Errorf("the devices went to n2 and n3 as %v; want them spread", on)
	}
	t.Logf("300 devices moved in %v, to %v", span, on)
}

// TestDrainOnSIGTERM: a single node drains on SIGTERM: each device is
// closed with 4009, spread over the period, after a redirect with no
// endpoints (there is no other node), and the process then exits 0.
func TestDrainOnSIGTERM(t *testing.T) {
	testengine.Long(t, "a drain spread over its period")
	const period = 1500 * time.Millisecond
	srv := startChild(t, t.TempDir(), fmt.Sprintf("gateway: {listen: 127.0.0.1:0, drain_period: %v}", period))
	var movers []*mover
	redirects := make(chan []protocol.Endpoint, 30)
	for i := range 30 {
		movers = append(movers, dialMover(t, srv.gateway, testserver.MintToken(t, testserver.Demo, fmt.Sprint("d", i), "")))
	}
	raw, err := client.DialConn(context.Background(), client.TCP, srv.gateway, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.WriteFrame(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(testserver.MintToken(t, testserver.Demo, "raw", ""))}, time.Second)
	go func() {
		for {
			var f protocol.Frame
			if raw.ReadFrame(&f) != nil {
				close(redirects)
				return
			}
			if f.Op == protocol.OpRedirect {
				redirects <- f.Endpoints
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	srv.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- srv.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the process ended with %v", err)
		}
	case <-time.After(period + 10*time.Second):
		t.Fatal("the process did not exit after the drain")
	}
	if eps, ok := <-redirects; !ok || len(eps) != 0 {
		t.Fatalf("redirect: %v (received: %v); want one with no endpoints", eps, ok)
	}
	spread(t, movers, period)
}

// TestClusterDispatch: /v1/dispatch lists the least loaded serving nodes
// first, at most dispatch.max_endpoints, and gives a stable share of
// devices the canary nodes only.
func TestClusterDispatch(t *testing.T) {
	nodes := testserver.StartCluster(t, 3, withOpsToken, func(c *config.Config) {
		c.Dispatch = config.Dispatch{MaxEndpoints: 2, Canary: config.Canary{Nodes: []string{"n3"}, Percent: 20}}
	})
	for i := range 3 {
		connect(t, nodes[0], client.TCP, nodes[0].Token(fmt.Sprint("a", i), ""))
	}
	connect(t, nodes[1], client.TCP, nodes[1].Token("b", ""))
	testwait.Eventually(t, "the leases to say 3 and 1", func() bool {
		_, out := admin(t, nodes[0], "/v1/admin/nodes")
		conns := map[any]any{}
		for _, n := range out["nodes"].([]any) {
			conns[n.(map[string]any)["node"]] = n.(map[string]any)["connections"]
		}
		return conns["n1"] == 3.0 && conns["n2"] == 1.0
	})
	tcpOf := func(device string) []string {
		_, out := nodes[0].Call(http.MethodGet, "/v1/dispatch?app=demo&device="+device, "", nil)
		var tcp []string
		for _, e := range out["endpoints"].([]any) {
			if e := e.(map[string]any); e["transport"] == "tcp" {
				tcp = append(tcp, e["address"].(string))
			}
		}
		return tcp
	}
	regular := ""
	for i := 0; regular == ""; i++ { // a device outside the canary share
		if d := fmt.Sprint("r", i); !slices.Contains(tcpOf(d), nodes[2].GatewayAddr()) {
			regular = d
		}
	}
	time.Sleep(time.Second) // the probes above counted as load for this second
	if got := tcpOf(regular); !slices.Equal(got, []string{nodes[1].GatewayAddr(), nodes[0].GatewayAddr()}) {
		t.Fatalf("dispatch of %s: %v; want n2 (1 connection) then n1 (3)", regular, got)
	}
	canary := 0
	for i := range 500 {
		got := tcpOf(fmt.Sprint("c", i))
		if slices.Contains(got, nodes[2].GatewayAddr()) {
			if len(got) != 1 {
				t.Fatalf("a canary device was given other nodes too: %v", got)
			}
			canary++
		}
	}
	if canary < 70 || canary > 130 {
		t.Fatalf("%d of 500 devices sent to the canary node; want about 100 (20%%)", canary)
	}
}

// Any node drains another through POST /v1/admin/drain?node= (the
// dashboard's buttons do): that node refuses logins with 4013 and says
// draining; an unknown node is a 404, and on a single node any other name.
func TestDrainAnotherNode(t *testing.T) {
	nodes := testserver.StartCluster(t, 2, withOpsToken, func(c *config.Config) { c.Gateway.DrainPeriod = time.Second })
	status, out := nodes[0].Call(http.MethodPost, "/v1/admin/drain?node=n2", opsToken, nil)
	if node, _ := out["node"].(map[string]any); status != http.StatusAccepted || node["node"] != "n2" || node["state"] != "draining" {
		t.Fatalf("drain n2 through n1: %d %v", status, out)
	}
	c := rawDial(t, nodes[1], client.TCP)
	c.WriteFrame(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(nodes[1].Token("late", ""))}, time.Second)
	if f := readUntil(t, c, protocol.OpError); f.Code != protocol.CodeDraining {
		t.Fatalf("a login on the drained node: %+v", f)
	}
	if status, _ := nodes[0].Call(http.MethodPost, "/v1/admin/drain?node=n9", opsToken, nil); status != http.StatusNotFound {
		t.Errorf("an unknown node: %d", status)
	}
	if status, _ := nodes[0].Call(http.MethodGet, "/v1/admin/nodes", opsToken, nil); status != http.StatusOK {
		t.Errorf("n1 after draining n2: %d", status)
	}
	single := testserver.Start(t, withOpsToken)
	if status, _ := single.Call(http.MethodPost, "/v1/admin/drain?node=n2", opsToken, nil); status != http.StatusNotFound {
		t.Errorf("another node on a single node: %d", status)
	}
}

// Shutdown during a drain cuts it short and waits for it: once Shutdown
// returns, the drain has ended (Drained is closed), though its period has
// a minute to run.
func TestShutdownEndsADrain(t *testing.T) {
	ts := testserver.Start(t, func(c *config.Config) { c.Gateway.DrainPeriod = time.Minute })
	ts.Listen(t, "d1")
	ts.Listen(t, "d2")
	ts.StartDrain()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ts.Drained():
	default:
		t.Fatal("Shutdown returned while the drain still ran")
	}
}
