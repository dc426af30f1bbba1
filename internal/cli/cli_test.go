package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/bench"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
)

// TestNewcomerPath follows the banner of `serve` to the letter: the printed
// listen line, then the printed curl request, must put the push on the
// listener's terminal.
func TestNewcomerPath(t *testing.T) {
	ts := testserver.Start(t, func(c *config.Config) { c.Apps = c.Apps[:1] })
	var banner bytes.Buffer
	if err := printBanner(&banner, ts.Server, true, true); err != nil {
		t.Fatal(err)
	}
	listenLine := regexp.MustCompile(`(?m) listen (.*)$`).FindStringSubmatch(banner.String())
	curl := regexp.MustCompile(`Bearer ([^']+)' -d '([^']+)' (\S+)`).FindStringSubmatch(banner.String())
	if listenLine == nil || curl == nil {
		t.Fatalf("banner lacks the listen or curl line:\n%s", banner.String())
	}

	var out, errOut testserver.SyncBuffer
	exit := make(chan int)
	go func() { exit <- Main(append([]string{"listen"}, strings.Fields(listenLine[1])...), &out, &errOut) }()
	testwait.Eventually(t, "listen to connect", func() bool { return strings.Contains(errOut.String(), "connected as d1") })

	req, _ := http.NewRequest(http.MethodPost, curl[3], strings.NewReader(curl[2]))
	req.Header.Set("Authorization", "Bearer "+curl[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the printed curl: %v %v", resp, err)
	}
	resp.Body.Close()
	testwait.Eventually(t, "the push on the listener's terminal", func() bool {
		return regexp.MustCompile(`(?m)^\[demo\] id=n1-\w+ hello$`).MatchString(out.String())
	})

	// A stored push, recalled: the listener prints the recall.
	id := ts.Push(map[string]any{"devices": []string{"d1"}, "data": "oops", "ttl": 600})["id"].(string)
	testwait.Eventually(t, "the stored push", func() bool { return strings.Contains(out.String(), "oops") })
	if status, body := ts.Call(http.MethodDelete, "/v1/messages/"+id+"?app=demo", testserver.Demo.APIKey, nil); status != http.StatusOK {
		t.Fatalf("recall: %d %v", status, body)
	}
	testwait.Eventually(t, "the recall on the listener's terminal", func() bool {
		return strings.Contains(out.String(), "[demo] recalled id="+id+"\n")
	})

	// A newer connection of d1 replaces the listener: it exits 1, saying why.
	c, err := client.Dial(context.Background(), client.Config{Addr: ts.GatewayAddr(), Token: ts.Token("d1", "")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if code := <-exit; code != 1 || !strings.Contains(errOut.String(), "4003") {
		t.Fatalf("listen exited %d: %s", code, errOut.String())
	}
}

func writeConfig(t *testing.T, body string) string {
	path := filepath.Join(t.TempDir(), "longlink.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTokenCommand(t *testing.T) {
	path := writeConfig(t, `
apps:
  - id: shop
    secret: "shop-secret-0123456789"
    api_key: "shop-key-0123456789"
`)
	var out, errOut bytes.Buffer
	if code := Main([]string{"token", "--config", path, "--device", "d9", "--user", "u9", "--group", "room-*"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	claims, err := auth.Verify(strings.TrimSpace(out.String()), func(app string) (string, bool) {
		return "shop-secret-0123456789", app == "shop"
	})
	if err != nil || claims.App != "shop" || claims.Device != "d9" || claims.User != "u9" || !slices.Equal(claims.Groups, []string{"room-*"}) {
		t.Fatalf("token: %+v %v", claims, err)
	}
	for _, args := range [][]string{
		{"token", "--config", path},                                    // no device
		{"token", "--config", path, "--device", "d1", "--app", "nope"}, // unknown app
		{"token", "--config", path, "--device", "a b"},                 // bad device id
		{"token", "--config", filepath.Join(t.TempDir(), "missing.yaml"), "--device", "d1"},
	} {
		errOut.Reset()
		if code := Main(args, &out, &errOut); code != 1 || errOut.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut.String())
		}
	}
}

func TestPushCommand(t *testing.T) {
	ts := testserver.Start(t)
	_, got := ts.Listen(t, "d1")
	var out, errOut bytes.Buffer
	args := []string{"push", "--api", ts.APIURL(), "--key", testserver.Demo.APIKey, "--app", "demo", "--device", "d1", "from the CLI"}
	if code := Main(args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var answer map[string]any
	if err := json.Unmarshal(out.Bytes(), &answer); err != nil || answer["online"] != 1.0 {
		t.Fatalf("answer %q: %v", out.String(), err)
	}
	if p := <-got; string(p.Data) != "from the CLI" || p.ID != answer["id"] {
		t.Fatalf("push %+v, answer %v", p, answer)
	}
	errOut.Reset()
	bad := []string{"push", "--api", ts.APIURL(), "--key", testserver.Demo.APIKey, "--app", "demo", "--device", "d1", ""}
	if code := Main(bad, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "data is empty") {
		t.Fatalf("empty data: exit %d, %q", code, errOut.String())
	}
}

func TestServeRejectsBadConfig(t *testing.T) {
	path := writeConfig(t, "gateway:\n  send_queue: many\napps: []\n")
	var out, errOut bytes.Buffer
	if code := Main([]string{"serve", "--config", path}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "gateway.send_queue") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	missing := filepath.Join(t.TempDir(), "missing.pem")
	path = writeConfig(t, "gateway: {listen: 127.0.0.1:0}\napi: {listen: 127.0.0.1:0}\ndata_dir: "+t.TempDir()+
		"\ntls: {cert_file: "+missing+", key_file: "+missing+"}\n"+
		"apps:\n  - {id: shop, secret: shop-secret-0123456789, api_key: shop-key-0123456789}\n")
	if code := Main([]string{"serve", "--config", path}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "tls.cert_file") {
		t.Fatalf("a missing certificate: exit %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	if code := Main([]string{"serve", "--log-format", "xml"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "--log-format") {
		t.Fatalf("--log-format xml: exit %d, stderr %q", code, errOut.String())
	}
	if code := Main([]string{"frobnicate"}, &out, &errOut); code != 2 {
		t.Fatalf("unknown command: exit %d", code)
	}
}

// Bad input on the command line is said once, in words, without Go's
// names: a bad flag after the usage, a bad log level, a config's list given
// as a mapping (named by its own key); --help exits 0, bench's too.
func TestCommandLineErrors(t *testing.T) {
	run := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := Main(args, &out, &errOut)
		return code, errOut.String()
	}
	if code, msg := run("serve", "--bogus"); code != 1 || strings.Count(msg, "flag provided but not defined") != 1 ||
		!strings.HasSuffix(msg, "longlink serve: flag provided but not defined: -bogus\n") {
		t.Errorf("a bad flag: exit %d\n%s", code, msg)
	}
	if code, msg := run("serve", "--log-level", "loud"); code != 1 || msg != "longlink serve: --log-level: \"loud\" is not debug, info, warn or error\n" {
		t.Errorf("--log-level loud: exit %d %q", code, msg)
	}
	path := writeConfig(t, "apps:\n  id: demo\n")
	if code, msg := run("serve", "--config", path); code != 1 || !strings.Contains(msg, "config: apps (line 2): is a mapping of keys, not a list") ||
		strings.Contains(msg, "config.App") {
		t.Errorf("apps as a mapping: exit %d %q", code, msg)
	}
	for _, cmd := range []string{"serve", "push", "listen", "bench"} {
		if code, msg := run(cmd, "--help"); code != 0 || !strings.Contains(msg, "-") {
			t.Errorf("%s --help: exit %d %q", cmd, code, msg)
		}
	}
}

// push targets tags, collapses stored messages by key and schedules a push
// for later; with --api and --key it needs --app, and says so.
func TestPushCommandTagsAtCollapse(t *testing.T) {
	ts := testserver.Start(t)
	_, got := ts.Listen(t, "d1")
	ts.Call(http.MethodPost, "/v1/tags", testserver.Demo.APIKey, map[string]any{"app": "demo", "devices": []string{"d1"}, "add": []string{"vip", "city:bj"}})
	base := []string{"push", "--api", ts.APIURL(), "--key", testserver.Demo.APIKey, "--app", "demo"}
	run := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := Main(append(slices.Clone(base), args...), &out, &errOut); code != 0 {
			t.Fatalf("push %v: exit %d %s", args, code, errOut.String())
		}
		return out.String()
	}
	if out := run("--tags", "vip,gold", "--tags-not", "beta", "to the vips"); !strings.Contains(out, `"online":1`) {
		t.Fatalf("push --tags: %s", out)
	}
	if p := <-got; string(p.Data) != "to the vips" {
		t.Fatalf("got %q", p.Data)
	}
	if out := run("--tags-all", "vip", "--tags-all", "city:sh", "to nobody"); !strings.Contains(out, `"online":0`) {
		t.Fatalf("push --tags-all vip,city:sh: %s", out)
	}
	at := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if out := run("--device", "d1", "--at", at, "later"); !strings.Contains(out, `"scheduled_at"`) {
		t.Fatalf("push --at: %s", out)
	}
	run("--device", "offline", "--ttl", "600", "--collapse", "score", "1:0")
	run("--device", "offline", "--ttl", "600", "--collapse", "score", "2:0")
	c, gotOffline := ts.Listen(t, "offline")
	defer c.Close()
	if p := <-gotOffline; string(p.Data) != "2:0" {
		t.Fatalf("after two collapsed pushes the device got %q first, want the newest", p.Data)
	}
	var out, errOut bytes.Buffer
	if code := Main([]string{"push", "--api", ts.APIURL(), "--key", testserver.Demo.APIKey, "--device", "d1", "x"}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "give --app with --api and --key") {
		t.Fatalf("push --api --key without --app: exit %d %q", code, errOut.String())
	}
}

// push takes its flags before or after DATA, reads DATA from stdin with -,
// sends binary stdin or --base64 as data_base64, and pushes to a group.
func TestPushCommandForms(t *testing.T) {
	ts := testserver.Start(t)
	c, got := ts.Listen(t, "d1")
	if err := c.Join(context.Background(), "demo", "room"); err != nil {
		t.Fatal(err)
	}
	base := []string{"--api", ts.APIURL(), "--key", testserver.Demo.APIKey, "--app", "demo"}
	for _, tc := range []struct {
		args  []string
		stdin string
		want  string
	}{
		{append([]string{"push", "flags after"}, append(base, "--device", "d1")...), "", "flags after"},
		{append(append([]string{"push"}, base...), "--device", "d1", "-"), "from stdin", "from stdin"},
		{append(append([]string{"push"}, base...), "--device", "d1", "-"), "\xff\x00bin", "\xff\x00bin"},
		{append(append([]string{"push"}, base...), "--device", "d1", "--base64", "AAEC"), "", "\x00\x01\x02"},
		{append(append([]string{"push"}, base...), "--group", "room", "to the room"), "", "to the room"},
	} {
		stdin = strings.NewReader(tc.stdin)
		var out, errOut bytes.Buffer
		if code := Main(tc.args, &out, &errOut); code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, errOut.String())
		}
		if p := <-got; string(p.Data) != tc.want {
			t.Fatalf("%v: pushed %q, want %q", tc.args, p.Data, tc.want)
		}
	}
	stdin = os.Stdin
}

func TestTokenRefusesExpired(t *testing.T) {
	path := writeConfig(t, "apps:\n  - id: shop\n    secret: \"shop-secret-0123456789\"\n    api_key: \"shop-key-0123456789\"\n")
	for _, ttl := range []string{"0", "-1h"} {
		var out, errOut bytes.Buffer
		if code := Main([]string{"token", "--config", path, "--device", "d1", "--ttl", ttl}, &out, &errOut); code != 1 ||
			out.Len() != 0 || !strings.Contains(errOut.String(), "--ttl") {
			t.Errorf("--ttl %s: exit %d, stdout %q, stderr %q", ttl, code, out.String(), errOut.String())
		}
	}
}

// `listen --addr ws://host:port/ws`, as its help says, connects over
// WebSocket (before, it dialed the URL as TCP: "too many colons").
func TestListenWebSocketURL(t *testing.T) {
	ts := testserver.Start(t)
	var out, errOut testserver.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main([]string{"listen", "--addr", "ws://" + ts.GatewayAddr() + "/ws", "--token", ts.Token("d1", "")}, &out, &errOut)
	}()
	testwait.Eventually(t, "listen to connect over ws", func() bool { return strings.Contains(errOut.String(), "connected as d1") })
	ts.Push(map[string]any{"devices": []string{"d1"}, "data": "over ws"})
	testwait.Eventually(t, "the push printed", func() bool { return strings.Contains(out.String(), "over ws") })
	ts.Call(http.MethodPost, "/v1/kick", testserver.Demo.APIKey, map[string]any{"app": "demo", "devices": []string{"d1"}})
	<-done
	var errOut2 bytes.Buffer
	if code := Main([]string{"listen", "--transport", "tcp", "--addr", "ws://x/ws", "--token", "t"}, &out, &errOut2); code != 1 ||
		!strings.Contains(errOut2.String(), "WebSocket URL") {
		t.Fatalf("--transport tcp with a ws:// address: exit %d, %q", code, errOut2.String())
	}
}

// The demo app's credentials are printed on its first start only; later
// banners point to demo-credentials, which prints them.
func TestDemoCredentialsShownOnce(t *testing.T) {
	ts := testserver.Start(t, func(c *config.Config) { c.Apps = c.Apps[:1] })
	app := ts.Server.Config().Apps[0]
	var later bytes.Buffer
	if err := printBanner(&later, ts.Server, true, false); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(later.String(), app.Secret) || strings.Contains(later.String(), app.APIKey) ||
		!strings.Contains(later.String(), "demo-credentials") {
		t.Fatalf("a later banner:\n%s", later.String())
	}
	t.Chdir(t.TempDir())
	if _, err := config.DemoApp(config.Default().DataDir, true); err != nil {
		t.Fatal(err)
	}
	demo, _ := config.DemoApp(config.Default().DataDir, false)
	opsToken, err := config.DemoOpsToken(config.Default().DataDir, true)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := Main([]string{"demo-credentials"}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), demo.Secret) || !strings.Contains(out.String(), demo.APIKey) ||
		!strings.Contains(out.String(), opsToken) {
		t.Fatalf("demo-credentials: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}

func TestVersionCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main([]string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "longlink ") {
		t.Fatalf("version: exit %d, %q", code, out.String())
	}
}

// `longlink cert` writes a self-signed certificate that a server serves;
// `listen --tls --ca` (native and wss://) and `push --ca` (HTTPS) trust it
// and work; without --ca the handshake fails.
func TestTLSCommands(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if code := Main([]string{"cert", "--dir", dir, "--host", "127.0.0.1"}, &out, &errOut); code != 0 {
		t.Fatalf("cert: exit %d: %s", code, errOut.String())
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if !strings.Contains(out.String(), "tls: {cert_file: "+certFile) {
		t.Fatalf("cert printed no config line:\n%s", out.String())
	}
	if code := Main([]string{"cert", "--dir", dir}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "exists") {
		t.Fatalf("cert over existing files: exit %d, %q", code, errOut.String())
	}
	ts := testserver.Start(t, func(c *config.Config) { c.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile} })

	for _, tr := range []string{"tcp", "ws"} {
		var lout, lerr testserver.SyncBuffer
		done := make(chan int, 1)
		device := "tls-" + tr
		go func() {
			done <- Main([]string{"listen", "--tls", "--ca", certFile, "--transport", tr, "--addr", ts.GatewayAddr(),
				"--token", ts.Token(device, "")}, &lout, &lerr)
		}()
		testwait.Eventually(t, "listen to connect over TLS", func() bool { return strings.Contains(lerr.String(), "connected as "+device) })
		out.Reset()
		push := []string{"push", "--api", ts.APIURL(), "--ca", certFile, "--key", testserver.Demo.APIKey, "--app", "demo",
			"--device", device, "over " + tr}
		if code := Main(push, &out, &errOut); code != 0 || !strings.Contains(out.String(), `"online":1`) {
			t.Fatalf("push over HTTPS: exit %d, %q %q", code, out.String(), errOut.String())
		}
		testwait.Eventually(t, "the push printed", func() bool { return strings.Contains(lout.String(), "over "+tr) })
		ts.Call(http.MethodPost, "/v1/kick", testserver.Demo.APIKey, map[string]any{"app": "demo", "devices": []string{device}})
		<-done
	}
	// listen --dispatch https://... trusts the config's certificate, and
	// connects over TLS where dispatch says.
	path := writeConfig(t, fmt.Sprintf("tls: {cert_file: %s, key_file: %s}\napps:\n  - {id: demo, secret: %q, api_key: %q}\n",
		certFile, keyFile, testserver.Demo.Secret, testserver.Demo.APIKey))
	var dout, derr testserver.SyncBuffer
	dispatched := make(chan int, 1)
	go func() {
		dispatched <- Main([]string{"listen", "--config", path, "--dispatch", ts.APIURL(), "--device", "tls-dispatch"}, &dout, &derr)
	}()
	testwait.Eventually(t, "listen --dispatch https:// to connect", func() bool {
		return strings.Contains(derr.String(), "connected as tls-dispatch")
	})
	ts.Call(http.MethodPost, "/v1/kick", testserver.Demo.APIKey, map[string]any{"app": "demo", "devices": []string{"tls-dispatch"}})
	<-dispatched
	errOut.Reset()
	if code := Main([]string{"listen", "--tls", "--addr", ts.GatewayAddr(), "--token", ts.Token("d1", "")}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "certificate") {
		t.Fatalf("listen --tls without --ca: exit %d, %q", code, errOut.String())
	}
}

// listen prints a push's seq, or a stored broadcast's bseq, and binary data
// as base64.
func TestPrintPush(t *testing.T) {
	for _, c := range []struct {
		p    client.Push
		want string
	}{
		{client.Push{App: "demo", ID: "m1", Data: []byte("hi")}, "[demo] id=m1 hi\n"},
		{client.Push{App: "demo", ID: "m2", Seq: 3, Data: []byte("kept")}, "[demo] id=m2 seq=3 kept\n"},
		{client.Push{App: "demo", ID: "b1", BSeq: 7, Data: []byte("to all")}, "[demo] id=b1 bseq=7 to all\n"},
		{client.Push{App: "demo", ID: "m3", Data: []byte{0xff}}, "[demo] id=m3 base64:/w==\n"},
	} {
		var b bytes.Buffer
		printPush(&b, c.p)
		if b.String() != c.want {
			t.Errorf("%+v: %q, want %q", c.p, b.String(), c.want)
		}
	}
}

// bench prints why a server was not measured, and no figure for it.
func TestPrintResultNotMeasured(t *testing.T) {
	var b bytes.Buffer
	printResult(&b, &bench.Result{Scenario: "connect", Transport: "tcp", Devices: 1, Connected: 1,
		Servers: []bench.Server{{API: "http://127.0.0.1:1", Error: "not measured: connection refused"}}})
	if out := b.String(); !strings.Contains(out, "server http://127.0.0.1:1: not measured: connection refused\n") || strings.Contains(out, "RSS") {
		t.Fatalf("printed:\n%s", out)
	}
}

// health exits 0 on a 200 from /healthz, printing it, and fails with what it
// got otherwise: a draining node's 503, or no answer.
func TestHealth(t *testing.T) {
	ts := testserver.Start(t)
	var out bytes.Buffer
	if code := Main([]string{"health", "--url", ts.APIURL() + "/healthz"}, &out, &out); code != 0 || !strings.Contains(out.String(), `"status":"ok"`) {
		t.Fatalf("health of a live server: exit %d, %q", code, out.String())
	}
	ts.StartDrain()
	out.Reset()
	if code := Main([]string{"health", "--url", ts.APIURL() + "/healthz"}, &out, &out); code != 1 || !strings.Contains(out.String(), "503") || !strings.Contains(out.String(), "draining") {
		t.Fatalf("health of a draining server: exit %d, %q", code, out.String())
	}
	out.Reset()
	ts.Shutdown(context.Background())
	if code := Main([]string{"health", "--url", ts.APIURL() + "/healthz"}, &out, &out); code != 1 || !strings.Contains(out.String(), "no answer") {
		t.Fatalf("health of a stopped server: exit %d, %q", code, out.String())
	}
}

// config prints what serve would run with, from the environment here (no
// file), its secrets masked; --example the complete file.
func TestConfigCommand(t *testing.T) {
	t.Setenv("LONGLINK_APPS", "shop")
	t.Setenv("LONGLINK_APPS_SHOP_SECRET", "shop-secret-0123456789")
	t.Setenv("LONGLINK_APPS_SHOP_API_KEY", "shop-key-0123456789")
	t.Setenv("LONGLINK_GATEWAY_HEARTBEAT", "45s")
	var out bytes.Buffer
	if code := Main([]string{"config"}, &out, &out); code != 0 {
		t.Fatalf("config: exit %d: %s", code, out.String())
	}
	for _, want := range []string{"heartbeat: 45s", "id: shop", "secret: (22 bytes, masked)", "api_key: (19 bytes, masked)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("config printed no %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "shop-secret-0123456789") {
		t.Error("config printed a secret")
	}
	out.Reset()
	if code := Main([]string{"config", "--example"}, &out, &out); code != 0 || out.String() != string(config.Example()) {
		t.Fatalf("config --example: exit %d", code)
	}
}

// drain --wait drains the node, taking the ops token from the environment
// as the server does, and returns once the node has stopped (serve exits
// 0); without the token it is refused.
func TestDrainWait(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "longlink.yaml")
	yaml := fmt.Sprintf("data_dir: %s\ngateway: {listen: 127.0.0.1:0, drain_period: 1s}\napi: {listen: 127.0.0.1:0}\n"+
		"apps:\n  - {id: demo, secret: %q, api_key: %q}\n", dir, testserver.Demo.Secret, testserver.Demo.APIKey)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "ops-token")
	if err := os.WriteFile(token, []byte("ops-token-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LONGLINK_OPS_TOKEN_FILE", token)
	var out testserver.SyncBuffer
	exited := make(chan int, 1)
	go func() { exited <- Main([]string{"serve", "--config", path}, &out, &out) }()
	var api string
	testwait.Eventually(t, "serve's banner", func() bool {
		m := regexp.MustCompile(`api\s+(http://\S+)`).FindStringSubmatch(out.String())
		if m != nil {
			api = m[1]
		}
		return m != nil
	})
	var res bytes.Buffer
	if code := Main([]string{"drain", "--url", api, "--token", "not-the-token"}, &res, &res); code != 1 || !strings.Contains(res.String(), "401") {
		t.Fatalf("drain with a wrong token: exit %d, %q", code, res.String())
	}
	res.Reset()
	if code := Main([]string{"drain", "--url", api, "--wait"}, &res, &res); code != 0 || !strings.Contains(res.String(), "drained: the node has stopped") {
		t.Fatalf("drain --wait: exit %d, %q", code, res.String())
	}
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("serve exited %d after its drain:\n%s", code, out.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("drain --wait returned while serve still ran")
	}
}
