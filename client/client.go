// Package client is longlink's Go SDK: it connects a device to a gateway over
// TCP or WebSocket, logs in with the device token, keeps the heartbeat,
// hands every push to a handler, and reconnects with exponential backoff and
// jitter until it is closed or the server says not to come back.
package client

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/protocol"
)

// Push is a message pushed to the device.
type Push struct {
	App  string
	ID   string
	Seq  uint64 // a stored message's place in the device's mailbox; 0 otherwise
	BSeq uint64 // a stored broadcast's place in its app's broadcast log; 0 otherwise
	Data []byte
}

// Welcome is what the server granted at login.
type Welcome struct {
	Device    string
	Apps      []string
	Heartbeat time.Duration
}

// Config configures a Client. Addr or a dispatch URL, and Token, are
// required.
type Config struct {
	// Addr is the gateway: host:port for TCP, ws://host:port/ws for WebSocket.
	Addr string
	// DispatchURL is the API's base URL (http://host:port); when Addr is
	// empty, every (re)connect asks its /v1/dispatch where to go.
	DispatchURL string
	// DispatchURLs are more API base URLs (other nodes', or load
	// balancers'), asked in turn after DispatchURL when one fails: a
	// dispatch URL that is a dead node's keeps no device offline. The one
	// that answered is asked first the next time.
	DispatchURLs []string
	// Transport is TCP, WebSocket or WebSocketJSON. Empty means TCP.
	Transport Transport
	// TLS, if set, encrypts the connection: TCP runs TLS, and dispatch
	// picks the "tls" and "wss" endpoints (a WebSocket Addr must then be a
	// wss:// URL). It also checks the dispatch API's certificate when
	// HTTPClient is nil.
	TLS *tls.Config
	// Token is the device token (a JWT from the app backend).
	Token string
	// Tokens log one connection into several apps (one channel, many apps):
	// one token per app, all naming this device. Used instead of Token.
	Tokens []string
	// Heartbeat is proposed to the server, which clamps it. Zero lets the
	// server choose.
	Heartbeat time.Duration

	// LastSeq is where to resume with Token: the highest stored seq the
	// application has processed, as persisted from OnAck. Zero means from
	// the oldest message kept for the device.
	LastSeq uint64
	// LastSeqs is where to resume in each app, with Tokens (seqs are per
	// app). An app left out starts from its oldest kept message.
	LastSeqs map[string]uint64

	// OnPush receives pushes in order, on one goroutine; a slow handler
	// delays the next push, not the heartbeat. A stored message (Seq > 0,
	// or BSeq > 0 for a stored broadcast) is acked when OnPush returns;
	// one that arrives again (after a reconnect before the ack landed) is
	// not handed over twice. (An online-only message is never sent twice.)
	// Stored broadcasts and the mailbox are two streams, each in order.
	OnPush func(Push)
	// Handlers route pushes by app, for connections logged into several
	// apps; an app without a handler goes to OnPush. Same rules as OnPush.
	Handlers map[string]func(Push)
	// OnAck is called after a stored message was handled and acked, with
	// its app and the app's new last seq; persist it to resume there after
	// a restart. (Stored broadcasts are not reported: the server keeps
	// each device's place in the broadcast log as its acks move it.)
	OnAck func(app string, seq uint64)
	// OnRecall is called, in order with the pushes, when the app recalls a
	// message (DELETE /v1/messages/{id}): withdraw it if it is shown. It
	// may name a message this device never got.
	OnRecall func(app, id string)
	// Shown are stored messages the app showed already, through OS push
	// notifications (their data key longlink_id): when the connection
	// brings them, they are acked and not handed to OnPush. MarkShown adds
	// more once connected.
	Shown []string
	// TokenSource, if set, gives a fresh token for app. The client calls it
	// when four fifths of a token's life have passed, and refreshes the
	// live connection with the new token (the refresh op); and before
	// reconnecting after 4001 (auth failed) or 4011 (token expired), which
	// then do not stop it. Token or Tokens give the first tokens.
	TokenSource func(ctx context.Context, app string) (string, error)
	// OnAppEnded is called when the server ends this device's session in
	// one app of several (replaced by a newer login of the device to that
	// app, or kicked there) and keeps the connection for the others; the
	// client logs into that app no more.
	OnAppEnded func(app string, err error)
	// OnConnect is called after every successful login.
	OnConnect func(Welcome)
	// OnDisconnect is called when a connection ends, with why. The client
	// reconnects unless the error is final (see Client.Err).
	OnDisconnect func(error)

	// Network, if set, says what network the device is on now: "wifi",
	// "cellular" or "unknown" (nil: "unknown"). It labels the client-quality
	// stats the client sends.
	Network func() string
	// StatsInterval is how often the client sends what it measured (ping
	// round trips, connect time and failures) in a stats op. Zero means 3
	// minutes; negative sends none.
	StatsInterval time.Duration

	// MinBackoff and MaxBackoff bound the wait between reconnects, which
	// doubles per failed attempt, with jitter. Zero means 500ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// DialTimeout bounds one connect and login. Zero means 10s.
	DialTimeout time.Duration
	// HTTPClient is used for dispatch. Nil means http.DefaultClient.
	HTTPClient *http.Client
	// Dialer opens the TCP connection to the gateway (under WebSocket too);
	// set its LocalAddr or Control to choose the source address or socket
	// options. Nil means a zero net.Dialer.
	Dialer *net.Dialer
}

