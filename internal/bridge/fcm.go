package bridge

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"
)

// FCMConfig is an app's FCM credentials: a Firebase service account.
type FCMConfig struct {
	// ServiceAccount is the service account's JSON key file, as the
	// Firebase console gives it (project_id, client_email, private_key,
	// token_uri).
	ServiceAccount []byte
	// URL is FCM's base URL; empty: https://fcm.googleapis.com.
	URL string
}

// fcmScope is the OAuth2 scope of FCM's HTTP v1 API.
const fcmScope = "https://www.googleapis.com/auth/firebase.messaging"

// FCM sends through Firebase Cloud Messaging's HTTP v1 API: POST
// /v1/projects/<project>/messages:send, with an OAuth2 access token the
// service account gets by the JWT-bearer grant (RFC 7523) at its token_uri.
type FCM struct {
	client *http.Client
	url    string // …/v1/projects/<project>/messages:send
	tokens *oauthTokens
}

// NewFCM returns an FCM sender that makes its calls with client.
func NewFCM(c FCMConfig, client *http.Client) (*FCM, error) {
	var sa struct {
		ProjectID    string `json:"project_id"`
		ClientEmail  string `json:"client_email"`
		PrivateKey   string `json:"private_key"`
		PrivateKeyID string `json:"private_key_id"`
		TokenURI     string `json:"token_uri"`
	}
	if err := json.Unmarshal(c.ServiceAccount, &sa); err != nil {
		return nil, fmt.Errorf("fcm: the service account is not JSON: %w", err)
	}
	if sa.ProjectID == "" || sa.ClientEmail == "" || sa.PrivateKey == "" || sa.TokenURI == "" {
		return nil, fmt.Errorf("fcm: the service account needs project_id, client_email, private_key and token_uri")
	}
	conf := &jwt.Config{Email: sa.ClientEmail, PrivateKey: []byte(sa.PrivateKey), PrivateKeyID: sa.PrivateKeyID,
		Scopes: []string{fcmScope}, TokenURL: sa.TokenURI}
	if err := checkRSAKey([]byte(sa.PrivateKey)); err != nil {
		return nil, fmt.Errorf("fcm: the service account's private_key: %w", err)
	}
	base := strings.TrimSuffix(c.URL, "/")
	if base == "" {
		base = "https://fcm.googleapis.com"
	}
	ctx := oauthContext(client)
	return &FCM{client: client, url: base + "/v1/projects/" + sa.ProjectID + "/messages:send",
		tokens: newOAuthTokens(func() oauth2.TokenSource { return conf.TokenSource(ctx) })}, nil
}

// Vendor implements Sender.
func (*FCM) Vendor() string { return "fcm" }

// fcmRequest is the body of messages:send (the v1 API's Message).
type fcmRequest struct {
	Message fcmMessage `json:"message"`
}

type fcmMessage struct {
	Token        string            `json:"token"`
	Notification *fcmNotification  `json:"notification,omitempty"`
	Data         map[string]string `json:"data"`
	Android      fcmAndroid        `json:"android"`
}

type fcmNotification struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

type fcmAndroid struct {
	CollapseKey  string                  `json:"collapse_key,omitempty"`
	Priority     string                  `json:"priority"`      // HIGH or NORMAL
	TTL          string                  `json:"ttl,omitempty"` // seconds, as "30s"
	Notification *fcmAndroidNotification `json:"notification,omitempty"`
}

type fcmAndroidNotification struct {
	Tag string `json:"tag"` // a newer one with the same tag replaces it in the tray
}

// fcmError is the body of an error answer: a google.rpc.Status, whose
// details hold an FcmError with the FCM error code.
type fcmError struct {
	Error struct {
		Status  string `json:"status"`
		Message string `json:"message"`
		Details []struct {
			Type      string `json:"@type"`
			ErrorCode string `json:"errorCode"`
		} `json:"details"`
	} `json:"error"`
}

