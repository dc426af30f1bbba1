// Package server runs every longlink role in one process: the gateway on one
// port and the HTTP API on another, sharing metrics.
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/longlink/longlink/internal/api"
	"github.com/longlink/longlink/internal/bridge"
	"github.com/longlink/longlink/internal/certs"
	"github.com/longlink/longlink/internal/cluster"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/gateway"
	"github.com/longlink/longlink/internal/golabel"
	"github.com/longlink/longlink/internal/hooks"
	"github.com/longlink/longlink/internal/metrics"
	"github.com/longlink/longlink/internal/nodeinfo"
	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/internal/store/embedded"
	redisstore "github.com/longlink/longlink/internal/store/redis"
	"github.com/longlink/longlink/internal/web"
	"github.com/longlink/longlink/protocol"
)

// Server is a running longlink node.
type Server struct {
	// Static after Start.
	cfg      *config.Config
	apps     *config.LiveApps
	gw       *gateway.Gateway
	upstream *hooks.Upstream
	status   *hooks.Status
	store    store.Store
	node     *cluster.Node  // nil on a single node
	keypair  *certs.Keypair // nil without tls
	http     *http.Server
	ops      *http.Server // nil unless ops.listen is set
	log      *slog.Logger
	opsAddr  string
	gwAddr   string
	apiAddr  string
	errc     chan error // the first error of a serving goroutine

	// life is the node's lifetime: Shutdown cancels it, which stops the
	// scheduler and cuts a drain short, and then waits for both (workers).
	life    context.Context
	endLife context.CancelFunc
	workers sync.WaitGroup

	drain   sync.Once
	drained chan struct{} // closed when a drain has ended

	shutdown    sync.Once
	shutdownErr error
}

// Start listens on the configured ports and serves until Shutdown.
func Start(cfg *config.Config, log *slog.Logger) (_ *Server, err error) {
	if log == nil {
		log = slog.Default()
	}
	var undo []func() error // what Start opened, closed again (last first) if it fails
	defer func() {
		for i := len(undo) - 1; err != nil && i >= 0; i-- {
			undo[i]()
		}
	}()
	gwLn, apiLn, keypair, err := listen(cfg)
	if err != nil {
		return nil, err
	}
	undo = append(undo, gwLn.Close, apiLn.Close)
	warnWebhookSecrets(cfg.Apps, log)
	for i, a := range cfg.Apps { // the vendors' key files read and parsed now, not at the first escalation
		if _, err := bridge.Senders(a.PushBridge, nil); err != nil {
			return nil, fmt.Errorf("config: apps[%d].%w", i, err)
		}
	}
	m := metrics.New()
	var gw *gateway.Gateway // set below, before anyone asks
	gwOf := func() *gateway.Gateway { return gw }
	self := describe(cfg, keypair, gwLn.Addr().String(), apiLn.Addr().String(), gwOf)
	selfStats := func() nodeinfo.Stats { return nodeinfo.StatsOf(self(), m) }
	st, node, err := openStore(cfg, self, selfStats, gwOf, m, log)
	if err != nil {
		return nil, err
	}
	undo = append(undo, st.Close)
	if node != nil {
		undo = append(undo, node.Close)
	}
	apps := config.NewLiveApps(cfg.Apps)
	upstream, status := newHooks(cfg, apps, m, log)
	gw = newGateway(cfg, apps, st, node, upstream, status, keypair, m, log)
	undo = append(undo, func() error {
		upstream.Close()
		status.Close()
		return gw.Shutdown(context.Background()) // its writers and poller
	})
	s := &Server{cfg: cfg, apps: apps, gw: gw, upstream: upstream, status: status, store: st, node: node, log: log,
		keypair: keypair, gwAddr: gwLn.Addr().String(), apiAddr: apiLn.Addr().String(), errc: make(chan error, 3),
		drained: make(chan struct{})}
	s.life, s.endLife = context.WithCancel(context.Background())
	ao := api.Options{Config: cfg, Apps: apps, Fanout: api.Local(gw), Store: st, Metrics: m, Logger: log, Self: self,
		Drain: s.StartDrain, Stats: func(context.Context) ([]nodeinfo.Stats, error) { return []nodeinfo.Stats{selfStats()}, nil }}
	if node != nil {
		if err := node.Serve(gw, s.StartDrain); err != nil {
			return nil, err
		}
		ao.Fanout, ao.Peers, ao.Stats, ao.DrainNode = node, node.Peers, node.Stats, node.Drain
	}
	a := api.New(ao)
	web.Dashboard(a)
	if cfg.Demo {
		web.Demo(a, cfg.Apps[0], self().Gateway)
	}
	undo = nil // from here, Shutdown undoes it all
	if err := s.serve(a, gwLn, apiLn); err != nil {
		return nil, err
	}
	return s, nil
}

