package api

import (
	"net/http/httptest"
	"testing"
	"time"
)

// A session cookie is valid for its token until its expiry, and not after
// it: the expiry it carries is covered by its MAC.
func TestSessionExpires(t *testing.T) {
	const token = "ops-token-0123456789"
	withCookie := func(value string) bool {
		r := httptest.NewRequest("GET", "/dashboard", nil)
		r.Header.Set("Cookie", sessionCookie+"="+value)
		return validSession(r, token)
	}
	if !withCookie(sessionValue(token, time.Now().Add(time.Minute))) {
		t.Fatal("a fresh session refused")
	}
	if withCookie(sessionValue(token, time.Now().Add(-time.Second))) {
		t.Fatal("an expired session accepted")
	}
	if withCookie(sessionValue("another-token-0123456789", time.Now().Add(time.Minute))) {
		t.Fatal("a session of another token accepted")
	}
}
