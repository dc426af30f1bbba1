// Package gateway holds device connections on one port: it tells the native
// binary protocol from WebSocket by the first bytes, logs devices in, enforces
// heartbeats, keeps a bounded send queue per connection, and hands pushed
// messages to the connections of devices, users and whole apps.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/golabel"
	"github.com/longlink/longlink/internal/hooks"
	"github.com/longlink/longlink/internal/logbound"
	"github.com/longlink/longlink/internal/metrics"
	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/internal/tlssession"
	"github.com/longlink/longlink/protocol"
)

// Mailboxes is the durable state the gateway uses: mailboxes and broadcast
// logs (replay, acks), user bindings and tags (learned from tokens), OS
// push tokens (registered by devices). Every store.Store is one.
type Mailboxes interface {
	store.Mailboxes
	store.BroadcastLog
	store.Bindings
	store.Tags
	store.VendorTokens
}

// Router records which node holds each (app, device), for a cluster; a
// single node has none. *cluster.Node is one.
type Router interface {
	// Claim records that this node holds device's session in app now, and
	// that device belongs to user ("" for none), and returns the session's
	// number (greater than that of every earlier session of the (app,
	// device) in the cluster) and, read with the route, the device's place
	// in the store: its last seq, its cursor in the app's broadcast log and
	// up to limit messages of its mailbox after after (or after its last
	// seq, if that is lower). An error means it could not (the login is
	// refused).
	Claim(ctx context.Context, app, device, user string, after uint64, limit int) (Claimed, error)
	// Release forgets the route of the session numbered session, unless a
	// newer one claimed it since, and saves cursor, the session's cursor in
	// app's broadcast log as it ended (never moving the saved one back).
	Release(ctx context.Context, app, device string, session, cursor uint64)
	// BroadcastAcked counts, in their delivery reports, an ack of each
	// entry of app's broadcast log in (from, to]: a session's cursor moved
	// so (in this node's memory; Release saves it). It does not wait.
	BroadcastAcked(app string, from, to uint64)
	// Acked deletes the messages sent from device's mailbox in app, which
	// its session here was sent and acked, by their seqs, without reading
	// the mailbox, and with sweep > 0 every other message up to sweep (one
	// that expired unsent); an ack is counted in the delivery report of
	// each of sent that was still there. It does not wait.
	Acked(app, device string, sent []store.Sent, sweep uint64)
	// BroadcastHead returns the last bseq of app's broadcast log as this
	// node knows it (kept in memory: a login whose cursor is there reads
	// nothing of the log).
	BroadcastHead(ctx context.Context, app string) (uint64, error)
	// Joined records that this node holds members of app's group (its
	// first joined), so that pushes to the group come to it. An error
	// means it could not (the join is refused).
	Joined(ctx context.Context, app, group string) error
}

// Claimed is what a Router's claim of a session's route returns.
type Claimed struct {
	Number  uint64         // the session's number
	LastSeq uint64         // the last seq the store gave the device in the app
	Cursor  uint64         // the device's cursor in the app's broadcast log
	Waiting []store.Stored // the first unexpired messages of its mailbox after the claim's after
	More    bool           // the mailbox may hold more after them
}

// Upstream forwards up frames to app backends; *hooks.Upstream is one.
type Upstream interface {
	HasBiz(app, biz string) bool
	Forward(hooks.UpCall) bool
}

// Events is told when devices come online and go offline, per app;
// *hooks.Status is one.
type Events interface {
	Online(app, device, user string, session uint64)
	Offline(app, device, user, reason string, session uint64)
}

