package bench

import (
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
)

// TestMain makes the test binary a bench worker when a coordinator starts it.
func TestMain(m *testing.M) {
	if os.Getenv(WorkerEnv) != "" {
		if err := Worker(os.Stdin, os.Stdout); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestScenarios runs every scenario against a real server with 40 devices
// spread over 3 worker processes, with SDK devices (TCP) and MQTT devices,
// and checks what each one measured.
func TestScenarios(t *testing.T) {
	for _, scenario := range Scenarios {
		if scenario == "drain" { // needs a cluster: TestDrainScenario
			continue
		}
		for _, transport := range []string{"tcp", TransportMQTT} {
			t.Run(scenario+"/"+transport, func(t *testing.T) {
				t.Parallel()
				testScenario(t, scenario, transport)
			})
		}
	}
}

func testScenario(t *testing.T, scenario, transport string) {
	ts := testserver.Start(t, func(c *config.Config) { c.Apps = c.Apps[:1] })
	const n = 40
	o := runOptions(ts, scenario, n)
	o.Transport = transport
	r, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Connected != n || r.ConnectErrors != 0 || r.ConnectLatency.N != n {
		t.Fatalf("connected %d (%d errors, %d samples)", r.Connected, r.ConnectErrors, r.ConnectLatency.N)
	}
	if len(r.Servers) != 1 || r.Servers[0].Connections != n || r.Servers[0].RSSAfter == 0 {
		t.Fatalf("server stats %+v", r.Servers)
	}
	switch scenario {
	case "unicast", "batch", "group", "broadcast":
		if r.Expected == 0 || r.Delivered != r.Expected || r.Reach != 1 || r.Latency.N != r.Delivered {
			t.Fatalf("%s: %d of %d delivered (reach %v), %d latencies", scenario, r.Delivered, r.Expected, r.Reach, r.Latency.N)
		}
	case "storm":
		if r.StoredExpected != n || r.StoredReceived != n || r.StormSeconds <= 0 {
			t.Fatalf("storm: stored %d of %d, %vs", r.StoredReceived, r.StoredExpected, r.StormSeconds)
		}
	}
	if scenario == "broadcast" && r.Expected != n {
		t.Fatalf("broadcast reached %d of %d", r.Expected, n)
	}
}

// runOptions is a small run of scenario against ts.
func runOptions(ts *testserver.TS, scenario string, n int) Options {
	return Options{Scenario: scenario, Gateways: []string{ts.GatewayAddr()}, APIs: []string{ts.APIURL()},
		Transport: "tcp", App: "demo", Secret: testserver.Demo.Secret, APIKey: testserver.Demo.APIKey,
		N: n, ConnectRate: 400, Rate: 40, Duration: 500 * time.Millisecond, Size: 64, Batch: 4, PerWorker: 15,
		Heartbeat: 30 * time.Second, Self: os.Args[0]}
}

// A run counts only its own devices: a broadcast also reaches the app's
// other connections, which it reports but neither counts nor waits for
// (before, "delivered 100 of 104" and a 30 s wait); its unicasts go to
// devices of its own namespace, never to the app's devices.
func TestBenchCountsOnlyItsOwnDevices(t *testing.T) {
	ts := testserver.Start(t, func(c *config.Config) { c.Apps = c.Apps[:1] })
	_, got := ts.Listen(t, "bench-1")
	r, err := Run(runOptions(ts, "broadcast", 10))
	if err != nil {
		t.Fatal(err)
	}
	if r.Expected != 10 || r.Delivered != 10 || r.Others != 1 || r.Reach != 1 {
		t.Fatalf("broadcast: %d of %d delivered, %d others, reach %v", r.Delivered, r.Expected, r.Others, r.Reach)
	}
	<-got // the broadcast, which a real device of the app does get
	if r, err = Run(runOptions(ts, "unicast", 10)); err != nil || r.Delivered != r.Expected {
		t.Fatalf("unicast: %+v %v", r, err)
	}
	select {
	case p := <-got:
		t.Fatalf("the app's device bench-1 got a unicast of the bench: %q", p.Data)
	default:
	}
	for _, s := range r.Servers {
		if s.BytesPerConn < 0 {
			t.Fatalf("negative bytes per connection: %+v", s)
		}
	}
}

// A run in which no device could log in is an error, not a result.
func TestBenchFailsWhenNoDeviceConnects(t *testing.T) {
	ts := testserver.Start(t, func(c *config.Config) { c.Apps = c.Apps[:1] })
	o := runOptions(ts, "connect", 5)
	o.Secret = "not-the-secret-0123456789"
	if _, err := Run(o); err == nil || !strings.Contains(err.Error(), "none of the 5 devices could log in") ||
		!strings.Contains(err.Error(), "the first: ") || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("every login refused: %v, want it to say why", err)
	}
}

// A run whose every API call fails is an error that says why; a server
// that cannot be scraped is reported as not measured, with no figure made
// up for it.
func TestBenchSaysWhy(t *testing.T) {
	ts := testserver.Start(t, func(c *config.Config) { c.Apps = c.Apps[:1] })
	o := runOptions(ts, "unicast", 5)
	o.APIKey = "not-the-key-0123456789"
	if _, err := Run(o); err == nil || !strings.Contains(err.Error(), "API calls failed; the first:") || !strings.Contains(err.Error(), "401") {
		t.Fatalf("every call refused: %v, want it to say why", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + ln.Addr().String()
	ln.Close()
	o = runOptions(ts, "connect", 5)
	o.APIs = []string{gone}
	r, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	if s := r.Servers[0]; s.Figures != nil || !strings.Contains(s.Error, "not measured") || !strings.Contains(s.Error, "refused") {
		t.Fatalf("an unreachable server: %+v", s)
	}
}

// The GC pause a run reports is its own, and bounded by the lowest bucket
// that counts all of its pauses: the buckets are cumulative (each counts
// every pause up to its bound), so every bucket above a pause grows with it.
func TestMaxPauseGrown(t *testing.T) {
	bucket := func(le string) string { return pauseBucket + le + `"}` }
	scrape := func(counts [4]float64, sum float64) metrics {
		return metrics{bucket("0.0001"): counts[0], bucket("0.001"): counts[1], bucket("0.1"): counts[2], bucket("+Inf"): counts[3],
			pauseHistogram + "_count": counts[3], pauseHistogram + "_sum": sum}
	}
	before := scrape([4]float64{10, 12, 13, 13}, 0.05)
	for _, c := range []struct {
		name  string
		after metrics
		want  float64
	}{
		{"13 pauses, the longest in the 0.001 bucket", scrape([4]float64{20, 25, 26, 26}, 0.06), 0.001},
		{"their total below that bound", scrape([4]float64{20, 25, 26, 26}, 0.0506), 0.0006},
		{"one pause past the last finite bucket: their total", scrape([4]float64{20, 25, 26, 27}, 0.55), 0.5},
		{"no GC in the run", before, 0},
	} {
		if got := maxPauseGrown(before, c.after); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s: max pause %v, want %v", c.name, got, c.want)
		}
	}
	// The run's collections and their mean pause come from the summary's
	// count and sum.
	after := scrape([4]float64{20, 25, 26, 26}, 0.06)
	before["go_gc_duration_seconds_count"], before["go_gc_duration_seconds_sum"] = 10, 0.010
	after["go_gc_duration_seconds_count"], after["go_gc_duration_seconds_sum"] = 14, 0.014
	one := func(m metrics) scrapes { return scrapes{m: []metrics{m}, errs: []error{nil}} }
	s := serverStats([]string{"http://x"}, one(before), one(before), one(after))[0]
	if s.Figures == nil || s.GCs != 4 || math.Abs(s.GCMeanPauseMs-1) > 1e-9 || s.GCMaxPauseMs != 1 {
		t.Fatalf("the run's GC figures: %+v %+v", s, s.Figures)
	}
}

func TestOptionsChecked(t *testing.T) {
	for _, o := range []Options{
		{Scenario: "fly", Gateways: []string{"x"}, N: 1, PerWorker: 1, Secret: "s"},
		{Scenario: "connect", N: 1, PerWorker: 1, Secret: "s"},
		{Scenario: "unicast", Gateways: []string{"x"}, APIs: []string{"y"}, N: 1, PerWorker: 1, Secret: "s"},
		{Scenario: "connect", Gateways: []string{"x"}, N: 0, PerWorker: 1, Secret: "s"},
		{Scenario: "batch", Gateways: []string{"x"}, APIs: []string{"y"}, N: 1, PerWorker: 1, Secret: "s", APIKey: "k", Rate: 1, Scatter: true},
	} {
		if _, err := Run(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestPayloadCarriesSendTime(t *testing.T) {
	now := time.Unix(1700000000, 123456789)
	p := payload(now, 256)
	if len(p) != 256 {
		t.Fatalf("payload of %d bytes", len(p))
	}
	if got, ok := sentAt(p); !ok || !got.Equal(now) {
		t.Fatalf("sent at %v, %v", got, ok)
	}
	if _, ok := sentAt([]byte("not a time")); ok {
		t.Fatal("a foreign payload parsed")
	}
}

// Against a cluster, the bench pushes through the first node's API to
// devices on every node (stored, with --ttl), and a broadcast through it
// reaches them all.
func TestBenchCluster(t *testing.T) {
	nodes := testserver.StartCluster(t, 3)
	for _, scenario := range []string{"batch", "broadcast"} {
		o := runOptions(nodes[0], scenario, 30)
		o.Gateways, o.APIs, o.Cluster, o.TTL = nil, nil, true, 60
		for _, n := range nodes {
			o.Gateways, o.APIs = append(o.Gateways, n.GatewayAddr()), append(o.APIs, n.APIURL())
		}
		r, err := Run(o)
		if err != nil {
			t.Fatal(err)
		}
		if r.Expected == 0 || r.Delivered != r.Expected || r.Reach != 1 {
			t.Fatalf("%s: %d of %d delivered", scenario, r.Delivered, r.Expected)
		}
		for _, s := range r.Servers {
			if s.Connections != 10 {
				t.Fatalf("%s: %v connections on %s, want 10 on each node", scenario, s.Connections, s.API)
			}
		}
	}
}

// With Scatter, a batch call's devices are drawn evenly from every node,
// and the calls go through every node's API.
func TestBenchScatter(t *testing.T) {
	p := &pusher{o: &Options{Gateways: []string{"a", "b", "c"}, N: 30, Batch: 7, Cluster: true, Scatter: true, run: "r"}}
	for range 20 {
		_, devices := p.choose()
		perNode, seen := make([]int, 3), map[string]bool{}
		for _, d := range devices {
			i, err := strconv.Atoi(strings.TrimPrefix(d, "bench-r-"))
			if err != nil || seen[d] {
				t.Fatalf("device %q (of %v)", d, devices)
			}
			seen[d], perNode[i%3] = true, perNode[i%3]+1
		}
		if !slices.Equal(perNode, []int{3, 2, 2}) {
			t.Fatalf("a call of 7 devices has %v on the 3 nodes", perNode)
		}
	}
	nodes := testserver.StartCluster(t, 3)
	o := runOptions(nodes[0], "batch", 30)
	o.Gateways, o.APIs, o.Cluster, o.Scatter, o.Batch = nil, nil, true, true, 6
	for _, n := range nodes {
		o.Gateways, o.APIs = append(o.Gateways, n.GatewayAddr()), append(o.APIs, n.APIURL())
	}
	r, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Expected == 0 || r.Delivered != r.Expected {
		t.Fatalf("%d of %d delivered", r.Delivered, r.Expected)
	}
	for _, s := range r.Servers {
		if s.Pushes == 0 {
			t.Fatalf("no call went through %s: %+v", s.API, r.Servers)
		}
	}
}

// TestDrainScenario: on a cluster of 3 real nodes, the first drains while
// stored messages flow to its devices; every one of its devices moves to
// the others, and every stored message arrives.
func TestDrainScenario(t *testing.T) {
	const token = "ops-token-0123456789"
	nodes := testserver.StartCluster(t, 3, func(c *config.Config) {
		c.Apps, c.Ops.Token, c.Gateway.DrainPeriod = c.Apps[:1], token, time.Second
	})
	o := Options{Scenario: "drain", Transport: "tcp", App: "demo", Secret: testserver.Demo.Secret,
		APIKey: testserver.Demo.APIKey, OpsToken: token, Cluster: true, N: 60, ConnectRate: 400, Rate: 20, Size: 64,
		Batch: 4, PerWorker: 30, Heartbeat: 30 * time.Second, Self: os.Args[0]}
	for _, n := range nodes {
		o.Gateways, o.APIs = append(o.Gateways, n.GatewayAddr()), append(o.APIs, n.APIURL())
	}
	r, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Moved != 20 || r.DrainSeconds <= 0 || r.PeakLoginRate <= 0 || r.StoredExpected == 0 || r.StoredReceived != r.StoredExpected {
		t.Fatalf("moved %d in %.2fs (peak %.0f logins/s), stored %d of %d", r.Moved, r.DrainSeconds, r.PeakLoginRate,
			r.StoredReceived, r.StoredExpected)
	}
	if r.Servers[1].Connections+r.Servers[2].Connections != 60 {
		t.Fatalf("after the drain: %+v", r.Servers)
	}
}

// With Broker, the load runs against Debian's mosquitto broker for a side
// by side figure: devices subscribe to the push topic, and the broadcast
// published there reaches them all.
func TestBrokerBroadcast(t *testing.T) {
	mosquitto := testengine.Need(t, "mosquitto")
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "mosquitto.conf")
	os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\n"), 0o600)
	broker := exec.Command(mosquitto, "-c", conf)
	if err := broker.Start(); err != nil {
		t.Fatalf("mosquitto (Debian package mosquitto): %v", err)
	}
	t.Cleanup(func() { broker.Process.Kill(); broker.Wait() })
	for dial := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Since(dial) > 5*time.Second {
			t.Fatalf("mosquitto does not listen on %s: %v", addr, err)
		}
	}
	r, err := Run(Options{Scenario: "broadcast", Gateways: []string{addr}, Transport: TransportMQTT, Broker: true,
		App: "demo", Secret: "unused", N: 40, Size: 64, PerWorker: 15, Heartbeat: 30 * time.Second, Self: os.Args[0]})
	if err != nil {
		t.Fatal(err)
	}
	if r.Connected != 40 || r.Expected != 40 || r.Delivered != 40 || r.Latency.N != 40 || len(r.Servers) != 0 {
		t.Fatalf("connected %d, delivered %d of %d, %d latencies, servers %v", r.Connected, r.Delivered, r.Expected, r.Latency.N, r.Servers)
	}
}
