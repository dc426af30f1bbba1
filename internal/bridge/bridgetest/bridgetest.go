// Package bridgetest has fake OS push vendors for tests: local HTTPS
// servers (HTTP/2 only for APNs) that implement each vendor's documented
// send endpoint, check its authentication as the vendor does (the JWT's
// signature, algorithm, issuer, audience, scope and key id; the OAuth
// grant and client credentials), and answer with the vendor's documented
// bodies. No vendor is reachable from the machines longlink is tested on.
//
// What a fake answers depends on the device token: "dead" (the vendor's
// unregistered answer), "quota" or "flow" (rate limited, with a
// Retry-After), "down" (unavailable), and more per vendor (below); any
// other token is accepted (and held, with HoldAfter, by FCM and Xiaomi).
package bridgetest

import (
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
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Vendor is a fake vendor: its requests, and its HTTPS server.
type Vendor struct {
	t        testing.TB
	mu       sync.Mutex
	bodies   []string    // the bodies of the sends
	times    []time.Time // when each came
	headers  []http.Header
	auths    map[string]bool // the distinct credentials sends carried
	tokens   int             // access tokens handed out
	answered map[string]int  // sends per device token
	accepted int             // sends accepted
	// holdAfter, when above 0, holds the accepted sends after that many
	// until gate is closed; held are their bodies.
	holdAfter int
	gate      chan struct{}
	held      []string
}

func newVendor(t testing.TB) *Vendor {
	return &Vendor{t: t, auths: map[string]bool{}, answered: map[string]int{}}
}

// serve starts v's HTTPS server with handler (HTTP/2 if h2, and then only
// HTTP/2), and returns it; its Client trusts it.
func (v *Vendor) serve(h2 bool, handler http.HandlerFunc) *httptest.Server {
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
func (v *Vendor) record(r *http.Request, token, auth string) int {
	body, _ := io.ReadAll(r.Body)
	return v.keep(r, body, token, auth)
}

// keep is record of a body already read.
func (v *Vendor) keep(r *http.Request, body []byte, token, auth string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.bodies, v.times = append(v.bodies, string(body)), append(v.times, time.Now())
	v.headers = append(v.headers, r.Header.Clone())
	v.auths[auth] = true
	v.answered[token]++
	return v.answered[token] - 1
}

// oauthSend records a send authenticated by an OAuth access token: its
// device token (tokenOf its body), whether it carried the access token
// handed out last (prefix and count), and how many sends that device token
// had before.
func (v *Vendor) oauthSend(r *http.Request, prefix string, tokenOf func(body []byte) string) (token string, current bool, before int) {
	body, _ := io.ReadAll(r.Body)
	token, auth := tokenOf(body), r.Header.Get("Authorization")
	v.mu.Lock()
	current = auth == fmt.Sprint("Bearer ", prefix, v.tokens)
	v.mu.Unlock()
	return token, current, v.keep(r, body, token, auth)
}

// HoldAfter makes v hold every accepted send after the first n, with no
// answer, until release is called (or the test ends), as a vendor's
// answer held up on the way would: its sender cannot know whether it was
// taken. Held are the bodies of the sends held.
func (v *Vendor) HoldAfter(n int) (release func()) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.holdAfter, v.gate = n, make(chan struct{})
	release = sync.OnceFunc(func() { close(v.gate) })
	v.t.Cleanup(release) // before the server's Close, which waits for the handlers
	return release
}

// Held are the bodies of the sends held (HoldAfter).
func (v *Vendor) Held() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.held)
}

// accept answers the accepted send sent with answerBody, after holding
// it if v holds sends.
func (v *Vendor) accept(w http.ResponseWriter, sent []byte, answerBody string) {
	v.mu.Lock()
	v.accepted++
	var gate chan struct{}
	if v.holdAfter > 0 && v.accepted > v.holdAfter {
		gate, v.held = v.gate, append(v.held, string(sent))
	}
	v.mu.Unlock()
	if gate != nil {
		<-gate
	}
	answer(w, http.StatusOK, nil, answerBody)
}

// Last is the last send's body and headers.
func (v *Vendor) Last() (string, http.Header) {
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

// Sends is how many sends device token had.
func (v *Vendor) Sends(token string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.answered[token]
}

// Total is how many sends there were.
func (v *Vendor) Total() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.bodies)
}

// Bodies are the bodies of the sends, in order.
func (v *Vendor) Bodies() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.bodies...)
}

// Times are when the sends came, in order (as Bodies).
func (v *Vendor) Times() []time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]time.Time(nil), v.times...)
}

// Tokens is how many access tokens the vendor handed out.
func (v *Vendor) Tokens() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.tokens
}

// Auths is how many distinct credentials the sends carried.
func (v *Vendor) Auths() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.auths)
}