// Options configure a Gateway.
type Options struct {
	Config    config.Gateway  // must have been validated (defaults filled in)
	Limits    config.Limits   // likewise; the send queues' byte bounds
	Secrets   auth.SecretFunc // token secrets per app
	Mailboxes Mailboxes       // required
	Upstream  Upstream        // required
	Events    Events          // required
	Node      string          // this node's name
	Router    Router          // nil on a single node
	// TLS, if set, is served to connections whose first byte starts a TLS
	// handshake; with TLSRequired, plaintext ones are refused.
	TLS         *tls.Config
	TLSRequired bool
	// NoEpoll keeps a reader goroutine on each connection instead of
	// waiting for idle ones in epoll (what systems without epoll get).
	// Tests set it to run a gateway in a testing/synctest bubble, where a
	// goroutine in epoll_wait would keep time from moving.
	NoEpoll bool
	// CryptoTLSRecords leaves every TLS session's records to crypto/tls
	// (tls.record_layer: crypto/tls); false: the gateway seals a TLS 1.3
	// session's records itself once its handshake is done.
	CryptoTLSRecords bool
	// UpRate and UpBurst limit each connection's up frames (per second, at once).
	UpRate  float64
	UpBurst int
	Metrics *metrics.Metrics // required
	Logger  *slog.Logger     // nil means slog.Default()
}

// Gateway serves device connections. Safe for concurrent use.
type Gateway struct {
	// Static after construction.
	cfg         config.Gateway
	limits      config.Limits
	secrets     auth.SecretFunc
	mailboxes   Mailboxes
	upstream    Upstream
	events      Events
	node        string
	router      Router
	tlsConfig   *tls.Config // nil without TLS
	tlsRequired bool
	ownRecords  bool // the gateway seals TLS 1.3 records itself (takeOver)
	upRate      float64
	upBurst     int
	metrics     *metrics.Metrics
	log         *slog.Logger
	warn        *logbound.Logger // the warnings that repeat, per login or connection, while the store is away
	hub         *hub
	groups      *groups
	writers     *writerPool
	expiries    *expiries
	ipLimits    *ipLimits
	logins      *rate.Limiter  // nil without limits.logins_per_second
	poller      *poller        // nil where epoll is not available
	numbers     sessionNumbers // a single node's session numbers (a cluster's come from its Router)

	// life is the gateway's lifetime: Shutdown cancels it, and with it
	// every store and router call of its connections (storeCall).
	life    context.Context
	endLife context.CancelFunc
	calls   atomic.Pointer[callContext] // storeCall's, of the current second
	stopped sync.Once                   // Shutdown stops the timers, writers and poller once

	nextID       atomic.Uint64
	closing      atomic.Bool
	draining     atomic.Bool                // Drain was called: logins are refused with 4013
	fenced       atomic.Bool                // Fence was called, and not Unfence: logins are refused with 4013
	redirects    atomic.Pointer[[]*Message] // set by Drain: the redirect frames, one per rotation of the nodes
	redirectTurn atomic.Uint64              // which rotation the next connection sent away gets
	queued       atomic.Int64               // bytes waiting to be written, over all connections
	refusing     atomic.Int32               // connections refused by a per-IP limit, being told why (maxRefusing)
	live         atomic.Int64               // logged-in connections
	// Shutdown waits until both are zero. (Not a WaitGroup: an idle
	// connection holds no goroutine, so the count of goroutines may rise
	// from zero while Shutdown waits.)
	running atomic.Int64 // goroutines started with track
	sockets atomic.Int64 // accepted sockets not yet closed

	// loggingIn are the logins between their first read of the store and
	// their registration.
	loggingIn loginsInFlight
	// releasing are the ended sessions whose release runs (cursors.go).
	releasing releasing

	// mu guards the fields below.
	mu      sync.Mutex
	ln      net.Listener
	pending map[*conn]struct{} // accepted, not yet logged in
	// endFence stops the moves of a Fence (Unfence).
	endFence context.CancelFunc

	shedding atomic.Bool // shed runs
	// blockedMu guards blockedConns; a conn's mu may be taken under it.
	blockedMu    sync.Mutex
	blockedConns map[*conn]struct{} // connections whose writes wait for their sockets
}

