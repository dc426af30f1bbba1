package cli

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/server"
)

func serve(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	path := fs.String("config", "", "YAML config `file`; without it: defaults and the demo app")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	format := fs.String("log-format", "text", "log format: text (key=value) or json (one object per line)")
	gatewayListen := fs.String("gateway-listen", "", "`host:port` for devices, instead of gateway.listen (port 0: any free one)")
	apiListen := fs.String("api-listen", "", "`host:port` for the API, instead of api.listen (port 0: any free one)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level: %q is not debug, info, warn or error", *level)
	}
	hopts := &slog.HandlerOptions{Level: lvl}
	var handler slog.Handler
	switch *format {
	case "text":
		handler = slog.NewTextHandler(stderr, hopts)
	case "json":
		handler = slog.NewJSONHandler(stderr, hopts)
	default:
		return fmt.Errorf("--log-format: %q is not text or json", *format)
	}
	log := slog.New(handler)
	firstStart := *path == "" && !config.HasDemoApp(config.DemoDataDir())
	cfg, err := config.LoadOrDemo(*path, true)
	if err != nil {
		return err
	}
	firstStart = firstStart && cfg.Demo // not when the environment gave the apps
	// The flags win over the file, at start and at every reload.
	override := func(c *config.Config) {
		c.Gateway.Listen = cmp.Or(*gatewayListen, c.Gateway.Listen)
		c.API.Listen = cmp.Or(*apiListen, c.API.Listen)
	}
	override(cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT)
	defer stop()
	// SIGHUP and SIGTERM are caught before the banner: one sent as soon as
	// it is read (a supervisor, a test) must not kill the process, which is
	// what SIGHUP does by default. One that comes during the start is
	// served once it is up.
	hup, term := make(chan os.Signal, 1), make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	signal.Notify(term, syscall.SIGTERM)
	defer signal.Stop(hup)
	defer signal.Stop(term)
	s, err := server.Start(cfg, log)
	if err != nil {
		if firstStart { // so that the next start, which can show them, is the first
			config.ForgetDemoApp(cfg.DataDir)
		}
		return err
	}
	if cfg.Demo { // for the commands run beside it
		if err := config.SaveDemoAddresses(cfg.DataDir, s.GatewayAddr(), s.APIAddr()); err != nil {
			log.Warn("the demo node's addresses not saved: listen, push and demo-credentials will look at the defaults", "err", err)
		}
	}
	// One write: a reader of the pipe (a test, a supervisor) sees the
	// banner whole, not cut wherever the lines happened to be flushed.
	var banner bytes.Buffer
	if err := printBanner(&banner, s, cfg.Demo, firstStart); err != nil {
		return err
	}
	if _, err := stdout.Write(banner.Bytes()); err != nil {
		return err
	}
	for running := true; running; {
		select {
		case <-ctx.Done(): // SIGINT: at once
			running = false
		case <-term: // drain first (a SIGINT meanwhile cuts it short)
			log.Info("SIGTERM: draining", "period", cfg.Gateway.DrainPeriod)
			s.StartDrain()
		case <-s.Drained(): // by SIGTERM or POST /v1/admin/drain
			running = false
		case err := <-s.Err():
			if err != nil {
				log.Error("listener failed", "err", err)
			}
			running = false
		case <-hup:
			reload(s, *path, override, log)
		}
	}
	log.Info("shutting down: closing connections with 4009")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Shutdown(shutdownCtx)
}

// reload re-reads the TLS certificate and key, and the config file, on
// SIGHUP, and applies the config's apps and webhooks; a file that does not
// load changes nothing.
func reload(s *server.Server, path string, override func(*config.Config), log *slog.Logger) {
	if err := s.ReloadTLS(); err != nil {
		log.Error("SIGHUP: TLS certificate not reloaded; the previous one stays", "err", err)
	} else if s.Config().TLS.Enabled() {
		log.Info("SIGHUP: TLS certificate reloaded")
	}
	if path == "" {
		log.Warn("SIGHUP: nothing to reload without --config")
		return
	}
	cfg, err := config.Load(path)
	if err != nil {
		log.Error("SIGHUP: config not reloaded", "err", err)
		return
	}
	override(cfg)
	if keys := s.Reload(cfg); len(keys) > 0 {
		log.Warn("SIGHUP: apps reloaded; these keys changed but need a restart", "keys", keys)
		return
	}
	log.Info("SIGHUP: apps reloaded", "apps", len(cfg.Apps))
}