// Client is a device's connection to longlink. Safe for concurrent use.
type Client struct {
	cfg    Config
	ctx    context.Context // ends when the client is closed
	cancel context.CancelFunc
	done   chan struct{}

	mu           sync.Mutex
	current      *Conn                          // guarded by mu
	err          error                          // guarded by mu; why the client stopped
	welcome      Welcome                        // guarded by mu
	logins       []appToken                     // guarded by mu: what each login sends; an ended app leaves it
	seqs         map[string]uint64              // guarded by mu: last seq handled and acked, per app
	bseqs        map[string]uint64              // guarded by mu: last bseq handled and acked, per app
	pending      map[string]chan protocol.Frame // guarded by mu: requests waiting for their reply, by ref
	groups       map[[2]string]bool             // guarded by mu: (app, group) joined, rejoined after a reconnect
	movedTo      string                         // guarded by mu: where a redirect said to reconnect, once
	dispatchFrom int                            // guarded by mu: the dispatch URL that answered last
	nextRef      atomic.Uint64

	seenMu  sync.Mutex // guards seen: the reading goroutine's, and MarkShown's
	seen    recentIDs
	quality quality
}

// Dial connects and logs in once, then keeps the connection up in the
// background. It fails if the first login fails.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Transport == "" {
		cfg.Transport = TCP
	}
	setDefault := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	setDefault(&cfg.MinBackoff, 500*time.Millisecond)
	setDefault(&cfg.StatsInterval, 3*time.Minute)
	setDefault(&cfg.MaxBackoff, 30*time.Second)
	setDefault(&cfg.DialTimeout, 10*time.Second)
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
		if cfg.TLS != nil {
			cfg.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg.TLS, Proxy: http.ProxyFromEnvironment}}
		}
	}
	if (cfg.Token == "") == (len(cfg.Tokens) == 0) || (cfg.Addr == "" && cfg.DispatchURL == "" && len(cfg.DispatchURLs) == 0) {
		return nil, errors.New("client: one of Token or Tokens, and one of Addr, DispatchURL or DispatchURLs, are required")
	}
	c := &Client{cfg: cfg, done: make(chan struct{}), seqs: make(map[string]uint64), bseqs: make(map[string]uint64),
		seen:    newRecentIDs(recentIDCount),
		pending: make(map[string]chan protocol.Frame), groups: make(map[[2]string]bool)}
	for _, id := range cfg.Shown {
		c.MarkShown(id)
	}
	tokens := cfg.Tokens
	if cfg.Token != "" {
		tokens = []string{cfg.Token}
	}
	for _, t := range tokens {
		l, err := parseToken(t)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		c.logins = append(c.logins, l)
		c.seqs[l.app] = cfg.LastSeqs[l.app]
	}
	if cfg.Token != "" {
		c.seqs[c.logins[0].app] = cfg.LastSeq
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	w, welcome, err := c.connect(ctx)
	if err != nil {
		c.cancel()
		return nil, err
	}
	c.current, c.welcome = w, welcome
	go c.run(w, welcome)
	return c, nil
}

