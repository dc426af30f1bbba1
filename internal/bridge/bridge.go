// Package bridge sends notifications through the OS push channels: FCM
// (Android with Google services), APNs (Apple), Huawei's HMS Push Kit and
// Xiaomi's Mi Push, one Sender per vendor and app, each speaking its
// vendor's documented HTTP API with its authentication (FCM: an OAuth2
// JWT-bearer exchange for a service account; APNs: an ES256 provider
// token; HMS: OAuth2 client credentials; Xiaomi: the app's secret). A
// Sender sends one notification and says what became of it as its
// vendor's docs define: accepted, the token dead, try again later (with
// the vendor's Retry-After), or refused.
//
// The escalation of unacked stored messages (docs/push-bridge.md) is built
// on it.
package bridge

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Notification is one message for one device's OS push token.
type Notification struct {
	Token string
	// ID is the longlink message id, sent as the data key "longlink_id" so
	// that the SDKs show a message that came both ways once.
	ID          string
	Title, Body string
	Data        map[string]string // more data keys, beside longlink_id
	// Collapse, if set, is the push's collapse key: also FCM's
	// collapse_key, so that a newer one replaces this one while FCM holds
	// it for an offline device.
	Collapse string
	High     bool          // priority high: wakes the device at once
	TTL      time.Duration // how long the vendor may keep it for an offline device (0: its default)
	// Recall makes it not a notification but the word that message ID was
	// recalled: a data message (FCM, HMS) or a background one (APNs) with
	// the data key "longlink_recall", whose handler in the app removes the
	// notification tagged with Tag.
	Recall bool
}

// Tag is n's id on the device, where a newer notification with the same
// tag replaces it (FCM's and HMS's notification tag, APNs's
// apns-collapse-id): its collapse key, else its message id, so that a
// notification sent twice is shown once, and a recall can find it.
func (n Notification) Tag() string { return cmp.Or(n.Collapse, n.ID) }

// The data keys a notification carries its message id under, and a recall
// the recalled one's.
const (
	IDKey     = "longlink_id"
	RecallKey = "longlink_recall"
)

// Outcome is what became of a notification.
type Outcome int

const (
	// Accepted: the vendor took it.
	Accepted Outcome = iota
	// DeadToken: the token is no longer valid (the app was uninstalled,
	// or the token was never the app's): drop it.
	DeadToken
	// Retry: the vendor is busy or unavailable; send again after
	// Result.RetryAfter.
	Retry
	// QuotaExceeded: the app's quota at the vendor is spent; send again
	// after Result.RetryAfter, and report it.
	QuotaExceeded
	// Refused: the vendor refused this notification (too big, badly
	// formed, or the credentials are wrong); sending it again will not help.
	Refused
)

var outcomeNames = [...]string{Accepted: "accepted", DeadToken: "dead token", Retry: "retry",
	QuotaExceeded: "quota exceeded", Refused: "refused"}

func (o Outcome) String() string { return outcomeNames[o] }

// Result is a vendor's answer to one notification.
type Result struct {
	Outcome    Outcome
	RetryAfter time.Duration // with Retry and QuotaExceeded: the vendor's Retry-After, or DefaultRetry
	Reason     string        // the vendor's words: its error code or reason
}

// DefaultRetry is how long to wait before sending again when a vendor that
// asks for it gives no Retry-After.
const DefaultRetry = 10 * time.Second

// Sender sends notifications through one vendor, for one app. Safe for
// concurrent use.
type Sender interface {
	// Vendor is the vendor's name, as devices register tokens for it
	// (protocol.Vendors).
	Vendor() string
	// Send sends n. An error means the vendor could not be reached, or
	// answered what its API does not define: send again later.
	Send(ctx context.Context, n Notification) (Result, error)
}

// seconds is d in whole seconds, as FCM's and HMS's ttl: "30s".
func seconds(d time.Duration) string { return strconv.FormatInt(int64(d.Seconds()), 10) + "s" }

// retryAfter reads a Retry-After header (seconds, or an HTTP date), or
// gives DefaultRetry.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return DefaultRetry
}

// again is the Result of an answer that asks to send again later.
func again(o Outcome, h http.Header, reason string) Result {
	return Result{Outcome: o, RetryAfter: retryAfter(h, time.Now()), Reason: reason}
}

// oauthTokens holds an OAuth2 token source that can be started afresh
// when a vendor says its token is no longer good before it expired.
type oauthTokens struct {
	mu     sync.Mutex
	source oauth2.TokenSource
	fresh  func() oauth2.TokenSource
}

func newOAuthTokens(fresh func() oauth2.TokenSource) *oauthTokens {
	return &oauthTokens{fresh: fresh, source: fresh()}
}

// bearer is the Authorization header value of the current token.
func (o *oauthTokens) bearer() (string, error) {
	o.mu.Lock()
	source := o.source
	o.mu.Unlock()
	t, err := source.Token()
	if err != nil {
		return "", fmt.Errorf("oauth token: %w", err)
	}
	return "Bearer " + t.AccessToken, nil
}

// reset drops the current token: the next bearer fetches a new one.
func (o *oauthTokens) reset() {
	o.mu.Lock()
	o.source = o.fresh()
	o.mu.Unlock()
}

// oauthContext is the context token sources fetch with: through client.
func oauthContext(client *http.Client) context.Context {
	return context.WithValue(context.Background(), oauth2.HTTPClient, client)
}
