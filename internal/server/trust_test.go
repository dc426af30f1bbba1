package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testserver"
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
	testserver.Eventually(t, "the online event accepted", func() bool { return len(b.eventsOf("d1")) > 0 })

	b.secret.Store(testserver.Demo.Secret) // the app's secret is not the webhook secret here
	if status, _, err := d.Up(context.Background(), "demo", "chat", []byte("again")); err != nil || status != http.StatusUnauthorized {
		t.Fatalf("checked with the wrong secret: %d %v", status, err)
	}
	if b.forged.Load() == 0 {
		t.Fatal("the backend saw no bad signature")
	}
}
