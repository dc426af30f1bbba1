package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/longlink/longlink/internal/bench"
	"github.com/longlink/longlink/internal/config"
)

func benchCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr)
	fs.Usage = func() {
		printUsage(fs, stderr, fmt.Sprintf("Usage: longlink bench SCENARIO [flags]\n\nScenarios: %s\n\nFlags:\n", strings.Join(bench.Scenarios, ", ")))
	}
	var gateways, apis listFlag
	fs.Var(&gateways, "gateway", "gateway host:port (repeatable: devices are spread over the servers)")
	fs.Var(&apis, "api", "API base URL of the same server (repeatable, one per --gateway)")
	path := fs.String("config", "", "YAML config `file` for defaults and app credentials; without it: ./longlink-data's demo app")
	app := fs.String("app", "", "app id (default: the only app, or demo)")
	secret := fs.String("secret", "", "the app's secret, to mint device tokens (default: from the config)")
	key := fs.String("key", "", "the app's API key (default: from the config)")
	transport := fs.String("transport", "tcp", "tcp, ws, ws-json or mqtt (MQTT 3.1.1 devices)")
	n := fs.Int("n", 1000, "devices (connections)")
	connectRate := fs.Float64("connect-rate", 0, "logins per second while connecting (0: as fast as possible)")
	rate := fs.Float64("rate", 100, "unicast, batch, group: API calls per second")
	duration := fs.Duration("duration", 10*time.Second, "idle: how long to hold; unicast, batch, group: how long to send")
	size := fs.Int("size", 256, "payload bytes (at least 20: it carries the send time)")
	batch := fs.Int("batch", 0, "devices per API call (default: unicast 1, batch 100)")
	perWorker := fs.Int("per-worker", 15000, "devices per worker process (one process may hold 20,000 files here)")
	heartbeat := fs.Duration("heartbeat", 60*time.Second, "heartbeat the devices propose")
	yield := fs.Bool("yield", true, "run the devices' worker processes at idle CPU priority (Linux SCHED_IDLE), so that on a box shared with the server they take only the CPU it leaves (they also make its threads move between cores: pin it to one, e.g. taskset -c 0, to measure its CPU per message)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	ttl := fs.Int("ttl", 0, "unicast, batch, broadcast: store each push for this many seconds (0: online only)")
	opsToken := fs.String("ops-token", "", "drain: the nodes' ops token (default: the config's ops.token)")
	useTLS := fs.Bool("tls", false, "devices connect with TLS (native over TLS, or wss://); give https:// --api URLs")
	tf := addTLSFlags(fs)
	broker := fs.Bool("broker", false, "the --gateway is a plain MQTT broker (mosquitto), for comparison: devices subscribe to the app's push topic and the broadcast is published to it (connect, idle, broadcast; --transport mqtt)")
	inCluster := fs.Bool("cluster", false, "the servers are nodes of one cluster: push through the first --api only, to devices on every node")
	scatter := fs.Bool("scatter", false, "with --cluster: each unicast or batch call goes through a node at random, to devices drawn evenly from every node")
	switch {
	case len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help"):
		fs.Usage()
		return flag.ErrHelp
	case len(args) == 0 || strings.HasPrefix(args[0], "-"):
		fs.Usage()
		return errors.New("give a scenario first, then its flags")
	}
	scenario := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *size < 20 {
		return errors.New("--size must be at least 20")
	}
	o := bench.Options{Scenario: scenario, Gateways: gateways, APIs: apis, Transport: *transport,
		App: *app, Secret: *secret, APIKey: *key, N: *n, ConnectRate: *connectRate, Rate: *rate, Duration: *duration, Size: *size,
		Batch: *batch, PerWorker: *perWorker, Heartbeat: *heartbeat, Yield: *yield, TTL: *ttl, Cluster: *inCluster, Scatter: *scatter, OpsToken: *opsToken, Broker: *broker}
	o.TLS, o.Insecure = *useTLS || tf.given(), *tf.insecure
	if *tf.ca != "" {
		ca, err := os.ReadFile(*tf.ca)
		if err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		o.CAPEM = ca
	}
	if err := benchDefaults(&o, *path); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	o.Self = self
	if f, ok := stderr.(*os.File); ok && !*asJSON && term.IsTerminal(int(f.Fd())) {
		o.Progress = progressBar(stderr)
	}
	r, err := bench.Run(o)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	printResult(stdout, r)
	return nil
}