// listen opens the gateway's and the API's listeners, and loads the TLS
// certificate if there is one.
func listen(cfg *config.Config) (gwLn, apiLn net.Listener, keypair *certs.Keypair, err error) {
	// No TCP keepalive on device connections: heartbeats find dead ones,
	// and keepalive costs three setsockopt calls per accept (pprof: 4% of a
	// login) and a kernel timer per socket.
	lc := net.ListenConfig{KeepAlive: -1}
	if gwLn, err = lc.Listen(context.Background(), "tcp", cfg.Gateway.Listen); err != nil {
		return nil, nil, nil, fmt.Errorf("gateway.listen: %w", err)
	}
	if apiLn, err = net.Listen("tcp", cfg.API.Listen); err != nil {
		gwLn.Close()
		return nil, nil, nil, fmt.Errorf("api.listen: %w", err)
	}
	if cfg.TLS.Enabled() {
		if keypair, err = certs.Load(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			gwLn.Close()
			apiLn.Close()
			return nil, nil, nil, err
		}
	}
	return gwLn, apiLn, keypair, nil
}

// describe returns what this node says about itself (now, each call): its
// gateway (as advertised), its API, and whether it serves or drains.
func describe(cfg *config.Config, keypair *certs.Keypair, gwAddr, apiAddr string, gw func() *gateway.Gateway) func() nodeinfo.Info {
	advertise := cmp.Or(cfg.Gateway.Advertise, gwAddr)
	scheme := "http://"
	if keypair != nil {
		scheme = "https://"
	}
	started := time.Now().UTC().Truncate(time.Second)
	return func() nodeinfo.Info {
		state := nodeinfo.Serving
		if gw().Draining() {
			state = nodeinfo.Draining
		}
		return nodeinfo.Info{Node: cfg.Node, State: state, Connections: gw().Connections(), Gateway: advertise,
			API: scheme + apiAddr, StartedAt: started, Plain: !cfg.TLS.Required, TLS: keypair != nil}
	}
}

// warnWebhookSecrets warns of apps whose webhooks are signed with their
// token secret.
func warnWebhookSecrets(apps []config.App, log *slog.Logger) {
	for _, a := range apps {
		if a.WebhookSecret == "" && (a.Webhooks.Status != "" || len(a.Webhooks.Upstream) > 0) {
			log.Warn("app has webhooks but no webhook_secret: they are signed with the secret that signs its device "+
				"tokens, so whoever checks them can mint tokens; give it a webhook_secret of its own", "app", a.ID)
		}
	}
}

