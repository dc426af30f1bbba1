package server_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/bridge/bridgetest"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/server"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
)

// fcmSent are the values of data key k (longlink_id if not given) in
// what the fake FCM was sent for token, in order.
func fcmSent(t testing.TB, v *bridgetest.Vendor, token string, k ...string) []string {
	t.Helper()
	key := append(k, "longlink_id")[0]
	var ids []string
	for _, b := range v.Bodies() {
		if to, data := fcmData(t, b); to == token && data[key] != "" {
			ids = append(ids, data[key])
		}
	}
	return ids
}

// fcmData is the token and data of an FCM send's body.
func fcmData(t testing.TB, body string) (string, map[string]string) {
	var m struct {
		Message struct {
			Token string
			Data  map[string]string
		}
	}
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	return m.Message.Token, m.Message.Data
}

// madeOnce checks that the fake FCM v was sent each (message id, token)
// of pairs once, and no other, but those held at a node's kill: twice.
func madeOnce(t *testing.T, v *bridgetest.Vendor, pairs [][2]string, held map[[2]string]bool) {
	t.Helper()
	sends := map[[2]string]int{}
	for _, body := range v.Bodies() {
		sends[fcmPair(t, body)]++
	}
	for _, pair := range pairs {
		if want := map[bool]int{false: 1, true: 2}[held[pair]]; sends[pair] != want {
			t.Errorf("%v sent %d times, want %d (held at the kill: %v)", pair, sends[pair], want, held[pair])
		}
	}
	if len(sends) != len(pairs) {
		t.Errorf("%d (message, token) pairs sent, want %d", len(sends), len(pairs))
	}
}

// heldPairs are the (message id, token) of the sends v held.
func heldPairs(t *testing.T, v *bridgetest.Vendor) map[[2]string]bool {
	held := map[[2]string]bool{}
	for _, body := range v.Held() {
		held[fcmPair(t, body)] = true
	}
	return held
}

// fcmPair is the message id and token of an FCM send's body.
func fcmPair(t testing.TB, body string) [2]string {
	token, data := fcmData(t, body)
	return [2]string{data["longlink_id"], token}
}

// bridged is a fake FCM, and what a node needs to send through it.
type bridged struct {
	v   *bridgetest.Vendor
	env []string // SSL_CERT_FILE, trusting the fake's TLS certificate
	app string   // the demo app's line of a config, sending through it
}

