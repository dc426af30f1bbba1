package bridge

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// HMSConfig is an app's Huawei Push Kit credentials.
type HMSConfig struct {
	AppID     string // the app's id (its OAuth client id)
	AppSecret string // its secret
	// URL is Push Kit's base URL; empty: https://push-api.cloud.huawei.com.
	URL string
	// TokenURL is Huawei's OAuth token endpoint; empty:
	// https://oauth-login.cloud.huawei.com/oauth2/v3/token.
	TokenURL string
}

// HMS sends through Huawei Push Kit's server API: POST
// /v1/<app id>/messages:send, with an OAuth2 access token got by the
// client-credentials grant. Push Kit answers 200 with a result code in
// the body for most outcomes.
type HMS struct {
	client *http.Client
	url    string
	tokens *oauthTokens
}

// NewHMS returns an HMS sender that makes its calls with client.
func NewHMS(c HMSConfig, client *http.Client) (*HMS, error) {
	if c.AppID == "" || c.AppSecret == "" {
		return nil, errors.New("hms: app_id and app_secret are required")
	}
	conf := &clientcredentials.Config{ClientID: c.AppID, ClientSecret: c.AppSecret,
		TokenURL: cmp.Or(c.TokenURL, "https://oauth-login.cloud.huawei.com/oauth2/v3/token"), AuthStyle: oauth2.AuthStyleInParams}
	ctx := oauthContext(client)
	base := cmp.Or(strings.TrimSuffix(c.URL, "/"), "https://push-api.cloud.huawei.com")
	return &HMS{client: client, url: base + "/v1/" + c.AppID + "/messages:send",
		tokens: newOAuthTokens(func() oauth2.TokenSource { return conf.TokenSource(ctx) })}, nil
}

// Vendor implements Sender.
func (*HMS) Vendor() string { return "hms" }

type hmsRequest struct {
	ValidateOnly bool       `json:"validate_only"`
	Message      hmsMessage `json:"message"`
}

type hmsMessage struct {
	Data    string     `json:"data"` // a JSON object, as a string
	Android hmsAndroid `json:"android"`
	Token   []string   `json:"token"`
}

type hmsAndroid struct {
	Urgency      string           `json:"urgency"`                // HIGH or NORMAL
	TTL          string           `json:"ttl,omitempty"`          // "86400s"
	Notification *hmsNotification `json:"notification,omitempty"` // none: a data message
}

type hmsNotification struct {
	Title       string         `json:"title"`
	Body        string         `json:"body"`
	Tag         string         `json:"tag,omitempty"` // a newer one with the same tag replaces it
	ClickAction hmsClickAction `json:"click_action"`
}

type hmsClickAction struct {
	Type int `json:"type"` // 3: open the app
}

// Push Kit's result codes (its docs' "Result codes").
const (
	hmsSuccess        = "80000000"
	hmsTokenInvalid   = "80300007" // all tokens invalid
	hmsPartialFailure = "80100000" // some tokens invalid (one token: it)
	hmsOAuthFailed    = "80200001"
	hmsOAuthExpired   = "80200003"
	hmsInternalError  = "81000001"
)

// Send implements Sender.
func (h *HMS) Send(ctx context.Context, n Notification) (Result, error) {
	data, err := json.Marshal(dataOf(n))
	if err != nil {
		return Result{}, err
	}
	m := hmsMessage{Data: string(data), Token: []string{n.Token}, Android: hmsAndroid{Urgency: "NORMAL"}}
	if !n.Recall {
		m.Android.Notification = &hmsNotification{Title: n.Title, Body: n.Body, Tag: n.Tag(), ClickAction: hmsClickAction{Type: 3}}
	}
	if n.High || n.Recall {
		m.Android.Urgency = "HIGH"
	}
	if n.TTL > 0 {
		m.Android.TTL = seconds(n.TTL)
	}
	body, err := json.Marshal(hmsRequest{Message: m})
	if err != nil {
		return Result{}, err
	}
	for attempt := 0; ; attempt++ {
		auth, err := h.tokens.bearer()
		if err != nil {
			return Result{}, fmt.Errorf("hms: %w", err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
		if err != nil {
			return Result{}, err
		}
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json; charset=UTF-8")
		status, header, answer, err := do(h.client, req)
		if err != nil {
			return Result{}, fmt.Errorf("hms: %w", err)
		}
		var r struct {
			Code string `json:"code"`
			Msg  string `json:"msg"`
		}
		json.Unmarshal(answer, &r)
		switch {
		case r.Code == hmsSuccess:
			return Result{Outcome: Accepted}, nil
		case (r.Code == hmsOAuthExpired || r.Code == hmsOAuthFailed || status == http.StatusUnauthorized) && attempt == 0:
			h.tokens.reset() // once more with a new access token
			continue
		case r.Code == hmsTokenInvalid || r.Code == hmsPartialFailure:
			return Result{Outcome: DeadToken, Reason: r.Code}, nil
		case status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests:
			// Push Kit's flow control: too many messages for now.
			return again(QuotaExceeded, header, cmp.Or(r.Code, http.StatusText(status))), nil
		case r.Code == hmsInternalError || status >= 500:
			return again(Retry, header, cmp.Or(r.Code, http.StatusText(status))), nil
		}
		return Result{Outcome: Refused, Reason: strings.TrimSpace(cmp.Or(r.Code, strconv.Itoa(status)) + " " + r.Msg)}, nil
	}
}
