package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
	"github.com/longlink/longlink/protocol"
)

// tlsDevice connects over TLS (TCP or wss) with the SDK, trusting ts's
// certificate.
func tlsDevice(t *testing.T, ts *testserver.TS, tr client.Transport, device string) *device {
	return connect(t, ts, tr, ts.Token(device, ""), func(c *client.Config) {
		c.Addr, c.TLS = ts.TLSAddr(tr), ts.TLS
	})
}

// TestTLSBesidePlaintext: with tls set, the gateway port takes TLS (native
// frames and wss://, binary and JSON) beside plaintext TCP and ws://, and
// the API is HTTPS. Pushes of every size arrive: online, stored (a replay of
// many frames at once), and one larger than a TLS record; with the gateway
// sealing TLS 1.3 records itself, and with crypto/tls keeping every session
// (tls.record_layer).
func TestTLSBesidePlaintext(t *testing.T) {
	for _, layer := range []string{config.RecordsLongLink, config.RecordsCryptoTLS} {
		t.Run("record_layer "+layer, func(t *testing.T) { tlsBesidePlaintext(t, layer) })
	}
}

func tlsBesidePlaintext(t *testing.T, recordLayer string) {
	ts := testserver.Start(t, testserver.WithTLS(t, false), func(c *config.Config) {
		c.Gateway.MaxFrameBytes, c.API.MaxDataBytes, c.TLS.RecordLayer = 64<<10, 60000, recordLayer
	})
	big := strings.Repeat("b", 40000) // more than two 16 KB records
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			device := "tls-" + string(tr)
			for i := range 300 { // stored before the device comes: replayed in batches
				ts.Push(map[string]any{"devices": []string{device}, "data": fmt.Sprint("stored ", i), "ttl": 60})
			}
			d := tlsDevice(t, ts, tr, device)
			for i := range 300 {
				d.expect(t, fmt.Sprint("stored ", i))
			}
			ts.Push(map[string]any{"devices": []string{device}, "data": big})
			d.expect(t, big)
			ts.Push(map[string]any{"devices": []string{device}, "data": "online"})
			d.expect(t, "online")

			plain := connect(t, ts, tr, ts.Token("plain-"+string(tr), ""))
			ts.Push(map[string]any{"devices": []string{"plain-" + string(tr)}, "data": "plain"})
			plain.expect(t, "plain")
		})
	}
	m := ts.Metrics()
	for _, tr := range []string{"tls", "wss", "wss_json", "tcp", "ws", "ws_json"} {
		if !strings.Contains(m, fmt.Sprintf(`longlink_connects_total{transport=%q}`, tr)) {
			t.Errorf("no logins counted for transport %s", tr)
		}
	}
	// The API answers HTTPS only.
	resp, err := http.Get("http://" + ts.APIAddr() + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP to the API was served")
		}
	}
}

// TestTLSFramesInOneRecord: frames that arrive together in one TLS record
// are all served, though the socket shows nothing more once the record is
// read (the poller alone would wait for input that never comes).
func TestTLSFramesInOneRecord(t *testing.T) {
	ts := testserver.Start(t, testserver.WithTLS(t, false))
	conn, err := client.DialConn(context.Background(), client.TCP, ts.GatewayAddr(), nil, ts.TLS)
	if err != nil {
		t.Fatal(err)
	}
	c := &rawConn{Conn: conn, tr: client.TCP}
	defer c.Close()
	c.WriteFrame(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(ts.Token("d1", ""))}, time.Second)
	readUntil(t, c, protocol.OpWelcome)
	// The login is served and the connection waits in the poller: now three
	// pings in one write, so one record.
	var pings []byte
	for i := range 3 {
		pings = protocol.AppendBinary(pings, &protocol.Frame{Op: protocol.OpPing, Ref: []byte(fmt.Sprint(i))})
	}
	c.writeRaw(t, pings)
	for i := range 3 {
		if f := readUntilAny(t, c); f.Op != protocol.OpPong || string(f.Ref) != fmt.Sprint(i) {
			t.Fatalf("got %s ref %q, want pong %d", f.Op, f.Ref, i)
		}
	}
}

