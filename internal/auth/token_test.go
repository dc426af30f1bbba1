package auth

import (
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
	if err != nil || c != (Claims{App: "demo", Device: "d1", User: "u1"}) {
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

	for name, tc := range map[string]struct{ token, want string }{
		"expired":        {expired, "expired"},
		"foreign secret": {foreignSig, "signature"},
		"unknown app":    {unknownApp, "unknown app"},
		"no exp":         {noExp, "exp"},
		"hs512":          {hs512, "signing method"},
		"alg none":       {none, "signing method"},
		"no sub":         {noSub, "device id"},
		"bad uid":        {badUID, "uid: user id"},
		"garbage":        {"not.a.jwt", "malformed"},
	} {
		_, err := Verify(tc.token, secrets)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error about %q", name, err, tc.want)
		}
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
