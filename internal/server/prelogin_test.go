package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
	"github.com/longlink/longlink/protocol"
)

// upgradeHead is a valid WebSocket upgrade request to /ws, without the
// blank line that ends it.
const upgradeHead = "GET /ws HTTP/1.1\r\nHost: longlink\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

// expectHangUp checks that the server closes nc within the time given,
// reading and dropping whatever comes before.
func expectHangUp(t *testing.T, nc net.Conn, within time.Duration) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 4096)
	for {
		_, err := nc.Read(buf)
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			t.Fatalf("connection still open after %v", within)
		case err != nil:
			return
		}
	}
}

// cutOff checks that the server hangs up on nc at once (within 3s), however
// much of what it was promised is still to come: a server that waits for it
// would time out the read, the login deadline being longer.
func cutOff(t *testing.T, nc net.Conn) {
	t.Helper()
	expectHangUp(t, nc, 3*time.Second)
}

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// Before its login is accepted, a connection can make the server hold only
// a bounded number of bytes: each way in is cut off at its bound, at once,
// instead of waiting for what was announced.
func TestPreLoginBounds(t *testing.T) {
	ts := testserver.Start(t, testserver.WithTLS(t, false), func(c *config.Config) { c.Gateway.LoginTimeout = 6 * time.Second })
	t.Run("native login frame", func(t *testing.T) {
		c := rawDial(t, ts, client.TCP)
		var prefix [protocol.LengthSize]byte
		binary.BigEndian.PutUint32(prefix[:], 20000) // under max_frame_bytes, over max_login_bytes
		c.writeRaw(t, prefix[:])
		if f := readUntilError(t, c); f.Code != protocol.CodeFrameTooLarge {
			t.Fatalf("a 20,000-byte login announced: %d %s, want 4006", f.Code, f.Reason)
		}
	})
	t.Run("MQTT CONNECT", func(t *testing.T) {
		nc := dialTCP(t, ts.GatewayAddr())
		nc.Write([]byte{0x10, 0xa0, 0x9c, 0x01}) // CONNECT, 20,000 bytes to come
		cutOff(t, nc)
	})
	t.Run("upgrade headers in all", func(t *testing.T) {
		nc := dialTCP(t, ts.GatewayAddr())
		req := upgradeHead + strings.Repeat("X-Pad: "+strings.Repeat("a", 1000)+"\r\n", 20) + "\r\n"
		go nc.Write([]byte(req))
		status, err := bufio.NewReader(nc).ReadString('\n')
		if err != nil || !strings.HasPrefix(status, "HTTP/1.1 431 ") {
			t.Fatalf("an upgrade with 20 KiB of headers: %q %v, want 431", status, err)
		}
	})
	t.Run("upgrade header line", func(t *testing.T) {
		nc := dialTCP(t, ts.GatewayAddr())
		go nc.Write([]byte(upgradeHead + "X-Pad: " + strings.Repeat("a", 9000) + "\r\n\r\n"))
		status, err := bufio.NewReader(nc).ReadString('\n')
		if err != nil || !strings.HasPrefix(status, "HTTP/1.1 431 ") {
			t.Fatalf("an upgrade with a 9 KiB header line: %q %v, want 431", status, err)
		}
	})
	t.Run("TLS ClientHello", func(t *testing.T) {
		nc := dialTCP(t, ts.GatewayAddr())
		// A ClientHello announced at 60,000 bytes (crypto/tls takes up to
		// 64 KiB), in records of 16 KiB: two of them are sent.
		record := func(body []byte) []byte {
			return append([]byte{0x16, 0x03, 0x01, byte(len(body) >> 8), byte(len(body))}, body...)
		}
		first := append([]byte{0x01, 0x00, 0xea, 0x60}, make([]byte, 16380)...)
		go nc.Write(append(record(first), record(make([]byte, 16384))...))
		cutOff(t, nc)
	})
	t.Run("a login within the bounds", func(t *testing.T) {
		rawLogin(t, ts, client.WebSocket, ts.Token("d1", ""), 0, 0)
	})
}

// procStatus reads a field of a process's /proc status, in bytes.
func procStatus(t testing.TB, pid int, field string) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// peakGrowth runs load and returns how far process pid's peak RSS rose
// above its RSS before: VmHWM, reset by clear_refs, against VmRSS.
func peakGrowth(t *testing.T, pid int, load func()) int64 {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Fatal(err)
	}
	before := procStatus(t, pid, "VmRSS")
	load()
	return procStatus(t, pid, "VmHWM") - before
}