// Close ends the connection and stops reconnecting.
func (c *Client) Close() error {
	c.cancel()
	c.mu.Lock()
	if c.current != nil {
		c.current.nc.Close()
	}
	c.mu.Unlock()
	<-c.done
	return nil
}

// Done is closed when the client has stopped: after Close, or after a final
// error from the server.
func (c *Client) Done() <-chan struct{} { return c.done }

// appToken is one app the client logs into, and its token: when it was
// had and when it expires, to refresh it in time.
type appToken struct {
	app, device, token string
	got, exp           time.Time
}

// refreshAt is when the token should be replaced: at four fifths of its
// life.
func (l appToken) refreshAt() time.Time { return l.got.Add(l.exp.Sub(l.got) * 4 / 5) }

// Err returns the final error that stopped the client: a *protocol.Error
// with code 4001 (auth failed), 4003 (replaced by a newer connection of the
// same device) or 4008 (kicked). Nil while running and after Close.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Welcome returns what the server granted at the latest login.
func (c *Client) Welcome() Welcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome
}

// isFinal reports whether reconnecting after err is pointless.
func (c *Client) isFinal(err error) bool {
	switch codeOf(err) {
	case protocol.CodeAuthFailed:
		return c.cfg.TokenSource == nil // else: reconnect with a fresh token
	case protocol.CodeReplaced, protocol.CodeKicked:
		return true
	}
	return false
}

func codeOf(err error) protocol.Code {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return 0
}

func (c *Client) run(w *Conn, welcome Welcome) {
	defer close(c.done)
	for {
		err := c.serve(w, welcome)
		w.nc.Close()
		if c.ctx.Err() != nil {
			return
		}
		if c.cfg.OnDisconnect != nil {
			c.cfg.OnDisconnect(err)
		}
		for attempt := 0; ; attempt++ {
			if c.isFinal(err) {
				c.mu.Lock()
				c.err = err
				c.mu.Unlock()
				return
			}
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(c.backoff(attempt)):
			}
			if code := codeOf(err); code == protocol.CodeAuthFailed || code == protocol.CodeTokenExpired {
				c.freshTokens(c.ctx)
			}
			if w, welcome, err = c.connect(c.ctx); err == nil {
				break
			}
		}
	}
}

// backoff is the wait before reconnect attempt n: doubling from MinBackoff up
// to MaxBackoff, then a random point in its upper half, so that many devices
// cut off at once do not come back at once.
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.MaxBackoff
	if n < 30 {
		d = min(c.cfg.MinBackoff<<n, c.cfg.MaxBackoff)
	}
	return d/2 + rand.N(d/2+1)
}

// connect dials, logs in and waits for the welcome, and keeps how long it
// took, or that it failed, for the next stats.
func (c *Client) connect(ctx context.Context) (*Conn, Welcome, error) {
	start := time.Now()
	w, welcome, err := c.dialLogin(ctx)
	c.quality.connected(time.Since(start), err == nil)
	if err == nil {
		c.mu.Lock()
		c.movedTo = "" // the redirect is followed
		c.mu.Unlock()
	}
	return w, welcome, err
}

