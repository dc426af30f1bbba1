package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// The dashboard's sessions: a cookie holding a random id, which the node
// that issued it keeps with its expiry until the session ends (logout) or
// expires. The cookie carries no secret; a session is of one node.
const (
	sessionCookie = "longlink_ops"
	sessionTTL    = 12 * time.Hour
	maxSessions   = 1000 // past it, a new session ends the one that would expire first
)

// opsKey marks a request let through by the ops token (header or session):
// authorize then accepts it for any app.
type opsKey struct{}

// sessions are the dashboard's live sessions on this node. Safe for
// concurrent use.
type sessions struct {
	mu  sync.Mutex
	ids map[string]time.Time // id -> expiry
}

// start begins a session: its id and expiry.
func (ss *sessions) start() (id string, exp time.Time) {
	id, exp = rand.Text(), time.Now().Add(sessionTTL)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ids == nil {
		ss.ids = make(map[string]time.Time)
	}
	if len(ss.ids) >= maxSessions {
		first := ""
		for k, e := range ss.ids {
			if first == "" || e.Before(ss.ids[first]) {
				first = k
			}
		}
		delete(ss.ids, first)
	}
	ss.ids[id] = exp
	return id, exp
}

// valid reports whether id is a session that has not ended or expired.
func (ss *sessions) valid(id string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	exp, ok := ss.ids[id]
	if ok && time.Now().After(exp) {
		delete(ss.ids, id)
		return false
	}
	return ok
}

// end ends the session id.
func (ss *sessions) end(id string) {
	ss.mu.Lock()
	delete(ss.ids, id)
	ss.mu.Unlock()
}

// sessionOf returns r's session id, or "".
func sessionOf(r *http.Request) string {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	return c.Value
}

// sameOrigin reports whether a request's Origin names the host it was sent
// to: a form or script on another site cannot use the session's cookie to
// act (SameSite=Strict says so too; this does not rely on the browser).
func sameOrigin(r *http.Request) bool {
	u, err := url.Parse(r.Header.Get("Origin"))
	return err == nil && u.Host != "" && u.Host == r.Host
}

// opsAuth reports whether r may use the ops surface: the ops token as a
// Bearer header, or a dashboard session (for a change, from the same
// origin). A request that shows a wrong token or session counts as a failure
// of its address: an address with too many is refused (429) before its
// next one is even checked.
func (s *Server) opsAuth(r *http.Request) (bool, error) {
	token, given, session := s.cfg.Ops.Token, bearer(r), sessionOf(r)
	if given == "" && session == "" {
		return false, nil // nothing to check, nothing guessed
	}
	if !s.opsFailures.allowed(r) {
		return false, errOpsThrottled
	}
	safe := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case token != "" && subtle.ConstantTimeCompare([]byte(given), []byte(token)) == 1:
		return true, nil
	case given == "" && s.sessions.valid(session):
		return safe || sameOrigin(r), nil
	}
	s.opsFailures.failed(r)
	return false, nil
}

// errOpsThrottled is the 429 of an address that showed wrong ops tokens
// too often.
var errOpsThrottled = errorf(http.StatusTooManyRequests, "too many wrong ops tokens from your address; wait")

// opsOnly lets through requests that carry the ops token or a session;
// the others get a JSON 401 (429 for an address throttled by opsAuth).
func (s *Server) opsOnly(h http.Handler) http.Handler {
	return s.OpsOnly(h, func(w http.ResponseWriter, r *http.Request) {
		msg := "this endpoint needs Authorization: Bearer <ops.token>"
		if s.cfg.Ops.Token == "" {
			msg = "this node has no ops token (ops.token in its config), so its ops endpoints are closed to everyone"
		}
		s.writeError(w, r, errorf(http.StatusUnauthorized, "%s", msg))
	})
}

// OpsOnly lets through to h the requests that carry the ops token or a
// session (marked so that authorize takes them for any app); the others
// go to denied (the dashboard shows its login page), but for an address
// throttled by opsAuth: 429.
func (s *Server) OpsOnly(h http.Handler, denied http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, err := s.opsAuth(r)
		switch {
		case err != nil:
			s.writeError(w, r, err)
		case !ok:
			denied(w, r)
		default:
			h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), opsKey{}, true)))
		}
	})
}

// handleDashboardLogin takes the ops token from the dashboard's login form
// and sets the session cookie: 303 to /dashboard, or to the form again
// with ?failed=1.
func (s *Server) handleDashboardLogin(w http.ResponseWriter, r *http.Request) error {
	if !s.opsFailures.allowed(r) {
		return errOpsThrottled
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	token := s.cfg.Ops.Token
	given := r.PostFormValue("token")
	if token == "" || subtle.ConstantTimeCompare([]byte(given), []byte(token)) != 1 {
		s.opsFailures.failed(r)
		s.log.Info("dashboard login refused", "remote", r.RemoteAddr)
		http.Redirect(w, r, "/dashboard?failed=1", http.StatusSeeOther)
		return nil
	}
	id, exp := s.sessions.start()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", Expires: exp,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	s.log.Info("dashboard login", "remote", r.RemoteAddr)
	http.Redirect(w, r, "/dashboard", http.StatusSeeOther)
	return nil
}

// handleDashboardLogout ends the browser's session, here and in its cookie.
func (s *Server) handleDashboardLogout(w http.ResponseWriter, r *http.Request) error {
	if id := sessionOf(r); id != "" {
		s.sessions.end(id)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/dashboard", http.StatusSeeOther)
	return nil
}

// Failed ops auth per address: opsFailureBurst at once, then one per
// opsFailureEvery. A token of 16 bytes or more cannot be guessed at that
// pace; an operator who mistypes it waits a few seconds.
const (
	opsFailureBurst = 10
	opsFailureEvery = time.Second
)

// opsFailures throttles the addresses that show wrong ops tokens. Safe for
// concurrent use.
type opsFailures struct {
	mu        sync.Mutex
	addrs     map[netip.Addr]*rate.Limiter
	lastSweep time.Time
}

func addrOf(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// allowed reports whether r's address may have its ops token checked.
func (f *opsFailures) allowed(r *http.Request) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.addrs[addrOf(r)]
	return l == nil || l.Tokens() >= 1
}

// failed counts a wrong token from r's address.
func (f *opsFailures) failed(r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if f.addrs == nil {
		f.addrs = make(map[netip.Addr]*rate.Limiter)
	}
	if now.Sub(f.lastSweep) > time.Minute { // forget the addresses that are whole again
		f.lastSweep = now
		for a, l := range f.addrs {
			if l.TokensAt(now) >= opsFailureBurst {
				delete(f.addrs, a)
			}
		}
	}
	a := addrOf(r)
	l := f.addrs[a]
	if l == nil {
		l = rate.NewLimiter(rate.Every(opsFailureEvery), opsFailureBurst)
		f.addrs[a] = l
	}
	l.AllowN(now, 1)
}
