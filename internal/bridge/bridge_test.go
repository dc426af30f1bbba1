package bridge_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/internal/bridge"
	"github.com/longlink/longlink/internal/bridge/bridgetest"
	"github.com/longlink/longlink/internal/config"
)

// Each test sends through its vendor's fake (bridgetest), which checks the
// vendor's authentication, and compares what the sender sent byte for byte
// with the vendor's documented request format.

// n is the notification every test sends (to token).
func n(token string) bridge.Notification {
	return bridge.Notification{Token: token, ID: "m1", Title: "Hi", Body: "You have a message",
		Data: map[string]string{"k": "v"}, Collapse: "chat-1", High: true, TTL: 30 * time.Second}
}

// outcomes sends n to each token and checks each result.
func outcomes(t *testing.T, s bridge.Sender, want map[string]bridge.Result) {
	t.Helper()
	for token, w := range want {
		got, err := s.Send(context.Background(), n(token))
		if err != nil {
			t.Fatalf("%s: send to %q: %v", s.Vendor(), token, err)
		}
		if got.Outcome != w.Outcome || got.RetryAfter != w.RetryAfter || !strings.HasPrefix(got.Reason, w.Reason) {
			t.Errorf("%s: send to %q: %+v, want %+v", s.Vendor(), token, got, w)
		}
	}
}

// sent sends n through s, and returns what its vendor v got.
func sent(t *testing.T, s bridge.Sender, v *bridgetest.Vendor, n bridge.Notification) (string, http.Header) {
	t.Helper()
	if r, err := s.Send(context.Background(), n); err != nil || r.Outcome != bridge.Accepted {
		t.Fatalf("%s: %+v %v", s.Vendor(), r, err)
	}
	return v.Last()
}

// untagged is n of a push without a collapse key: its tag is its id.
func untagged() bridge.Notification {
	u := n("tok-1")
	u.Collapse, u.High, u.TTL, u.Data = "", false, 0, nil
	return u
}

// recall is the recall of n("tok-1").
func recall() bridge.Notification {
	return bridge.Notification{Token: "tok-1", ID: "m1", Recall: true, TTL: 30 * time.Second}
}