// benchDefaults fills what the flags left out from the config (or the demo app).
func benchDefaults(o *bench.Options, path string) error {
	if o.Batch == 0 {
		o.Batch = 1
		if o.Scenario == "batch" {
			o.Batch = 100
		}
	}
	if o.Secret != "" && o.App != "" && (o.APIKey != "" || o.Scenario == "connect" || o.Scenario == "idle" || o.Broker) &&
		len(o.Gateways) > 0 && (len(o.APIs) > 0 || o.Scenario == "connect" || o.Broker) && (o.OpsToken != "" || o.Scenario != "drain") {
		return nil
	}
	cfg, err := config.LoadOrDemo(path, false)
	if err != nil {
		return err
	}
	a, err := pickApp(cfg, o.App)
	if err != nil {
		return err
	}
	o.App = a.ID
	if o.Secret == "" {
		o.Secret = a.Secret
	}
	if o.APIKey == "" {
		o.APIKey = a.APIKey
	}
	if o.OpsToken == "" {
		o.OpsToken = cfg.Ops.Token
	}
	if len(o.Gateways) == 0 {
		o.Gateways = []string{cfg.Gateway.Listen}
	}
	if len(o.APIs) == 0 && !o.Broker {
		o.APIs = []string{"http://" + cfg.API.Listen}
		if cfg.TLS.Enabled() {
			o.APIs = []string{"https://" + cfg.API.Listen}
		}
	}
	if cfg.TLS.Enabled() && len(o.CAPEM) == 0 && !o.Insecure { // trust the config's own certificate
		if o.CAPEM, err = os.ReadFile(cfg.TLS.CertFile); err != nil {
			return fmt.Errorf("tls.cert_file: %w", err)
		}
	}
	return nil
}

// progressBar draws the run's progress on a terminal, one bar per phase.
func progressBar(w io.Writer) func(phase string, done, total int64) {
	var bar *progressbar.ProgressBar
	current := ""
	return func(phase string, done, total int64) {
		if phase != current || bar == nil {
			if bar != nil {
				bar.Finish()
			}
			current = phase
			bar = progressbar.NewOptions64(max(total, 1), progressbar.OptionSetWriter(w),
				progressbar.OptionSetDescription(fmt.Sprintf("%-16s", phase)), progressbar.OptionShowCount(),
				progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
		}
		bar.ChangeMax64(max(total, 1))
		bar.Set64(min(done, max(total, 1)))
	}
}

func printResult(w io.Writer, r *bench.Result) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	lat := func(name string, l bench.Percentiles) {
		p("  %-22s p50 %.2f  p90 %.2f  p99 %.2f  p999 %.2f  max %.2f ms  (%d samples)", name, l.P50, l.P90, l.P99, l.P999, l.Max, l.N)
	}
	p("longlink bench %s over %s, %d devices", r.Scenario, r.Transport, r.Devices)
	p("  connected              %d (%d errors) in %.2fs: %.0f logins/s", r.Connected, r.ConnectErrors, r.ConnectSeconds, r.ConnectRate)
	if r.ConnectError != "" {
		p("  first login error      %s", r.ConnectError)
	}
	lat("connect + login", r.ConnectLatency)
	if r.Expected > 0 || r.Sent > 0 {
		p("  API calls              %d (%d failed)", r.Sent, r.SendErrors)
		if r.SendError != "" {
			p("  first API error        %s", r.SendError)
		}
		p("  delivered              %d of %d expected: reach %.2f%%", r.Delivered, r.Expected, 100*r.Reach)
		if r.DeliveryRate > 0 {
			p("  delivery rate          %.0f/s", r.DeliveryRate)
		}
		if r.Others > 0 {
			p("  also reached           %d connections of the app that are not this run's (not counted)", r.Others)
		}
	}
	if r.Latency != nil {
		lat("push to device", *r.Latency)
	}
	if r.Scenario == "storm" {
		p("  storm                  all back in %.2fs; stored messages received %d of %d", r.StormSeconds, r.StoredReceived, r.StoredExpected)
	}
	if r.Scenario == "drain" {
		p("  drain                  %d connections moved in %.2fs; peak %.0f logins/s on the other nodes; stored messages received %d of %d",
			r.Moved, r.DrainSeconds, r.PeakLoginRate, r.StoredReceived, r.StoredExpected)
	}
	for _, s := range r.Servers {
		if s.Figures == nil {
			p("  server %s: %s", s.API, s.Error)
			continue
		}
		perConn := "n/a: RSS did not grow"
		if s.BytesPerConn > 0 {
			perConn = fmt.Sprintf("%.0f bytes/connection", s.BytesPerConn)
		}
		p("  server %s: %.0f connections, RSS %.1f -> %.1f (all connected) -> %.1f MB (%s), CPU %.2fs, goroutines %.0f, %.0f GCs this run: mean pause %.3f ms, max <= %.3f ms",
			s.API, s.Connections, s.RSSBefore/1e6, s.RSSConnected/1e6, s.RSSAfter/1e6, perConn, s.CPUSeconds, s.Goroutines, s.GCs, s.GCMeanPauseMs, s.GCMaxPauseMs)
	}
}

// benchWorker is the hidden subcommand that runs a bench worker process.
func benchWorker(_ []string, stdout, _ io.Writer) error {
	return bench.Worker(os.Stdin, stdout)
}
