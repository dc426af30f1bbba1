package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodApps = `
apps:
  - id: demo
    secret: "0123456789abcdef"
    api_key: "key-0123456789abcdef"
`

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(goodApps))
	if err != nil {
		t.Fatal(err)
	}
	if c.Node != "n1" || c.Gateway.Listen != "127.0.0.1:7070" || c.API.Listen != "127.0.0.1:8080" ||
		c.Gateway.Heartbeat != 30*time.Second || c.Gateway.SendQueue != 1024 || c.DataDir != "./longlink-data" {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestParseFull(t *testing.T) {
	c, err := Parse([]byte(`
node: edge-7
data_dir: /var/lib/longlink
gateway:
  listen: 0.0.0.0:7070
  heartbeat: 45s
  heartbeat_min: 10s
  max_frame_bytes: 8192
api:
  listen: 0.0.0.0:8080
  max_data_bytes: 4096
apps:
  - id: chat
    secret: "0123456789abcdef"
    api_key: "key-0123456789abcdef"
    webhooks:
      upstream: {msg: "http://127.0.0.1:9000/up"}
      status: "https://backend.example/status"
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Node != "edge-7" || c.Gateway.Heartbeat != 45*time.Second || c.Gateway.MaxFrameBytes != 8192 ||
		c.Apps[0].Webhooks.Upstream["msg"] != "http://127.0.0.1:9000/up" {
		t.Fatalf("parsed %+v", c)
	}
	if a, ok := NewAppSet(c.Apps).ByID("chat"); !ok || a.APIKey != "key-0123456789abcdef" {
		t.Fatal("App(chat) not found")
	}
}

// TestErrorsNameTheKey: every bad value is reported with its key.
func TestErrorsNameTheKey(t *testing.T) {
	app := func(extra string) string {
		return "apps:\n  - id: demo\n    secret: \"0123456789abcdef\"\n    api_key: \"key-0123456789abcdef\"\n" + extra
	}
	cases := map[string]string{
		"node: 'a b'\n" + goodApps:                                                          "node:",
		"gateway:\n  lisen: x\n" + goodApps:                                                 "gateway.lisen (line 2): unknown key",
		"gateway:\n  listen: nope\n" + goodApps:                                             "gateway.listen:",
		"api:\n  listen: ':x:y'\n" + goodApps:                                               "api.listen:",
		"gateway:\n  heartbeat_min: 1ms\n" + goodApps:                                       "gateway.heartbeat_min:",
		"gateway:\n  heartbeat_max: 2s\n" + goodApps:                                        "gateway.heartbeat_max:",
		"gateway:\n  heartbeat: 1h\n" + goodApps:                                            "gateway.heartbeat:",
		"gateway:\n  max_frame_bytes: 10\n" + goodApps:                                      "gateway.max_frame_bytes:",
		"gateway:\n  send_queue: -1\n" + goodApps:                                           "gateway.send_queue:",
		"gateway:\n  login_timeout: -1s\n" + goodApps:                                       "gateway.login_timeout:",
		"api:\n  max_data_bytes: 100000\n" + goodApps:                                       "api.max_data_bytes:",
		"gateway:\n  heartbeat: soon\n" + goodApps:                                          `gateway.heartbeat (line 2): "soon" is not a duration`,
		"cluster:\n  redis: redis://x:1/0\n" + goodApps:                                     "cluster.nats:",
		"cluster:\n  nats: nats://x:1\n" + goodApps:                                         "cluster.redis:",
		"cluster:\n  redis: redis://x:1\n  nats: nats://x\n  lease: 1ms\n" + goodApps:       "cluster.lease:",
		"cluster:\n  redis: redis://x:1\n  nats: nats://x\n  replicas_ack: -1\n" + goodApps: "cluster.replicas_ack:",
		"cluster:\n  redis: redis://x:1\n  nats: nats://x\n  replicas_ack: 1\n  replicas_ack_timeout: 100us\n" + goodApps: "cluster.replicas_ack_timeout:",
		"cluster:\n  nats_credentials: n.creds\n" + goodApps:                                                              "cluster.redis:",
		"limits:\n  queue_bytes: 100\n" + goodApps:                                                                        "limits.queue_bytes:",
		"limits:\n  queue_bytes_total: 100\n" + goodApps:                                                                  "limits.queue_bytes_total:",
		"limits:\n  push_bytes: 100\n" + goodApps:                                                                         "limits.push_bytes:",
		"limits:\n  app_pending_bytes: 1048576\n" + goodApps:                                                              "limits.app_pending_bytes:",
		"limits:\n  api_body_bytes: 1048576\n" + goodApps:                                                                 "limits.api_body_bytes:",
		"gateway:\n  max_login_bytes: 100\n" + goodApps:                                                                   "gateway.max_login_bytes:",
		"api:\n  read_header_timeout: -1s\n" + goodApps:                                                                   "api.read_header_timeout:",
		"api:\n  read_timeout: -1s\n" + goodApps:                                                                          "api.read_timeout:",
		"api:\n  idle_timeout: -1s\n" + goodApps:                                                                          "api.idle_timeout:",
		"node: n1\n":                                                                                                      "apps:",
		"apps:\n  id: demo\n":                                                                                             "apps (line 2): is a mapping of keys, not a list",
		"apps:\n  - id: Demo!\n    secret: x\n":                                                                           "apps[0].id:",
		"apps:\n  - id: demo\n    secret: short\n":                                                                        "apps[0].secret:",
		"apps:\n  - id: demo\n    secret: \"0123456789abcdef\"\n    api_key: k\n":                                         "apps[0].api_key:",
		"limits:\n  conns_per_ip: -1\n" + goodApps:                                                                        "limits.conns_per_ip:",
		"limits:\n  push_per_second: -2\n" + goodApps:                                                                     "limits.push_per_second:",
		"ops:\n  listen: nope\n" + goodApps:                                                                               "ops.listen:",
		"ops:\n  token: short\n" + goodApps:                                                                               "ops.token:",
		"tls:\n  key_file: k.pem\n" + goodApps:                                                                            "tls.cert_file:",
		"tls:\n  required: true\n" + goodApps:                                                                             "tls.cert_file:",
		"tls:\n  cert_file: c.pem\n" + goodApps:                                                                           "tls.key_file:",
		"tls:\n  record_layer: openssl\n" + goodApps:                                                                      "tls.record_layer: must be longlink or crypto/tls",
		app("    webhook_secret: short\n"):                                                                                "apps[0].webhook_secret:",
		app("    webhooks:\n      status: ftp://x\n"):                                                                     "apps[0].webhooks.status:",
		app("    webhooks:\n      upstream: {chat: nope}\n"):                                                              "apps[0].webhooks.upstream.chat:",
		app("  - id: demo\n    secret: \"0123456789abcdef\"\n    api_key: \"key-fedcba9876543210\"\n"):                    "apps[1].id:",
		app("  - id: two\n    secret: \"0123456789abcdef\"\n    api_key: \"key-0123456789abcdef\"\n"):                     "apps[1].api_key:",
		app("    push_bridge: {apns: {key_file: k.p8}}\n"):                                                                "apps[0].push_bridge.apns: key_file needs key_id",
		app("    push_bridge: {xiaomi: {app_secret: s}}\n"):                                                               "apps[0].push_bridge.xiaomi.package:",
		app("    push_bridge: {hms: {app_id: \"10086\"}}\n"):                                                              "apps[0].push_bridge.hms.app_secret:",
		app("    push_bridge: {escalate: {after: 30s}}\n"):                                                                "apps[0].push_bridge.escalate.after: escalates to no vendor",
		app("    push_bridge: {quiet: {from: \"22:00\", to: \"8am\"}}\n"):                                                 "apps[0].push_bridge.quiet: from and to",
		app("    push_bridge: {quiet: {from: \"22:00\", to: \"08:00\", tz: Nowhere/Else}}\n"):                             "apps[0].push_bridge.quiet: tz",
		app("    push_bridge: {fcm: {service_account_file: sa.json, url: nope}}\n"):                                       "apps[0].push_bridge.fcm.url:",
	}
	for in, want := range cases {
		_, err := Parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config\n%s\ngot %v, want an error naming %q", in, err, want)
		}
	}
}

// A bad engine URL is refused without saying it back: it may hold a
// password, and the error goes to logs.
func TestEngineURLsNotRepeated(t *testing.T) {
	for _, c := range []string{
		"cluster:\n  redis: http://:hunter2@x:1/0\n  nats: nats://x:1\n",
		"cluster:\n  redis: redis://x:1/0\n  nats: http://u:hunter2@x:1\n",
	} {
		_, err := Parse([]byte(c + goodApps))
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("config\n%s\ngot %v: want an error without the password", c, err)
		}
	}
}

func TestDemoApp(t *testing.T) {
	dir := t.TempDir()
	if _, err := DemoApp(dir, false); err == nil {
		t.Fatal("DemoApp without create invented credentials")
	}
	first, err := DemoApp(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != DemoAppID || len(first.Secret) < 16 || len(first.APIKey) < 16 || first.Secret == first.APIKey {
		t.Fatalf("demo app %+v", first)
	}
	again, err := DemoApp(dir, false)
	if err != nil || again.Secret != first.Secret || again.APIKey != first.APIKey {
		t.Fatalf("second read: %+v, %v; want %+v", again, err, first)
	}
	info, err := os.Stat(filepath.Join(dir, demoFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", info.Mode(), err)
	}
}

// Quiet hours: a window within a day, or past midnight, in its time zone;
// Until says when a time within it may go on.
func TestQuietUntil(t *testing.T) {
	sh, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	night := Quiet{From: "22:00", To: "08:00", TZ: "Asia/Shanghai"}
	day := Quiet{From: "09:00", To: "17:30:15"}
	at := func(loc *time.Location, d, h, m int) time.Time { return time.Date(2026, 12, d, h, m, 0, 0, loc) }
	for _, c := range []struct {
		q     Quiet
		t     time.Time
		quiet bool
		end   time.Time
	}{
		{night, at(sh, 7, 23, 0), true, at(sh, 8, 8, 0)},
		{night, at(sh, 8, 7, 59), true, at(sh, 8, 8, 0)},
		{night, at(sh, 8, 8, 0), false, time.Time{}},
		{night, at(sh, 8, 12, 0), false, time.Time{}},
		{night, at(time.UTC, 7, 15, 0), true, at(sh, 8, 8, 0)}, // 23:00 in Shanghai
		{day, at(time.UTC, 7, 10, 0), true, time.Date(2026, 12, 7, 17, 30, 15, 0, time.UTC)},
		{day, at(time.UTC, 7, 18, 0), false, time.Time{}},
		{Quiet{}, at(time.UTC, 7, 10, 0), false, time.Time{}},
	} {
		end, quiet, err := c.q.Until(c.t)
		if err != nil || quiet != c.quiet || !end.Equal(c.end) {
			t.Errorf("%+v at %v: %v %v %v, want %v %v", c.q, c.t, end, quiet, err, c.quiet, c.end)
		}
	}
	for _, bad := range []Quiet{{From: "22:00"}, {From: "25:00", To: "08:00"}, {From: "22:00", To: "08:00", TZ: "Mars/Olympus"}, {From: "08:00", To: "08:00"}} {
		if _, _, err := bad.Until(time.Now()); err == nil {
			t.Errorf("%+v taken", bad)
		}
	}
}