// TestTLSRequired: with tls.required, plaintext TCP is closed with 4000
// and a reason, ws:// gets HTTP 426, /v1/dispatch offers only tls and wss,
// and an SDK client that asks dispatch gets TLS.
func TestTLSRequired(t *testing.T) {
	ts := testserver.Start(t, testserver.WithTLS(t, true))

	c := rawDial(t, ts, client.TCP)
	c.WriteFrame(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(ts.Token("d1", ""))}, time.Second)
	if f := readUntilAny(t, c); f.Op != protocol.OpError || f.Code != protocol.CodeBadFrame || !strings.Contains(string(f.Reason), "TLS required") {
		t.Fatalf("plaintext TCP: got %s %d %q, want error 4000 TLS required", f.Op, f.Code, f.Reason)
	}

	nc, err := net.Dial("tcp", ts.GatewayAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	answer, _ := io.ReadAll(nc)
	if !bytes.HasPrefix(answer, []byte("HTTP/1.1 426 ")) {
		t.Fatalf("plaintext ws://: got %q, want 426", answer)
	}

	status, out := ts.Call(http.MethodGet, "/v1/dispatch?app=demo&device=d1", "", nil)
	var kinds []string
	for _, e := range out["endpoints"].([]any) {
		kinds = append(kinds, e.(map[string]any)["transport"].(string))
	}
	if status != http.StatusOK || strings.Join(kinds, ",") != "tls,wss" {
		t.Fatalf("dispatch: %d %v, want tls and wss only", status, kinds)
	}

	for _, tr := range transports {
		got := make(chan client.Push, 1)
		cl, err := client.Dial(context.Background(), client.Config{DispatchURL: ts.APIURL(), Transport: tr, TLS: ts.TLS,
			Token: ts.Token("dispatched-"+string(tr), ""), OnPush: func(p client.Push) { got <- p }})
		if err != nil {
			t.Fatalf("%s through dispatch: %v", tr, err)
		}
		ts.Push(map[string]any{"devices": []string{"dispatched-" + string(tr)}, "data": "x"})
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s through dispatch: no push", tr)
		}
		cl.Close()
	}
}

// TestTLSUntrustedRefused: a client that does not trust the server's
// certificate fails its handshake; nothing is served to it.
func TestTLSUntrustedRefused(t *testing.T) {
	ts := testserver.Start(t, testserver.WithTLS(t, false))
	_, _, other := testserver.WriteCert(t, t.TempDir())
	_, err := client.Dial(context.Background(), client.Config{Addr: ts.GatewayAddr(), TLS: other,
		Token: ts.Token("d1", ""), DialTimeout: 2 * time.Second})
	var unknown x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &unknown) {
		t.Fatalf("dial with the wrong CA: %v, want an unknown-authority error", err)
	}
}

// TestTLS12OnlyAEADWithECDHE: a TLS 1.2 client gets only the AEAD suites
// with ECDHE, on the gateway and the API alike; no CBC, no RSA key
// exchange. (The test certificate is ECDSA: the ECDHE_RSA suites need an
// RSA one.)
func TestTLS12OnlyAEADWithECDHE(t *testing.T) {
	ts := testserver.Start(t, testserver.WithTLS(t, false))
	for _, addr := range []string{ts.GatewayAddr(), strings.TrimPrefix(ts.APIURL(), "https://")} {
		for _, suite := range tls.CipherSuites() {
			cfg := ts.TLS.Clone()
			cfg.MaxVersion, cfg.CipherSuites = tls.VersionTLS12, []uint16{suite.ID}
			c, err := tls.Dial("tcp", addr, cfg)
			if err == nil {
				c.Close()
			}
			aead := strings.Contains(suite.Name, "_GCM_") || strings.Contains(suite.Name, "CHACHA20")
			if want := strings.HasPrefix(suite.Name, "TLS_ECDHE_ECDSA_") && aead; (err == nil) != want {
				t.Errorf("%s, TLS 1.2 with %s: %v, want accepted %v", addr, suite.Name, err, want)
			}
		}
		for _, suite := range tls.InsecureCipherSuites() {
			cfg := ts.TLS.Clone()
			cfg.MaxVersion, cfg.CipherSuites = tls.VersionTLS12, []uint16{suite.ID}
			if c, err := tls.Dial("tcp", addr, cfg); err == nil {
				c.Close()
				t.Errorf("%s, TLS 1.2 with %s: accepted", addr, suite.Name)
			}
		}
	}
}

