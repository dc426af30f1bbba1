// Package testserver starts real longlink servers for tests: every role in one
// process, listening on 127.0.0.1:0, with its data in t.TempDir().
package testserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/certs"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/server"
	"github.com/longlink/longlink/internal/testengine"
)

// Apps of every test server: "demo" and "other", with fixed credentials.
var (
	Demo  = config.App{ID: "demo", Secret: "demo-secret-0123456789", APIKey: "demo-key-0123456789"}
	Other = config.App{ID: "other", Secret: "other-secret-0123456789", APIKey: "other-key-0123456789"}
)

// TS is a running test server.
type TS struct {
	*server.Server
	t testing.TB
	// TLS trusts the server's certificate (nil without tls).
	TLS  *tls.Config
	http *http.Client // trusts it too
}

// WriteCert writes a new self-signed certificate for 127.0.0.1 and
// localhost to dir (cert.pem, key.pem) and returns their paths and a
// client configuration that trusts it.
func WriteCert(t testing.TB, dir string) (certFile, keyFile string, trust *tls.Config) {
	t.Helper()
	certFile, keyFile, certPEM, err := certs.WriteSelfSigned(dir, []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if trust, err = certs.ClientConfig(certPEM, false); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, trust
}

// WithTLS returns a config edit that serves TLS with a new self-signed
// certificate (and refuses plaintext if required).
func WithTLS(t testing.TB, required bool) func(*config.Config) {
	certFile, keyFile, _ := WriteCert(t, t.TempDir())
	return func(c *config.Config) { c.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile, Required: required} }
}