// newHooks starts the upstream workers and the status webhooks, with
// their backlogs as gauges.
func newHooks(cfg *config.Config, apps *config.LiveApps, m *metrics.Metrics, log *slog.Logger) (*hooks.Upstream, *hooks.Status) {
	hookOpts := hooks.Options{Config: cfg.Hooks, Apps: apps, Node: cfg.Node, MaxReplySize: cfg.API.MaxDataBytes,
		Metrics: m, Logger: log}
	upstream, status := hooks.NewUpstream(hookOpts), hooks.NewStatus(hookOpts)
	m.GaugeFunc("longlink_upstream_backlog", "Upstream calls waiting for a worker.", func() float64 { return float64(upstream.Backlog()) })
	m.GaugeFunc("longlink_status_backlog", "Status events waiting to be delivered to the apps' status webhooks.", func() float64 { return float64(status.Backlog()) })
	return upstream, status
}

// newGateway makes the gateway, routed through node in a cluster.
func newGateway(cfg *config.Config, apps *config.LiveApps, st store.Store, node *cluster.Node, upstream *hooks.Upstream,
	status *hooks.Status, keypair *certs.Keypair, m *metrics.Metrics, log *slog.Logger) *gateway.Gateway {
	o := gateway.Options{Node: cfg.Node, Config: cfg.Gateway, Limits: cfg.Limits, Secrets: apps.Secret, Mailboxes: st,
		Upstream: upstream, Events: status, UpRate: cfg.Hooks.UpstreamRate, UpBurst: cfg.Hooks.UpstreamBurst,
		Metrics: m, Logger: log}
	if node != nil {
		o.Router = node
	}
	if keypair != nil {
		o.TLS, o.TLSRequired = keypair.Config(), cfg.TLS.Required
		o.CryptoTLSRecords = cfg.TLS.RecordLayer == config.RecordsCryptoTLS
	}
	return gateway.New(o)
}

// serve starts serving: the gateway, the API, the scheduler and, with
// ops.listen, the ops surface. If the ops listener cannot open, it shuts
// down what it started.
func (s *Server) serve(a *api.Server, gwLn, apiLn net.Listener) error {
	reserve := newFDReserve(s.gw.Sockets)
	s.http = newHTTPServer(a.Handler(), s.cfg.API, s.keypair, s.log)
	golabel.Go("gateway.accept", func() { s.errc <- s.gw.Serve(gwLn) })
	golabel.Go("api.http", func() { s.serveHTTP(s.http, reserve.listener(apiLn)) })
	s.goWorker("scheduler", func() { s.fireScheduled(s.life, a) })
	if s.cfg.Ops.Listen == "" {
		return nil
	}
	opsLn, err := net.Listen("tcp", s.cfg.Ops.Listen)
	if err != nil {
		s.Shutdown(context.Background())
		return fmt.Errorf("ops.listen: %w", err)
	}
	s.ops, s.opsAddr = newHTTPServer(a.OpsHandler(), s.cfg.API, s.keypair, s.log), opsLn.Addr().String()
	golabel.Go("ops.http", func() { s.serveHTTP(s.ops, reserve.listener(opsLn)) })
	return nil
}

// newHTTPServer returns an HTTP server for h, HTTPS with a keypair, with
// the API's timeouts. What net/http logs itself (a failed TLS handshake,
// say) goes to log at debug.
func newHTTPServer(h http.Handler, cfg config.API, keypair *certs.Keypair, log *slog.Logger) *http.Server {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: cfg.ReadHeaderTimeout, ReadTimeout: cfg.ReadTimeout,
		IdleTimeout: cfg.IdleTimeout, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	if keypair != nil {
		hs.TLSConfig = keypair.Config()
	}
	return hs
}

// serveHTTP serves hs on ln until Shutdown.
func (s *Server) serveHTTP(hs *http.Server, ln net.Listener) {
	var err error
	if hs.TLSConfig != nil {
		err = hs.ServeTLS(ln, "", "")
	} else {
		err = hs.Serve(ln)
	}
	if !errors.Is(err, http.ErrServerClosed) {
		s.errc <- err
	}
}