// TestTLSReloadOnSIGHUP: `longlink serve` reads its certificate again on
// SIGHUP. Connections made before keep working; new ones get the new
// certificate.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, oldTrust := testserver.WriteCert(t, dir)
	srv := startChild(t, t.TempDir(), fmt.Sprintf("tls: {cert_file: %s, key_file: %s}", certFile, keyFile))
	before := pushTarget{api: "https://" + srv.api, trust: oldTrust}
	old := before.connect(t, srv.gateway, "before")
	before.push(t, "before", "one")
	old.expect(t, "one")

	next := t.TempDir()
	newCert, newKey, newTrust := testserver.WriteCert(t, next)
	for from, to := range map[string]string{newCert: certFile, newKey: keyFile} {
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
	}
	srv.cmd.Process.Signal(syscall.SIGHUP)
	after := pushTarget{api: before.api, trust: newTrust}
	testwait.Eventually(t, "the new certificate served", func() bool {
		conf := newTrust.Clone()
		conf.ServerName = "127.0.0.1"
		tc, err := tls.Dial("tcp", srv.gateway, conf)
		if err == nil {
			tc.Close()
		}
		return err == nil
	})
	fresh := after.connect(t, srv.gateway, "after")
	after.push(t, "after", "two")
	fresh.expect(t, "two")
	after.push(t, "before", "three") // the connection made before the reload
	old.expect(t, "three")
}

// pushTarget is a server in another process, reached over TLS.
type pushTarget struct {
	api   string
	trust *tls.Config
}

func (p pushTarget) connect(t *testing.T, gateway, id string) *device {
	t.Helper()
	d := &device{pushes: make(chan client.Push, 64)}
	c, err := client.Dial(context.Background(), client.Config{Addr: gateway, TLS: p.trust,
		Token: testserver.MintToken(t, testserver.Demo, id, ""), OnPush: func(x client.Push) { d.pushes <- x }})
	if err != nil {
		t.Fatalf("dial %s: %v", id, err)
	}
	t.Cleanup(func() { c.Close() })
	d.Client = c
	return d
}

func (p pushTarget) push(t *testing.T, device, data string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: p.trust}}
	body := fmt.Sprintf(`{"app":"demo","devices":[%q],"data":%q}`, device, data)
	req, _ := http.NewRequest(http.MethodPost, p.api+"/v1/push", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testserver.Demo.APIKey)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("push: %s", resp.Status)
	}
}