// newBridged starts a fake FCM. defaults, if given, are more keys of the
// app's push_bridge (YAML, flow style).
func newBridged(t testing.TB, defaults ...string) bridged {
	v, srv, sa := bridgetest.FCM(t)
	dir := t.TempDir()
	saFile, caFile := filepath.Join(dir, "sa.json"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(saFile, sa, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	d := testserver.Demo
	return bridged{v: v, env: []string{"SSL_CERT_FILE=" + caFile},
		app: fmt.Sprintf("  - {id: %s, secret: %q, api_key: %q, push_bridge: {fcm: {service_account_file: %q, url: %q}%s}}\n",
			d.ID, d.Secret, d.APIKey, saFile, srv.URL, strings.Join(append([]string{""}, defaults...), ", "))}
}

// start starts a node in a process of its own, with b's demo app; extra
// is more of its config (YAML lines).
func (b bridged) start(t testing.TB, extra ...string) (*child, apiCall) {
	yaml := childConfig(filepath.Join(t.TempDir(), "data"), testserver.Other) + b.app + strings.Join(extra, "\n") + "\n"
	c := startChildYAML(t, b.env, yaml)
	return c, func(method, path, key string, body any) (int, map[string]any) {
		return testserver.CallAPI(t, "http://"+c.api, method, path, key, body)
	}
}

// startBridged starts a node whose demo app sends through a fake FCM, and
// returns the fake, the node and a call to its API. defaults are as
// newBridged's.
func startBridged(t testing.TB, defaults ...string) (*bridgetest.Vendor, *child, apiCall) {
	b := newBridged(t, defaults...)
	c, call := b.start(t)
	return b.v, c, call
}

// waitOffline waits until presence says the demo app's devices are all
// offline.
func waitOffline(t testing.TB, call apiCall, devices ...string) {
	t.Helper()
	testwait.Eventually(t, "the devices offline", func() bool {
		_, out := call(http.MethodGet, "/v1/presence?app=demo&device="+strings.Join(devices, "&device="), testserver.Demo.APIKey, nil)
		for _, p := range out["devices"].(map[string]any) {
			if p.(map[string]any)["online"] == true {
				return false
			}
		}
		return true
	})
}

// pushTo pushes body to the demo app through call, and fails unless it
// answers 200.
func pushTo(t testing.TB, call apiCall, body map[string]any) map[string]any {
	t.Helper()
	body["app"] = "demo"
	status, out := call(http.MethodPost, "/v1/push", testserver.Demo.APIKey, body)
	if status != http.StatusOK {
		t.Fatalf("push %v: %d %v", body, status, out)
	}
	return out
}

// The OS push bridge end to end, a node against a fake FCM (its TLS
// certificate trusted through SSL_CERT_FILE): a stored push with escalate
// reaches the OS tokens of the devices that did not ack it in time, with
// its message id, once; a device that acked costs no vendor call; a dead
// token is dropped; a 429 is sent again after its Retry-After; after 0
// escalates the devices offline now, at once, and not the online ones; a
// message recalled before its escalation is due is not escalated.
func TestEscalation(t *testing.T) {
	v, c, call := startBridged(t)
	d := testserver.Demo
	push := func(body map[string]any) map[string]any {
		t.Helper()
		return pushTo(t, call, body)
	}
	ctx := context.Background()

	// Each device registers its FCM token; all but "awake" then go away.
	// Awake handles "now" (and so acks it) only once released.
	devices, release := map[string]*device{}, make(chan struct{})
	defer close(release)
	for _, name := range []string{"asleep", "awake", "dead", "busy", "later"} {
		cfg := client.Config{Addr: c.gateway, Token: testserver.MintToken(t, d, name, "")}
		pushes := make(chan client.Push, 64)
		if name == "awake" {
			cfg.OnPush = func(p client.Push) {
				pushes <- p
				if string(p.Data) == "now" {
					<-release
				}
			}
		}
		dev := dialDevice(t, cfg)
		if cfg.OnPush != nil {
			dev.pushes = pushes
		}
		if err := dev.SetVendorToken(ctx, "demo", "fcm", "tok-"+name); err != nil {
			t.Fatal(err)
		}
		devices[name] = dev
	}
	if err := devices["dead"].SetVendorToken(ctx, "demo", "fcm", "dead"); err != nil { // the fake's unregistered token
		t.Fatal(err)
	}
	if err := devices["busy"].SetVendorToken(ctx, "demo", "fcm", "busy"); err != nil { // 429 once
		t.Fatal(err)
	}
	for _, name := range []string{"asleep", "dead", "busy", "later"} {
		devices[name].Close()
	}
	waitOffline(t, call, "asleep", "dead", "busy", "later")

	first := push(map[string]any{"devices": []string{"asleep", "awake", "dead", "busy"}, "data": "hello", "ttl": 600,
		"priority": "high", "escalate": map[string]any{"after": "4s", "title": "New message", "body": "Open the app"}})
	if first["online"] != 1.0 || first["offline"] != 3.0 {
		t.Fatalf("push: %v", first)
	}
	devices["awake"].expect(t, "hello") // and acks it
	id := first["id"].(string)
	testwait.Eventually(t, "awake's ack recorded", func() bool {
		_, out := call(http.MethodGet, "/v1/messages/"+id+"?app=demo", d.APIKey, nil)
		return out["acked"] == 1.0
	})
	if sent := v.Total(); sent != 0 { // the test's premise: the ack came within "after"
		t.Fatalf("%d escalations made before awake's ack was recorded, 4 s after the push", sent)
	}
	testwait.Eventually(t, "the unacked copies escalated, the busy one again after its Retry-After", func() bool {
		return slices.Equal(fcmSent(t, v, "tok-asleep"), []string{id}) && slices.Equal(fcmSent(t, v, "dead"), []string{id}) &&
			slices.Equal(fcmSent(t, v, "busy"), []string{id, id})
	})
	testwait.Eventually(t, "the report's escalation counts", func() bool {
		_, out := call(http.MethodGet, "/v1/messages/"+id+"?app=demo", d.APIKey, nil)
		return out["escalated"] == 3.0 && out["vendor_accepted"] == 2.0 && out["vendor_failed"] == 1.0
	})
	testwait.Eventually(t, "the dead token dropped", func() bool {
		return len(vendorTokens(t, call, "demo", d.APIKey, "dead")) == 0
	})
	if got := vendorTokens(t, call, "demo", d.APIKey, "asleep"); got["fcm"] != "tok-asleep" {
		t.Fatalf("a good token went: %v", got)
	}

	// after 0: the offline device at once, not the online one, though it
	// has not acked yet (its handler holds "now" until released).
	second := push(map[string]any{"devices": []string{"later", "awake"}, "data": "now", "ttl": 600,
		"escalate": map[string]any{"after": "0s", "title": "Now"}})
	devices["awake"].expect(t, "now")
	testwait.Eventually(t, "the offline device escalated at once", func() bool {
		return slices.Equal(fcmSent(t, v, "tok-later"), []string{second["id"].(string)})
	})
	// Devices are escalated in order, awake before later: later's is sent,
	// so awake's would have been. It never was, neither for the first push
	// (acked in time) nor for this one (online).
	if got := fcmSent(t, v, "tok-awake"); len(got) != 0 {
		t.Fatalf("the device online was escalated: %v", got)
	}

	// A message recalled before its escalation is due is not escalated: its
	// copies are gone. (Escalations fall due in order: once a later one is
	// sent, the recalled one's time has passed.)
	recalled := push(map[string]any{"devices": []string{"asleep"}, "data": "oops", "ttl": 600, "escalate": map[string]any{"after": "1s"}})
	if status, out := call(http.MethodDelete, "/v1/messages/"+recalled["id"].(string)+"?app=demo", d.APIKey, nil); status != http.StatusOK {
		t.Fatalf("recall: %d %v", status, out)
	}
	barrier := push(map[string]any{"devices": []string{"later"}, "data": "after", "ttl": 600, "escalate": map[string]any{"after": "2s"}})
	testwait.Eventually(t, "the escalation due after the recalled one's", func() bool {
		return slices.Contains(fcmSent(t, v, "tok-later"), barrier["id"].(string))
	})
	if got := fcmSent(t, v, "tok-asleep"); !slices.Equal(got, []string{id}) {
		t.Fatalf("asleep's escalations: %v, want the first push's only (not the recalled one)", got)
	}
	testwait.EventuallyNil(t, func() error { // counted once the vendor answered
		page := c.metrics(t)
		for outcome, want := range map[string]float64{"accepted": 4, "dead token": 1, "quota exceeded": 1} {
			if got := sampleValue(page, `longlink_escalations_total\{app="demo",outcome="`+outcome+`",vendor="fcm"\}`); got != want {
				return fmt.Errorf("escalations %s: %v, want %v", outcome, got, want)
			}
		}
		return nil
	})

	// A recall reaches the tokens that took the message (not the dead
	// one), through the vendor.
	if status, out := call(http.MethodDelete, "/v1/messages/"+id+"?app=demo", d.APIKey, nil); status != http.StatusOK || out["vendor_recalls"] != 2.0 {
		t.Fatalf("recall of an escalated message: %d %v", status, out)
	}
	testwait.Eventually(t, "the recall at the vendor, and counted", func() bool {
		return slices.Equal(fcmSent(t, v, "tok-asleep", "longlink_recall"), []string{id}) &&
			slices.Equal(fcmSent(t, v, "busy", "longlink_recall"), []string{id}) &&
			sampleValue(c.metrics(t), `longlink_vendor_recalls_total\{app="demo",outcome="accepted",vendor="fcm"\}`) == 2
	})

	// Refused at the API: escalate with no stored message, or to a group.
	for _, body := range []map[string]any{
		{"devices": []string{"asleep"}, "data": "x", "escalate": map[string]any{"after": "1s"}},
		{"group": "g", "data": "x", "ttl": 60, "escalate": map[string]any{"after": "1s"}},
		{"devices": []string{"asleep"}, "data": "x", "ttl": 60, "escalate": map[string]any{"after": "2m"}},
		{"devices": []string{"asleep"}, "data": "x", "ttl": 60, "priority": "urgent"},
	} {
		body["app"] = "demo"
		if status, out := call(http.MethodPost, "/v1/push", d.APIKey, body); status != http.StatusBadRequest {
			t.Fatalf("push %v: %d %v, want 400", body, status, out)
		}
	}
	// An app with no vendor cannot escalate.
	if status, out := call(http.MethodPost, "/v1/push", testserver.Other.APIKey, map[string]any{"app": "other",
		"devices": []string{"d1"}, "data": "x", "ttl": 60, "escalate": map[string]any{"after": "1s"}}); status != http.StatusBadRequest {
		t.Fatalf("other's escalation: %d %v", status, out)
	}
}

// Quiet hours hold an escalation until their window ends; a push of high
// priority goes through them.
func TestEscalationQuietHours(t *testing.T) {
	v, c, call := startBridged(t)
	ctx := context.Background()
	for _, name := range []string{"night", "urgent"} {
		dev := dialDevice(t, client.Config{Addr: c.gateway, Token: testserver.MintToken(t, testserver.Demo, name, "")})
		if err := dev.SetVendorToken(ctx, "demo", "fcm", "tok-"+name); err != nil {
			t.Fatal(err)
		}
		dev.Close()
	}
	waitOffline(t, call, "night", "urgent")
	now := time.Now().UTC()
	end := now.Add(4 * time.Second).Truncate(time.Second) // the window's end, to the second
	quiet := map[string]any{"from": now.Add(-2 * time.Second).Format("15:04:05"), "to": end.Format("15:04:05"), "tz": "UTC"}
	held := pushTo(t, call, map[string]any{"devices": []string{"night"}, "data": "x", "ttl": 600, "quiet": quiet,
		"escalate": map[string]any{"after": "0s"}})
	urgent := pushTo(t, call, map[string]any{"devices": []string{"urgent"}, "data": "y", "ttl": 600, "quiet": quiet,
		"priority": "high", "escalate": map[string]any{"after": "0s"}})
	sentAt := func(id string) time.Time {
		times := v.Times()
		for i, b := range v.Bodies() {
			if strings.Contains(b, id) {
				return times[i]
			}
		}
		return time.Time{}
	}
	testwait.Eventually(t, "both escalated", func() bool {
		return !sentAt(held["id"].(string)).IsZero() && !sentAt(urgent["id"].(string)).IsZero()
	})
	if at := sentAt(held["id"].(string)); at.Before(end) {
		t.Fatalf("escalated at %v, within the quiet hours (until %v)", at, end)
	}
	if at := sentAt(urgent["id"].(string)); !at.Before(end) {
		t.Fatalf("the high priority push waited for the quiet hours: sent at %v", at)
	}
	if status, out := call(http.MethodPost, "/v1/push", testserver.Demo.APIKey, map[string]any{"app": "demo", "devices": []string{"night"},
		"data": "z", "ttl": 60, "quiet": map[string]any{"from": "22:00", "to": "later"}, "escalate": map[string]any{"after": "1s"}}); status != http.StatusBadRequest {
		t.Fatalf("a bad quiet window: %d %v", status, out)
	}
}

// A scheduled push escalates from its send time, not from its request's.
func TestScheduledPushEscalatesFromItsSendTime(t *testing.T) {
	v, c, call := startBridged(t)
	dev := dialDevice(t, client.Config{Addr: c.gateway, Token: testserver.MintToken(t, testserver.Demo, "sleeper", "")})
	if err := dev.SetVendorToken(context.Background(), "demo", "fcm", "tok-sleeper"); err != nil {
		t.Fatal(err)
	}
	dev.Close()
	waitOffline(t, call, "sleeper")
	at := time.Now().Add(2 * time.Second).UTC()
	status, out := call(http.MethodPost, "/v1/push", testserver.Demo.APIKey, map[string]any{"app": "demo", "devices": []string{"sleeper"},
		"data": "later", "ttl": 600, "at": at.Format(time.RFC3339Nano), "escalate": map[string]any{"after": "0s"}})
	if status != http.StatusAccepted {
		t.Fatalf("scheduled push: %d %v", status, out)
	}
	testwait.Eventually(t, "the scheduled push escalated", func() bool { return v.Sends("tok-sleeper") == 1 })
	if sent := v.Times()[0]; sent.Before(at) {
		t.Fatalf("escalated at %v, before the push was made at %v", sent, at)
	}
	if ids := fcmSent(t, v, "tok-sleeper"); !slices.Equal(ids, []string{out["id"].(string)}) {
		t.Fatalf("escalated %v, want the scheduled push's id %v", ids, out["id"])
	}
}

// The app's push_bridge.escalate applies to its stored pushes that give no
// escalate of their own, with its title; not to online-only pushes.
func TestEscalationAppDefault(t *testing.T) {
	v, c, call := startBridged(t, `escalate: {after: 1s, title: "From the app"}`)
	dev := dialDevice(t, client.Config{Addr: c.gateway, Token: testserver.MintToken(t, testserver.Demo, "d1", "")})
	if err := dev.SetVendorToken(context.Background(), "demo", "fcm", "tok-d1"); err != nil {
		t.Fatal(err)
	}
	dev.Close()
	waitOffline(t, call, "d1")
	pushTo(t, call, map[string]any{"devices": []string{"d1"}, "data": "online only"})
	stored := pushTo(t, call, map[string]any{"devices": []string{"d1"}, "data": "stored", "ttl": 600})
	testwait.Eventually(t, "the app's default escalation", func() bool { return v.Total() == 1 })
	if ids := fcmSent(t, v, "tok-d1"); !slices.Equal(ids, []string{stored["id"].(string)}) {
		t.Fatalf("escalated %v, want the stored push only", ids)
	}
	if body := v.Bodies()[0]; !strings.Contains(body, `"title":"From the app"`) {
		t.Fatalf("the notification does not carry the app's title: %s", body)
	}
}

// A vendor key file that cannot be read or parsed stops the node at start,
// with an error naming the key, not at its first escalation.
func TestBadVendorKeyStopsStart(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "AuthKey.p8")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		bridge config.PushBridge
		want   string
	}{
		{config.PushBridge{FCM: config.FCMVendor{ServiceAccountFile: filepath.Join(t.TempDir(), "missing.json")}}, "apps[0].push_bridge.fcm.service_account_file: open"},
		{config.PushBridge{APNs: config.APNsVendor{KeyFile: bad, KeyID: "ABC123DEFG", TeamID: "TEAM123456", Topic: "com.example.app"}}, "apps[0].push_bridge.apns.key_file: apns: the key is not PEM"},
	} {
		cfg := config.Default()
		cfg.DataDir, cfg.Gateway.Listen, cfg.API.Listen = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
		app := testserver.Demo
		app.PushBridge = c.bridge
		cfg.Apps = []config.App{app}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		s, err := server.Start(cfg, slog.New(slog.DiscardHandler))
		if err == nil {
			s.Shutdown(context.Background())
			t.Fatalf("started with %+v", c.bridge)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Fatalf("start: %v, want it to name %q", err, c.want)
		}
	}
}

