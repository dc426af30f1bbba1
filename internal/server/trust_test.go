package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
	"github.com/longlink/longlink/protocol"
)

// A device joins a group itself only where its token's groups claim lets
// it (4012 otherwise, the connection staying up); the API may put it in any
// group.
func TestGroupPermissions(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		token, err := auth.MintClaims(testserver.Demo.Secret, auth.Claims{App: "demo", Device: "d1", Groups: []string{"room-*", "news"}}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		d := connect(t, ts, tr, token, func(c *client.Config) {
			c.OnDisconnect = func(err error) { t.Errorf("disconnected: %v", err) }
		})
		for group, want := range map[string]protocol.Code{"room-1": 0, "news": 0, "lobby": protocol.CodeNotAllowed, "newsroom": protocol.CodeNotAllowed} {
			if err := d.Join(context.Background(), "demo", group); upCode(err) != want {
				t.Errorf("join %s: %v, want code %d", group, err, want)
			}
		}
		status, out := ts.Call(http.MethodPost, "/v1/groups/join", testserver.Demo.APIKey,
			map[string]any{"app": "demo", "group": "lobby", "devices": []string{"d1"}})
		if status != http.StatusOK || out["online"] != 1.0 {
			t.Fatalf("API join: %d %v", status, out)
		}
		if out := ts.Push(map[string]any{"group": "lobby", "data": "in the lobby"}); out["online"] != 1.0 {
			t.Fatalf("lobby push: %v", out)
		}
		d.expect(t, "in the lobby")
		if out := ts.Push(map[string]any{"group": "room-1", "data": "in room 1"}); out["online"] != 1.0 {
			t.Fatalf("room push: %v", out)
		}
		d.expect(t, "in room 1")
	})
}

// Every webhook call is signed with the app's webhook secret (its secret
// unless webhook_secret is set): a backend checking with the right secret
// accepts it, one checking with another refuses it.
func TestWebhookSignatures(t *testing.T) {
	b := newBackend(t)
	b.secret.Store("the-webhook-secret-0123")
	ts := testserver.Start(t, withWebhooks(b), func(c *config.Config) { c.Apps[0].WebhookSecret = "the-webhook-secret-0123" })
	d := connect(t, ts, client.TCP, ts.Token("d1", ""))
	if status, body, err := d.Up(context.Background(), "demo", "chat", []byte("hi")); err != nil || status != http.StatusCreated ||
		string(body) != "echo: hi" {
		t.Fatalf("signed upstream call: %d %q %v", status, body, err)
	}
	testwait.Eventually(t, "the online event accepted", func() bool { return len(b.eventsOf("d1")) > 0 })

	b.secret.Store(testserver.Demo.Secret) // the app's secret is not the webhook secret here
	if status, _, err := d.Up(context.Background(), "demo", "chat", []byte("again")); err != nil || status != http.StatusUnauthorized {
		t.Fatalf("checked with the wrong secret: %d %v", status, err)
	}
	if b.forged.Load() == 0 {
		t.Fatal("the backend saw no bad signature")
	}
}

// mintFor mints a demo token for device that expires after ttl.
func mintFor(t *testing.T, device string, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.MintClaims(testserver.Demo.Secret, auth.Claims{App: "demo", Device: device}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// A connection whose token expires is closed with 4011; one refreshed in
// time (the refresh op) stays; a refresh with a token of another device is
// refused (4001) without closing the connection.
func TestTokenExpiryAndRefresh(t *testing.T) {
	testengine.Long(t, "waits for tokens to expire")
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		expiring := rawLogin(t, ts, tr, mintFor(t, "expiring", 2*time.Second), 0, 0)
		kept := rawLogin(t, ts, tr, mintFor(t, "kept", 2*time.Second), 0, 0)
		kept.WriteFrame(&protocol.Frame{Op: protocol.OpRefresh, Ref: []byte("bad"), Token: []byte(mintFor(t, "someone-else", time.Hour))}, time.Second)
		if f := readUntilError(t, kept); f.Code != protocol.CodeAuthFailed || string(f.Ref) != "bad" {
			t.Fatalf("refresh with another device's token: %d %q", f.Code, f.Reason)
		}
		kept.WriteFrame(&protocol.Frame{Op: protocol.OpRefresh, Ref: []byte("r"), Token: []byte(mintFor(t, "kept", time.Hour))}, time.Second)
		if f := readUntil(t, kept, protocol.OpOK); string(f.Ref) != "r" {
			t.Fatalf("refresh answered %+v", f)
		}
		if f := readUntilError(t, expiring); f.Code != protocol.CodeTokenExpired {
			t.Fatalf("expired token: %d %s, want 4011", f.Code, f.Reason)
		}
		testwait.Eventually(t, "the expiry counted by its reason", func() bool {
			return strings.Contains(ts.Metrics(), `longlink_disconnects_total{reason="token_expired"} 1`)
		})
		time.Sleep(time.Second) // past the first token of "kept"
		ts.Push(map[string]any{"devices": []string{"kept"}, "data": "still here"})
		if f := readUntil(t, kept, protocol.OpPush); string(f.Data) != "still here" {
			t.Fatalf("refreshed connection got %+v", f)
		}
	})
}

