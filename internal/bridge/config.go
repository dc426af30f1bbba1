package bridge

import (
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/longlink/longlink/internal/config"
)

// Senders builds the senders an app's push_bridge config names, by vendor,
// reading its key files; an error names the key at fault (under
// push_bridge).
func Senders(p config.PushBridge, client *http.Client) (map[string]Sender, error) {
	senders := map[string]Sender{}
	if f := p.FCM; f.ServiceAccountFile != "" {
		sa, err := os.ReadFile(f.ServiceAccountFile)
		if err == nil {
			senders["fcm"], err = NewFCM(FCMConfig{ServiceAccount: sa, URL: f.URL}, client)
		}
		if err != nil {
			return nil, fmt.Errorf("push_bridge.fcm.service_account_file: %w", err)
		}
	}
	if a := p.APNs; a.KeyFile != "" {
		key, err := os.ReadFile(a.KeyFile)
		if err == nil {
			senders["apns"], err = NewAPNs(APNsConfig{Key: key, KeyID: a.KeyID, TeamID: a.TeamID, Topic: a.Topic, URL: a.URL}, client)
		}
		if err != nil {
			return nil, fmt.Errorf("push_bridge.apns.key_file: %w", err)
		}
	}
	if h := p.HMS; h.AppID != "" {
		s, err := NewHMS(HMSConfig{AppID: h.AppID, AppSecret: h.AppSecret, URL: h.URL, TokenURL: h.TokenURL}, client)
		if err != nil {
			return nil, fmt.Errorf("push_bridge.hms: %w", err)
		}
		senders["hms"] = s
	}
	if x := p.Xiaomi; x.AppSecret != "" {
		s, err := NewXiaomi(XiaomiConfig{AppSecret: x.AppSecret, Package: x.Package, ChannelID: x.ChannelID, URL: x.URL}, client)
		if err != nil {
			return nil, fmt.Errorf("push_bridge.xiaomi: %w", err)
		}
		senders["xiaomi"] = s
	}
	return senders, nil
}

// NewClient is the HTTP client senders share: HTTP/2 where the vendor
// speaks it (APNs speaks nothing else), and a bound on each call.
func NewClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ForceAttemptHTTP2 = true
	return &http.Client{Transport: t, Timeout: callTimeout}
}

// callTimeout bounds one call to a vendor, its token exchange included.
const callTimeout = 10 * time.Second