// dialLogin dials, logs in and waits for the welcome.
func (c *Client) dialLogin(ctx context.Context) (*Conn, Welcome, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	c.mu.Lock()
	addr := cmp.Or(c.movedTo, c.cfg.Addr)
	c.mu.Unlock()
	if addr == "" {
		var err error
		if addr, err = c.dispatch(ctx); err != nil {
			return nil, Welcome{}, err
		}
	}
	w, err := DialConn(ctx, c.cfg.Transport, addr, c.cfg.Dialer, c.cfg.TLS)
	if err != nil {
		return nil, Welcome{}, err
	}
	deadline, _ := ctx.Deadline()
	w.nc.SetDeadline(deadline)
	login := &protocol.Frame{Op: protocol.OpLogin, Heartbeat: uint32(c.cfg.Heartbeat / time.Second)}
	c.mu.Lock()
	for _, l := range c.logins { // last_bseqs too: stored broadcasts come by bseq
		login.Tokens = append(login.Tokens, []byte(l.token))
		login.LastSeqs = append(login.LastSeqs, c.seqs[l.app])
		login.LastBSeqs = append(login.LastBSeqs, c.bseqs[l.app])
	}
	c.mu.Unlock()
	var f protocol.Frame
	err = w.WriteFrame(login, c.cfg.DialTimeout)
	if err == nil {
		err = w.ReadFrame(&f)
	}
	if err == nil {
		switch f.Op {
		case protocol.OpWelcome:
		case protocol.OpError:
			err = &protocol.Error{Code: f.Code, Reason: string(f.Reason)}
		default:
			err = fmt.Errorf("login: got %s before welcome", f.Op)
		}
	}
	if err != nil {
		w.nc.Close()
		return nil, Welcome{}, err
	}
	w.nc.SetDeadline(time.Time{})
	welcome := Welcome{Device: string(f.Device), Heartbeat: time.Duration(f.Heartbeat) * time.Second}
	for _, a := range f.Apps {
		welcome.Apps = append(welcome.Apps, string(a))
	}
	return w, welcome, nil
}

// serve runs one logged-in connection until it ends.
func (c *Client) serve(w *Conn, welcome Welcome) error {
	c.mu.Lock()
	c.current, c.welcome = w, welcome
	c.mu.Unlock()
	if c.ctx.Err() != nil { // Close ran before current was set
		return c.ctx.Err()
	}
	if c.cfg.OnConnect != nil {
		c.cfg.OnConnect(welcome)
	}
	hb := welcome.Heartbeat
	if hb <= 0 {
		hb = 30 * time.Second
	}
	defer c.failPending()
	if err := c.rejoin(w, hb); err != nil {
		return err
	}
	stop := make(chan struct{})
	defer close(stop)
	if c.cfg.TokenSource != nil {
		go c.keepTokens(stop)
	}
	go c.keepAlive(w, hb, stop)
	var serverErr error // the last error frame: why the server closes
	for {
		w.nc.SetReadDeadline(time.Now().Add(3 * hb))
		var f protocol.Frame
		if err := w.ReadFrame(&f); err != nil {
			if serverErr != nil {
				return serverErr
			}
			return err
		}
		switch f.Op {
		case protocol.OpPush:
			if err := c.handlePush(w, Push{App: string(f.App), ID: string(f.ID), Seq: f.Seq, BSeq: f.BSeq, Data: f.Data}, hb); err != nil {
				return err
			}
		case protocol.OpRecall:
			if c.cfg.OnRecall != nil {
				c.cfg.OnRecall(string(f.App), string(f.ID))
			}
		case protocol.OpOK, protocol.OpUpReply:
			c.answer(f)
		case protocol.OpPong:
			c.quality.ponged()
		case protocol.OpRedirect: // the node is draining: the next connect goes there
			c.redirected(f.Endpoints)
		case protocol.OpError:
			if c.answer(f) {
				continue
			}
			err := &protocol.Error{Code: f.Code, Reason: string(f.Reason)}
			if len(f.App) > 0 && c.isFinal(err) { // one app ended, the others go on
				if c.endApp(string(f.App), err) {
					return err
				}
				continue
			}
			serverErr = err
		}
	}
}

