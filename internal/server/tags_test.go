package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
)

// tag calls POST /v1/tags and fails the test unless it answers 200.
func tag(t *testing.T, ts *testserver.TS, devices, add, remove []string) {
	t.Helper()
	status, out := ts.Call(http.MethodPost, "/v1/tags", testserver.Demo.APIKey,
		map[string]any{"app": "demo", "devices": devices, "add": add, "remove": remove})
	if status != http.StatusOK || out["devices"] != float64(len(devices)) {
		t.Fatalf("tags: %d %v", status, out)
	}
}

// A push to a tag expression reaches every matching device of 1,000:
// online ones at once, the others (stored) when they log in; online-only,
// the matching ones online now. Tags set by the backend and by a token's
// tags claim both count.
func TestPushToTags(t *testing.T) {
	eachTransport(t, func(t *testing.T, ts *testserver.TS, tr client.Transport) {
		var vip, beijing, beta []string
		for i := range 1000 {
			d := fmt.Sprint("d", i)
			if i%2 == 0 {
				vip = append(vip, d)
			}
			if i%3 == 0 {
				beijing = append(beijing, d)
			}
			if i%5 == 0 {
				beta = append(beta, d)
			}
		}
		tag(t, ts, vip, []string{"vip"}, nil)
		tag(t, ts, beijing, []string{"beijing"}, nil)
		tag(t, ts, beta, []string{"beta", "old"}, nil)
		tag(t, ts, beta, nil, []string{"old"})
		// vip and beijing and not beta: i%6 == 0 and i%5 != 0 (d0, d6, ... not d30).
		want := 0
		for i := range 1000 {
			if i%6 == 0 && i%5 != 0 {
				want++
			}
		}
		d6 := connect(t, ts, tr, ts.Token("d6", ""))
		d7 := connect(t, ts, tr, ts.Token("d7", "")) // not vip
		expr := map[string]any{"all": []string{"vip", "beijing"}, "not": []string{"beta"}}
		out := ts.Push(map[string]any{"tags": expr, "data": "for you", "ttl": 600})
		if out["online"] != 1.0 || out["offline"] != float64(want-1) {
			t.Fatalf("stored push to tags: %v, want online 1, offline %d", out, want-1)
		}
		d6.expect(t, "for you")
		d12 := connect(t, ts, tr, ts.Token("d12", ""))
		d12.expect(t, "for you")
		if out := ts.Push(map[string]any{"tags": map[string]any{"any": []string{"vip"}}, "data": "online only"}); out["online"] != 2.0 {
			t.Fatalf("online push to a tag: %v", out)
		}
		d6.expect(t, "online only")
		d12.expect(t, "online only")
		d7.expectNone(t)

		// A token's tags claim adds its tags at login.
		tok, err := auth.MintClaims(testserver.Demo.Secret, auth.Claims{App: "demo", Device: "fresh", Tags: []string{"newcomer"}}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		fresh := connect(t, ts, tr, tok)
		testwait.Eventually(t, "the claim's tag", func() bool {
			out := ts.Push(map[string]any{"tags": map[string]any{"any": []string{"newcomer"}}, "data": "welcome"})
			return out["online"] == 1.0
		})
		fresh.expect(t, "welcome")
	})
}

// Bad tag calls and expressions get a 400 that names what is wrong, and
// change nothing; a device over 100 tags is refused whole.
func TestTagsBadInput(t *testing.T) {
	ts := testserver.Start(t)
	many := make([]string, 100)
	for i := range many {
		many[i] = fmt.Sprint("t", i)
	}
	tag(t, ts, []string{"d1"}, many, nil)
	for _, c := range []struct {
		path string
		body map[string]any
		want string
	}{
		{"/v1/tags", map[string]any{"devices": []string{"d1"}}, "add or remove"},
		{"/v1/tags", map[string]any{"devices": []string{"d1"}, "add": []string{"a b"}}, "add: tag"},
		{"/v1/tags", map[string]any{"devices": []string{"d1"}, "add": []string{strings.Repeat("x", 65)}}, "add: tag"},
		{"/v1/tags", map[string]any{"devices": []string{"d1"}, "add": []string{"x"}, "remove": []string{"x"}}, "both added and removed"},
		{"/v1/tags", map[string]any{"devices": []string{"d2", "d1"}, "add": []string{"one-more"}}, "more than 100 tags"},
		{"/v1/push", map[string]any{"tags": map[string]any{"not": []string{"x"}}, "data": "x"}, "any or all"},
		{"/v1/push", map[string]any{"tags": map[string]any{"any": []string{"x!"}}, "data": "x"}, "tags.any"},
		{"/v1/push", map[string]any{"tags": map[string]any{"any": []string{"x"}, "some": []string{"y"}}, "data": "x"}, "some"},
		{"/v1/push", map[string]any{"tags": map[string]any{"any": []string{"x"}}, "devices": []string{"d1"}, "data": "x"}, "exactly one"},
	} {
		c.body["app"] = "demo"
		status, out := ts.Call(http.MethodPost, c.path, testserver.Demo.APIKey, c.body)
		if status != http.StatusBadRequest || !strings.Contains(out["error"].(string), c.want) {
			t.Errorf("%s %v: %d %v, want 400 with %q", c.path, c.body, status, out, c.want)
		}
	}
	// The refused call gave d2 nothing.
	if out := ts.Push(map[string]any{"tags": map[string]any{"any": []string{"one-more"}}, "data": "x", "ttl": 60}); out["offline"] != 0.0 {
		t.Errorf("a refused tag call changed something: %v", out)
	}
}