// New returns a Gateway; call Serve to accept connections.
func New(o Options) *Gateway {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	g := &Gateway{cfg: o.Config, limits: o.Limits, secrets: o.Secrets, mailboxes: o.Mailboxes, upstream: o.Upstream,
		events: o.Events, node: o.Node, router: o.Router, tlsRequired: o.TLSRequired, ownRecords: !o.CryptoTLSRecords, upRate: o.UpRate, upBurst: o.UpBurst, metrics: o.Metrics, log: log,
		hub: newHub(), groups: newGroups(), writers: newWriterPool(), expiries: newExpiries(), pending: make(map[*conn]struct{}),
		blockedConns: make(map[*conn]struct{})}
	g.life, g.endLife = context.WithCancel(context.Background())
	if r := o.Router; r != nil { // a group's first member here: pushes to it must come here
		g.groups.announce = func(k groupKey) error { return r.Joined(g.storeCall(), k.app, k.name) }
	}
	g.warn = logbound.New(log, logbound.Interval)
	g.tlsConfig = tlssession.ServerConfig(o.TLS, g.ownRecords)
	g.ipLimits = newIPLimits(o.Limits)
	if r := o.Limits.LoginsPerSecond; r > 0 {
		g.logins = rate.NewLimiter(rate.Limit(r), max(int(r), 1))
	}
	if !o.NoEpoll {
		g.poller = newPoller(g)
	}
	g.metrics.GaugeFunc("longlink_send_queue_bytes", "Bytes waiting to be written to device connections (limits.queue_bytes_total bounds them).",
		func() float64 { return float64(g.queued.Load()) })
	return g
}

// Serve accepts connections on ln until Shutdown. It returns nil after Shutdown.
func (g *Gateway) Serve(ln net.Listener) error {
	g.mu.Lock()
	g.ln = ln
	g.mu.Unlock()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if g.closing.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				g.log.Warn("accept", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := &conn{gw: g, nc: nc, id: g.nextID.Add(1)}
		refusal, ok := c.admit()
		if !ok {
			nc.Close()
			continue
		}
		g.sockets.Add(1)
		c.raw, c.fd = rawOf(nc)
		g.mu.Lock()
		g.pending[c] = struct{}{}
		g.mu.Unlock()
		g.track(func() { c.serve(refusal) })
	}
}

// connLabel labels the goroutines of connections, for profiles.
var connLabel = golabel.New("gateway.conn")

// track runs fn in a goroutine that Shutdown waits for.
func (g *Gateway) track(fn func()) {
	g.running.Add(1)
	go func() {
		defer g.running.Add(-1)
		connLabel.Set()
		fn()
	}()
}

func (g *Gateway) forgetPending(c *conn) {
	g.mu.Lock()
	delete(g.pending, c)
	g.mu.Unlock()
}

// storeTimeout bounds each store or router call a connection makes (a
// login's seq check and route, a round of replay): past it the call
// fails, and the connection is told to reconnect (4009).
const storeTimeout = 10 * time.Second

// callContext is the context of the store calls begun in one second.
type callContext struct {
	ctx    context.Context
	cancel context.CancelFunc // Shutdown's; the context ends by itself
	second int64
}

// storeCall is the context of one store or router call of a connection:
// it ends with the gateway's lifetime, or storeTimeout (give or take a
// second) after the call began. The calls begun in the same second share
// one, so that a call costs no timer of its own: a timer per login, stopped
// but kept in the runtime's timer heap beside the heartbeats of idle
// connections until the heap is cleaned, held 75 bytes per connection.
func (g *Gateway) storeCall() context.Context {
	now := time.Now().Unix()
	if c := g.calls.Load(); c != nil && c.second == now {
		return c.ctx
	}
	ctx, cancel := context.WithTimeout(g.life, storeTimeout)
	g.calls.Store(&callContext{ctx: ctx, cancel: cancel, second: now})
	return ctx
}

// cleanupCall is the context of a call that undoes a connection's state
// (its route's release): storeTimeout alone, so that it still runs while
// Shutdown closes the connections.
func cleanupCall() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), storeTimeout)
}