// printBanner tells a newcomer where everything is and, for the demo app,
// two lines to paste: one to listen as a device, one to push to it. The
// demo app's credentials are shown on its first start only (a banner ends up
// in logs); later banners name `longlink demo-credentials` instead.
func printBanner(w io.Writer, s *server.Server, demo, firstStart bool) error {
	cfg := s.Config()
	dataDir, _ := filepath.Abs(cfg.DataDir)
	fmt.Fprintf(w, "longlink node %s is serving\n", cfg.Node)
	gw, web := s.GatewayAddr(), "http"
	if !cfg.TLS.Required {
		fmt.Fprintf(w, "  gateway   tcp://%s   ws://%s/ws   (MQTT devices: mqtt://%s   ws://%s/mqtt)\n", gw, gw, gw, gw)
	}
	if cfg.TLS.Enabled() {
		fmt.Fprintf(w, "  gateway   tls://%s   wss://%s/ws   (MQTT devices: mqtts://%s   wss://%s/mqtt)\n", gw, gw, gw, gw)
		web = "https"
	}
	apiMetrics, opsMetrics := ", /metrics", ""
	if !cfg.Ops.MetricsOnAPI() {
		apiMetrics, opsMetrics = "", ", /metrics"
	}
	fmt.Fprintf(w, "  api       %s://%s   (push, presence, dispatch, /healthz%s)\n", web, s.APIAddr(), apiMetrics)
	fmt.Fprintf(w, "  dashboard %s://%s/dashboard   (sign in with the ops token)\n", web, s.OpsAddr())
	fmt.Fprintf(w, "  ops       %s://%s/debug/pprof/%s   (Authorization: Bearer <ops.token>)\n", web, s.OpsAddr(), opsMetrics)
	fmt.Fprintf(w, "  data dir  %s\n", dataDir)
	if !demo {
		for _, a := range cfg.Apps {
			fmt.Fprintf(w, "  app       %s\n", a.ID)
		}
		return nil
	}
	app := cfg.Apps[0]
	fmt.Fprintf(w, "\nopen %s://%s/demo in a browser: a device on the JS SDK, and a form that pushes to it\n", web, s.APIAddr())
	if firstStart {
		fmt.Fprintf(w, "\ndemo app %q: credentials generated now and kept in the data dir; shown this once\n", app.ID)
		fmt.Fprintf(w, "(`%s demo-credentials` prints them again)\n", self())
		return printCredentials(w, app, cfg.Ops.Token, s.GatewayAddr(), s.APIAddr())
	}
	fmt.Fprintf(w, "\ndemo app %q (its API key and secret: `%s demo-credentials`)\n", app.ID, self())
	fmt.Fprintf(w, "\n1. In another terminal, connect as device d1 and print its pushes:\n")
	fmt.Fprintf(w, "   %s listen --device d1\n", self())
	fmt.Fprintf(w, "\n2. Push to it:\n")
	fmt.Fprintf(w, "   %s push --device d1 hello\n", self())
	fmt.Fprintf(w, "\n(stop with Ctrl-C)\n")
	return nil
}

// printCredentials prints the demo app's API key and secret, the ops
// token, and the two lines to paste with them: listen as d1 with a token,
// push with curl.
func printCredentials(w io.Writer, app config.App, opsToken, gateway, api string) error {
	token, err := auth.Mint(app.ID, app.Secret, "d1", "", 24*time.Hour)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  api key   %s\n", app.APIKey)
	fmt.Fprintf(w, "  secret    %s   (signs device tokens; keep it on your backend)\n", app.Secret)
	fmt.Fprintf(w, "  ops token %s   (for the dashboard and /debug/pprof)\n", opsToken)
	fmt.Fprintf(w, "\n1. In another terminal, connect as device d1 and print its pushes:\n")
	fmt.Fprintf(w, "   %s listen --addr %s --token %s\n", self(), gateway, token)
	fmt.Fprintf(w, "\n2. Push to it:\n")
	fmt.Fprintf(w, "   curl -s -H 'Authorization: Bearer %s' -d '{\"app\":\"demo\",\"devices\":[\"d1\"],\"data\":\"hello\"}' http://%s/v1/push\n",
		app.APIKey, api)
	return nil
}

// demoCredentials prints the demo app's credentials from ./longlink-data.
func demoCredentials(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo-credentials", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.LoadOrDemo("", false)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "demo app %q (kept in %s)\n", cfg.Apps[0].ID, cfg.DataDir)
	return printCredentials(stdout, cfg.Apps[0], cfg.Ops.Token, cfg.Gateway.Listen, cfg.API.Listen)
}
