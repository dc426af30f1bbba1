package server_test

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/protocol"
)

// pushOther pushes as app "other".
func pushOther(t *testing.T, ts *testserver.TS, body map[string]any) map[string]any {
	t.Helper()
	body["app"] = "other"
	status, out := testserver.CallAPI(t, ts.APIURL(), http.MethodPost, "/v1/push", testserver.Other.APIKey, body)
	if status != http.StatusOK {
		t.Fatalf("push as other: %d %v", status, out)
	}
	return out
}

func presenceIn(t *testing.T, ts *testserver.TS, app appKey, device string) bool {
	t.Helper()
	status, out := testserver.CallAPI(t, ts.APIURL(), http.MethodGet, "/v1/presence?app="+app.ID+"&device="+device, app.APIKey, nil)
	if status != http.StatusOK {
		t.Fatalf("presence: %d %v", status, out)
	}
	return out["devices"].(map[string]any)[device].(map[string]any)["online"] == true
}

// inBothApps makes c log device d1 into apps demo and other, on one
// connection.
func inBothApps(t *testing.T, ts *testserver.TS, c *client.Config) {
	c.Token = ""
	c.Tokens = []string{ts.Token("d1", ""), testserver.MintToken(t, testserver.Other, "d1", "")}
}

// appKey is an app and its API key.
type appKey struct{ ID, APIKey string }

var (
	demoApp  = appKey{testserver.Demo.ID, testserver.Demo.APIKey}
	otherApp = appKey{testserver.Other.ID, testserver.Other.APIKey}
)

// The first repro: a token of app B for a device id that app A's
// device uses logs in; A's device is not touched (before, the registry was
// keyed by device id alone, and A's connection was closed with 4003).
func TestAnotherAppCannotReplaceADevice(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		victim := connect(t, ts, tr, ts.Token("phone-42", ""), func(c *client.Config) {
			c.OnDisconnect = func(err error) { t.Errorf("app demo's phone-42 disconnected: %v", err) }
		})
		intruder := connect(t, ts, tr, testserver.MintToken(t, testserver.Other, "phone-42", ""))
		if !presenceIn(t, ts, demoApp, "phone-42") || !presenceIn(t, ts, otherApp, "phone-42") {
			t.Fatal("phone-42 should be online in both apps")
		}
		ts.Push(map[string]any{"devices": []string{"phone-42"}, "data": "to demo's phone"})
		victim.expect(t, "to demo's phone")
		pushOther(t, ts, map[string]any{"devices": []string{"phone-42"}, "data": "to other's phone"})
		intruder.expect(t, "to other's phone")
		victim.expectNone(t)

		// Kick is per app too: kicking other's phone-42 leaves demo's.
		status, out := testserver.CallAPI(t, ts.APIURL(), http.MethodPost, "/v1/kick", testserver.Other.APIKey,
			map[string]any{"app": "other", "devices": []string{"phone-42"}})
		if status != http.StatusOK || out["kicked"] != 1.0 {
			t.Fatalf("kick: %d %v", status, out)
		}
		<-intruder.Done()
		if !presenceIn(t, ts, demoApp, "phone-42") {
			t.Fatal("demo's phone-42 went offline when other kicked its own")
		}
	})
}

// A connection logged into two apps that is replaced in one of them (a
// newer login of the device to that app) keeps the other, and is told with
// an error frame naming the app; the same for a kick in one app.
func TestMultiAppConnectionReplacedInOneApp(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		ended := make(chan string, 2)
		both := connect(t, ts, tr, "", func(c *client.Config) {
			inBothApps(t, ts, c)
			c.OnAppEnded = func(app string, err error) {
				var pe *protocol.Error
				if !errors.As(err, &pe) {
					t.Errorf("app %s ended with %v", app, err)
				}
				ended <- app + " " + pe.Reason
			}
			c.OnDisconnect = func(err error) { t.Errorf("the two-app connection disconnected: %v", err) }
		})
		newer := connect(t, ts, tr, ts.Token("d1", ""))
		select {
		case e := <-ended:
			if !strings.HasPrefix(e, "demo replaced") {
				t.Fatalf("ended: %q, want demo replaced", e)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the older connection was not told it was replaced in demo")
		}
		ts.Push(map[string]any{"devices": []string{"d1"}, "data": "demo to the newer"})
		newer.expect(t, "demo to the newer")
		pushOther(t, ts, map[string]any{"devices": []string{"d1"}, "data": "other still here"})
		both.expect(t, "other still here")
		both.expectNone(t)

		// The server's registry agrees: a broadcast in demo reaches one
		// connection, and the group of demo the old one was in is left.
		if out := ts.Push(map[string]any{"broadcast": true, "data": "all of demo"}); out["online"] != 1.0 {
			t.Fatalf("demo broadcast reached %v connections, want 1", out["online"])
		}
		newer.expect(t, "all of demo")
		both.expectNone(t)
	})
}

func TestKickInOneAppOfTwo(t *testing.T) {
	ts := testserver.Start(t)
	ended := make(chan string, 1)
	both := connect(t, ts, client.TCP, "", func(c *client.Config) {
		inBothApps(t, ts, c)
		c.OnAppEnded = func(app string, err error) { ended <- app }
	})
	status, out := ts.Call(http.MethodPost, "/v1/kick", testserver.Demo.APIKey, map[string]any{"app": "demo", "devices": []string{"d1"}})
	if status != http.StatusOK || out["kicked"] != 1.0 {
		t.Fatalf("kick: %d %v", status, out)
	}
	if app := <-ended; app != "demo" {
		t.Fatalf("ended %q", app)
	}
	if online(t, ts, "d1") || !presenceIn(t, ts, otherApp, "d1") {
		t.Fatal("after a kick in demo, d1 should be offline in demo and online in other")
	}
	pushOther(t, ts, map[string]any{"devices": []string{"d1"}, "data": "other still here"})
	both.expect(t, "other still here")
}

