package server_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/protocol"
)

// rawConn is a bare protocol connection, for speaking out of turn.
type rawConn struct {
	*client.Conn
	tr      client.Transport
	welcome protocol.Frame
}

func rawDial(t *testing.T, ts *testserver.TS, tr client.Transport) *rawConn {
	t.Helper()
	c, err := client.DialConn(context.Background(), tr, ts.Addr(tr), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{Conn: c, tr: tr}
}

// rawLogin logs a raw connection in with token, proposing heartbeat
// seconds and resuming at lastSeq, and reads the welcome.
func rawLogin(t *testing.T, ts *testserver.TS, tr client.Transport, token string, heartbeat uint32, lastSeq uint64) *rawConn {
	t.Helper()
	c := rawDial(t, ts, tr)
	login := &protocol.Frame{Op: protocol.OpLogin, Token: []byte(token), Heartbeat: heartbeat, LastSeq: lastSeq}
	if err := c.WriteFrame(login, time.Second); err != nil {
		t.Fatal(err)
	}
	c.welcome = readUntil(t, c, protocol.OpWelcome)
	return c
}

// writeRaw sends bytes as they are on TCP, or as one message on WebSocket.
func (c *rawConn) writeRaw(t *testing.T, b []byte) {
	t.Helper()
	var err error
	switch c.tr {
	case client.TCP:
		_, err = c.NetConn().Write(b)
	case client.WebSocket:
		err = wsutil.WriteClientMessage(c.NetConn(), ws.OpBinary, b)
	default:
		err = wsutil.WriteClientMessage(c.NetConn(), ws.OpText, b)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// readUntil reads frames until one of op, within 10s; an error frame ends
// the wait for anything else too.
func readUntil(t *testing.T, c *rawConn, op protocol.Op) protocol.Frame {
	t.Helper()
	c.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var f protocol.Frame
		if err := c.ReadFrame(&f); err != nil {
			t.Fatalf("no %s frame: %v", op, err)
		}
		if f.Op == op {
			return f
		}
		if f.Op == protocol.OpError {
			t.Fatalf("error frame while waiting for %s: %d %s", op, f.Code, f.Reason)
		}
	}
}

func readUntilError(t *testing.T, c *rawConn) protocol.Frame {
	return readUntil(t, c, protocol.OpError)
}

// expectClosed checks that the server closes the connection.
func expectClosed(t *testing.T, c *rawConn) {
	t.Helper()
	expectHangUp(t, c.NetConn(), 5*time.Second)
}

// native encodes a frame as the transport carries it: binary, or JSON.
func native(tr client.Transport, f *protocol.Frame) []byte {
	if tr == client.WebSocketJSON {
		return protocol.AppendJSON(nil, f)
	}
	return protocol.AppendBinary(nil, f)
}

func TestBadDeviceInput(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		healthy := connect(t, ts, tr, ts.Token("healthy", ""))
		expired, _ := auth.Mint("demo", testserver.Demo.Secret, "d1", "", -time.Minute)
		foreignSig, _ := auth.Mint("demo", testserver.Other.Secret, "d1", "", time.Hour)
		unknownApp, _ := auth.Mint("nope", testserver.Demo.Secret, "d1", "", time.Hour)
		login := func(token string) []byte {
			return native(tr, &protocol.Frame{Op: protocol.OpLogin, Token: []byte(token)})
		}
		oversized := make([]byte, 70000)
		binary.BigEndian.PutUint32(oversized, uint32(len(oversized)-4))
		oversized[4] = byte(protocol.OpUp)

		cases := []struct {
			name     string
			loggedIn bool
			frame    []byte
			code     protocol.Code
		}{
			{"non-login first frame", false, native(tr, &protocol.Frame{Op: protocol.OpPing}), protocol.CodeAuthFailed},
			{"expired token", false, login(expired), protocol.CodeAuthFailed},
			{"token signed by another app", false, login(foreignSig), protocol.CodeAuthFailed},
			{"token of an unknown app", false, login(unknownApp), protocol.CodeAuthFailed},
			{"garbage token", false, login("not-a-jwt"), protocol.CodeAuthFailed},
			{"unknown op", true, unknownOp(tr), protocol.CodeBadFrame},
			{"malformed frame", true, malformed(tr), protocol.CodeBadFrame},
			{"server op from client", true, native(tr, &protocol.Frame{Op: protocol.OpPush, Data: []byte("x")}), protocol.CodeBadFrame},
			{"frame over the limit", true, oversized, protocol.CodeFrameTooLarge},
		}
		for _, tc := range cases {
			var c *rawConn
			if tc.loggedIn {
				c = rawLogin(t, ts, tr, ts.Token("offender", ""), 0, 0)
			} else {
				c = rawDial(t, ts, tr)
			}
			c.writeRaw(t, tc.frame)
			if f := readUntilError(t, c); f.Code != tc.code {
				t.Errorf("%s: code %d (%s), want %d", tc.name, f.Code, f.Reason, tc.code)
			}
			expectClosed(t, c)
		}
		ts.Push(map[string]any{"devices": []string{"healthy"}, "data": "still here"})
		healthy.expect(t, "still here")
	})
}