// keepAlive pings every hb and sends the stats every StatsInterval, until
// stop; a write that fails closes the connection.
func (c *Client) keepAlive(w *Conn, hb time.Duration, stop <-chan struct{}) {
	ping := time.NewTicker(hb)
	defer ping.Stop()
	var stats <-chan time.Time
	if c.cfg.StatsInterval > 0 {
		t := time.NewTicker(c.cfg.StatsInterval)
		defer t.Stop()
		stats = t.C
	}
	for {
		var f *protocol.Frame
		select {
		case <-stop:
			return
		case <-ping.C:
			c.quality.pinged()
			f = &protocol.Frame{Op: protocol.OpPing}
		case <-stats:
			network := "unknown"
			if c.cfg.Network != nil {
				network = c.cfg.Network()
			}
			if f = c.quality.take(network, c.transport()); f == nil {
				continue
			}
		}
		if w.WriteFrame(f, hb) != nil {
			w.nc.Close()
			return
		}
	}
}

// transport names the transport for stats: tcp, ws, ws-json, with TLS
// tls, wss, wss-json.
func (c *Client) transport() string {
	if c.cfg.TLS == nil {
		return string(c.cfg.Transport)
	}
	if c.cfg.Transport == TCP {
		return "tls"
	}
	return "wss" + strings.TrimPrefix(string(c.cfg.Transport), "ws")
}

// endApp stops logging into app after the server ended the device's
// session there, and reports whether no app is left.
func (c *Client) endApp(app string, err error) (none bool) {
	c.mu.Lock()
	c.logins = slices.DeleteFunc(c.logins, func(l appToken) bool { return l.app == app })
	none = len(c.logins) == 0
	c.mu.Unlock()
	if c.cfg.OnAppEnded != nil {
		c.cfg.OnAppEnded(app, err)
	}
	return none
}

// LastSeq returns the highest stored seq of app handled and acked.
func (c *Client) LastSeq(app string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seqs[app]
}

// MarkShown records that the stored message id was shown already, through
// an OS push notification (its data key longlink_id): when the connection
// brings it, it is acked and not handed to OnPush.
func (c *Client) MarkShown(id string) { c.markSeen(id) }

// markSeen records id, and reports whether it was seen before.
func (c *Client) markSeen(id string) bool {
	c.seenMu.Lock()
	defer c.seenMu.Unlock()
	return c.seen.add(id)
}

// handlePush hands p to OnPush unless it was handled already (a stored
// message replayed after a lost ack: same id), then acks it if it is
// stored. Seqs are not compared: the server's seqs are the truth, even
// below what the client had (a server restored from an older copy).
func (c *Client) handlePush(w *Conn, p Push, timeout time.Duration) error {
	handler := c.cfg.OnPush
	if h, ok := c.cfg.Handlers[p.App]; ok {
		handler = h
	}
	stored := p.Seq > 0 || p.BSeq > 0
	// Only stored messages can come twice (replayed after a lost ack, or
	// shown from an OS push notification).
	if (!stored || !c.markSeen(p.ID)) && handler != nil {
		handler(p)
	}
	if !stored {
		return nil
	}
	c.mu.Lock()
	if p.Seq > 0 {
		c.seqs[p.App] = p.Seq
	} else {
		c.bseqs[p.App] = p.BSeq
	}
	c.mu.Unlock()
	if err := w.WriteFrame(&protocol.Frame{Op: protocol.OpAck, App: []byte(p.App), Seq: p.Seq, BSeq: p.BSeq}, timeout); err != nil {
		return err
	}
	if c.cfg.OnAck != nil && p.Seq > 0 {
		c.cfg.OnAck(p.App, p.Seq)
	}
	return nil
}

