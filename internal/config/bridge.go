package config

import (
	"fmt"
	"time"
	_ "time/tzdata" // quiet hours name time zones, which a host may not have
)

// Vendors names the vendors the bridge has credentials for.
func (p PushBridge) Vendors() []string {
	var out []string
	for _, v := range []struct {
		name string
		set  bool
	}{{"fcm", p.FCM.ServiceAccountFile != ""}, {"apns", p.APNs.KeyFile != ""}, {"hms", p.HMS.AppID != ""}, {"xiaomi", p.Xiaomi.AppSecret != ""}} {
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
	case p.Xiaomi.AppSecret != "" && p.Xiaomi.Package == "":
		return bad(key+".xiaomi.package", "is required with app_secret: the app's Android package name")
	case p.Escalate.After < 0:
		return bad(key+".escalate.after", "must not be negative")
	case p.Escalate.After > 0 && len(p.Vendors()) == 0:
		return bad(key+".escalate.after", "escalates to no vendor: give fcm, apns, hms or xiaomi")
	}
	if _, _, err := p.Quiet.Until(time.Now()); err != nil {
		return bad(key+".quiet", "%v", err)
	}
	for _, u := range []struct{ key, url string }{{"fcm.url", p.FCM.URL}, {"apns.url", a.URL}, {"hms.url", h.URL}, {"hms.token_url", h.TokenURL}, {"xiaomi.url", p.Xiaomi.URL}} {
		if u.url != "" {
			if err := checkURL(u.url); err != nil {
				return bad(fmt.Sprintf("%s.%s", key, u.key), "%v", err)
			}
		}
	}
	return nil
}

// Until reports whether t falls within the window, and if so when the
// window ends; an error says what is wrong with the window.
func (q Quiet) Until(t time.Time) (time.Time, bool, error) {
	if q.From == "" && q.To == "" {
		return time.Time{}, false, nil
	}
	from, err1 := secondOfDay(q.From)
	to, err2 := secondOfDay(q.To)
	loc, err3 := time.LoadLocation(q.TZ)
	switch {
	case err1 != nil || err2 != nil:
		return time.Time{}, false, fmt.Errorf("from and to must be times of day, like 22:00 or 08:00:30")
	case err3 != nil:
		return time.Time{}, false, fmt.Errorf("tz %q is not a time zone (an IANA name, like Asia/Shanghai)", q.TZ)
	case from == to:
		return time.Time{}, false, fmt.Errorf("from and to are the same time")
	}
	t = t.In(loc)
	now := t.Hour()*3600 + t.Minute()*60 + t.Second() // the wall clock's, across a DST change too
	quiet := from <= now && now < to
	if from > to { // past midnight
		quiet = now >= from || now < to
	}
	if !quiet {
		return time.Time{}, false, nil
	}
	day := t.Day()
	if now >= to { // it ends tomorrow
		day++
	}
	return time.Date(t.Year(), t.Month(), day, to/3600, to/60%60, to%60, 0, loc), true, nil
}

// secondOfDay reads HH:MM or HH:MM:SS as seconds since midnight.
func secondOfDay(s string) (int, error) {
	for _, layout := range []string{"15:04", "15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.Hour()*3600 + t.Minute()*60 + t.Second(), nil
		}
	}
	return 0, fmt.Errorf("%q is not a time of day", s)
}
