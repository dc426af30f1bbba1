package bridge_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/longlink/longlink/internal/bridge"
)

// The vendors are not reachable from the machines these tests run on: each
// test starts a local HTTPS server (HTTP/2 for APNs) that implements the
// vendor's documented endpoint, its authentication (checked: the JWT's
// signature and claims, the OAuth grant) and its answers, and checks what
// the sender sends byte for byte against the vendor's documented format.

// vendor is a fake vendor: its requests, and its HTTPS server.
type vendor struct {
	t        *testing.T
	mu       sync.Mutex
	bodies   []string // the bodies of the sends
	headers  []http.Header
	auths    map[string]bool // the distinct credentials sends carried
	tokens   int             // access tokens handed out
	answered map[string]int  // sends per device token
}

func newVendor(t *testing.T) *vendor {
	return &vendor{t: t, auths: map[string]bool{}, answered: map[string]int{}}
}

// serve starts v's HTTPS server with handler (HTTP/2 if h2, and then only
// HTTP/2), and returns it; its Client trusts it.
func (v *vendor) serve(h2 bool, handler http.HandlerFunc) *httptest.Server {
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h2 && r.ProtoMajor != 2 {
			http.Error(w, "HTTP/2 only", http.StatusHTTPVersionNotSupported)
			return
		}
		handler(w, r)
	}))
	s.EnableHTTP2 = h2
	s.StartTLS()
	v.t.Cleanup(s.Close)
	return s
}

// record keeps a send's body and headers, and counts it for its device
// token; it returns how many sends that token had before.
func (v *vendor) record(r *http.Request, token, auth string) int {
	body, _ := io.ReadAll(r.Body)
	return v.keep(r, body, token, auth)
}

// keep is record of a body already read.
func (v *vendor) keep(r *http.Request, body []byte, token, auth string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.bodies = append(v.bodies, string(body))
	v.headers = append(v.headers, r.Header.Clone())
	v.auths[auth] = true
	v.answered[token]++
	return v.answered[token] - 1
}

// oauthSend records a send authenticated by an OAuth access token: its
// device token (tokenOf its body), whether it carried the access token
// handed out last (prefix and count), and how many sends that device token
// had before.
func (v *vendor) oauthSend(r *http.Request, prefix string, tokenOf func(body []byte) string) (token string, current bool, before int) {
	body, _ := io.ReadAll(r.Body)
	token, auth := tokenOf(body), r.Header.Get("Authorization")
	v.mu.Lock()
	current = auth == fmt.Sprint("Bearer ", prefix, v.tokens)
	v.mu.Unlock()
	return token, current, v.keep(r, body, token, auth)
}

func (v *vendor) last() (string, http.Header) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.bodies[len(v.bodies)-1], v.headers[len(v.headers)-1]
}

