package bench

import (
	"os"
	"testing"
	"time"

	"github.com/longlink/longlink/internal/config"
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
// spread over 3 worker processes, and checks what each one measured.
func TestScenarios(t *testing.T) {
	for _, scenario := range Scenarios {
		t.Run(scenario, func(t *testing.T) {
			t.Parallel()
			ts := testserver.Start(t, func(c *config.Config) { c.Apps = c.Apps[:1] })
			const n = 40
			r, err := Run(Options{Scenario: scenario, Gateways: []string{ts.GatewayAddr()}, APIs: []string{ts.APIURL()},
				Transport: "tcp", App: "demo", Secret: testserver.Demo.Secret, APIKey: testserver.Demo.APIKey,
				N: n, ConnectRate: 400, Rate: 40, Duration: 500 * time.Millisecond, Size: 64, Batch: 4, PerWorker: 15,
				Heartbeat: 30 * time.Second, Self: os.Args[0]})
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
		})
	}
}

func TestOptionsChecked(t *testing.T) {
	for _, o := range []Options{
		{Scenario: "fly", Gateways: []string{"x"}, N: 1, PerWorker: 1, Secret: "s"},
		{Scenario: "connect", N: 1, PerWorker: 1, Secret: "s"},
		{Scenario: "unicast", Gateways: []string{"x"}, APIs: []string{"y"}, N: 1, PerWorker: 1, Secret: "s"},
		{Scenario: "connect", Gateways: []string{"x"}, N: 0, PerWorker: 1, Secret: "s"},
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
