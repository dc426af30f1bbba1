package config

import "fmt"

// Vendors names the vendors the bridge has credentials for.
func (p PushBridge) Vendors() []string {
	var out []string
	for _, v := range []struct {
		name string
		set  bool
	}{{"fcm", p.FCM.ServiceAccountFile != ""}, {"apns", p.APNs.KeyFile != ""}, {"hms", p.HMS.AppID != ""}} {
		if v.set {
			out = append(out, v.name)
		}
	}
	return out
}

// validate checks the bridge of the app at key (apps[i]).
func (p PushBridge) validate(key string) error {
	key += ".push_bridge"
	a, h := p.APNs, p.HMS
	switch {
	case a.KeyFile != "" && (a.KeyID == "" || a.TeamID == "" || a.Topic == ""):
		return bad(key+".apns", "key_file needs key_id, team_id and topic")
	case h.AppID != "" && h.AppSecret == "":
		return bad(key+".hms.app_secret", "is required with app_id")
	case p.Escalate.After < 0:
		return bad(key+".escalate.after", "must not be negative")
	case p.Escalate.After > 0 && len(p.Vendors()) == 0:
		return bad(key+".escalate.after", "escalates to no vendor: give fcm, apns or hms")
	}
	for _, u := range []struct{ key, url string }{{"fcm.url", p.FCM.URL}, {"apns.url", a.URL}, {"hms.url", h.URL}, {"hms.token_url", h.TokenURL}} {
		if u.url != "" {
			if err := checkURL(u.url); err != nil {
				return bad(fmt.Sprintf("%s.%s", key, u.key), "%v", err)
			}
		}
	}
	return nil
}