// FCM: the service account's JWT-bearer exchange (the assertion's
// signature, issuer, scope and audience checked), the v1 message byte for
// byte, and the answers FCM's error codes page documents.
func TestFCM(t *testing.T) {
	v, srv, sa := bridgetest.FCM(t)
	s, err := bridge.NewFCM(bridge.FCMConfig{ServiceAccount: sa, URL: srv.URL}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	outcomes(t, s, map[string]bridge.Result{"tok-1": {Outcome: bridge.Accepted}})
	body, h := v.Last()
	want := `{"message":{"token":"tok-1","notification":{"title":"Hi","body":"You have a message"},"data":{"k":"v","longlink_id":"m1"},"android":{"collapse_key":"chat-1","priority":"HIGH","ttl":"30s","notification":{"tag":"chat-1"}}}}`
	if body != want || h.Get("Content-Type") != "application/json; charset=UTF-8" {
		t.Fatalf("FCM got %s (%s)\nwant %s", body, h.Get("Content-Type"), want)
	}
	for _, c := range []struct {
		n    bridge.Notification
		want string
	}{
		{untagged(), `{"message":{"token":"tok-1","notification":{"title":"Hi","body":"You have a message"},"data":{"longlink_id":"m1"},"android":{"priority":"NORMAL","notification":{"tag":"m1"}}}}`},
		{recall(), `{"message":{"token":"tok-1","data":{"longlink_recall":"m1"},"android":{"priority":"HIGH","ttl":"30s"}}}`},
	} {
		if body, _ := sent(t, s, v, c.n); body != c.want {
			t.Fatalf("FCM got %s\nwant %s", body, c.want)
		}
	}
	outcomes(t, s, map[string]bridge.Result{
		"dead":      {Outcome: bridge.DeadToken, Reason: "UNREGISTERED"},
		"invalid":   {Outcome: bridge.DeadToken, Reason: "INVALID_ARGUMENT"},
		"bad-field": {Outcome: bridge.Refused, Reason: "INVALID_ARGUMENT"},
		"quota":     {Outcome: bridge.QuotaExceeded, RetryAfter: 7 * time.Second, Reason: "QUOTA_EXCEEDED"},
		"down":      {Outcome: bridge.Retry, RetryAfter: bridge.DefaultRetry, Reason: "UNAVAILABLE"},
		"revoked":   {Outcome: bridge.Accepted}, // after a new access token
	})
	if v.Tokens() != 2 || v.Sends("revoked") != 2 {
		t.Fatalf("%d access tokens fetched, %d sends to the revoked one; want 2 and 2", v.Tokens(), v.Sends("revoked"))
	}
	if _, err := bridge.NewFCM(bridge.FCMConfig{ServiceAccount: []byte(`{"project_id":"p1","client_email":"e","token_uri":"u","private_key":"nope"}`)}, srv.Client()); err == nil ||
		!strings.Contains(err.Error(), "private_key") {
		t.Fatalf("a bad private key: %v", err)
	}
}

// APNs: HTTP/2 only, an ES256 provider token (signature, kid, iss
// checked) reused between sends and signed again when APNs calls it
// expired, the headers and payload byte for byte, and the answers Apple's
// "Handling notification responses" documents.
func TestAPNs(t *testing.T) {
	v, srv, key := bridgetest.APNs(t)
	s, err := bridge.NewAPNs(bridge.APNsConfig{Key: key,
		KeyID: "KEY1234567", TeamID: "TEAM123456", Topic: "com.example.app", URL: srv.URL}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	device := strings.Repeat("ab", 32)
	before := time.Now()
	outcomes(t, s, map[string]bridge.Result{device: {Outcome: bridge.Accepted}})
	body, h := v.Last()
	if want := `{"aps":{"alert":{"body":"You have a message","title":"Hi"}},"k":"v","longlink_id":"m1"}`; body != want {
		t.Fatalf("APNs got %s\nwant %s", body, want)
	}
	exp := h.Get("apns-expiration")
	if h.Get("apns-topic") != "com.example.app" || h.Get("apns-push-type") != "alert" || h.Get("apns-priority") != "10" ||
		h.Get("apns-collapse-id") != "chat-1" || exp < fmt.Sprint(before.Add(29*time.Second).Unix()) || exp > fmt.Sprint(time.Now().Add(31*time.Second).Unix()) {
		t.Fatalf("APNs headers: %v", h)
	}
	outcomes(t, s, map[string]bridge.Result{device: {Outcome: bridge.Accepted}})
	if v.Auths() != 1 {
		t.Fatalf("%d provider tokens for two sends, want one", v.Auths())
	}
	if body, h := sent(t, s, v, untagged()); body != `{"aps":{"alert":{"body":"You have a message","title":"Hi"}},"longlink_id":"m1"}` ||
		h.Get("apns-collapse-id") != "m1" || h.Get("apns-priority") != "5" || h.Get("apns-expiration") != "" {
		t.Fatalf("APNs got %s %v", body, h)
	}
	if body, h := sent(t, s, v, recall()); body != `{"aps":{"content-available":1},"longlink_recall":"m1"}` ||
		h.Get("apns-push-type") != "background" || h.Get("apns-priority") != "5" || h.Get("apns-collapse-id") != "" {
		t.Fatalf("APNs recall got %s %v", body, h)
	}
	if v.Auths() != 1 {
		t.Fatalf("%d provider tokens for two sends, want one", v.Auths())
	}
	outcomes(t, s, map[string]bridge.Result{
		"expired": {Outcome: bridge.Accepted}, // with a new provider token
		"dead":    {Outcome: bridge.DeadToken, Reason: "Unregistered"},
		"bad":     {Outcome: bridge.DeadToken, Reason: "BadDeviceToken"},
		"big":     {Outcome: bridge.Refused, Reason: "PayloadTooLarge"},
		"busy":    {Outcome: bridge.Retry, RetryAfter: bridge.DefaultRetry, Reason: "TooManyRequests"},
		"down":    {Outcome: bridge.Retry, RetryAfter: 2 * time.Second, Reason: "ServiceUnavailable"},
	})
	if v.Auths() != 2 || v.Sends("expired") != 2 {
		t.Fatalf("%d provider tokens, %d sends to the expired one; want 2 and 2", v.Auths(), v.Sends("expired"))
	}
	if _, err := bridge.NewAPNs(bridge.APNsConfig{Key: []byte("nope"), KeyID: "k", TeamID: "t", Topic: "x"}, srv.Client()); err == nil {
		t.Fatal("a bad .p8 key was taken")
	}
}

// HMS: the client-credentials grant (id and secret checked), the message
// byte for byte, and Push Kit's result codes: 80300007 (invalid token),
// 80200003 (the access token expired: fetched again), 503 (flow control).
func TestHMS(t *testing.T) {
	v, srv := bridgetest.HMS(t)
	s, err := bridge.NewHMS(bridge.HMSConfig{AppID: "10086", AppSecret: "s3cret", URL: srv.URL, TokenURL: srv.URL + "/oauth2/v3/token"}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	outcomes(t, s, map[string]bridge.Result{"tok-1": {Outcome: bridge.Accepted}})
	body, _ := v.Last()
	want := `{"validate_only":false,"message":{"data":"{\"k\":\"v\",\"longlink_id\":\"m1\"}","android":{"urgency":"HIGH","ttl":"30s","notification":{"title":"Hi","body":"You have a message","tag":"chat-1","click_action":{"type":3}}},"token":["tok-1"]}}`
	if body != want {
		t.Fatalf("HMS got %s\nwant %s", body, want)
	}
	for _, c := range []struct {
		n    bridge.Notification
		want string
	}{
		{untagged(), `{"validate_only":false,"message":{"data":"{\"longlink_id\":\"m1\"}","android":{"urgency":"NORMAL","notification":{"title":"Hi","body":"You have a message","tag":"m1","click_action":{"type":3}}},"token":["tok-1"]}}`},
		{recall(), `{"validate_only":false,"message":{"data":"{\"longlink_recall\":\"m1\"}","android":{"urgency":"HIGH","ttl":"30s"},"token":["tok-1"]}}`},
	} {
		if body, _ := sent(t, s, v, c.n); body != c.want {
			t.Fatalf("HMS got %s\nwant %s", body, c.want)
		}
	}
	outcomes(t, s, map[string]bridge.Result{
		"dead":    {Outcome: bridge.DeadToken, Reason: "80300007"},
		"flow":    {Outcome: bridge.QuotaExceeded, RetryAfter: 3 * time.Second},
		"big":     {Outcome: bridge.Refused, Reason: "80300008"},
		"expired": {Outcome: bridge.Accepted},
	})
	if v.Tokens() != 2 || v.Sends("expired") != 2 {
		t.Fatalf("%d access tokens, %d sends to the expired one; want 2 and 2", v.Tokens(), v.Sends("expired"))
	}
}

// Xiaomi: the app secret in Authorization, the form byte for byte (a
// notification, one without a collapse key, a recall as a pass-through
// message; notify_id is the tag's 32-bit FNV-1a, its top bit cleared),
// and Mi Push's result codes: bad_regids and 20301 (a dead
// token), 200001 (the daily quota), 10002 (busy), 503.
func TestXiaomi(t *testing.T) {
	v, srv := bridgetest.Xiaomi(t)
	s, err := bridge.NewXiaomi(bridge.XiaomiConfig{AppSecret: "xm-s3cret", Package: "com.example.app", ChannelID: "msgs", URL: srv.URL}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		n    bridge.Notification
		want string
	}{
		{n("tok-1"), "description=You+have+a+message&extra.channel_id=msgs&extra.notify_foreground=1&notify_id=1847519737&notify_type=-1&pass_through=0" +
			"&payload=%7B%22k%22%3A%22v%22%2C%22longlink_id%22%3A%22m1%22%7D&registration_id=tok-1&restricted_package_name=com.example.app&time_to_live=30000&title=Hi"},
		{untagged(), "description=You+have+a+message&extra.channel_id=msgs&extra.notify_foreground=1&notify_id=338587627&notify_type=-1&pass_through=0" +
			"&payload=%7B%22longlink_id%22%3A%22m1%22%7D&registration_id=tok-1&restricted_package_name=com.example.app&title=Hi"},
		{recall(), "pass_through=1&payload=%7B%22longlink_recall%22%3A%22m1%22%7D&registration_id=tok-1&restricted_package_name=com.example.app&time_to_live=30000"},
	} {
		if body, h := sent(t, s, v, c.n); body != c.want || h.Get("Authorization") != "key=xm-s3cret" {
			t.Fatalf("Xiaomi got %s (%s)\nwant %s", body, h.Get("Authorization"), c.want)
		}
	}
	outcomes(t, s, map[string]bridge.Result{
		"dead":    {Outcome: bridge.DeadToken, Reason: "bad_regids"},
		"invalid": {Outcome: bridge.DeadToken, Reason: "20301"},
		"quota":   {Outcome: bridge.QuotaExceeded, RetryAfter: bridge.DefaultRetry, Reason: "200001"},
		"busy":    {Outcome: bridge.Retry, RetryAfter: bridge.DefaultRetry, Reason: "10002"},
		"down":    {Outcome: bridge.Retry, RetryAfter: 4 * time.Second},
		"refused": {Outcome: bridge.Refused, Reason: "10017"},
	})
	outcomes(t, s, map[string]bridge.Result{"busy": {Outcome: bridge.Accepted}}) // the second time
	// From an app's push_bridge config.
	senders, err := bridge.Senders(config.PushBridge{Xiaomi: config.XiaomiVendor{AppSecret: "xm-s3cret", Package: "com.example.app", URL: srv.URL}}, srv.Client())
	if err != nil || len(senders) != 1 || senders["xiaomi"] == nil {
		t.Fatalf("senders: %v %v", senders, err)
	}
	outcomes(t, senders["xiaomi"], map[string]bridge.Result{"from-config": {Outcome: bridge.Accepted}})
	bad, _ := bridge.NewXiaomi(bridge.XiaomiConfig{AppSecret: "wrong", Package: "com.example.app", URL: srv.URL}, srv.Client())
	if r, err := bad.Send(context.Background(), n("tok-1")); err != nil || r.Outcome != bridge.Refused || !strings.HasPrefix(r.Reason, "21301") {
		t.Fatalf("a wrong secret: %+v %v", r, err)
	}
}
