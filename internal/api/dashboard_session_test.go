package api

import (
	"testing"
	"time"
)

// A session is valid from its start until it ends or expires, and only on
// the node that keeps it; past maxSessions, the one that would expire first
// ends.
func TestSessions(t *testing.T) {
	var ss sessions
	id, exp := ss.start()
	if !ss.valid(id) || time.Until(exp) > sessionTTL || time.Until(exp) < sessionTTL-time.Minute {
		t.Fatalf("a fresh session: valid %v, expires in %v", ss.valid(id), time.Until(exp))
	}
	if ss.valid("forged") || ss.valid("") {
		t.Fatal("an unknown session accepted")
	}
	ss.end(id)
	if ss.valid(id) {
		t.Fatal("a session still valid after it ended")
	}
	id, _ = ss.start()
	ss.ids[id] = time.Now().Add(-time.Second)
	if ss.valid(id) {
		t.Fatal("an expired session accepted")
	}
	first, _ := ss.start()
	ss.ids[first] = time.Now().Add(time.Minute) // expires before all the others
	for range maxSessions {
		ss.start()
	}
	if ss.valid(first) || len(ss.ids) != maxSessions {
		t.Fatalf("past %d sessions: the first still valid %v, %d kept", maxSessions, ss.valid(first), len(ss.ids))
	}
}