func fcmError(status int, code string, badRequest bool) string {
	detail := fmt.Sprintf(`{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":%q}`, code)
	if badRequest {
		detail = `{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.data[0].value"}]}`
	}
	return fmt.Sprintf(`{"error":{"code":%d,"message":"from the fake","status":%q,"details":[%s]}}`, status, code, detail)
}

// FCM starts a fake FCM (HTTP v1, project p1, with its OAuth token endpoint)
// and returns it, its server, and the JSON key of a service account it
// trusts. Tokens: "revoked" is refused with 401 once (a new access token
// is then taken), "invalid" (INVALID_ARGUMENT about the token),
// "bad-field" (INVALID_ARGUMENT about a field), "quota" (429, Retry-After: 7),
// "busy" (429, Retry-After: 1, once).
func FCM(t testing.TB) (*Vendor, *httptest.Server, []byte) {
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
			var sent []byte
			tok, current, before := v.oauthSend(r, "ya29.access-", func(body []byte) string {
				sent = body
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
			case tok == "busy" && before == 0:
				answer(w, http.StatusTooManyRequests, map[string]string{"Retry-After": "1"}, fcmError(429, "QUOTA_EXCEEDED", false))
			case tok == "down":
				answer(w, http.StatusServiceUnavailable, nil, fcmError(503, "UNAVAILABLE", false))
			default:
				v.accept(w, sent, `{"name":"projects/p1/messages/0:1500415314455276%31bd1c9631bd1c96"}`)
			}
		default:
			http.NotFound(w, r)
		}
	})
	tokenURL = srv.URL + "/token"
	sa, _ := json.Marshal(map[string]string{"type": "service_account", "project_id": "p1", "private_key_id": "k1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "longlink@p1.iam.gserviceaccount.com", "token_uri": tokenURL})
	return v, srv, sa
}

// APNs starts a fake APNs (HTTP/2 only) and returns it, its server, and
// the .p8 key (key id KEY1234567, team TEAM123456) it trusts. Tokens:
// "expired" is refused with ExpiredProviderToken once, "bad"
// (BadDeviceToken), "big" (PayloadTooLarge), "busy" (TooManyRequests).
func APNs(t testing.TB) (*Vendor, *httptest.Server, []byte) {
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
	return v, srv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// HMS starts a fake Push Kit (app 10086, secret s3cret, with its OAuth
// token endpoint at /oauth2/v3/token) and returns it and its server.
// Tokens: "expired" is answered 80200003 once (a new access token is then
// taken), "flow" (503, Retry-After: 3), "big" (80300008).
func HMS(t testing.TB) (*Vendor, *httptest.Server) {
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
	return v, srv
}

// Xiaomi starts a fake Mi Push (app secret xm-s3cret, for the package
// com.example.app) and returns it and its server. Tokens: "dead" is
// answered with itself in bad_regids, "invalid" 20301 (every registration
// id invalid), "quota" 200001 (the daily quota), "busy" 10002 once,
// "down" 503 (Retry-After: 4), "refused" an unknown code.
func Xiaomi(t testing.TB) (*Vendor, *httptest.Server) {
	v := newVendor(t)
	srv := v.serve(false, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, err := url.ParseQuery(string(body))
		if r.URL.Path != "/v3/message/regid" || r.Method != http.MethodPost || err != nil ||
			r.Header.Get("Content-Type") != "application/x-www-form-urlencoded;charset=UTF-8" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "key=xm-s3cret" || form.Get("restricted_package_name") != "com.example.app" {
			answer(w, http.StatusOK, nil, `{"result":"error","code":21301,"reason":"认证失败","description":"认证失败"}`)
			return
		}
		token := form.Get("registration_id")
		before := v.keep(r, body, token, r.Header.Get("Authorization"))
		ok := func(bad string) string {
			return fmt.Sprintf(`{"result":"ok","trace_id":"Xcm5","code":0,"data":{"id":"scm01b7","bad_regids":%q},"description":"成功","info":"Received push messages for 1 REGID"}`, bad)
		}
		switch {
		case token == "dead":
			answer(w, http.StatusOK, nil, ok(token))
		case token == "invalid":
			answer(w, http.StatusOK, nil, `{"result":"error","code":20301,"reason":"No valid targets!","description":"发送消息失败"}`)
		case token == "quota":
			answer(w, http.StatusOK, nil, `{"result":"error","code":200001,"reason":"daily quota exceeded","description":"发送消息失败"}`)
		case token == "busy" && before == 0:
			answer(w, http.StatusOK, nil, `{"result":"error","code":10002,"reason":"service busy","description":"发送消息失败"}`)
		case token == "down":
			answer(w, http.StatusServiceUnavailable, map[string]string{"Retry-After": "4"}, `{}`)
		case token == "refused":
			answer(w, http.StatusOK, nil, `{"result":"error","code":10017,"reason":"invalid parameter","description":"参数错误"}`)
		default:
			v.accept(w, body, ok(""))
		}
	})
	return v, srv
}