// nodeSends is how many notifications a node has at its vendors at once.
const nodeSends = 16

// A node killed with 1,000 escalations due loses none and makes none
// twice but those it could not know were made: the node claimed all ten
// pushes' escalations, made 400 (their outcomes kept), and had 16 sent
// whose answers the vendor held when it was killed. Once the claims' lease
// ends, another node and the node restarted make the other 600, each
// once; the 16 held are sent again (the node never learnt the vendor took
// them), under the same tag, so each phone still shows one notification.
func TestEscalationNodeKilled(t *testing.T) {
	b := newBridged(t)
	r, nats := testengine.Redis(t), testengine.NATS(t)
	cluster := fmt.Sprintf("cluster: {redis: %q, nats: %q, lease: 2s}", r.URL(), nats.NATSURL())
	n1, call := b.start(t, "node: n1", cluster)
	d := testserver.Demo
	const pushes, each, made = 10, 100, 400
	for i := range pushes * each {
		body := map[string]any{"app": "demo", "device": fmt.Sprint("d", i), "vendor": "fcm", "token": fmt.Sprint("tok-", i)}
		if status, out := call(http.MethodPost, "/v1/devices/vendor", d.APIKey, body); status != http.StatusOK {
			t.Fatalf("vendor token: %d %v", status, out)
		}
	}
	release := b.v.HoldAfter(made)
	var ids []string
	for p := range pushes {
		var devices []string
		for i := range each {
			devices = append(devices, fmt.Sprint("d", p*each+i))
		}
		out := pushTo(t, call, map[string]any{"devices": devices, "data": "x", "ttl": 600, "escalate": map[string]any{"after": "1s", "title": "New"}})
		ids = append(ids, out["id"].(string))
	}
	// counts sums a report count over the pushes, through call.
	counts := func(call apiCall) (escalated, accepted, failed float64) {
		for _, id := range ids {
			_, out := call(http.MethodGet, "/v1/messages/"+id+"?app=demo", d.APIKey, nil)
			e, _ := out["escalated"].(float64)
			a, _ := out["vendor_accepted"].(float64)
			f, _ := out["vendor_failed"].(float64)
			escalated, accepted, failed = escalated+e, accepted+a, failed+f
		}
		return
	}
	testwait.Eventually(t, "400 escalations made and kept, and 16 more held at the vendor", func() bool {
		_, accepted, _ := counts(call)
		return accepted == made && len(b.v.Held()) == nodeSends // so none is on its way when n1 dies
	})
	n1.kill9(t)
	release()
	held := heldPairs(t, b.v)
	_, call = b.start(t, "node: n2", cluster)
	b.start(t, "node: n1", cluster)

	testwait.EventuallyNilWithin(t, 45*time.Second, func() error { // the claims' lease is 30 s
		if e, a, f := counts(call); e != pushes*each || a != pushes*each || f != 0 {
			return fmt.Errorf("reports count %v escalated, %v accepted, %v failed; want %d, %d, 0", e, a, f, pushes*each, pushes*each)
		}
		return nil
	})
	var pairs [][2]string
	for p, id := range ids {
		for i := range each {
			pairs = append(pairs, [2]string{id, fmt.Sprint("tok-", p*each+i)})
		}
	}
	madeOnce(t, b.v, pairs, held)
	t.Logf("%d escalations: %d made before the kill, %d held at the vendor then (sent again), the rest after the lease", pushes*each, made, len(held))
}