// dispatch asks the API where to connect: each dispatch URL in turn, from
// the one that answered last, until one answers.
func (c *Client) dispatch(ctx context.Context) (string, error) {
	urls := c.cfg.DispatchURLs
	if c.cfg.DispatchURL != "" {
		urls = append([]string{c.cfg.DispatchURL}, urls...)
	}
	c.mu.Lock()
	app, device, first := c.logins[0].app, c.logins[0].device, c.dispatchFrom
	c.mu.Unlock()
	var errs []error
	for i := range urls {
		at := (first + i) % len(urls)
		addr, err := c.dispatchAt(ctx, urls[at], app, device)
		if err == nil {
			c.mu.Lock()
			c.dispatchFrom = at
			c.mu.Unlock()
			return addr, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return "", errors.Join(errs...)
}

// dispatchAt asks the API at base where device of app should connect.
func (c *Client) dispatchAt(ctx context.Context, base, app, device string) (string, error) {
	u := strings.TrimRight(base, "/") + "/v1/dispatch?" +
		url.Values{"app": {app}, "device": {device}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("dispatch: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Endpoints []protocol.Endpoint `json:"endpoints"`
		Error     string              `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", fmt.Errorf("dispatch: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("dispatch: %s: %s", resp.Status, body.Error)
	}
	if addr := c.pick(body.Endpoints); addr != "" {
		return addr, nil
	}
	return "", fmt.Errorf("dispatch: no %s endpoint offered", c.endpointKind())
}

// redirected keeps the first of endpoints (from a redirect) that suits this
// client: the next connects go there until one succeeds (the node that
// sent it is going away); with none, they go where Addr or dispatch say.
func (c *Client) redirected(endpoints []protocol.Endpoint) {
	c.mu.Lock()
	c.movedTo = c.pick(endpoints)
	c.mu.Unlock()
}

// pick returns the address or URL of the first of endpoints of this
// client's kind (endpointKind), or "".
func (c *Client) pick(endpoints []protocol.Endpoint) string {
	for _, e := range endpoints {
		if e.Transport == c.endpointKind() {
			return cmp.Or(e.Address, e.URL)
		}
	}
	return ""
}

// endpointKind names the endpoints this client takes: its transport, JSON
// or not (tcp, ws, tls, wss).
func (c *Client) endpointKind() string { return strings.TrimSuffix(c.transport(), "-json") }

// parseToken reads app, device and expiry from a token without verifying
// it (the server verifies): dispatch and refreshing need them.
func parseToken(token string) (appToken, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return appToken{}, errors.New("token is not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return appToken{}, fmt.Errorf("token payload: %w", err)
	}
	var claims struct {
		App string `json:"app"`
		Sub string `json:"sub"`
		Exp int64  `json:"exp"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil {
		return appToken{}, fmt.Errorf("token payload: %w", err)
	}
	return appToken{app: claims.App, device: claims.Sub, token: token, got: time.Now(), exp: time.Unix(claims.Exp, 0)}, nil
}

// freshTokens replaces every login's token with one from TokenSource;
// a token it cannot get is kept (the login will say why).
func (c *Client) freshTokens(ctx context.Context) {
	c.mu.Lock()
	logins := slices.Clone(c.logins)
	c.mu.Unlock()
	for _, l := range logins {
		if next, err := c.newToken(ctx, l.app); err == nil {
			c.setToken(next)
		}
	}
}

// newToken asks TokenSource for a token of app.
func (c *Client) newToken(ctx context.Context, app string) (appToken, error) {
	t, err := c.cfg.TokenSource(ctx, app)
	if err != nil {
		return appToken{}, err
	}
	return parseToken(t)
}

// setToken makes l the token of its app's login.
func (c *Client) setToken(l appToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.logins {
		if c.logins[i].app == l.app {
			c.logins[i] = l
		}
	}
}

// keepTokens refreshes the connection's tokens in time, until stop.
func (c *Client) keepTokens(stop <-chan struct{}) {
	for {
		c.mu.Lock()
		if len(c.logins) == 0 {
			c.mu.Unlock()
			return
		}
		next := c.logins[0]
		for _, l := range c.logins[1:] {
			if l.refreshAt().Before(next.refreshAt()) {
				next = l
			}
		}
		c.mu.Unlock()
		select {
		case <-stop:
			return
		case <-time.After(time.Until(next.refreshAt())):
		}
		ctx, cancel := context.WithTimeout(c.ctx, requestTimeout)
		l, err := c.newToken(ctx, next.app)
		if err == nil {
			_, err = c.request(ctx, &protocol.Frame{Op: protocol.OpRefresh, Token: []byte(l.token)})
		}
		cancel()
		if err != nil {
			select { // try again soon; the token is not expired yet
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			continue
		}
		c.setToken(l)
	}
}
