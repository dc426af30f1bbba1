// Package api serves the HTTP API for app backends and devices: push,
// presence, dispatch, health and metrics.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/internal/bridge"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/logbound"
	"github.com/longlink/longlink/internal/metrics"
	"github.com/longlink/longlink/internal/nodeinfo"
	"github.com/longlink/longlink/internal/store"
)

// Options configure a Server.
type Options struct {
	Config *config.Config   // validated; its apps are not used (see Apps)
	Apps   *config.LiveApps // the apps, swapped on reload
	Fanout Fanout
	Store  store.Store
	// Self describes this node now.
	Self func() nodeinfo.Info
	// Drain starts draining this node (POST /v1/admin/drain); it returns at
	// once, and calling it again does nothing.
	Drain func()
	// DrainNode, in a cluster, asks another node to drain and returns it
	// as it is then (nodeinfo.ErrNoNode: no live node of that name). Nil: this node
	// only.
	DrainNode func(ctx context.Context, node string) (nodeinfo.Info, error)
	// Peers, in a cluster, describes the other live nodes; /v1/dispatch
	// lists them after this node. Nil: this node only.
	Peers func(context.Context) ([]nodeinfo.Info, error)
	// Stats gives every node's figures for /v1/admin/stats, this node's
	// first (in a cluster, the others' read over the bus).
	Stats   func(context.Context) ([]nodeinfo.Stats, error)
	Metrics *metrics.Metrics
	Logger  *slog.Logger // nil means slog.Default()
}

// Server is the HTTP API. Safe for concurrent use.
type Server struct {
	// Static after construction.
	cfg     *config.Config
	apps    *config.LiveApps
	fanout  Fanout
	store   store.Store
	self    func() nodeinfo.Info
	drain   func()
	drainAt func(ctx context.Context, node string) (nodeinfo.Info, error)
	peers   func(context.Context) ([]nodeinfo.Info, error)
	stats   func(context.Context) ([]nodeinfo.Stats, error)
	metrics *metrics.Metrics
	log     *slog.Logger
	errLog  *logbound.Logger // 5xx answers: one per call while an engine is away
	mux     *http.ServeMux
	ops     *http.ServeMux // the ops surface: mux itself, unless ops.listen is set

	dispatcher  dispatcher
	msgSeq      atomic.Uint64 // message id counter
	pending     sync.Map      // app -> *atomic.Int64: bytes of stored pushes being written (reserve)
	pushes      sync.Map      // app -> *rate.Limiter (golang.org/x/time/rate): limits.push_per_second
	bodies      atomic.Int64  // bytes of request bodies being read and decoded (limits.api_body_bytes)
	sessions    sessions      // the dashboard's
	opsFailures opsFailures   // wrong ops tokens, per address
	bridgeState
}

// Limits of one API call.
const (
	maxBodyBytes = config.MaxAPIBodyBytes
	maxTargets   = 10000 // devices or users in one push
	maxPresence  = 1000  // devices in one presence query
)