func unknownOp(tr client.Transport) []byte {
	if tr == client.WebSocketJSON {
		return []byte(`{"op":"teleport"}`)
	}
	return []byte{0, 0, 0, 1, 99}
}

func malformed(tr client.Transport) []byte {
	switch tr {
	case client.WebSocketJSON:
		return []byte(`{"op":"ping",`)
	case client.WebSocket:
		return []byte{0, 0, 0, 9, byte(protocol.OpPing)} // prefix says 9, message has 1
	}
	return []byte{0, 0, 0, 3, byte(protocol.OpAck), 10 << 1, 0x80} // field 10 (seq), wiretype 0: a truncated varint
}

func TestLoginDeadline(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		c := rawDial(t, ts, tr) // connects (and upgrades), then says nothing
		start := time.Now()
		if f := readUntilError(t, c); f.Code != protocol.CodeLoginTimeout {
			t.Fatalf("code %d, want 4002", f.Code)
		}
		if waited := time.Since(start); waited < 200*time.Millisecond {
			t.Fatalf("closed after %v, before the deadline", waited)
		}
		expectClosed(t, c)
	}, func(c *config.Config) { c.Gateway.LoginTimeout = 300 * time.Millisecond })
}

func TestNonProtocolPeerIsClosed(t *testing.T) {
	ts := testserver.Start(t)
	nc, err := net.Dial("tcp", ts.GatewayAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write([]byte("HELO there\r\n"))
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := nc.Read(make([]byte, 10)); err == nil {
		t.Fatalf("read %d bytes from a server that should hang up", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection still open")
	}
	// An HTTP request for another path is refused by the upgrader.
	resp, err := http.Get("http://" + ts.GatewayAddr() + "/other")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("GET /other on the gateway: %s", resp.Status)
		}
	}
}

