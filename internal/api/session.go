package api

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The dashboard's session: a cookie that stands for the ops token, so that
// a browser need not send the header. It holds an expiry and an HMAC of it
// keyed by the ops token: nothing to store, valid on every node that has
// the same token, and void when the token changes.
const (
	sessionCookie = "longlink_ops"
	sessionTTL    = 12 * time.Hour
)

// opsKey marks a request let through by the ops token (header or session):
// authorize then accepts it for any app.
type opsKey struct{}

// sessionValue is the cookie value for a session that ends at exp.
func sessionValue(token string, exp time.Time) string {
	e := strconv.FormatInt(exp.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("longlink dashboard session " + e))
	return e + "." + hex.EncodeToString(mac.Sum(nil))
}

// validSession reports whether r carries a session cookie of token that has
// not expired.
func validSession(r *http.Request, token string) bool {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return false
	}
	e, _, _ := strings.Cut(c.Value, ".")
	sec, err := strconv.ParseInt(e, 10, 64)
	if err != nil || time.Now().Unix() > sec {
		return false
	}
	return hmac.Equal([]byte(c.Value), []byte(sessionValue(token, time.Unix(sec, 0))))
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
// origin).
func (s *Server) opsAuth(r *http.Request) bool {
	token := s.cfg.Ops.Token
	if token == "" {
		return false
	}
	if subtle.ConstantTimeCompare([]byte(bearer(r)), []byte(token)) == 1 {
		return true
	}
	safe := r.Method == http.MethodGet || r.Method == http.MethodHead
	return validSession(r, token) && (safe || sameOrigin(r))
}

// opsOnly lets through requests that carry the ops token or a session;
// the others get a JSON 401.
func (s *Server) opsOnly(h http.Handler) http.Handler {
	return s.OpsOnly(h, func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errorf(http.StatusUnauthorized, "this endpoint needs Authorization: Bearer <ops.token>"))
	})
}

// OpsOnly lets through to h the requests that carry the ops token or a
// session (marked so that authorize takes them for any app); the others
// go to denied (the dashboard shows its login page).
func (s *Server) OpsOnly(h http.Handler, denied http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.opsAuth(r) {
			denied(w, r)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), opsKey{}, true)))
	})
}

// handleLogin takes the ops token from the dashboard's login form and sets
// the session cookie: 303 to /dashboard, or to the form again with
// ?failed=1.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	token := s.cfg.Ops.Token
	given := r.PostFormValue("token")
	if token == "" || subtle.ConstantTimeCompare([]byte(given), []byte(token)) != 1 {
		s.log.Info("dashboard login refused", "remote", r.RemoteAddr)
		http.Redirect(w, r, "/dashboard?failed=1", http.StatusSeeOther)
		return
	}
	exp := time.Now().Add(sessionTTL)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sessionValue(token, exp), Path: "/", Expires: exp,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	s.log.Info("dashboard login", "remote", r.RemoteAddr)
	http.Redirect(w, r, "/dashboard", http.StatusSeeOther)
}

// handleLogout ends the browser's session.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/dashboard", http.StatusSeeOther)
}