// Shutdown stops accepting, closes every connection with 4009 (server going
// away, reconnect) and waits until every socket is closed and every
// goroutine it started has ended, or for ctx. The store calls of
// connections under way are cancelled at once (routes are still released).
// Calling it again waits again.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.closing.Store(true)
	g.endLife()
	if c := g.calls.Load(); c != nil {
		c.cancel()
	}
	g.mu.Lock()
	if g.ln != nil {
		g.ln.Close()
	}
	for c := range g.pending {
		c.nc.Close()
	}
	g.mu.Unlock()
	g.hub.eachConn(func(_ string, c *conn) { c.close(errGoingAway) })

	defer g.stopped.Do(func() {
		g.expiries.stop()
		g.writers.stop()
		if g.poller != nil {
			g.poller.close()
		}
	})
	for g.running.Load() > 0 || g.sockets.Load() > 0 {
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// grantHeartbeat clamps a client's proposed heartbeat (seconds; 0 = none).
func (g *Gateway) grantHeartbeat(proposed uint32) time.Duration {
	if proposed == 0 {
		return g.cfg.Heartbeat
	}
	d := time.Duration(proposed) * time.Second
	return min(max(d, g.cfg.HeartbeatMin), g.cfg.HeartbeatMax)
}

// fanout hands one online message to connections and counts those that
// took it.
type fanout struct {
	m *Message
	n int
}

func (f *fanout) send(c *conn) {
	if c.send(f.m.bytes(c.kind)) {
		f.n++
	}
}

// done counts the deliveries for app (of a push; a recall is none) and
// returns how many there were.
func (f *fanout) done(g *Gateway, app string) int {
	if f.m.frame.Op == protocol.OpPush {
		g.delivered(app, f.n)
	}
	return f.n
}

// PushDevices hands m to the connections of those devices that are logged
// into app, and returns how many took it. devices must not repeat.
func (g *Gateway) PushDevices(app string, devices []string, m *Message) int {
	f := &fanout{m: m}
	for _, d := range devices {
		if c := g.hub.lookup(app, d); c != nil {
			f.send(c)
		}
	}
	return f.done(g, app)
}

// PushUsers hands m to every connection of those users in app, and returns
// how many took it. users must not repeat.
func (g *Gateway) PushUsers(app string, users []string, m *Message) int {
	f := &fanout{m: m}
	for _, u := range users {
		g.hub.eachUserConn(app, u, f.send)
	}
	return f.done(g, app)
}

// Broadcast hands m to every connection of app, and returns how many took it.
func (g *Gateway) Broadcast(app string, m *Message) int {
	f := &fanout{m: m}
	g.hub.eachAppConn(app, f.send)
	return f.done(g, app)
}

// storedReach counts a stored message's connections: those that take it,
// and those it was queued to at once (the others get it from their sync
// loop, which counts its deliveries itself).
type storedReach struct{ took, queued int }

func (r *storedReach) add(took, now bool) {
	if took {
		r.took++
	}
	if now {
		r.queued++
	}
}

// done counts the deliveries for app and returns how many connections
// take it.
func (r *storedReach) done(g *Gateway, app string) int {
	g.delivered(app, r.queued)
	return r.took
}

// PushStored hands the stored message f to the connections of devices,
// each with its own seq (seqs[i] for devices[i]), and returns how many
// devices are online to receive it now.
func (g *Gateway) PushStored(app string, devices []string, seqs []uint64, f protocol.Frame) int {
	var r storedReach
	// Room for the frame as most codecs write it (data a third larger in
	// base64); a frame that needs more grows its buffer. It is encoded once
	// per device, with the device's seq.
	size := 96 + len(f.App) + len(f.ID) + len(f.Data)*4/3
	id := "" // for the sessions' lists of what they were sent, in a cluster (unacked.go)
	if g.router != nil {
		id = string(f.ID)
	}
	for i, d := range devices {
		// A login of d in flight may have read the store before this
		// message; the connection found (if any) is the one it replaces,
		// which may never write what it takes.
		g.loggingIn.missedDevice(app, d)
		c := g.hub.lookup(app, d)
		if c == nil {
			continue
		}
		f.Seq = seqs[i]
		r.add(c.sendNext(app, id, f.Seq, false, c.kind.encode(make([]byte, 0, size), &f)))
	}
	return r.done(g, app)
}

// BroadcastStored hands the stored broadcast m (its frame carries its
// bseq) to every connection of app, and returns how many will receive it:
// at once, in the bytes shared by all, where it is the next of the
// connection's broadcast log; otherwise from the log (or, for a client that
// takes broadcasts by seq, copied into its mailbox) by its sync loop.
func (g *Gateway) BroadcastStored(app string, m *Message) int {
	var r storedReach
	bseq := m.frame.BSeq
	g.hub.eachAppConn(app, func(c *conn) { r.add(c.sendNext(app, "", bseq, true, m.bytes(c.kind))) })
	g.loggingIn.missedApp(app)
	return r.done(g, app)
}

// BroadcastLogGrew has every connection of app read the app's broadcast
// log after what it was sent: it grew by entries this node was not handed
// (the cluster's bus lost them).
func (g *Gateway) BroadcastLogGrew(app string) {
	g.hub.eachAppConn(app, func(c *conn) {
		c.mu.Lock()
		if s, ok := c.session(app); ok && c.state == stateLive {
			c.catchUpLocked(s)
		}
		c.mu.Unlock()
	})
	g.loggingIn.missedApp(app)
}

func (g *Gateway) delivered(app string, n int) {
	if n > 0 {
		g.metrics.Delivered.WithLabelValues(app).Add(float64(n))
	}
}

// PushGroup hands m to every connection in app's group, and returns how many
// took it, and whether the group has members here. The frame is encoded
// once per wire kind for all of them.
func (g *Gateway) PushGroup(app, group string, m *Message) (n int, members bool) {
	f := &fanout{m: m}
	members = g.groups.each(groupKey{app: app, name: group}, f.send)
	return f.done(g, app), members
}

// Join adds the connections of devices (logged into app) to group, and
// returns how many devices were online and joined (one at
// gateway.max_groups joins no more).
func (g *Gateway) Join(app, group string, devices []string) int {
	k := groupKey{app: app, name: group}
	return g.eachOnline(app, devices, func(c *conn) bool { return g.groups.join(c, k, g.cfg.MaxGroups) == nil })
}

// Leave removes the connections of devices (logged into app) from group,
// and returns how many devices were online.
func (g *Gateway) Leave(app, group string, devices []string) int {
	k := groupKey{app: app, name: group}
	return g.eachOnline(app, devices, func(c *conn) bool { g.groups.leave(c, k); return true })
}

// eachOnline calls do with the connection of each of devices logged into
// app, and counts those for which it returns true.
func (g *Gateway) eachOnline(app string, devices []string, do func(*conn) bool) int {
	n := 0
	for _, d := range devices {
		if c := g.hub.lookup(app, d); c != nil && do(c) {
			n++
		}
	}
	return n
}

// Kick ends the sessions of devices in app with 4008 (a connection that
// serves other apps too keeps them), and returns how many there were.
func (g *Gateway) Kick(app string, devices []string) int {
	return g.drop(app, devices, errKicked)
}

// Replace ends the sessions of devices in app with 4003: they logged into
// app on another node of the cluster, as sessions numbered newer[i]. A
// session here as new or newer (this node's login won the race) is kept;
// newer nil (or a 0) ends it whatever its number. It returns how many it
// ended, and the cursors in app's broadcast log of the older sessions it
// ended or that are ending here, by device (cursors.go).
func (g *Gateway) Replace(app string, devices []string, newer []uint64) (n int, cursors map[string]uint64) {
	cursors = make(map[string]uint64)
	for i, d := range devices {
		number := uint64(0)
		if i < len(newer) {
			number = newer[i]
		}
		if c := g.hub.lookup(app, d); c != nil {
			if s, ok := c.session(app); ok && (number == 0 || s.number < number) {
				cursors[d] = g.end(c, s, errReplaced)
				n++
				continue
			}
		}
		if e, ok := g.releasing.older(loginKey{app, d}, number); ok {
			cursors[d] = e.cursor
		}
	}
	return n, cursors
}

func (g *Gateway) drop(app string, devices []string, why *protocol.Error) int {
	return g.eachOnline(app, devices, func(c *conn) bool {
		s, ok := c.session(app)
		if ok {
			g.end(c, s, why)
		}
		return ok
	})
}

// end ends c's session s with why, and returns its final cursor (in a
// cluster).
func (g *Gateway) end(c *conn, s *session, why *protocol.Error) (cursor uint64) {
	cursor = g.unregister(c, s)
	c.dropSession(s, why)
	return cursor
}

// unregister forgets c's session s here and, if this node held the
// device's route, in the cluster's router, saving the session's cursor
// there if it moved it; it returns that cursor (0 on a single node). Until
// the router's release returns, the session is listed as releasing.
func (g *Gateway) unregister(c *conn, s *session) uint64 {
	if g.router == nil {
		g.hub.unregister(c, s)
		return 0
	}
	cursor, moved := c.finalCursor(s)
	k, e := loginKey{s.app, c.device}, ended{number: s.number, cursor: cursor}
	g.releasing.add(k, e)
	defer g.releasing.remove(k, e)
	if g.hub.unregister(c, s) {
		save := uint64(0)
		if moved {
			save = cursor
		}
		ctx, cancel := cleanupCall()
		defer cancel()
		g.router.Release(ctx, s.app, c.device, s.number, save)
	}
	return cursor
}

// Session is a session registered here: its (app, device) and number.
type Session struct {
	App, Device string
	Number      uint64
}

// Sessions lists the sessions registered here.
func (g *Gateway) Sessions() []Session {
	var out []Session
	g.hub.eachConn(func(app string, c *conn) {
		if s, ok := c.session(app); ok {
			out = append(out, Session{App: app, Device: c.device, Number: s.number})
		}
	})
	return out
}

// Online reports whether device has a live connection logged into app.
func (g *Gateway) Online(app, device string) bool { return g.hub.lookup(app, device) != nil }

// OnlineOf returns which of devices have a live connection logged into
// app.
func (g *Gateway) OnlineOf(app string, devices []string) map[string]bool {
	online := make(map[string]bool)
	for _, d := range devices {
		if g.Online(app, d) {
			online[d] = true
		}
	}
	return online
}

// DeviceInfo is where and how a device is connected, for operators.
type DeviceInfo struct {
	Node      string    `json:"node"`
	Transport string    `json:"transport"` // tcp, ws, ws_json; tls, wss, wss_json
	Since     time.Time `json:"since"`     // when it logged in
	Remote    string    `json:"remote"`    // its address
	User      string    `json:"user,omitempty"`
	Groups    []string  `json:"groups"` // of this app, sorted
	// AckedBSeq is, in a cluster, the session's cursor in the app's
	// broadcast log, kept in its node's memory until the session ends.
	AckedBSeq uint64 `json:"acked_bseq,omitempty"`
}

// Device describes device's connection in app, or returns nil when it has
// none here.
func (g *Gateway) Device(app, device string) *DeviceInfo {
	c := g.hub.lookup(app, device)
	if c == nil {
		return nil
	}
	s, ok := c.session(app)
	if !ok {
		return nil
	}
	info := &DeviceInfo{Node: g.node, Transport: c.transport(), Since: time.Unix(0, c.since).UTC(),
		Remote: c.nc.RemoteAddr().String(), User: s.user, Groups: []string{}}
	c.mu.Lock()
	for k := range c.groups {
		if k.app == app {
			info.Groups = append(info.Groups, k.name)
		}
	}
	info.AckedBSeq = s.cursor
	c.mu.Unlock()
	slices.Sort(info.Groups)
	return info
}

// Sockets returns how many accepted sockets are open, logged in or not.
func (g *Gateway) Sockets() int64 { return g.sockets.Load() }

// Connections returns how many connections are logged in.
func (g *Gateway) Connections() int { return int(g.live.Load()) }