func TestBadAPIInput(t *testing.T) {
	ts := testserver.Start(t, func(c *config.Config) { c.API.MaxDataBytes = 1000 })
	d1 := connect(t, ts, client.TCP, ts.Token("d1", ""))
	key := testserver.Demo.APIKey
	cases := []struct {
		name   string
		key    string
		body   any
		status int
		want   string // in the error message
	}{
		{"no key", "", map[string]any{"app": "demo", "devices": []string{"d1"}, "data": "x"}, 401, "Authorization"},
		{"wrong key", "nope-nope-nope-nope", map[string]any{"app": "demo", "devices": []string{"d1"}, "data": "x"}, 401, "unknown API key"},
		{"key of another app", testserver.Other.APIKey, map[string]any{"app": "demo", "devices": []string{"d1"}, "data": "x"}, 403, "another app"},
		{"unknown app", key, map[string]any{"app": "ghost", "devices": []string{"d1"}, "data": "x"}, 404, "ghost"},
		{"bad JSON", key, `{"app": "demo", "devices": [`, 400, "cut short"},
		{"bad JSON syntax", key, `{"app": "demo", "devices": [,]}`, 400, "bad JSON at byte"},
		{"wrong key name", key, `{"app":"demo","devcies":["d1"],"data":"x"}`, 400, "devcies"},
		{"trailing data", key, `{"app":"demo","devices":["d1"],"data":"x"} {}`, 400, "after the object"},
		{"no app", key, map[string]any{"devices": []string{"d1"}, "data": "x"}, 400, "app is required"},
		{"empty data", key, map[string]any{"app": "demo", "devices": []string{"d1"}, "data": ""}, 400, "data is empty"},
		{"no data", key, map[string]any{"app": "demo", "devices": []string{"d1"}}, 400, "data is empty"},
		{"data twice", key, map[string]any{"app": "demo", "devices": []string{"d1"}, "data": "x", "data_base64": "eA=="}, 400, "not both"},
		{"bad base64", key, map[string]any{"app": "demo", "devices": []string{"d1"}, "data_base64": "***"}, 400, "base64"},
		{"oversized data", key, map[string]any{"app": "demo", "devices": []string{"d1"}, "data": strings.Repeat("x", 1001)}, 413, "limit"},
		{"no target", key, map[string]any{"app": "demo", "data": "x"}, 400, "exactly one"},
		{"two targets", key, map[string]any{"app": "demo", "devices": []string{"d1"}, "broadcast": true, "data": "x"}, 400, "exactly one"},
		{"empty devices", key, map[string]any{"app": "demo", "devices": []string{}, "data": "x"}, 400, "devices is empty"},
		{"bad device id", key, map[string]any{"app": "demo", "devices": []string{"a b"}, "data": "x"}, 400, "printable"},
		{"negative ttl", key, map[string]any{"app": "demo", "devices": []string{"d1"}, "data": "x", "ttl": -1}, 400, "ttl"},
		{"wrong type", key, map[string]any{"app": "demo", "devices": "d1", "data": "x"}, 400, "devices: must be a list of strings, not string"},
		{"key in another case", key, `{"APP":"demo","devices":["d1"],"data":"x"}`, 400, `unknown key "APP"`},
		{"duplicate key", key, `{"app":"demo","devices":["d1"],"data":"x","data":"y"}`, 400, `"data" is given twice`},
		{"invalid UTF-8", key, "{\"app\":\"demo\",\"devices\":[\"d1\"],\"data\":\"\xff\"}", 400, "not valid UTF-8"},
		{"empty body", key, ``, 400, "empty"},
		{"bad JSON without a key", "", `{"app": "demo", "devices": [`, 401, "Authorization"},
		{"nested key in another case", key, `{"app":"demo","tags":{"ANY":["x"]},"data":"x"}`, 400, `unknown key "tags.ANY"`},
		{"nested key twice", key, `{"app":"demo","tags":{"any":["x"],"any":["y"]},"data":"x"}`, 400, `"tags.any" is given twice`},
		{"too many values", key, `{"app":"demo","data":"x","devices":["a"` + strings.Repeat(`,"a"`, 20000) + `]}`, 413, "20000 values"},
	}
	for _, tc := range cases {
		status, out := ts.Call(http.MethodPost, "/v1/push", tc.key, tc.body)
		msg, _ := out["error"].(string)
		if status != tc.status || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %d %q, want %d and an error about %q", tc.name, status, msg, tc.status, tc.want)
		}
	}
	for path, want := range map[string]int{
		"/v1/presence?app=demo":                 400,
		"/v1/presence?app=ghost&device=d1":      404,
		"/v1/presence?app=other&device=d1":      403,
		"/v1/dispatch?app=demo&device=a%20b":    400,
		"/v1/nothing":                           404,
		"/v1/presence?app=demo&device=" + "%01": 400,
	} {
		if status, out := ts.Call(http.MethodGet, path, key, nil); status != want || out["error"] == nil {
			t.Errorf("GET %s: %d %v, want %d with an error", path, status, out, want)
		}
	}
	// Errors speak JSON without Go's names or HTML escapes; a wrong method
	// is 405 with Allow; the Bearer scheme is case-insensitive.
	raw := func(method, path, auth, body string) (*http.Response, string) {
		req, _ := http.NewRequest(method, ts.APIURL()+path, strings.NewReader(body))
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := raw(http.MethodPost, "/v1/push", "Bearer "+key, `{"app":"<x>","devices":["d1"],"data":"x"}`); resp.StatusCode != 404 ||
		!strings.Contains(body, `unknown app \"<x>\"`) {
		t.Errorf("unknown app <x>: %d %s", resp.StatusCode, body)
	}
	if resp, body := raw(http.MethodPost, "/v1/push", "Bearer "+key, `{"app":"demo","devices":[1],"data":"x"}`); strings.Contains(body, "Go") ||
		strings.Contains(body, "pushRequest") || resp.StatusCode != 400 {
		t.Errorf("a number for a device: %d %s", resp.StatusCode, body)
	}
	if resp, body := raw(http.MethodGet, "/v1/push", "Bearer "+key, ""); resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" ||
		!strings.Contains(body, "takes POST") {
		t.Errorf("GET /v1/push: %d Allow=%q %s", resp.StatusCode, resp.Header.Get("Allow"), body)
	}
	if resp, body := raw(http.MethodPost, "/v1/push", "bearer "+key, `{"app":"demo","devices":["d1"],"data":"lowercase"}`); resp.StatusCode != 200 {
		t.Errorf("lowercase bearer: %d %s", resp.StatusCode, body)
	}
	d1.expect(t, "lowercase")
	// None of the refused calls delivered anything.
	ts.Push(map[string]any{"devices": []string{"d1"}, "data": "good"})
	d1.expect(t, "good")
}