// The SDK, given a token source, refreshes its connection before the token
// expires; and when it could not (the source failed) and the server closed
// it with 4011, it reconnects with a fresh token.
func TestSDKTokenSource(t *testing.T) {
	testengine.Long(t, "waits for tokens to expire")
	ts := testserver.Start(t)
	var calls, failFirst atomic.Int64
	failFirst.Store(1)
	source := func(ctx context.Context, app string) (string, error) {
		calls.Add(1)
		if failFirst.Add(-1) >= 0 {
			return "", errors.New("backend busy")
		}
		return mintFor(t, "d1", 3*time.Second), nil
	}
	disconnects := make(chan error, 8)
	d := connect(t, ts, client.TCP, mintFor(t, "d1", 2*time.Second), func(c *client.Config) {
		c.TokenSource = source
		c.MinBackoff, c.MaxBackoff = 50*time.Millisecond, 100*time.Millisecond
		c.OnDisconnect = func(err error) { disconnects <- err }
	})
	select { // the source failed, so the first token ran out
	case err := <-disconnects:
		if upCode(err) != protocol.CodeTokenExpired {
			t.Fatalf("disconnected with %v, want 4011", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no 4011 after the first token expired")
	}
	testwait.Eventually(t, "reconnected", func() bool { return online(t, ts, "d1") })
	time.Sleep(4 * time.Second) // past the second token's life: it was refreshed
	select {
	case err := <-disconnects:
		t.Fatalf("disconnected again: %v", err)
	default:
	}
	ts.Push(map[string]any{"devices": []string{"d1"}, "data": "after refreshes"})
	d.expect(t, "after refreshes")
	if calls.Load() < 3 {
		t.Fatalf("the token source was called %d times", calls.Load())
	}
}

// get sends a GET with an optional Bearer token and returns the status.
func get(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Profiles need the ops token; /metrics and /healthz stay open. With
// ops.listen the ops surface has a port of its own, the API's port serves
// no profile, and /metrics moves there behind the token.
func TestOpsSurface(t *testing.T) {
	const token = "ops-token-0123456789"
	ts := testserver.Start(t, func(c *config.Config) { c.Ops.Token = token })
	api := ts.APIURL()
	for path, want := range map[string]int{"/debug/pprof/": 401, "/metrics": 200, "/healthz": 200} {
		if got := get(t, api+path, ""); got != want {
			t.Errorf("%s without a token: %d, want %d", path, got, want)
		}
	}
	if got := get(t, api+"/debug/pprof/", "wrong-token-0123456789"); got != 401 {
		t.Errorf("pprof with a wrong token: %d", got)
	}
	if got := get(t, api+"/debug/pprof/", token); got != 200 {
		t.Errorf("pprof with the token: %d", got)
	}

	apart := testserver.Start(t, func(c *config.Config) { c.Ops.Token, c.Ops.Listen = token, "127.0.0.1:0" })
	ops := "http://" + apart.OpsAddr()
	if ops == apart.APIURL() {
		t.Fatal("ops.listen did not give the ops surface a port of its own")
	}
	// /metrics moves there too, behind the token; each port has a favicon.
	for url, want := range map[string]int{ops + "/debug/pprof/": 200, ops + "/metrics": 200, ops + "/healthz": 200,
		apart.APIURL() + "/debug/pprof/": 404, apart.APIURL() + "/metrics": 404,
		ops + "/favicon.ico": 200, apart.APIURL() + "/favicon.ico": 200, api + "/favicon.ico": 200} {
		if got := get(t, url, token); got != want {
			t.Errorf("GET %s: %d, want %d", url, got, want)
		}
	}
	for _, path := range []string{"/debug/pprof/", "/metrics"} {
		if get(t, ops+path, "") != 401 {
			t.Errorf("%s on ops.listen without the token", path)
		}
	}
	// ops.metrics_public keeps it open on the API's port, for scrapers
	// that cannot send a token.
	public := testserver.Start(t, func(c *config.Config) {
		c.Ops.Token, c.Ops.Listen, c.Ops.MetricsPublic = token, "127.0.0.1:0", true
	})
	if got := get(t, public.APIURL()+"/metrics", ""); got != 200 {
		t.Errorf("/metrics on the API's port with metrics_public: %d", got)
	}
}

// Each limit refuses the offender only: connections over conns_per_ip and
// logins over logins_per_second are closed with 4005, pushes of an app over
// push_per_second get 429 with Retry-After, and the others go on.
func TestLimits(t *testing.T) {
	t.Run("conns_per_ip", func(t *testing.T) {
		ts := testserver.Start(t, func(c *config.Config) { c.Limits.ConnsPerIP = 2 })
		rawLogin(t, ts, client.TCP, ts.Token("d1", ""), 0, 0)
		second := rawLogin(t, ts, client.WebSocket, ts.Token("d2", ""), 0, 0)
		third := rawDial(t, ts, client.TCP)
		third.WriteFrame(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(ts.Token("d3", ""))}, time.Second)
		if f := readUntilError(t, third); f.Code != protocol.CodeRateLimited {
			t.Fatalf("a third connection from 127.0.0.1: %d %s, want 4005", f.Code, f.Reason)
		}
		second.Close() // a slot is free again
		testwait.Eventually(t, "a connection in the freed slot", func() bool {
			c, err := client.Dial(context.Background(), client.Config{Addr: ts.GatewayAddr(), Token: ts.Token("d4", "")})
			if err != nil {
				return false
			}
			c.Close()
			return true
		})
		if !strings.Contains(ts.Metrics(), `longlink_limited_total{limit="conns_per_ip"}`) {
			t.Error("the refusal was not counted")
		}
	})
	t.Run("conn_rate_per_ip", func(t *testing.T) {
		ts := testserver.Start(t, func(c *config.Config) { c.Limits.ConnRatePerIP = 2 })
		refused := 0
		for i := range 5 {
			c := rawDial(t, ts, client.TCP)
			c.WriteFrame(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(ts.Token(fmt.Sprint("d", i), ""))}, time.Second)
			if f := readUntilAny(t, c); f.Op == protocol.OpError && f.Code == protocol.CodeRateLimited {
				refused++
			}
		}
		if refused < 2 {
			t.Fatalf("5 connections at once with 2/s allowed: %d refused", refused)
		}
	})
	t.Run("logins_per_second", func(t *testing.T) {
		ts := testserver.Start(t, func(c *config.Config) { c.Limits.LoginsPerSecond = 1 })
		rawLogin(t, ts, client.TCP, ts.Token("d1", ""), 0, 0)
		c := rawDial(t, ts, client.TCP)
		c.WriteFrame(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(ts.Token("d2", ""))}, time.Second)
		if f := readUntilError(t, c); f.Code != protocol.CodeRateLimited {
			t.Fatalf("a second login in the same second: %d %s", f.Code, f.Reason)
		}
	})
	t.Run("push_per_second", func(t *testing.T) {
		ts := testserver.Start(t, func(c *config.Config) { c.Limits.PushPerSecond = 2 })
		body := map[string]any{"app": "demo", "devices": []string{"d1"}, "data": "x"}
		var limited *http.Response
		for range 5 {
			raw, _ := json.Marshal(body)
			req, _ := http.NewRequest(http.MethodPost, ts.APIURL()+"/v1/push", bytes.NewReader(raw))
			req.Header.Set("Authorization", "Bearer "+testserver.Demo.APIKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusTooManyRequests {
				limited = resp
			}
		}
		if limited == nil || limited.Header.Get("Retry-After") == "" {
			t.Fatalf("5 pushes at once with 2/s allowed: none refused with 429 and Retry-After")
		}
		// Another app is not affected.
		status, _ := testserver.CallAPI(t, ts.APIURL(), http.MethodPost, "/v1/push", testserver.Other.APIKey,
			map[string]any{"app": "other", "devices": []string{"d1"}, "data": "x"})
		if status != http.StatusOK {
			t.Fatalf("the other app's push: %d", status)
		}
	})
}

// readUntilAny reads the first frame, within 5s.
func readUntilAny(t *testing.T, c *rawConn) protocol.Frame {
	t.Helper()
	c.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	var f protocol.Frame
	if err := c.ReadFrame(&f); err != nil {
		t.Fatal(err)
	}
	return f
}
