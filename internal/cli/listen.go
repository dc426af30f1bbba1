package cli

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/config"
)

func listen(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("listen", stderr)
	tok := fs.String("token", "", "device token (JWT); without it one is minted for --device from the config")
	addr := fs.String("addr", "", "gateway host:port, or ws:// URL (default: the config's gateway.listen)")
	dispatch := fs.String("dispatch", "", "API base URL to ask where to connect, instead of --addr (several, comma-separated, are asked in turn)")
	transport := fs.String("transport", "tcp", "tcp, ws or ws-json")
	heartbeat := fs.Duration("heartbeat", 0, "heartbeat to propose (default: the server's)")
	path := fs.String("config", "", "YAML config `file`, to mint a token or find the gateway")
	app := fs.String("app", "", "app id, with --device")
	device := fs.String("device", "", "device id to mint a token for, instead of --token")
	user := fs.String("user", "", "user id, with --device")
	useTLS := fs.Bool("tls", false, "connect with TLS: the native protocol over TLS, or wss:// (implied by --ca, --insecure, a wss:// --addr, an https:// --dispatch, or the config's tls.required)")
	tf := addTLSFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	*useTLS = *useTLS || tf.given() || strings.HasPrefix(*addr, "wss://") || strings.HasPrefix(*dispatch, "https://")
	if *useTLS && strings.HasPrefix(*addr, "ws://") {
		return fmt.Errorf("--addr %s is plaintext: give wss:// with --tls", *addr)
	}
	tr := client.Transport(*transport)
	if tr != client.TCP && tr != client.WebSocket && tr != client.WebSocketJSON {
		return fmt.Errorf("--transport: %q is not tcp, ws or ws-json", *transport)
	}
	if isWSURL(*addr) && tr == client.TCP {
		set := false
		fs.Visit(func(f *flag.Flag) { set = set || f.Name == "transport" })
		if set {
			return fmt.Errorf("--addr %s is a WebSocket URL: use --transport ws or ws-json, or give host:port for tcp", *addr)
		}
		tr = client.WebSocket // a ws:// address says the transport
	}
	var cfg *config.Config
	if *tok == "" || (*addr == "" && *dispatch == "") || *path != "" {
		var err error
		if cfg, err = config.LoadOrDemo(*path, false); err != nil {
			return err
		}
		*useTLS = *useTLS || cfg.TLS.Required
		if *tok == "" {
			if *device == "" {
				return errors.New("give --token, or --device to mint one")
			}
			a, err := pickApp(cfg, *app)
			if err != nil {
				return err
			}
			if *tok, err = auth.Mint(a.ID, a.Secret, *device, *user, 24*time.Hour); err != nil {
				return err
			}
		}
		if *addr == "" && *dispatch == "" {
			*addr = cfg.Gateway.Listen
		}
	}
	var tlsConf *tls.Config
	scheme := "ws://"
	if *useTLS {
		var err error
		if tlsConf, err = tf.config(cfg); err != nil {
			return err
		}
		scheme = "wss://"
	}
	if tr != client.TCP && *addr != "" && !isWSURL(*addr) {
		*addr = scheme + *addr + "/ws"
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, err := client.Dial(ctx, client.Config{
		Addr: *addr, DispatchURLs: strings.FieldsFunc(*dispatch, func(r rune) bool { return r == ',' }), Transport: tr, TLS: tlsConf, Token: *tok, Heartbeat: *heartbeat,
		OnConnect: func(w client.Welcome) {
			fmt.Fprintf(stderr, "connected as %s to %v (heartbeat %v); waiting for pushes\n", w.Device, w.Apps, w.Heartbeat)
		},
		OnDisconnect: func(err error) { fmt.Fprintf(stderr, "disconnected: %v\n", err) },
		OnPush:       func(p client.Push) { printPush(stdout, p) },
		OnRecall:     func(app, id string) { fmt.Fprintf(stdout, "[%s] recalled id=%s\n", app, id) },
	})
	if err != nil {
		return err
	}
	defer c.Close()
	select {
	case <-ctx.Done():
		return nil
	case <-c.Done():
		return c.Err()
	}
}

func isWSURL(addr string) bool {
	return strings.HasPrefix(addr, "ws://") || strings.HasPrefix(addr, "wss://")
}

// printPush prints one push per line: app, id, seq (or bseq, for a stored
// broadcast) when stored, and the data (as text when it is UTF-8, else
// base64).
func printPush(w io.Writer, p client.Push) {
	data := string(p.Data)
	if !utf8.Valid(p.Data) {
		data = "base64:" + base64.StdEncoding.EncodeToString(p.Data)
	}
	switch {
	case p.Seq > 0:
		fmt.Fprintf(w, "[%s] id=%s seq=%d %s\n", p.App, p.ID, p.Seq, data)
	case p.BSeq > 0:
		fmt.Fprintf(w, "[%s] id=%s bseq=%d %s\n", p.App, p.ID, p.BSeq, data)
	default:
		fmt.Fprintf(w, "[%s] id=%s %s\n", p.App, p.ID, data)
	}
}
