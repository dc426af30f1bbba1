package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func secrets(app string) (string, bool) {
	switch app {
	case "demo":
		return "demo-secret-0123456789", true
	case "other":
		return "other-secret-0123456789", true
	}
	return "", false
}

func TestVerify(t *testing.T) {
	good, _ := Mint("demo", "demo-secret-0123456789", "d1", "u1", time.Hour)
	c, err := Verify(good, secrets)
	if err != nil || c.App != "demo" || c.Device != "d1" || c.User != "u1" || c.Groups != nil {
		t.Fatalf("good token: %+v, %v", c, err)
	}

	expired, _ := Mint("demo", "demo-secret-0123456789", "d1", "", -time.Minute)
	foreignSig, _ := Mint("demo", "other-secret-0123456789", "d1", "", time.Hour)
	unknownApp, _ := Mint("nope", "demo-secret-0123456789", "d1", "", time.Hour)
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"app": "demo", "sub": "d1"}).
		SignedString([]byte("demo-secret-0123456789"))
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"app": "demo", "sub": "d1",
		"exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("demo-secret-0123456789"))
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"app": "demo", "sub": "d1",
		"exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	badUID, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"app": "demo", "sub": "d1", "uid": "alice\x00evil",
		"exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("demo-secret-0123456789"))
	noSub, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"app": "demo",
		"exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("demo-secret-0123456789"))

	exp := time.Now().Add(time.Hour).Unix()
	upperSub := signRaw(t, fmt.Sprintf(`{"app":"demo","sub":"d1","Sub":"victim","exp":%d}`, exp))
	onlyUpper := signRaw(t, fmt.Sprintf(`{"app":"demo","SUB":"victim","exp":%d}`, exp))
	twice := signRaw(t, fmt.Sprintf(`{"app":"demo","sub":"d1","sub":"victim","exp":%d}`, exp))
	for name, tc := range map[string]struct{ token, want string }{
		"sub in two cases": {upperSub, `claim "Sub" is given twice`},
		"SUB":              {onlyUpper, `claim "SUB": claim names are lower case`},
		"sub twice":        {twice, `claim "sub" is given twice`},
		"expired":          {expired, "expired"},
		"foreign secret":   {foreignSig, "signature"},
		"unknown app":      {unknownApp, "unknown app"},
		"no exp":           {noExp, "exp"},
		"hs512":            {hs512, "signing method"},
		"alg none":         {none, "signing method"},
		"no sub":           {noSub, "device id"},
		"bad uid":          {badUID, "uid: user id"},
		"garbage":          {"not.a.jwt", "malformed"},
	} {
		_, err := Verify(tc.token, secrets)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error about %q", name, err, tc.want)
		}
	}
}

// signRaw returns an HS256 token of the demo app whose payload is the JSON
// text given, as it is.
func signRaw(t *testing.T, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	unsigned := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, []byte("demo-secret-0123456789"))
	mac.Write([]byte(unsigned))
	return unsigned + "." + enc.EncodeToString(mac.Sum(nil))
}

func TestGroupsClaim(t *testing.T) {
	tok, err := MintClaims("demo-secret-0123456789", Claims{App: "demo", Device: "d1", Groups: []string{"lobby", "room-*"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Verify(tok, secrets)
	if err != nil {
		t.Fatal(err)
	}
	for group, want := range map[string]bool{"lobby": true, "room-1": true, "room-": true, "lobby2": false, "room": false, "x": false} {
		if GroupAllowed(c.Groups, group) != want {
			t.Errorf("%q allowed = %v, want %v", group, !want, want)
		}
	}
	if GroupAllowed(nil, "lobby") {
		t.Error("a token without a groups claim may join a group")
	}
}

// A token issued more than 5 minutes in the future is refused: its backend's
// clock is wrong, or the token was made to outlive its expiry's meaning.
func TestIssuedInTheFutureRefused(t *testing.T) {
	sign := func(iat time.Time) string {
		tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"app": "demo", "sub": "d1",
			"iat": iat.Unix(), "exp": time.Now().Add(2 * time.Hour).Unix()}).SignedString([]byte("demo-secret-0123456789"))
		return tok
	}
	if _, err := Verify(sign(time.Now().Add(time.Hour)), secrets); err == nil || !strings.Contains(err.Error(), "iat") {
		t.Fatalf("iat an hour ahead: %v", err)
	}
	if _, err := Verify(sign(time.Now().Add(2*time.Minute)), secrets); err != nil {
		t.Fatalf("iat 2 minutes ahead (clock skew): %v", err)
	}
}

func TestMintRefusesBadUser(t *testing.T) {
	if _, err := Mint("demo", "demo-secret-0123456789", "d1", "a b", time.Hour); err == nil {
		t.Fatal("a user id with a space was minted")
	}
}

func TestCheckDevice(t *testing.T) {
	for _, bad := range []string{"", "a b", strings.Repeat("x", 129), "é"} {
		if CheckDevice(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := CheckDevice(strings.Repeat("x", 128)); err != nil {
		t.Error(err)
	}
}

func BenchmarkVerify(b *testing.B) {
	tok, _ := Mint("demo", "demo-secret-0123456789", "d1", "u1", time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(tok, secrets); err != nil {
			b.Fatal(err)
		}
	}
}
