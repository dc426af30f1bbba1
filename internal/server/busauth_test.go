package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/server"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
)

// The bus can be closed to strangers: with nats-server asking for a user
// and password, nodes that give them (in the URL) form a cluster, while a
// client without them cannot connect, so cannot forge a cluster request
// (push to any app's devices, kick them, drain nodes); a node without
// them does not start; and a node on a bus with no credentials at all
// says so when it starts.
func TestClusterBusAuthenticated(t *testing.T) {
	r := testengine.Redis(t)
	closed := testengine.NATS(t, "--user", "longlink", "--pass", "bus-secret-0123456789")
	withCreds := func(c *config.Config) { c.Cluster.NATS = "nats://longlink:bus-secret-0123456789@" + closed.Addr }
	nodes := testserver.StartClusterOn(t, r, closed, 2, withCreds)
	d := connect(t, nodes[1], client.TCP, nodes[1].Token("d1", ""))
	nodes[0].Push(map[string]any{"devices": []string{"d1"}, "data": "through n1"})
	d.expect(t, "through n1")

	if nc, err := nats.Connect(closed.NATSURL()); err == nil {
		nc.Close()
		t.Fatal("a client without credentials joined the bus")
	}

	cfg := clusterConfig(t, "n3", r.URL(), closed.NATSURL())
	if s, err := server.Start(cfg, slog.New(slog.DiscardHandler)); err == nil {
		s.Shutdown(context.Background())
		t.Fatal("a node without the bus's credentials started")
	} else if !strings.Contains(err.Error(), "cluster: nats") || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("a node without credentials: %v", err)
	}

	cfg = clusterConfig(t, "n3", r.URL(), closed.NATSURL())
	cfg.Cluster.NATSCredentials = "/nonexistent/bus.creds"
	if _, err := server.Start(cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "cluster.nats_credentials") {
		t.Fatalf("a .creds file that is not there: %v", err)
	}

	for _, tc := range []struct {
		name, nats string
		warned     bool
	}{
		{"open bus", testengine.NATS(t).NATSURL(), true},
		{"credentials in the URL", "nats://longlink:bus-secret-0123456789@" + closed.Addr, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log testserver.SyncBuffer
			s, err := server.Start(clusterConfig(t, "n4", r.URL(), tc.nats), slog.New(slog.NewTextHandler(&log, nil)))
			if err != nil {
				t.Fatal(err)
			}
			s.Shutdown(context.Background())
			if warned := strings.Contains(log.String(), "has no credentials"); warned != tc.warned {
				t.Fatalf("warned %v, want %v:\n%s", warned, tc.warned, log.String())
			}
		})
	}
}

// A bus over TLS with a private CA: tls:// and cluster.nats_ca; without
// the CA the node does not start; a CA file that is not there is named.
func TestClusterBusTLS(t *testing.T) {
	certFile, keyFile, _ := testserver.WriteCert(t, t.TempDir())
	r := testengine.Redis(t)
	bus := testengine.NATS(t, "--tls", "--tlscert", certFile, "--tlskey", keyFile,
		"--user", "longlink", "--pass", "bus-secret-0123456789")
	url := "tls://longlink:bus-secret-0123456789@" + bus.Addr
	for _, tc := range []struct {
		name, ca, want string
	}{
		{"with the CA", certFile, ""},
		{"without it", "", "certificate"},
		{"a CA file that is not there", certFile + ".gone", "cluster.nats_ca"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clusterConfig(t, "n1", r.URL(), url)
			cfg.Cluster.NATSCA = tc.ca
			s, err := server.Start(cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				s.Shutdown(context.Background())
			}
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// clusterConfig is a cluster node's config on free ports.
func clusterConfig(t *testing.T, node, redis, nats string) *config.Config {
	cfg := config.Default()
	cfg.Node, cfg.DataDir = node, t.TempDir()
	cfg.Gateway.Listen, cfg.API.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Apps = []config.App{testserver.Demo}
	cfg.Cluster = config.Cluster{Redis: redis, NATS: nats, Lease: 2 * time.Second}
	return cfg
}

// While NATS is away, a push per device that cannot be reached does not
// make a log line each: the first is logged, then a count every 10 s with
// the latest reason (before, ~118 lines/s in an outage).
func TestClusterOutageLogsBounded(t *testing.T) {
	r, bus := testengine.Redis(t), testengine.NATS(t)
	n2 := testserver.StartClusterOn(t, r, bus, 1, func(c *config.Config) { c.Node = "n2" })[0]
	var log testserver.SyncBuffer
	n1, err := server.Start(clusterConfig(t, "n1", r.URL(), bus.NATSURL()), slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer n1.Shutdown(context.Background())
	n2.Listen(t, "d1")
	api := "http://" + n1.APIAddr()
	testwait.Eventually(t, "n1 to reach d1 on n2", func() bool {
		_, out := testserver.CallAPI(t, api, http.MethodPost, "/v1/push", testserver.Demo.APIKey,
			map[string]any{"app": "demo", "devices": []string{"d1"}, "data": "x"})
		return out["online"] == 1.0
	})
	bus.Stop()
	for range 100 {
		testserver.CallAPI(t, api, http.MethodPost, "/v1/push", testserver.Demo.APIKey,
			map[string]any{"app": "demo", "devices": []string{"d1"}, "data": "lost"})
	}
	lines := strings.Count(log.String(), "a node did not answer")
	if lines < 1 || lines > 2 {
		t.Fatalf("100 pushes to an unreachable node made %d log lines:\n%s", lines, log.String())
	}
	bus.Start()
}