// A single node killed with escalations due makes them as soon as it is
// back, not when its claims' lease would have ended (its store gives back
// the claims of the process that had it), each once but those whose
// answers the vendor held when it was killed.
func TestEscalationSingleNodeRestarted(t *testing.T) {
	b := newBridged(t)
	c, call := b.start(t)
	const devices, made = 200, 50
	var names []string
	for i := range devices {
		names = append(names, fmt.Sprint("d", i))
		body := map[string]any{"app": "demo", "device": names[i], "vendor": "fcm", "token": fmt.Sprint("tok-", i)}
		if status, out := call(http.MethodPost, "/v1/devices/vendor", testserver.Demo.APIKey, body); status != http.StatusOK {
			t.Fatalf("vendor token: %d %v", status, out)
		}
	}
	release := b.v.HoldAfter(made)
	id := pushTo(t, call, map[string]any{"devices": names, "data": "x", "ttl": 600, "escalate": map[string]any{"after": "0s", "title": "New"}})["id"].(string)
	report := func(call apiCall) map[string]any {
		_, out := call(http.MethodGet, "/v1/messages/"+id+"?app=demo", testserver.Demo.APIKey, nil)
		return out
	}
	testwait.Eventually(t, "50 escalations made and kept, and 16 more held", func() bool {
		return report(call)["vendor_accepted"] == float64(made) && len(b.v.Held()) == nodeSends // so none is on its way when it dies
	})
	c.kill9(t)
	release()
	held := heldPairs(t, b.v)
	raw, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	back := startChildYAML(t, b.env, string(raw))
	call = func(method, path, key string, body any) (int, map[string]any) {
		return testserver.CallAPI(t, "http://"+back.api, method, path, key, body)
	}
	testwait.Eventually(t, "every escalation made, well within the 30 s lease", func() bool { // testwait.Within is 10 s
		return report(call)["vendor_accepted"] == float64(devices)
	})
	var pairs [][2]string
	for i := range devices {
		pairs = append(pairs, [2]string{id, fmt.Sprint("tok-", i)})
	}
	madeOnce(t, b.v, pairs, held)
}
