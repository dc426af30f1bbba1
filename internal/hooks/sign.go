package hooks

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Headers of every webhook call: when it was made (unix seconds) and
// "v1=" + hex(HMAC-SHA256(webhook secret, timestamp + "." + body)), so that
// a backend can tell a call of longlink's from a forged or replayed one.
const (
	HeaderTimestamp = "X-Longlink-Timestamp"
	HeaderSignature = "X-Longlink-Signature"
)

// Sign returns the signature header value of body sent at ts.
func Sign(secret, ts string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// newClient returns the HTTP client of webhook calls: it never follows a
// redirect (a backend's 3xx could send a signed call, or a device's reply,
// to another host), so that a 3xx is the answer, and a failed call.
func newClient(timeout time.Duration, transport http.RoundTripper) *http.Client {
	return &http.Client{Timeout: timeout, Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// lastID numbers webhook calls and events; it starts from the clock, so
// that a node's ids do not repeat across restarts.
var lastID atomic.Uint64

func init() { lastID.Store(uint64(time.Now().UnixNano())) }

// newID returns an id for a call or an event, unique in the cluster (it
// starts with the node's name), that a backend can dedupe retries by.
func newID(node string) string { return node + "-" + strconv.FormatUint(lastID.Add(1), 36) }

// post sends body to url as JSON, signed with secret.
func post(client *http.Client, url, secret string, body []byte) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(secret, ts, body))
	return client.Do(req)
}