// openStore opens the embedded store of a single node, or for a cluster
// member the shared Redis store and its membership of the cluster.
func openStore(cfg *config.Config, self func() nodeinfo.Info, stats func() nodeinfo.Stats, gw func() *gateway.Gateway,
	m *metrics.Metrics, log *slog.Logger) (store.Store, *cluster.Node, error) {
	so := store.Options{MailboxLimit: cfg.Store.MailboxLimit, SweepInterval: cfg.Store.SweepInterval, Metrics: m, Logger: log}
	if !cfg.Cluster.Enabled() {
		st, err := embedded.Open(filepath.Join(cfg.DataDir, "store"), so)
		return st, nil, err
	}
	st, err := redisstore.Open(redisstore.Options{Options: so, URL: cfg.Cluster.Redis,
		ReplicasAck: cfg.Cluster.ReplicasAck, ReplicasAckTimeout: cfg.Cluster.ReplicasAckTimeout, DeviceExpiry: cfg.Cluster.DeviceExpiry})
	if err != nil {
		return nil, nil, err
	}
	node, err := cluster.Open(cluster.Options{Node: cfg.Node, Self: self, Stats: stats, Redis: cfg.Cluster.Redis,
		NATS: cfg.Cluster.NATS, NATSCredentials: cfg.Cluster.NATSCredentials, NATSCA: cfg.Cluster.NATSCA,
		Lease: cfg.Cluster.Lease, DeviceExpiry: cfg.Cluster.DeviceExpiry, Bindings: st, Reports: st, Logger: log,
		Fence:   func(others []nodeinfo.Info) { gw().Fence(redirectTargets(others)) },
		Unfence: func() { gw().Unfence() }})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, node, nil
}

// Reload applies a new configuration's apps (ids, secrets, API keys,
// webhooks) without touching connections. Other keys need a restart: their
// names are returned, and they keep their running values.
func (s *Server) Reload(next *config.Config) (needRestart []string) {
	cur := s.cfg
	for _, k := range []struct {
		key  string
		same bool
	}{
		{"node", cur.Node == next.Node},
		{"data_dir", cur.DataDir == next.DataDir},
		{"gateway", cur.Gateway == next.Gateway},
		{"api", cur.API == next.API},
		{"store", cur.Store == next.Store},
		{"hooks", cur.Hooks == next.Hooks},
		{"cluster", cur.Cluster == next.Cluster},
		{"ops", cur.Ops == next.Ops},
		{"limits", cur.Limits == next.Limits},
		{"tls", cur.TLS == next.TLS},
		{"dispatch", reflect.DeepEqual(cur.Dispatch, next.Dispatch)},
	} {
		if !k.same {
			needRestart = append(needRestart, k.key)
		}
	}
	s.apps.Set(next.Apps)
	return needRestart
}

// drainGrace is how long a drain waits, after its period, for the last
// connections to close.
const drainGrace = 5 * time.Second

// StartDrain starts draining the node, once (later calls do nothing): it
// leaves dispatch, refuses new logins, and moves its devices to the other
// live nodes over gateway.drain_period (see gateway.Drain). Drained is
// closed when it is over; Shutdown follows.
func (s *Server) StartDrain() {
	s.drain.Do(func() {
		s.gw.StopLogins()
		s.goWorker("drain", func() {
			defer close(s.drained)
			ctx, cancel := context.WithTimeout(s.life, s.cfg.Gateway.DrainPeriod+drainGrace)
			defer cancel()
			nodes := s.leaveCluster(ctx)
			s.log.Info("draining", "connections", s.gw.Connections(), "period", s.cfg.Gateway.DrainPeriod, "to_nodes", len(nodes))
			if err := s.gw.Drain(ctx, s.cfg.Gateway.DrainPeriod, nodes); err != nil {
				s.log.Warn("drain: connections left at the end of the period", "connections", s.gw.Connections())
				return
			}
			s.log.Info("drained")
		})
	})
}