func answer(w http.ResponseWriter, status int, header map[string]string, body string) {
	for k, val := range header {
		w.Header().Set(k, val)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// n is the notification every test sends (to token).
func n(token string) bridge.Notification {
	return bridge.Notification{Token: token, ID: "m1", Title: "Hi", Body: "You have a message",
		Data: map[string]string{"k": "v"}, Collapse: "chat-1", High: true, TTL: 30 * time.Second}
}

// outcomes sends n to each token and checks each result.
func outcomes(t *testing.T, s bridge.Sender, want map[string]bridge.Result) {
	t.Helper()
	for token, w := range want {
		got, err := s.Send(context.Background(), n(token))
		if err != nil {
			t.Fatalf("%s: send to %q: %v", s.Vendor(), token, err)
		}
		if got.Outcome != w.Outcome || got.RetryAfter != w.RetryAfter || !strings.HasPrefix(got.Reason, w.Reason) {
			t.Errorf("%s: send to %q: %+v, want %+v", s.Vendor(), token, got, w)
		}
	}
}

func fcmError(status int, code string, badRequest bool) string {
	detail := fmt.Sprintf(`{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":%q}`, code)
	if badRequest {
		detail = `{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.data[0].value"}]}`
	}
	return fmt.Sprintf(`{"error":{"code":%d,"message":"from the fake","status":%q,"details":[%s]}}`, status, code, detail)
}

// FCM: the service account's JWT-bearer exchange (the assertion's
// signature, issuer, scope and audience checked), the v1 message byte for
// byte, and the answers FCM's error codes page documents.
func TestFCM(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	v := newVendor(t)
	var tokenURL string
	srv := v.serve(false, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/token":
			r.ParseForm()
			claims := jwt.MapClaims{}
			_, err := jwt.ParseWithClaims(r.Form.Get("assertion"), claims, func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
				jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer("longlink@p1.iam.gserviceaccount.com"), jwt.WithAudience(tokenURL))
			if r.Form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" || err != nil ||
				claims["scope"] != "https://www.googleapis.com/auth/firebase.messaging" {
				answer(w, http.StatusBadRequest, nil, `{"error":"invalid_grant"}`)
				return
			}
			v.mu.Lock()
			v.tokens++
			at := fmt.Sprint("ya29.access-", v.tokens)
			v.mu.Unlock()
			answer(w, http.StatusOK, nil, fmt.Sprintf(`{"access_token":%q,"token_type":"Bearer","expires_in":3599}`, at))
		case "/v1/projects/p1/messages:send":
			tok, current, before := v.oauthSend(r, "ya29.access-", func(body []byte) string {
				var m struct {
					Message struct{ Token string } `json:"message"`
				}
				json.Unmarshal(body, &m)
				return m.Message.Token
			})
			switch {
			case !current || (tok == "revoked" && before == 0):
				answer(w, http.StatusUnauthorized, nil, fcmError(401, "UNAUTHENTICATED", false))
			case tok == "dead":
				answer(w, http.StatusNotFound, nil, fcmError(404, "UNREGISTERED", false))
			case tok == "invalid":
				answer(w, http.StatusBadRequest, nil, fcmError(400, "INVALID_ARGUMENT", false))
			case tok == "bad-field":
				answer(w, http.StatusBadRequest, nil, fcmError(400, "INVALID_ARGUMENT", true))
			case tok == "quota":
				answer(w, http.StatusTooManyRequests, map[string]string{"Retry-After": "7"}, fcmError(429, "QUOTA_EXCEEDED", false))
			case tok == "down":
				answer(w, http.StatusServiceUnavailable, nil, fcmError(503, "UNAVAILABLE", false))
			default:
				answer(w, http.StatusOK, nil, `{"name":"projects/p1/messages/0:1500415314455276%31bd1c9631bd1c96"}`)
			}
		default:
			http.NotFound(w, r)
		}
	})
	tokenURL = srv.URL + "/token"
	sa, _ := json.Marshal(map[string]string{"type": "service_account", "project_id": "p1", "private_key_id": "k1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "longlink@p1.iam.gserviceaccount.com", "token_uri": tokenURL})
	s, err := bridge.NewFCM(bridge.FCMConfig{ServiceAccount: sa, URL: srv.URL}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	outcomes(t, s, map[string]bridge.Result{"tok-1": {Outcome: bridge.Accepted}})
	body, h := v.last()
	want := `{"message":{"token":"tok-1","notification":{"title":"Hi","body":"You have a message"},"data":{"k":"v","longlink_id":"m1"},"android":{"collapse_key":"chat-1","priority":"HIGH","ttl":"30s"}}}`
	if body != want || h.Get("Content-Type") != "application/json; charset=UTF-8" {
		t.Fatalf("FCM got %s (%s)\nwant %s", body, h.Get("Content-Type"), want)
	}
	outcomes(t, s, map[string]bridge.Result{
		"dead":      {Outcome: bridge.DeadToken, Reason: "UNREGISTERED"},
		"invalid":   {Outcome: bridge.DeadToken, Reason: "INVALID_ARGUMENT"},
		"bad-field": {Outcome: bridge.Refused, Reason: "INVALID_ARGUMENT"},
		"quota":     {Outcome: bridge.QuotaExceeded, RetryAfter: 7 * time.Second, Reason: "QUOTA_EXCEEDED"},
		"down":      {Outcome: bridge.Retry, RetryAfter: bridge.DefaultRetry, Reason: "UNAVAILABLE"},
		"revoked":   {Outcome: bridge.Accepted}, // after a new access token
	})
	if v.tokens != 2 || v.answered["revoked"] != 2 {
		t.Fatalf("%d access tokens fetched, %d sends to the revoked one; want 2 and 2", v.tokens, v.answered["revoked"])
	}
	if _, err := bridge.NewFCM(bridge.FCMConfig{ServiceAccount: []byte(`{"project_id":"p1","client_email":"e","token_uri":"u","private_key":"nope"}`)}, srv.Client()); err == nil ||
		!strings.Contains(err.Error(), "private_key") {
		t.Fatalf("a bad private key: %v", err)
	}
}

// APNs: HTTP/2 only, an ES256 provider token (signature, kid, iss
// checked) reused between sends and signed again when APNs calls it
// expired, the headers and payload byte for byte, and the answers Apple's
// "Handling notification responses" documents.
func TestAPNs(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	v := newVendor(t)
	srv := v.serve(true, func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
		auth, _ := strings.CutPrefix(r.Header.Get("authorization"), "bearer ")
		claims := jwt.MapClaims{}
		pt, err := jwt.ParseWithClaims(auth, claims, func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
			jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer("TEAM123456"), jwt.WithIssuedAt())
		if !ok || r.Method != http.MethodPost || err != nil || pt.Header["kid"] != "KEY1234567" {
			answer(w, http.StatusForbidden, nil, `{"reason":"InvalidProviderToken"}`)
			return
		}
		before := v.record(r, token, auth)
		w.Header().Set("apns-id", "4E8A8B4B-0C3A-4B8E-9F1F-0123456789AB")
		switch {
		case token == "expired" && before == 0:
			answer(w, http.StatusForbidden, nil, `{"reason":"ExpiredProviderToken"}`)
		case token == "dead":
			answer(w, http.StatusGone, nil, `{"reason":"Unregistered","timestamp":1733500000000}`)
		case token == "bad":
			answer(w, http.StatusBadRequest, nil, `{"reason":"BadDeviceToken"}`)
		case token == "big":
			answer(w, http.StatusRequestEntityTooLarge, nil, `{"reason":"PayloadTooLarge"}`)
		case token == "busy":
			answer(w, http.StatusTooManyRequests, nil, `{"reason":"TooManyRequests"}`)
		case token == "down":
			answer(w, http.StatusServiceUnavailable, map[string]string{"Retry-After": "2"}, `{"reason":"ServiceUnavailable"}`)
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
	s, err := bridge.NewAPNs(bridge.APNsConfig{Key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		KeyID: "KEY1234567", TeamID: "TEAM123456", Topic: "com.example.app", URL: srv.URL}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	device := strings.Repeat("ab", 32)
	before := time.Now()
	outcomes(t, s, map[string]bridge.Result{device: {Outcome: bridge.Accepted}})
	body, h := v.last()
	if want := `{"aps":{"alert":{"body":"You have a message","title":"Hi"}},"k":"v","longlink_id":"m1"}`; body != want {
		t.Fatalf("APNs got %s\nwant %s", body, want)
	}
	exp := h.Get("apns-expiration")
	if h.Get("apns-topic") != "com.example.app" || h.Get("apns-push-type") != "alert" || h.Get("apns-priority") != "10" ||
		h.Get("apns-collapse-id") != "chat-1" || exp < fmt.Sprint(before.Add(29*time.Second).Unix()) || exp > fmt.Sprint(time.Now().Add(31*time.Second).Unix()) {
		t.Fatalf("APNs headers: %v", h)
	}
	outcomes(t, s, map[string]bridge.Result{device: {Outcome: bridge.Accepted}})
	if len(v.auths) != 1 {
		t.Fatalf("%d provider tokens for two sends, want one", len(v.auths))
	}
	outcomes(t, s, map[string]bridge.Result{
		"expired": {Outcome: bridge.Accepted}, // with a new provider token
		"dead":    {Outcome: bridge.DeadToken, Reason: "Unregistered"},
		"bad":     {Outcome: bridge.DeadToken, Reason: "BadDeviceToken"},
		"big":     {Outcome: bridge.Refused, Reason: "PayloadTooLarge"},
		"busy":    {Outcome: bridge.Retry, RetryAfter: bridge.DefaultRetry, Reason: "TooManyRequests"},
		"down":    {Outcome: bridge.Retry, RetryAfter: 2 * time.Second, Reason: "ServiceUnavailable"},
	})
	if len(v.auths) != 2 || v.answered["expired"] != 2 {
		t.Fatalf("%d provider tokens, %d sends to the expired one; want 2 and 2", len(v.auths), v.answered["expired"])
	}
	if _, err := bridge.NewAPNs(bridge.APNsConfig{Key: []byte("nope"), KeyID: "k", TeamID: "t", Topic: "x"}, srv.Client()); err == nil {
		t.Fatal("a bad .p8 key was taken")
	}
}

// HMS: the client-credentials grant (id and secret checked), the message
// byte for byte, and Push Kit's result codes: 80300007 (invalid token),
// 80200003 (the access token expired: fetched again), 503 (flow control).
func TestHMS(t *testing.T) {
	v := newVendor(t)
	srv := v.serve(false, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/oauth2/v3/token":
			r.ParseForm()
			if r.Form.Get("grant_type") != "client_credentials" || r.Form.Get("client_id") != "10086" || r.Form.Get("client_secret") != "s3cret" {
				answer(w, http.StatusBadRequest, nil, `{"error":1101,"error_description":"invalid client"}`)
				return
			}
			v.mu.Lock()
			v.tokens++
			at := fmt.Sprint("CV8-", v.tokens)
			v.mu.Unlock()
			answer(w, http.StatusOK, nil, fmt.Sprintf(`{"access_token":%q,"expires_in":3600,"token_type":"Bearer"}`, at))
		case "/v1/10086/messages:send":
			token, current, before := v.oauthSend(r, "CV8-", func(body []byte) string {
				var m struct {
					Message struct{ Token []string } `json:"message"`
				}
				json.Unmarshal(body, &m)
				return strings.Join(m.Message.Token, ",")
			})
			switch {
			case !current || (token == "expired" && before == 0):
				answer(w, http.StatusOK, nil, `{"code":"80200003","msg":"OAuth token expired","requestId":"1"}`)
			case token == "dead":
				answer(w, http.StatusOK, nil, `{"code":"80300007","msg":"All the tokens are invalid","requestId":"2"}`)
			case token == "flow":
				answer(w, http.StatusServiceUnavailable, map[string]string{"Retry-After": "3"}, ``)
			case token == "big":
				answer(w, http.StatusOK, nil, `{"code":"80300008","msg":"The message body size exceeds the default value","requestId":"3"}`)
			default:
				answer(w, http.StatusOK, nil, `{"code":"80000000","msg":"Success","requestId":"4"}`)
			}
		default:
			http.NotFound(w, r)
		}
	})
	s, err := bridge.NewHMS(bridge.HMSConfig{AppID: "10086", AppSecret: "s3cret", URL: srv.URL, TokenURL: srv.URL + "/oauth2/v3/token"}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	outcomes(t, s, map[string]bridge.Result{"tok-1": {Outcome: bridge.Accepted}})
	body, _ := v.last()
	want := `{"validate_only":false,"message":{"data":"{\"k\":\"v\",\"longlink_id\":\"m1\"}","android":{"urgency":"HIGH","ttl":"30s","notification":{"title":"Hi","body":"You have a message","tag":"chat-1","click_action":{"type":3}}},"token":["tok-1"]}}`
	if body != want {
		t.Fatalf("HMS got %s\nwant %s", body, want)
	}
	outcomes(t, s, map[string]bridge.Result{
		"dead":    {Outcome: bridge.DeadToken, Reason: "80300007"},
		"flow":    {Outcome: bridge.QuotaExceeded, RetryAfter: 3 * time.Second},
		"big":     {Outcome: bridge.Refused, Reason: "80300008"},
		"expired": {Outcome: bridge.Accepted},
	})
	if v.tokens != 2 || v.answered["expired"] != 2 {
		t.Fatalf("%d access tokens, %d sends to the expired one; want 2 and 2", v.tokens, v.answered["expired"])
	}
}