// New returns the API server; serve its Handler.
func New(o Options) *Server {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: o.Config, apps: o.Apps, fanout: o.Fanout, store: o.Store, self: o.Self, drain: o.Drain, drainAt: o.DrainNode, peers: o.Peers, stats: o.Stats, metrics: o.Metrics,
		log: log, errLog: logbound.New(log, logbound.Interval), mux: http.NewServeMux(),
		bridgeState: bridgeState{bridges: map[string]appSenders{}, vendorClient: bridge.NewClient(), vendorSlots: make(chan struct{}, escalationSends)}}
	s.msgSeq.Store(uint64(time.Now().UnixNano()))
	s.mux.Handle("POST /v1/push", s.serve(s.handlePush))
	s.mux.Handle("GET /v1/presence", s.serve(s.handlePresence))
	s.mux.Handle("POST /v1/groups/join", s.serve(s.handleGroup(s.fanout.Join)))
	s.mux.Handle("POST /v1/groups/leave", s.serve(s.handleGroup(s.fanout.Leave)))
	s.mux.Handle("POST /v1/kick", s.serve(s.handleKick))
	s.mux.Handle("POST /v1/tags", s.serve(s.handleTags))
	s.mux.Handle("POST /v1/devices/vendor", s.serve(s.handleSetVendorToken))
	s.mux.Handle("GET /v1/devices/vendor", s.serve(s.handleVendorTokens))
	s.mux.Handle("GET /v1/messages", s.serve(s.handleMessages))
	s.mux.Handle("GET /v1/messages/{id}", s.serve(s.handleMessage))
	s.mux.Handle("DELETE /v1/messages/{id}", s.serve(s.handleDeleteMessage))
	s.mux.Handle("GET /v1/dispatch", s.serve(s.handleDispatch))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if s.self().State == nodeinfo.Draining { // so that a load balancer takes the node out
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": string(nodeinfo.Draining), "node": s.cfg.Node})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "node": s.cfg.Node})
	})
	// /metrics is open on the API's port, unless ops.listen moves it to
	// the ops surface, behind the ops token (ops.metrics_public keeps it
	// open on the API's port too).
	if s.cfg.Ops.MetricsOnAPI() {
		s.mux.Handle("GET /metrics", o.Metrics.Handler())
	}
	// The ops surface: on the API's port, or on ops.listen (OpsHandler).
	s.ops = s.mux
	if s.cfg.Ops.Listen != "" {
		s.ops = http.NewServeMux()
		s.ops.Handle("GET /healthz", s.mux)
		s.ops.Handle("GET /metrics", s.opsOnly(o.Metrics.Handler()))
	}
	// Profiles on demand, for the ops token:
	// go tool pprof -http : 'http://127.0.0.1:8080/debug/pprof/profile' (with the header)
	s.ops.Handle("GET /debug/pprof/", s.opsOnly(http.HandlerFunc(pprof.Index)))
	s.ops.Handle("GET /debug/pprof/profile", s.opsOnly(longRunning(pprof.Profile)))
	s.ops.Handle("GET /debug/pprof/trace", s.opsOnly(longRunning(pprof.Trace)))
	s.ops.Handle("GET /v1/admin/nodes", s.opsOnly(s.serve(s.handleNodes)))
	s.ops.Handle("POST /v1/admin/drain", s.opsOnly(s.serve(s.handleDrain)))
	s.ops.Handle("GET /v1/admin/devices/{app}/{device}", s.opsOnly(s.serve(s.handleDevice)))
	s.ops.Handle("GET /v1/admin/stats", s.opsOnly(s.serve(s.handleStats)))
	s.ops.Handle("POST /v1/admin/push", s.opsOnly(s.serve(s.handlePush)))
	s.ops.Handle("POST /v1/admin/kick", s.opsOnly(s.serve(s.handleKick)))
	s.ops.Handle("POST /dashboard/login", s.serve(s.handleDashboardLogin))
	s.ops.Handle("POST /dashboard/logout", s.serve(s.handleDashboardLogout))
	return s
}

// longRunning lets h run past api.read_timeout: net/http ends a request's
// context when the connection's read deadline passes, and a profile or a
// trace is asked for 30 s and more.
func longRunning(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).SetReadDeadline(time.Time{})
		h(w, r)
	})
}

// Handler returns the API's HTTP handler (with the ops surface, unless it
// has a port of its own).
func (s *Server) Handler() http.Handler { return s.route(s.mux) }

// HandleOps adds a route to the ops surface (the dashboard's pages; h does
// its own guarding).
func (s *Server) HandleOps(pattern string, h http.Handler) { s.ops.Handle(pattern, h) }

// HandleEverywhere adds a route to the API's port, and to the ops surface
// where it has a port of its own.
func (s *Server) HandleEverywhere(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
	if s.ops != s.mux {
		s.ops.Handle(pattern, h)
	}
}