// TestTLSOpenSSLClient: OpenSSL's s_client, a TLS stack that is not Go's,
// logs in over TLS 1.3 with each TLS 1.3 cipher suite, receives a push
// larger than a record, asks for a key update (so both sides change keys),
// and is then still served both ways: a push, and a ping answered.
func TestTLSOpenSSLClient(t *testing.T) {
	testengine.Need(t, "openssl")
	ts := testserver.Start(t, testserver.WithTLS(t, false), func(c *config.Config) {
		c.Gateway.MaxFrameBytes, c.API.MaxDataBytes = 64<<10, 60000
	})
	big := strings.Repeat("b", 40000)
	for _, suite := range []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"} {
		t.Run(suite, func(t *testing.T) {
			device := "openssl-" + suite
			s := startSClient(t, ts.GatewayAddr(), "-tls1_3", "-ciphersuites", suite)
			s.write(t, protocol.AppendBinary(nil, &protocol.Frame{Op: protocol.OpLogin, Token: []byte(ts.Token(device, ""))}))
			s.readUntil(t, protocol.OpWelcome)
			ts.Push(map[string]any{"devices": []string{device}, "data": big})
			if f := s.readUntil(t, protocol.OpPush); string(f.Data) != big {
				t.Fatalf("push of %d bytes, want %d", len(f.Data), len(big))
			}
			// s_client's command: a key update, answer requested. It reads
			// its stdin a buffer at a time and drops the rest of one that
			// starts with K: nothing more is written until it did it.
			s.write(t, []byte("K\n"))
			s.waitFor(t, "KEYUPDATE")
			ts.Push(map[string]any{"devices": []string{device}, "data": "after the key update"})
			if f := s.readUntil(t, protocol.OpPush); string(f.Data) != "after the key update" {
				t.Fatalf("push %q", f.Data)
			}
			s.write(t, protocol.AppendBinary(nil, &protocol.Frame{Op: protocol.OpPing, Ref: []byte("p1")}))
			if f := s.readUntil(t, protocol.OpPong); string(f.Ref) != "p1" {
				t.Fatalf("pong %q", f.Ref)
			}
		})
	}
}

// sClient is `openssl s_client` connected to a gateway: what is written to
// its stdin goes to the server in TLS records, and what the server sends
// comes out of its stdout. Its stderr comes line by line to lines.
type sClient struct {
	in, out *os.File
	lines   chan string
}

func startSClient(t *testing.T, addr string, args ...string) *sClient {
	t.Helper()
	pipe := func() (r, w *os.File) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		return r, w
	}
	inR, inW := pipe()
	outR, outW := pipe()
	errR, errW := pipe()
	// -quiet turns on -ign_eof, which turns off s_client's commands (K);
	// -no_ign_eof after it turns them on again.
	cmd := exec.Command(testengine.Need(t, "openssl"), append([]string{"s_client", "-connect", addr, "-quiet", "-no_ign_eof"}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	inR.Close()
	outW.Close()
	errW.Close()
	s := &sClient{in: inW, out: outR, lines: make(chan string, 256)}
	var stderr strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		for sc := bufio.NewScanner(errR); sc.Scan(); {
			stderr.WriteString(sc.Text() + "\n")
			select {
			case s.lines <- sc.Text():
			default: // nobody waits for so many
			}
		}
	}()
	t.Cleanup(func() {
		inW.Close()
		cmd.Process.Kill()
		cmd.Wait()
		outR.Close()
		<-done
		errR.Close()
		if t.Failed() {
			t.Logf("s_client: %s", stderr.String())
		}
	})
	return s
}

// waitFor waits until s_client writes the line want to its stderr.
func (s *sClient) waitFor(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line := <-s.lines:
			if line == want {
				return
			}
		case <-timeout:
			t.Fatalf("s_client did not say %q", want)
		}
	}
}

func (s *sClient) write(t *testing.T, b []byte) {
	t.Helper()
	if _, err := s.in.Write(b); err != nil {
		t.Fatal(err)
	}
}

// readUntil reads native frames from s_client's output until one of op.
func (s *sClient) readUntil(t *testing.T, op protocol.Op) protocol.Frame {
	t.Helper()
	s.out.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var prefix [protocol.LengthSize]byte
		if _, err := io.ReadFull(s.out, prefix[:]); err != nil {
			t.Fatalf("no %s frame: %v", op, err)
		}
		body := make([]byte, binary.BigEndian.Uint32(prefix[:]))
		if _, err := io.ReadFull(s.out, body); err != nil {
			t.Fatalf("no %s frame: %v", op, err)
		}
		var f protocol.Frame
		if err := protocol.DecodeBinary(body, &f); err != nil {
			t.Fatal(err)
		}
		if f.Op == op {
			return f
		}
	}
}