// The second repro: B's token for victim2 logs in with last_seq
// 2^64-1; A pushes 3 stored messages; A's victim2 logs in with last_seq 0
// and must get all 3 (before, the shared seq counter wrapped and one was
// never replayed). A last_seq above A's own counter is clamped, not trusted.
func TestForeignLastSeqLosesNothing(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		b := rawLogin(t, ts, tr, testserver.MintToken(t, testserver.Other, "victim2", ""), 0, math.MaxUint64)
		b.WriteFrame(&protocol.Frame{Op: protocol.OpAck, Seq: math.MaxUint64}, time.Second)
		b.WriteFrame(&protocol.Frame{Op: protocol.OpPing, Ref: []byte("p")}, time.Second)
		readUntil(t, b, protocol.OpPong) // the ack was read before the pushes
		for _, d := range []string{"one", "two", "three"} {
			ts.Push(stored([]string{"victim2"}, d))
		}
		a := connect(t, ts, tr, ts.Token("victim2", ""))
		for i, d := range []string{"one", "two", "three"} {
			if p := a.expect(t, d); p.Seq != uint64(i+1) {
				t.Fatalf("%s has seq %d, want %d", d, p.Seq, i+1)
			}
		}

		// A last_seq above what demo gave this device: clamped to 3, so the
		// next message (seq 4) is delivered, not skipped as "had it".
		a.Close()
		c := rawLogin(t, ts, tr, ts.Token("victim2", ""), 0, math.MaxUint64)
		ts.Push(stored([]string{"victim2"}, "four"))
		if f := readUntil(t, c, protocol.OpPush); string(f.Data) != "four" || f.Seq != 4 {
			t.Fatalf("after a clamped last_seq got %q seq %d, want four seq 4", f.Data, f.Seq)
		}
		m := ts.Metrics()
		for _, want := range []string{
			`longlink_seq_clamped_total{app="demo",op="login"} 1`,
			`longlink_seq_clamped_total{app="other",op="ack"} 1`,
		} {
			if !strings.Contains(m, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

// Seqs are per app: a connection logged into two apps resumes each at its
// own last_seq.
func TestMultiAppResumesEachApp(t *testing.T) {
	ts := testserver.Start(t)
	for _, d := range []string{"d1", "d2", "d3"} {
		ts.Push(stored([]string{"d1"}, "demo "+d))
	}
	pushOther(t, ts, stored([]string{"d1"}, "other d1"))
	pushOther(t, ts, stored([]string{"d1"}, "other d2"))
	got := make(chan client.Push, 8)
	connect(t, ts, client.TCP, "", func(c *client.Config) {
		inBothApps(t, ts, c)
		c.LastSeqs = map[string]uint64{"demo": 2, "other": 1}
		c.OnPush = func(p client.Push) { got <- p }
	})
	want := map[string]bool{"demo/3/demo d3": true, "other/2/other d2": true}
	for range want {
		select {
		case p := <-got:
			k := fmt.Sprintf("%s/%d/%s", p.App, p.Seq, p.Data)
			if !want[k] {
				t.Fatalf("unexpected push %s", k)
			}
			delete(want, k)
		case <-time.After(5 * time.Second):
			t.Fatalf("missing %v", want)
		}
	}

	// A login into several apps with one last_seq is refused: it could not
	// say which app's sequence it means.
	raw := rawDial(t, ts, client.TCP)
	raw.WriteFrame(&protocol.Frame{Op: protocol.OpLogin, LastSeq: 5, Tokens: [][]byte{
		[]byte(ts.Token("d9", "")), []byte(testserver.MintToken(t, testserver.Other, "d9", ""))}}, time.Second)
	if f := readUntilError(t, raw); f.Code != protocol.CodeBadFrame || !strings.Contains(string(f.Reason), "last_seqs") {
		t.Fatalf("one last_seq for two apps: %d %s", f.Code, f.Reason)
	}
}

// A token whose uid is not a valid id is refused at login (before, a uid
// with a NUL byte bound the device to a user key that broke the store's
// key layout).
func TestBadUIDRefused(t *testing.T) {
	ts := testserver.Start(t)
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"app": "demo", "sub": "d1", "uid": "alice\x00evil",
		"exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(testserver.Demo.Secret))
	if err != nil {
		t.Fatal(err)
	}
	c := rawDial(t, ts, client.TCP)
	c.WriteFrame(&protocol.Frame{Op: protocol.OpLogin, Token: []byte(token)}, time.Second)
	if f := readUntilError(t, c); f.Code != protocol.CodeAuthFailed || !strings.Contains(string(f.Reason), "uid") {
		t.Fatalf("bad uid: %d %s", f.Code, f.Reason)
	}
	status, out := ts.Call(http.MethodPost, "/v1/push", testserver.Demo.APIKey,
		map[string]any{"app": "demo", "users": []string{"alice\x00evil"}, "data": "x", "ttl": 60})
	if status != http.StatusBadRequest {
		t.Fatalf("push to a bad user id: %d %v", status, out)
	}
}