// Send implements Sender.
func (f *FCM) Send(ctx context.Context, n Notification) (Result, error) {
	m := fcmMessage{Token: n.Token, Data: dataOf(n), Android: fcmAndroid{Priority: "NORMAL"}}
	switch {
	case n.Recall: // data only, and not collapsed with the next push of its key
		n.High = true
	case n.Title != "" || n.Body != "":
		m.Notification = &fcmNotification{Title: n.Title, Body: n.Body}
		m.Android.Notification = &fcmAndroidNotification{Tag: n.Tag()}
		fallthrough
	default:
		m.Android.CollapseKey = n.Collapse
	}
	if n.High {
		m.Android.Priority = "HIGH"
	}
	if n.TTL > 0 {
		m.Android.TTL = seconds(n.TTL)
	}
	body, err := json.Marshal(fcmRequest{m})
	if err != nil {
		return Result{}, err
	}
	for attempt := 0; ; attempt++ {
		status, h, answer, err := f.post(ctx, body)
		if err != nil {
			return Result{}, err
		}
		if status == http.StatusOK {
			return Result{Outcome: Accepted}, nil
		}
		var e fcmError
		json.Unmarshal(answer, &e)
		code := e.Error.Status
		for _, d := range e.Error.Details {
			if strings.HasSuffix(d.Type, "google.firebase.fcm.v1.FcmError") && d.ErrorCode != "" {
				code = d.ErrorCode
			}
		}
		switch {
		case status == http.StatusUnauthorized && code != "THIRD_PARTY_AUTH_ERROR" && attempt == 0:
			f.tokens.reset() // the access token was revoked or expired early: once more with a new one
			continue
		case code == "UNREGISTERED" || code == "SENDER_ID_MISMATCH" || (code == "INVALID_ARGUMENT" && badToken(e)):
			return Result{Outcome: DeadToken, Reason: code}, nil
		case code == "QUOTA_EXCEEDED" || status == http.StatusTooManyRequests:
			return again(QuotaExceeded, h, cmp.Or(code, "QUOTA_EXCEEDED")), nil
		case code == "UNAVAILABLE" || code == "INTERNAL" || status >= 500:
			return again(Retry, h, cmp.Or(code, http.StatusText(status))), nil
		}
		return Result{Outcome: Refused, Reason: cmp.Or(code, http.StatusText(status)) + ": " + e.Error.Message}, nil
	}
}

// checkRSAKey checks that pemKey is an RSA private key, as a service
// account's is (PKCS #8, or PKCS #1).
func checkRSAKey(pemKey []byte) error {
	block, _ := pem.Decode(pemKey)
	if block == nil {
		return errors.New("not PEM")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	}
	if err != nil {
		return err
	}
	if _, ok := key.(*rsa.PrivateKey); !ok {
		return errors.New("not an RSA key")
	}
	return nil
}

// badToken reports whether an INVALID_ARGUMENT is about the registration
// token: FCM then sends the FcmError alone, where a bad field of the
// message comes with a google.rpc.BadRequest naming it.
func badToken(e fcmError) bool {
	for _, d := range e.Error.Details {
		if strings.HasSuffix(d.Type, "google.rpc.BadRequest") {
			return false
		}
	}
	return true
}

func (f *FCM) post(ctx context.Context, body []byte) (int, http.Header, []byte, error) {
	auth, err := f.tokens.bearer()
	if err != nil {
		return 0, nil, nil, fmt.Errorf("fcm: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/json; charset=UTF-8")
	return do(f.client, req)
}

// do makes req with client and reads the answer (its first 64 KB).
func do(client *http.Client, req *http.Request) (int, http.Header, []byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, answer, nil
}

// dataOf is n's data with its id; a recall's, the recalled id alone.
func dataOf(n Notification) map[string]string {
	if n.Recall {
		return map[string]string{RecallKey: n.ID}
	}
	data := make(map[string]string, len(n.Data)+1)
	maps.Copy(data, n.Data)
	data[IDKey] = n.ID
	return data
}