// Start starts a server; edit, if given, changes the config before it starts.
// The server shuts down when the test ends.
func Start(t testing.TB, edit ...func(*config.Config)) *TS {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.API.Listen = "127.0.0.1:0"
	cfg.Apps = []config.App{Demo, Other}
	for _, e := range edit {
		e(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		w := &testWriter{t: t}
		t.Cleanup(w.close) // after the server's shutdown (cleanups run last first)
		log = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := server.Start(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	ts := &TS{Server: s, t: t, http: http.DefaultClient}
	if cfg.TLS.Enabled() { // a self-signed certificate is its own CA
		ca, err := os.ReadFile(cfg.TLS.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		if ts.TLS, err = certs.ClientConfig(ca, false); err != nil {
			t.Fatal(err)
		}
		ts.http = &http.Client{Transport: &http.Transport{TLSClientConfig: ts.TLS}}
	}
	return ts
}

// StartCluster starts a real redis-server and nats-server, and n nodes
// n1..nN on them; edit, if given, changes every node's config.
func StartCluster(t testing.TB, n int, edit ...func(*config.Config)) []*TS {
	t.Helper()
	return StartClusterOn(t, testengine.Redis(t), testengine.NATS(t), n, edit...)
}

// Redis is a Redis server or a Redis Cluster (testengine's).
type Redis interface{ URL() string }

// StartClusterOn starts n nodes n1..nN on the given engines.
func StartClusterOn(t testing.TB, r Redis, nats *testengine.Engine, n int, edit ...func(*config.Config)) []*TS {
	t.Helper()
	nodes := make([]*TS, n)
	for i := range nodes {
		nodes[i] = Start(t, append([]func(*config.Config){func(c *config.Config) {
			c.Node = fmt.Sprintf("n%d", i+1)
			c.Cluster = config.Cluster{Redis: r.URL(), NATS: nats.NATSURL(), Lease: 2 * time.Second}
		}}, edit...)...)
	}
	return nodes
}

// testWriter writes a server's log to its test's, until the test ends: a
// line logged later (a rate-limited log's summary, on a timer) is dropped,
// for testing.T.Log panics then.
type testWriter struct {
	t      testing.TB
	mu     sync.Mutex
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// Token mints a demo-app token for device (and user, if not empty).
func (ts *TS) Token(device, user string) string {
	return MintToken(ts.t, Demo, device, user)
}

// MintToken mints a token for device of app, valid for an hour, that may
// join any group ("groups": ["*"]).
func MintToken(t testing.TB, app config.App, device, user string) string {
	t.Helper()
	tok, err := auth.MintClaims(app.Secret, auth.Claims{App: app.ID, Device: device, User: user, Groups: []string{"*"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Addr is where a client of transport tr connects (in plaintext).
func (ts *TS) Addr(tr client.Transport) string { return AddrFor(tr, ts.GatewayAddr()) }

// TLSAddr is where a client of transport tr connects over TLS.
func (ts *TS) TLSAddr(tr client.Transport) string {
	if tr == client.TCP {
		return ts.GatewayAddr()
	}
	return "wss://" + ts.GatewayAddr() + "/ws"
}

// AddrFor is where a client of transport tr connects to the gateway at gateway.
func AddrFor(tr client.Transport, gateway string) string {
	if tr == client.TCP {
		return gateway
	}
	return "ws://" + gateway + "/ws"
}

// APIURL is the base URL of the HTTP API.
func (ts *TS) APIURL() string {
	if ts.TLS != nil {
		return "https://" + ts.APIAddr()
	}
	return "http://" + ts.APIAddr()
}

// Call makes an API request with key as Bearer (none if empty) and body as
// JSON (a string is sent as is), and decodes the JSON answer into a map.
func (ts *TS) Call(method, path, key string, body any) (int, map[string]any) {
	ts.t.Helper()
	return callWith(ts.t, ts.http, ts.APIURL(), method, path, key, body)
}

// CallAPI is Call against the API at base (http://host:port).
func CallAPI(t testing.TB, base, method, path, key string, body any) (int, map[string]any) {
	t.Helper()
	return callWith(t, http.DefaultClient, base, method, path, key, body)
}

func callWith(t testing.TB, hc *http.Client, base, method, path, key string, body any) (int, map[string]any) {
	t.Helper()
	status, out, err := try(context.Background(), hc, base, method, path, key, body)
	if err != nil {
		t.Fatal(err)
	}
	return status, out
}

// TryAPI is CallAPI within ctx for a server that may not answer: status 0
// (and out nil) when there was no JSON answer.
func TryAPI(ctx context.Context, base, method, path, key string, body any) (int, map[string]any) {
	status, out, err := try(ctx, http.DefaultClient, base, method, path, key, body)
	if err != nil {
		return 0, nil
	}
	return status, out
}

func try(ctx context.Context, hc *http.Client, base, method, path, key string, body any) (int, map[string]any, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, nil, fmt.Errorf("%s %s: answer is not JSON: %w", method, path, err)
	}
	return resp.StatusCode, out, nil
}

// Push pushes body (a JSON object) with the demo key and fails the test
// unless the answer is 200.
func (ts *TS) Push(body map[string]any) map[string]any {
	ts.t.Helper()
	if _, ok := body["app"]; !ok {
		body["app"] = Demo.ID
	}
	status, out := ts.Call(http.MethodPost, "/v1/push", Demo.APIKey, body)
	if status != http.StatusOK {
		ts.t.Fatalf("push: %d %v", status, out)
	}
	return out
}

// SyncBuffer is a bytes.Buffer that goroutines (a server's log, a
// command's output) write while a test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Metrics returns the /metrics page.
func (ts *TS) Metrics() string {
	ts.t.Helper()
	resp, err := ts.http.Get(ts.APIURL() + "/metrics")
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		ts.t.Fatal(err)
	}
	return string(raw)
}

// Listen connects device of the demo app over TCP with the Go SDK, and
// returns the client and the pushes it receives; it closes with the test.
func (ts *TS) Listen(t testing.TB, device string) (*client.Client, <-chan client.Push) {
	t.Helper()
	got := make(chan client.Push, 64)
	c, err := client.Dial(context.Background(), client.Config{Addr: ts.GatewayAddr(), Token: ts.Token(device, ""),
		OnPush: func(p client.Push) { got <- p }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, got
}
