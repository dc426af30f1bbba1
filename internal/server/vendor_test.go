package server_test

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/protocol"
)

// apiCall is an API call to a server (TS.Call, or testserver.CallAPI).
type apiCall func(method, path, key string, body any) (int, map[string]any)

// vendorTokens reads a device's OS push tokens through the API.
func vendorTokens(t *testing.T, call apiCall, app, key, device string) map[string]string {
	t.Helper()
	status, out := call(http.MethodGet, "/v1/devices/vendor?app="+app+"&device="+device, key, nil)
	if status != http.StatusOK {
		t.Fatalf("GET /v1/devices/vendor: %d %v", status, out)
	}
	tokens := map[string]string{}
	for v, tok := range out["tokens"].(map[string]any) {
		tokens[v] = tok.(string)
	}
	return tokens
}

// A device registers its OS push tokens itself (op vendor_token) over every
// transport, its backend through the API; a bad vendor or token is a
// non-fatal 4000 on the wire and a 400 from the API; a token is kept per
// (app, device): another app's device of the same id keeps its own.
func TestVendorTokens(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		ctx := context.Background()
		d := connect(t, ts, tr, ts.Token("d1", ""))
		if err := d.SetVendorToken(ctx, "demo", "fcm", "fcm-token:1"); err != nil {
			t.Fatal(err)
		}
		if err := d.SetVendorToken(ctx, "", "apns", strings.Repeat("ab", 32)); err != nil { // the connection's only app
			t.Fatal(err)
		}
		want := map[string]string{"fcm": "fcm-token:1", "apns": strings.Repeat("ab", 32)}
		if got := vendorTokens(t, ts.Call, "demo", testserver.Demo.APIKey, "d1"); !maps.Equal(got, want) {
			t.Fatalf("tokens after the device's registrations: %v, want %v", got, want)
		}
		for _, bad := range [][2]string{{"gcm", "t"}, {"fcm", "with space"}, {"fcm", strings.Repeat("x", protocol.MaxVendorToken+1)}} {
			var pe *protocol.Error
			if err := d.SetVendorToken(ctx, "demo", bad[0], bad[1]); !errors.As(err, &pe) || pe.Code != protocol.CodeBadFrame {
				t.Fatalf("vendor %q token %.20q: %v, want a 4000", bad[0], bad[1], err)
			}
		}
		if err := d.SetVendorToken(ctx, "demo", "fcm", ""); err != nil { // removes it; the connection lives on
			t.Fatal(err)
		}
		delete(want, "fcm")

		// The backend's registrations, and another app's device d1.
		for _, c := range []struct {
			app, key, vendor, token string
		}{
			{"demo", testserver.Demo.APIKey, "hms", "hms-1"},
			{"other", testserver.Other.APIKey, "fcm", "other-fcm"},
		} {
			status, out := ts.Call(http.MethodPost, "/v1/devices/vendor", c.key,
				map[string]any{"app": c.app, "device": "d1", "vendor": c.vendor, "token": c.token})
			if status != http.StatusOK {
				t.Fatalf("POST /v1/devices/vendor: %d %v", status, out)
			}
		}
		want["hms"] = "hms-1"
		if got := vendorTokens(t, ts.Call, "demo", testserver.Demo.APIKey, "d1"); !maps.Equal(got, want) {
			t.Fatalf("demo's d1: %v, want %v", got, want)
		}
		if got := vendorTokens(t, ts.Call, "other", testserver.Other.APIKey, "d1"); !maps.Equal(got, map[string]string{"fcm": "other-fcm"}) {
			t.Fatalf("other's d1: %v", got)
		}
		for _, body := range []map[string]any{
			{"app": "demo", "device": "d1", "vendor": "gcm", "token": "t"},
			{"app": "demo", "device": "", "vendor": "fcm", "token": "t"},
			{"app": "demo", "device": "d1", "vendor": "fcm", "token": "a b"},
		} {
			if status, out := ts.Call(http.MethodPost, "/v1/devices/vendor", testserver.Demo.APIKey, body); status != http.StatusBadRequest || out["error"] == nil {
				t.Fatalf("POST %v: %d %v, want a 400 with an error", body, status, out)
			}
		}
		// One app's key reads and writes its own devices only.
		if status, _ := ts.Call(http.MethodGet, "/v1/devices/vendor?app=other&device=d1", testserver.Demo.APIKey, nil); status != http.StatusForbidden && status != http.StatusUnauthorized {
			t.Fatalf("demo's key read other's tokens: %d", status)
		}
		if status, _ := ts.Call(http.MethodPost, "/v1/devices/vendor", testserver.Demo.APIKey,
			map[string]any{"app": "other", "device": "d1", "vendor": "fcm", "token": "stolen"}); status != http.StatusForbidden && status != http.StatusUnauthorized {
			t.Fatalf("demo's key wrote other's tokens: %d", status)
		}
		if err := d.Join(ctx, "demo", "still-here"); err != nil {
			t.Fatalf("the connection after its refused registrations: %v", err)
		}
	})
}