// 20 connections from one address, each sending 16 MiB of one header line
// of a WebSocket upgrade, hold almost nothing on the server, are counted by
// the per-IP limit at accept, and a device logged in meanwhile keeps
// getting its pushes. The server runs in a process of its own, so that its
// memory is measured alone.
func TestPreLoginMemory(t *testing.T) {
	srv := startChild(t, t.TempDir(), "limits: {conns_per_ip: 10}")
	pid := srv.cmd.Process.Pid
	tok, err := auth.Mint(testserver.Demo.ID, testserver.Demo.Secret, "canary", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pushes := make(chan client.Push, 1024)
	canary, err := client.Dial(context.Background(), client.Config{Addr: srv.gateway, Token: tok,
		OnPush: func(p client.Push) { pushes <- p }})
	if err != nil {
		t.Fatal(err)
	}
	defer canary.Close()

	const attackers, each = 20, 16 << 20
	api := "http://" + srv.api
	limited := func() float64 { return sampleValue(srv.metrics(t), `longlink_limited_total\{limit="conns_per_ip"\}`) }
	grew := peakGrowth(t, pid, func() {
		conns := make([]net.Conn, attackers)
		for i := range conns {
			conns[i] = dialTCP(t, srv.gateway)
		}
		// All connected before any sends: beside the canary, 9 are admitted
		// and 11 refused, at accept, though none has said what it speaks.
		testwait.Eventually(t, "11 connections refused at accept", func() bool { return limited() == attackers-9 })
		var wg sync.WaitGroup
		for _, nc := range conns {
			wg.Go(func() {
				chunk := bytes.Repeat([]byte("a"), 64<<10)
				if _, err := nc.Write([]byte("GET /ws HTTP/1.1\r\nX-Pad: ")); err != nil {
					return
				}
				for sent := 0; sent < each; sent += len(chunk) {
					if _, err := nc.Write(chunk); err != nil {
						return // the server hung up
					}
				}
			})
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		for i := 0; ; i++ { // the canary gets its pushes while the attack lasts
			data := fmt.Sprint("during-", i)
			code, body := testserver.CallAPI(t, api, "POST", "/v1/push", testserver.Demo.APIKey,
				map[string]any{"app": "demo", "devices": []string{"canary"}, "data": data})
			if code != 200 || body["online"] != float64(1) {
				t.Fatalf("push %d to the canary: %d %v", i, code, body)
			}
			select {
			case p := <-pushes:
				if string(p.Data) != data {
					t.Fatalf("the canary got %q, want %q", p.Data, data)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("the canary did not get push %d", i)
			}
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	t.Logf("the server's peak RSS grew by %.1f MiB", float64(grew)/(1<<20))
	if grew > 32<<20 {
		t.Fatalf("the server's RSS grew by %d MiB under the attack, want under 32", grew>>20)
	}
}

// postBodies sends n POSTs to /v1/push at once, each with a body of size
// bytes (one-letter device ids), with key, and returns their statuses.
func postBodies(t *testing.T, api, key string, n, size int) []int {
	t.Helper()
	body := []byte(`{"app":"demo","data":"x","devices":["a"` + strings.Repeat(`,"a"`, (size-40)/4) + `]}`)
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, api+"/v1/push", bytes.NewReader(body))
			if key != "" {
				req.Header.Set("Authorization", "Bearer "+key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil { // the server answered and hung up while the body was still going
				var oe *net.OpError
				if !errors.As(err, &oe) {
					t.Errorf("POST: %v", err)
				}
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	return statuses
}

// 16 bodies of 8 MiB at once: without a key, each is answered 401 before
// it is read; with one, each is refused (too many values, or over
// limits.api_body_bytes, here one body's worth) without being decoded into
// 20 times its size.
func TestAPIBodyMemory(t *testing.T) {
	srv := startChild(t, t.TempDir(), "limits: {api_body_bytes: 8388608}")
	pid := srv.cmd.Process.Pid
	api := "http://" + srv.api
	for _, tc := range []struct {
		name  string
		key   string
		allow []int
	}{
		{"without a key", "", []int{401}},
		{"with a key", testserver.Demo.APIKey, []int{413, 503}},
	} {
		var statuses []int
		grew := peakGrowth(t, pid, func() { statuses = postBodies(t, api, tc.key, 16, 8<<20-64) })
		for _, status := range statuses {
			if !slices.Contains(tc.allow, status) {
				t.Errorf("%s: %v, want each one of %v", tc.name, statuses, tc.allow)
				break
			}
		}
		t.Logf("%s: %v; the server's peak RSS grew by %.1f MiB", tc.name, statuses, float64(grew)/(1<<20))
		if grew > 64<<20 {
			t.Errorf("%s: the server's RSS grew by %d MiB, want under 64", tc.name, grew>>20)
		}
	}
}

// While request bodies hold limits.api_body_bytes, another call with a
// body gets 503 with Retry-After; once they are gone, it goes through.
func TestAPIBodyBudget(t *testing.T) {
	ts := testserver.Start(t, func(c *config.Config) { c.Limits.APIBodyBytes = config.MaxAPIBodyBytes })
	_, pushes := ts.Listen(t, "d1")
	// The slow request declares a body of the budget's size and sends a few
	// bytes of it. Its handler may run while a push below holds a few bytes
	// of the budget: the slow request is then the one refused (503), and is
	// sent again.
	hold := func() net.Conn {
		nc := dialTCP(t, strings.TrimPrefix(ts.APIURL(), "http://"))
		fmt.Fprintf(nc, "POST /v1/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n{\"app\":",
			testserver.Demo.APIKey, config.MaxAPIBodyBytes)
		return nc
	}
	answered := func(nc net.Conn) bool {
		nc.SetReadDeadline(time.Now().Add(time.Millisecond))
		n, _ := nc.Read(make([]byte, 1))
		return n > 0
	}
	slow := hold()
	push := func() *http.Response {
		req, _ := http.NewRequest(http.MethodPost, ts.APIURL()+"/v1/push", strings.NewReader(`{"app":"demo","devices":["d1"],"data":"x"}`))
		req.Header.Set("Authorization", "Bearer "+testserver.Demo.APIKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	testwait.EventuallyNil(t, func() error { // the error says what the last push got
		resp := push()
		if resp.StatusCode == 200 {
			<-pushes
			if answered(slow) {
				slow.Close()
				slow = hold()
			}
		}
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
			return fmt.Errorf("while a body holds the budget, a push got %d (Retry-After %q), want 503 with Retry-After",
				resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		return nil
	})
	slow.Close()
	testwait.Eventually(t, "a push once the body is gone", func() bool { return push().StatusCode == 200 })
	<-pushes
}

// A body of no declared length (chunked) is read as it comes, up to the
// same bound.
func TestAPIChunkedBody(t *testing.T) {
	ts := testserver.Start(t)
	_, pushes := ts.Listen(t, "d1")
	post := func(body string) int {
		// A reader of no known length: the client sends it chunked.
		req, _ := http.NewRequest(http.MethodPost, ts.APIURL()+"/v1/push", io.MultiReader(strings.NewReader(body)))
		req.Header.Set("Authorization", "Bearer "+testserver.Demo.APIKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(`{"app":"demo","devices":["d1"],"data":"` + strings.Repeat("x", 10000) + `"}`); code != 200 {
		t.Fatalf("a chunked push: %d", code)
	}
	if p := <-pushes; len(p.Data) != 10000 {
		t.Fatalf("got %d bytes", len(p.Data))
	}
	if code := post(`{"app":"demo","devices":["d1"],"data":"` + strings.Repeat("x", config.MaxAPIBodyBytes) + `"}`); code != 413 {
		t.Fatalf("a chunked body over 8 MiB: %d, want 413", code)
	}
}

// A request that is not fully received in time is closed: headers within
// api.read_header_timeout, the body within api.read_timeout; a keep-alive
// connection waits api.idle_timeout for its next request. A profile may
// still run past read_timeout.
func TestAPITimeouts(t *testing.T) {
	testengine.Long(t, "waits out the API timeouts")
	ts := testserver.Start(t, withOpsToken, func(c *config.Config) {
		c.API.ReadHeaderTimeout, c.API.ReadTimeout, c.API.IdleTimeout = 300*time.Millisecond, time.Second, 500*time.Millisecond
	})
	addr := strings.TrimPrefix(ts.APIURL(), "http://")
	t.Run("headers", func(t *testing.T) {
		nc := dialTCP(t, addr)
		io.WriteString(nc, "POST /v1/push HTTP/1.1\r\nHost: x\r\n")
		cutOff(t, nc)
	})
	t.Run("body", func(t *testing.T) {
		nc := dialTCP(t, addr)
		fmt.Fprintf(nc, "POST /v1/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 100\r\n\r\n{\"app\":", testserver.Demo.APIKey)
		cutOff(t, nc)
	})
	t.Run("idle", func(t *testing.T) {
		nc := dialTCP(t, addr)
		io.WriteString(nc, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /healthz: %v %v", resp, err)
		}
		cutOff(t, nc)
	})
	t.Run("profile", func(t *testing.T) {
		start := time.Now()
		if code := get(t, ts.APIURL()+"/debug/pprof/profile?seconds=2", opsToken); code != 200 {
			t.Fatalf("profile: %d", code)
		}
		if took := time.Since(start); took < 2*time.Second {
			t.Fatalf("a 2 s profile ended after %v: cut by read_timeout", took)
		}
	})
}

// With the process near its limit of open files, the API stops accepting
// (requests held half-sent keep what they have) while the gateway still
// takes devices; once the held requests are gone, the API answers again.
func TestAPIKeepsFilesForDevices(t *testing.T) {
	srv := startChildEnv(t, []string{serveNofileEnv + "=200"}, t.TempDir(), "api: {listen: 127.0.0.1:0, read_header_timeout: 60s}")
	held := make([]net.Conn, 250) // more than the child has descriptors
	for i := range held {
		held[i] = dialTCP(t, srv.api)
		io.WriteString(held[i], "GET /healthz HTTP/1.1\r\n")
	}
	tok, err := auth.Mint(testserver.Demo.ID, testserver.Demo.Secret, "d1", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	device, err := client.Dial(ctx, client.Config{Addr: srv.gateway, Token: tok})
	if err != nil {
		t.Fatalf("a device could not log in while the API held its requests: %v", err)
	}
	device.Close()
	for _, nc := range held {
		nc.Close()
	}
	testwait.Eventually(t, "the API answering again", func() bool {
		resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + srv.api + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}