// leaveCluster says "draining" in the lease at once, so that the other
// nodes' dispatch stops sending devices here, and returns the endpoints of
// the other serving nodes, one list per node, the least loaded first (none
// on a single node).
func (s *Server) leaveCluster(ctx context.Context) [][]protocol.Endpoint {
	if s.node == nil {
		return nil
	}
	if err := s.node.Renew(); err != nil {
		s.log.Warn("drain: the lease could not say so; other nodes learn it within a lease", "err", err)
	}
	peers, err := s.node.Peers(ctx)
	if err != nil {
		s.log.Warn("drain: devices are sent away without endpoints", "err", err)
	}
	return redirectTargets(peers)
}

// redirectTargets are the endpoints of the serving nodes of peers, one
// list per node, the least loaded first: where devices sent away go.
func redirectTargets(peers []nodeinfo.Info) [][]protocol.Endpoint {
	slices.SortFunc(peers, func(a, b nodeinfo.Info) int { return a.Connections - b.Connections })
	var nodes [][]protocol.Endpoint
	for _, p := range peers {
		if eps := api.Endpoints([]nodeinfo.Info{p}); len(eps) > 0 {
			nodes = append(nodes, eps)
		}
	}
	return nodes
}

// scheduleTick is how often the node looks for scheduled pushes that are
// due: a push fires within it of its time.
const scheduleTick = 500 * time.Millisecond

// fireScheduled makes the scheduled pushes as they fall due, until ctx
// ends (every node of a cluster does; each push is claimed by one).
func (s *Server) fireScheduled(ctx context.Context, a *api.Server) {
	t := time.NewTicker(scheduleTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.FireDue(ctx)
		}
	}
}

// waitWorkers waits for the goroutines of goWorker to end, or for ctx.
func (s *Server) waitWorkers(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the scheduler or a drain did not end: %w", ctx.Err())
	}
}

// goWorker runs fn in a goroutine labelled name (for profiles) that
// Shutdown waits for.
func (s *Server) goWorker(name string, fn func()) {
	s.workers.Add(1)
	golabel.Go(name, func() {
		defer s.workers.Done()
		fn()
	})
}

// Drained is closed when a drain has ended.
func (s *Server) Drained() <-chan struct{} { return s.drained }

// ReloadTLS reads the TLS certificate and key files again, for new
// connections; live ones keep their sessions. Without tls it does nothing.
func (s *Server) ReloadTLS() error {
	if s.keypair == nil {
		return nil
	}
	return s.keypair.Reload()
}

// GatewayAddr is the address devices connect to.
func (s *Server) GatewayAddr() string { return s.gwAddr }

// APIAddr is the address of the HTTP API.
func (s *Server) APIAddr() string { return s.apiAddr }

// OpsAddr is the address of the ops surface: the API's unless ops.listen
// is set.
func (s *Server) OpsAddr() string {
	if s.ops == nil {
		return s.apiAddr
	}
	return s.opsAddr
}

// Config is the configuration the server runs with.
func (s *Server) Config() *config.Config { return s.cfg }

// Err delivers the error that stopped a listener early, if any.
func (s *Server) Err() <-chan error { return s.errc }

// Shutdown stops the API, then closes every device connection with 4009 and
// waits for them, or for ctx, then stops the hooks and closes the store.
// Later calls return the first call's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Do(func() {
		s.endLife()
		httpErr := s.http.Shutdown(ctx)
		if s.ops != nil {
			httpErr = errors.Join(httpErr, s.ops.Shutdown(ctx))
		}
		gwErr := s.gw.Shutdown(ctx)
		workersErr := s.waitWorkers(ctx) // the scheduler, and a drain cut short
		s.upstream.Close()
		s.status.Close()
		var nodeErr error
		if s.node != nil { // after the gateway: closing connections releases their routes
			nodeErr = s.node.Close()
		}
		s.shutdownErr = errors.Join(httpErr, gwErr, workersErr, nodeErr, s.store.Close())
	})
	return s.shutdownErr
}
