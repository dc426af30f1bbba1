package bridge

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// APNsConfig is an app's APNs credentials: a token-based (.p8) key.
type APNsConfig struct {
	Key    []byte // the .p8 file: an EC P-256 private key, PEM (PKCS #8)
	KeyID  string // its key id (10 characters), from the developer account
	TeamID string // the team id
	Topic  string // the app's bundle id
	// URL is APNs's base URL; empty: https://api.push.apple.com (the
	// sandbox is https://api.sandbox.push.apple.com).
	URL string
}

// apnsTokenLife is how long one provider token is used: Apple refuses one
// older than an hour, and asks for a new one no more than every 20 minutes.
const apnsTokenLife = 50 * time.Minute

// APNs sends through Apple's HTTP/2 provider API: POST /3/device/<token>,
// authenticated by a provider token (an ES256 JWT signed with the app's
// .p8 key, naming the key id and team id), renewed every apnsTokenLife and
// when APNs calls it expired.
type APNs struct {
	client *http.Client
	url    string
	topic  string
	keyID  string
	teamID string
	key    *ecdsa.PrivateKey

	mu    sync.Mutex
	token string // the provider token, signed at made
	made  time.Time
}

// NewAPNs returns an APNs sender that makes its calls with client, which
// must speak HTTP/2 (APNs takes nothing else).
func NewAPNs(c APNsConfig, client *http.Client) (*APNs, error) {
	if c.KeyID == "" || c.TeamID == "" || c.Topic == "" {
		return nil, errors.New("apns: key_id, team_id and topic are required")
	}
	block, _ := pem.Decode(c.Key)
	if block == nil {
		return nil, errors.New("apns: the key is not PEM (a .p8 file)")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("apns: the key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("apns: the key is not an EC key (a .p8 file)")
	}
	return &APNs{client: client, url: cmp.Or(strings.TrimSuffix(c.URL, "/"), "https://api.push.apple.com"),
		topic: c.Topic, keyID: c.KeyID, teamID: c.TeamID, key: key}, nil
}

// Vendor implements Sender.
func (*APNs) Vendor() string { return "apns" }

// providerToken returns the provider token, signing a new one when the
// last is apnsTokenLife old, or with renew.
func (a *APNs) providerToken(renew bool) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token != "" && !renew && time.Since(a.made) < apnsTokenLife {
		return a.token, nil
	}
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": a.teamID, "iat": now.Unix()})
	t.Header["kid"] = a.keyID
	signed, err := t.SignedString(a.key)
	if err != nil {
		return "", fmt.Errorf("apns: sign the provider token: %w", err)
	}
	a.token, a.made = signed, now
	return signed, nil
}

// Send implements Sender.
func (a *APNs) Send(ctx context.Context, n Notification) (Result, error) {
	payload, pushType := map[string]any{"aps": apnsAps(n)}, "alert"
	if n.Recall { // a background notification: iOS wakes the app to handle it
		payload, pushType, n.High = map[string]any{"aps": map[string]int{"content-available": 1}}, "background", false
	}
	for k, v := range dataOf(n) {
		if k != "aps" {
			payload[k] = v
		}
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return Result{}, err
	}
	for attempt := 0; ; attempt++ {
		token, err := a.providerToken(attempt > 0)
		if err != nil {
			return Result{}, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url+"/3/device/"+url.PathEscape(n.Token), bytes.NewReader(body))
		if err != nil {
			return Result{}, err
		}
		h := req.Header
		h.Set("authorization", "bearer "+token)
		h.Set("apns-topic", a.topic)
		h.Set("apns-push-type", pushType)
		h.Set("apns-priority", "5") // a background one's must be
		if n.High {
			h.Set("apns-priority", "10")
		}
		if n.TTL > 0 {
			h.Set("apns-expiration", strconv.FormatInt(time.Now().Add(n.TTL).Unix(), 10))
		}
		if !n.Recall {
			h.Set("apns-collapse-id", n.Tag())
		}
		status, answerHeader, answer, err := do(a.client, req)
		if err != nil {
			return Result{}, fmt.Errorf("apns: %w", err)
		}
		if status == http.StatusOK {
			return Result{Outcome: Accepted}, nil
		}
		var e struct {
			Reason string `json:"reason"`
		}
		json.Unmarshal(answer, &e)
		switch {
		case (e.Reason == "ExpiredProviderToken" || e.Reason == "InvalidProviderToken") && attempt == 0:
			continue // once more with a new provider token
		case status == http.StatusGone || e.Reason == "BadDeviceToken" || e.Reason == "DeviceTokenNotForTopic" || e.Reason == "Unregistered":
			return Result{Outcome: DeadToken, Reason: e.Reason}, nil
		case status == http.StatusTooManyRequests:
			return again(Retry, answerHeader, cmp.Or(e.Reason, "TooManyRequests")), nil
		case status >= 500:
			return again(Retry, answerHeader, cmp.Or(e.Reason, http.StatusText(status))), nil
		}
		return Result{Outcome: Refused, Reason: cmp.Or(e.Reason, http.StatusText(status))}, nil
	}
}

// apnsAps is the aps dictionary of n: an alert with its title and body.
func apnsAps(n Notification) map[string]any {
	return map[string]any{"alert": map[string]string{"title": n.Title, "body": n.Body}}
}
