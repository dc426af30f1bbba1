package bridge

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// XiaomiConfig is an app's Mi Push credentials.
type XiaomiConfig struct {
	AppSecret string // the app's AppSecret, from Xiaomi's developer site
	Package   string // the app's Android package name
	// ChannelID is the notification channel the app registered with
	// Xiaomi for these messages (Android 8 and later); empty: none.
	ChannelID string
	// URL is Mi Push's base URL; empty: https://api.xmpush.xiaomi.com
	// (mainland China; elsewhere a regional host, such as
	// https://sgp-api.xmpush.global.xiaomi.com).
	URL string
}

// Xiaomi sends through Mi Push's server API: POST /v3/message/regid, a
// form, authenticated by the app's secret (Authorization: key=<secret>).
// Mi Push answers 200 with a JSON result code.
type Xiaomi struct {
	client               *http.Client
	url                  string
	auth, pkg, channelID string
}

// NewXiaomi returns a Mi Push sender that makes its calls with client.
func NewXiaomi(c XiaomiConfig, client *http.Client) (*Xiaomi, error) {
	if c.AppSecret == "" || c.Package == "" {
		return nil, errors.New("xiaomi: app_secret and package are required")
	}
	base := cmp.Or(strings.TrimSuffix(c.URL, "/"), "https://api.xmpush.xiaomi.com")
	return &Xiaomi{client: client, url: base + "/v3/message/regid", auth: "key=" + c.AppSecret, pkg: c.Package, channelID: c.ChannelID}, nil
}

// Vendor implements Sender.
func (*Xiaomi) Vendor() string { return "xiaomi" }

// Mi Push's result codes (its server API's error code table).
const (
	xiaomiSuccess       = 0
	xiaomiInvalidRegIDs = 20301  // every registration id invalid
	xiaomiDailyQuota    = 200001 // the app's daily quota spent
)

// xiaomiBusy are the codes of a busy or unavailable Mi Push: send again.
var xiaomiBusy = []int{10002, 10003, 10027, 10037}

// Send implements Sender.
func (x *Xiaomi) Send(ctx context.Context, n Notification) (Result, error) {
	data, err := json.Marshal(dataOf(n))
	if err != nil {
		return Result{}, err
	}
	form := url.Values{"registration_id": {n.Token}, "restricted_package_name": {x.pkg}, "payload": {string(data)}, "pass_through": {"1"}}
	if (n.Title != "" || n.Body != "") && !n.Recall { // a notification; else a pass-through (data) message
		form.Set("pass_through", "0")
		form.Set("title", cmp.Or(n.Title, n.Body)) // both are required
		form.Set("description", cmp.Or(n.Body, n.Title))
		form.Set("notify_type", "-1") // the default sound, vibration and light
		form.Set("notify_id", xiaomiNotifyID(n.Tag()))
		form.Set("extra.notify_foreground", "1")
		if x.channelID != "" {
			form.Set("extra.channel_id", x.channelID)
		}
	}
	if n.TTL > 0 {
		form.Set("time_to_live", strconv.FormatInt(n.TTL.Milliseconds(), 10))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.url, strings.NewReader(form.Encode()))
	if err != nil {
		return Result{}, err
	}
	req.Header.Set("Authorization", x.auth)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset=UTF-8")
	status, h, answer, err := do(x.client, req)
	if err != nil {
		return Result{}, fmt.Errorf("xiaomi: %w", err)
	}
	if status == http.StatusTooManyRequests || status >= 500 {
		return again(Retry, h, http.StatusText(status)), nil
	}
	var r struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
		Data   struct {
			BadRegIDs string `json:"bad_regids"`
		} `json:"data"`
	}
	if err := json.Unmarshal(answer, &r); err != nil || status != http.StatusOK {
		return Result{}, fmt.Errorf("xiaomi: an answer its API does not define: %d %.200q", status, answer)
	}
	code := strconv.Itoa(r.Code)
	switch {
	case r.Code == xiaomiSuccess && slices.Contains(strings.Split(r.Data.BadRegIDs, ","), n.Token):
		return Result{Outcome: DeadToken, Reason: "bad_regids"}, nil
	case r.Code == xiaomiSuccess:
		return Result{Outcome: Accepted}, nil
	case r.Code == xiaomiInvalidRegIDs:
		return Result{Outcome: DeadToken, Reason: code}, nil
	case r.Code == xiaomiDailyQuota:
		return again(QuotaExceeded, h, code), nil
	case slices.Contains(xiaomiBusy, r.Code):
		return again(Retry, h, code), nil
	}
	return Result{Outcome: Refused, Reason: code + ": " + r.Reason}, nil
}

// xiaomiNotifyID is the notify_id of tag: a notification with the same one
// replaces a shown one, as a tag does elsewhere.
func xiaomiNotifyID(tag string) string {
	h := fnv.New32a()
	h.Write([]byte(tag))
	return strconv.FormatUint(uint64(h.Sum32()&0x7fffffff), 10)
}
