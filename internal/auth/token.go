// Package auth mints and verifies device tokens: HS256 JWTs signed with the
// app's secret, carrying app, sub (device), optional uid (user) and exp.
package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/longlink/longlink/internal/jsonscan"
	"github.com/longlink/longlink/protocol"
)

// Claims are what a verified token says about a device.
type Claims struct {
	App    string
	Device string
	User   string
	// Groups are the groups the device may join itself: exact names, or
	// prefixes ending in "*". None when the claim is absent.
	Groups []string
	// Tags are added to the device's tags in its app at each login.
	Tags []string
	// Expires is when the token stops being valid (set by Verify).
	Expires time.Time
}

// GroupAllowed reports whether a token's groups claim (exact names, or
// prefixes ending in "*") lets its device join group itself.
func GroupAllowed(patterns []string, group string) bool {
	for _, g := range patterns {
		if prefix, ok := strings.CutSuffix(g, "*"); ok && strings.HasPrefix(group, prefix) || g == group {
			return true
		}
	}
	return false
}

type tokenClaims struct {
	App    string   `json:"app"`
	UID    string   `json:"uid,omitempty"`
	Groups []string `json:"groups,omitempty"`
	Tags   []string `json:"tags,omitempty"`
	jwt.RegisteredClaims
}

// maxIssuedAhead is how far in the future a token's iat may be (clock skew
// between the backend that minted it and this server).
const maxIssuedAhead = 5 * time.Minute

// Mint returns a token for device (and user, if not empty) of app, valid for ttl.
func Mint(app, secret, device, user string, ttl time.Duration) (string, error) {
	return MintClaims(secret, Claims{App: app, Device: device, User: user}, ttl)
}

// MintClaims returns a token saying c, signed with secret, valid for ttl.
func MintClaims(secret string, cl Claims, ttl time.Duration) (string, error) {
	if err := CheckDevice(cl.Device); err != nil {
		return "", err
	}
	if err := checkUser(cl.User); err != nil {
		return "", err
	}
	c := tokenClaims{App: cl.App, UID: cl.User, Groups: cl.Groups, Tags: cl.Tags, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   cl.Device,
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl)),
		IssuedAt:  jwt.NewNumericDate(time.Now()),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
}

// SecretFunc returns the secret of an app, or false for an unknown app.
type SecretFunc func(app string) (secret string, ok bool)

var parser = jwt.NewParser(
	jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
	jwt.WithExpirationRequired(),
)

// claimNames are the claims Verify reads, as they must be spelled.
var claimNames = [...]string{"app", "uid", "groups", "tags", "sub", "exp", "iat", "nbf", "iss", "aud", "jti"}

// maxClaims bounds the claims of a token (more is refused).
const maxClaims = 64

// UnmarshalJSON decodes the claims after checking their names, which a
// decoder that matches names in any letter case (as encoding/json does)
// would read otherwise than they say: a claim of ours spelled in another
// case ("Sub"), or a name given twice in any case, is refused.
func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	var seen [maxClaims][]byte
	n := 0
	err := jsonscan.ObjectKeys(b, func(key, _ []byte) error {
		for _, k := range seen[:n] {
			if bytes.EqualFold(k, key) {
				return fmt.Errorf("claim %q is given twice (in any letter case)", key)
			}
		}
		for _, name := range claimNames {
			if bytes.EqualFold(key, []byte(name)) && string(key) != name {
				return fmt.Errorf("claim %q: claim names are lower case (%q)", key, name)
			}
		}
		if n == maxClaims {
			return fmt.Errorf("more than %d claims", maxClaims)
		}
		seen[n], n = key, n+1
		return nil
	})
	if err != nil {
		return err
	}
	type plain tokenClaims // without this method
	return json.Unmarshal(b, (*plain)(c))
}

// Verify checks a token's algorithm (HS256 only), signature (with the secret
// of the app it names), expiry and claims, whose names must be spelled
// exactly and given once (see tokenClaims.UnmarshalJSON). The error is fit
// to show the client.
func Verify(token string, secretOf SecretFunc) (Claims, error) {
	var c tokenClaims
	_, err := parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) {
		if c.App == "" {
			return nil, errors.New("no app claim")
		}
		secret, ok := secretOf(c.App)
		if !ok {
			return nil, fmt.Errorf("unknown app %q", c.App)
		}
		return []byte(secret), nil
	})
	if err != nil {
		return Claims{}, fmt.Errorf("bad token: %w", err)
	}
	if err := CheckDevice(c.Subject); err != nil {
		return Claims{}, fmt.Errorf("bad token: sub: %w", err)
	}
	if err := checkUser(c.UID); err != nil {
		return Claims{}, fmt.Errorf("bad token: uid: %w", err)
	}
	if c.IssuedAt != nil && c.IssuedAt.After(time.Now().Add(maxIssuedAhead)) {
		return Claims{}, errors.New("bad token: iat is more than 5 minutes in the future")
	}
	if err := CheckTags(c.Tags); err != nil {
		return Claims{}, fmt.Errorf("bad token: tags: %w", err)
	}
	return Claims{App: c.App, Device: c.Subject, User: c.UID, Groups: c.Groups, Tags: c.Tags, Expires: c.ExpiresAt.Time}, nil
}

// CheckTags checks a list of tags: valid names (protocol.ValidTag), at most
// protocol.MaxTags.
func CheckTags(tags []string) error {
	if len(tags) > protocol.MaxTags {
		return fmt.Errorf("%d tags; at most %d", len(tags), protocol.MaxTags)
	}
	for _, t := range tags {
		if !protocol.ValidTag(t) {
			return fmt.Errorf("tag %q must be 1-64 of a-z A-Z 0-9 _ . : -", t)
		}
	}
	return nil
}

// checkUser checks a user id, which is optional: valid like a device id, or
// empty.
func checkUser(id string) error {
	if id != "" && !protocol.ValidName(id) {
		return fmt.Errorf("user id %q must be 1-128 printable ASCII bytes, no spaces", id)
	}
	return nil
}

// CheckDevice checks a device id (see protocol.ValidName).
func CheckDevice(id string) error {
	if !protocol.ValidName(id) {
		return fmt.Errorf("device id %q must be 1-128 printable ASCII bytes, no spaces", id)
	}
	return nil
}