// HandleAPI adds a route to the API's port (the demo page).
func (s *Server) HandleAPI(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// OpsHandler returns the ops surface's handler, for ops.listen.
func (s *Server) OpsHandler() http.Handler { return s.route(s.ops) }

// bearer returns the token of an "Authorization: Bearer <token>" header
// (the scheme in any case, RFC 9110), or "".
func bearer(r *http.Request) string {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// route serves r through mux, and answers in JSON what mux has no route
// for: 405 with Allow for a path that takes other methods, else 404.
func (s *Server) route(mux *http.ServeMux) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { s.serveOn(mux, w, r) }
}

func (s *Server) serveOn(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	if _, pattern := mux.Handler(r); pattern != "" {
		mux.ServeHTTP(w, r)
		return
	}
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		s.writeError(w, r, errorf(http.StatusNotFound, "no such endpoint: %s", r.URL.Path))
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	s.writeError(w, r, errorf(http.StatusMethodNotAllowed, "%s takes %s, not %s", r.URL.Path, strings.Join(allow, " or "), r.Method))
}

// handler is an API endpoint: it writes its answer, or returns the error
// to answer with (serve writes it: its status, a JSON body, a log line).
type handler func(w http.ResponseWriter, r *http.Request) error

// serve makes h an http.Handler.
func (s *Server) serve(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// httpError is an error with the HTTP status it is answered with, and,
// for the server's log only, its cause.
type httpError struct {
	status int
	msg    string
	cause  error
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// writeError answers err as {"error": ...} and logs it: the answer says
// what is wrong for a person, the log keeps the cause (a Go error never
// reaches the wire; anything but an httpError is a 500 "internal error").
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		he = &httpError{status: http.StatusInternalServerError, msg: "internal error", cause: err}
	}
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", he.status, "error", he.msg}
	if he.cause != nil {
		s.errLog.Error("api", append(attrs, "cause", he.cause)...)
	} else {
		s.log.Info("api", attrs...)
	}
	if he.status == http.StatusTooManyRequests || he.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, he.status, map[string]string{"error": he.msg})
}

// writeJSON answers v as JSON, with <, > and & as they are (not \u003c:
// this is an API, not HTML).
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// caller is who makes an API call: the backend of one app, by its API key,
// or an operator (the ops token, or a dashboard session), for any app.
type caller struct {
	app string // the key's app; "" for an operator
}

// authenticate says who makes r, from its headers alone: 401 without a key
// or with a key of no app. The scheme is case-insensitive (RFC 9110).
func (s *Server) authenticate(r *http.Request) (caller, error) {
	if r.Context().Value(opsKey{}) != nil { // an admin call: any app
		return caller{}, nil
	}
	key := bearer(r)
	if key == "" {
		return caller{}, errorf(http.StatusUnauthorized, "missing Authorization: Bearer <api_key>")
	}
	owner, ok := s.apps.Get().ByKey(key)
	if !ok {
		return caller{}, errorf(http.StatusUnauthorized, "unknown API key")
	}
	return caller{app: owner.ID}, nil
}

// permit checks that c may act on app: 400 without an app, 404 for an
// unknown app, 403 for a key of another app.
func (s *Server) permit(c caller, app string) error {
	if app == "" && c.app != "" {
		return errorf(http.StatusBadRequest, "app is required")
	}
	if _, ok := s.apps.Get().ByID(app); !ok {
		return errorf(http.StatusNotFound, "unknown app %q", app)
	}
	if c.app != "" && c.app != app {
		return errorf(http.StatusForbidden, "this API key belongs to another app")
	}
	return nil
}

// authorize checks the Bearer key of r against app (see authenticate and
// permit).
func (s *Server) authorize(r *http.Request, app string) error {
	c, err := s.authenticate(r)
	if err != nil {
		return err
	}
	return s.permit(c, app)
}

// appRequest is a request body that names the app it acts on.
type appRequest interface{ appID() string }

// decodeAs decodes r's body into req for its caller, who must be known
// first: a request with no valid key is answered 401 before a byte of its
// body is read. Before the body is read, early (if set) checks the caller
// too (the push rate); after, the caller must be allowed on req's app.
func (s *Server) decodeAs(w http.ResponseWriter, r *http.Request, req appRequest, early func(caller) error) (caller, error) {
	c, err := s.authenticate(r)
	if err == nil && early != nil {
		err = early(c)
	}
	if err == nil {
		err = s.decodeBody(w, r, req)
	}
	if err == nil {
		err = s.permit(c, req.appID())
	}
	return c, err
}

// newMessageID returns an id unique in this node: node, then a counter
// seeded from the clock at start.
func (s *Server) newMessageID() string {
	return s.cfg.Node + "-" + strconv.FormatUint(s.msgSeq.Add(1), 36)
}
