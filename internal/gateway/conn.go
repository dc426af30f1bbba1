package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/bufpool"
	"github.com/longlink/longlink/internal/mqtt"
	"github.com/longlink/longlink/internal/tlssession"
	"github.com/longlink/longlink/protocol"
)

// state is where a connection is in its life (docs/protocol.md draws it):
//
//	accepted --sniff/upgrade--> stateLogin --login ok--> stateLive
//	stateLogin, stateLive --close(code)--> stateClosing --queue flushed--> stateClosed
//
// Only stateLive connections are registered and receive pushes.
type state uint8

const (
	stateLogin   state = iota // waiting for the login frame, under the login deadline
	stateLive                 // logged in: registered, served, heartbeat enforced
	stateClosing              // a close was decided: the final frames are being flushed
	stateClosed               // the final frames are written; the socket is closed, or lingers (lingerClose)
)

// session is one app a connection is logged into, and the delivery state of
// the device's stored messages in that app (seqs are per (app, device)).
type session struct {
	// Static after login.
	app    string
	user   string
	groups []string // what the device may join itself (auth.Claims.Groups)
	number uint64   // the session's number: it grows with each login of the (app, device) anywhere

	expiry expiry // its place in the gateway's expiries (4011 when its token expires)

	// over is set, under conn.mu, once the session ended: replaced by a
	// newer login of the device to this app, kicked, or the connection
	// closed. It is read without the lock by the reader.
	over atomic.Bool

	// byBSeq: the client takes stored broadcasts by bseq, from the app's
	// broadcast log after its cursor (it sent last_bseqs at login); else
	// they are copied into its mailbox and sent with a seq. Static after
	// login.
	byBSeq bool

	// Guarded by conn.mu.
	sentSeq  uint64 // highest stored seq queued (or acked by the client at login)
	sentBSeq uint64 // highest bseq queued (or acked by the client at login)
	// cursor is, in a cluster, the device's cursor in the app's broadcast
	// log, kept here while the session lives (cursors.go); moved, once
	// an ack (or a replaced session's cursor) moved it past the claim's;
	// final, once the session's end read it.
	cursor  uint64
	catchUp bool // the app's broadcast log grew: the sync loop must read or copy it
	moved   bool
	final   bool
	// unacked lists, in a cluster, the mailbox messages the session was
	// sent and the device has not acked (unacked.go).
	unacked *unacked
	// first is what the claim of the session's route read (in a cluster),
	// for the sync loop's first round to use instead of reading the store;
	// nil once used, or when a stored message may have come after it.
	first *Claimed
}

// conn is one device connection. An idle logged-in conn has no goroutine and
// no buffers: it waits in the poller's epoll set (elsewhere than Linux, a
// reader goroutine blocks in Read); while frames are queued, it waits in the
// writer pool's FIFO (see writerPool).
type conn struct {
	// Static after construction.
	gw  *Gateway
	nc  net.Conn // the socket: frames (or TLS records) are written to it
	id  uint64
	fd  int32           // nc's descriptor, for the poller; -1 if it has none
	raw syscall.RawConn // nc's raw access, for non-blocking writes; nil if it has none

	tls tlssession.Session // set by the handshake: nil on plaintext

	reader    atomic.Int32 // readerBusy, readerIdle (armed in the poller) or readerDone
	ended     atomic.Bool  // end has run
	closed    atomic.Bool  // closeSocket has run
	counted   atomic.Bool  // counted by the per-IP limits
	forgotten bool         // guarded by gw.poller.mu: out of the epoll set for good
	hbTimer   *time.Timer  // closes a connection silent for 3 heartbeats (poller path)

	// Set by the reader before login completes; read-only once registered.
	device    string
	sessions  []session // nil until logged in; never resized after
	heartbeat time.Duration
	kind      wireKind
	since     int64 // unix ns of the login

	// Owned by the reader.
	sniffed uint8 // hdr[:sniffed] holds the first bytes of the first message, read by the sniffer
	// edge: plaintext and served by the poller, the connection is in the
	// epoll set edge-triggered, and its reads go through aheadReader.
	edge       bool
	registered bool        // in the epoll set for good (edge: no re-arming)
	drained    bool        // edge: the last read of the socket found it empty after it
	hangup     atomic.Bool // edge: the poller saw the peer close (or an error): read to the end
	ahead      []byte      // read from the socket past the last message: the next to read
	aheadBuf   *[]byte     // ahead's buffer, from bufpool; nil when ahead is empty
	hdr        [ws.MaxHeaderSize]byte
	upTokens   float64 // token bucket for up frames (allowUp)
	upAt       int64

	// mu guards the fields below.
	mu      sync.Mutex
	queue   [][]byte              // encoded frames waiting for the writer
	pending int                   // bytes queued or being written (limits.queue_bytes)
	reason  string                // why the connection closed, for metrics
	groups  map[groupKey]struct{} // nil until the first join
	state   state
	writing bool // in the writer pool's FIFO, or being written
	blocked bool // its socket took no more: a write waits for it (writeSlow)
	syncing bool // a sync loop runs (see syncMailbox)
	dirty   bool // a stored message or broadcast arrived that the sync loop must read
	missed  bool // one arrived while logging in, before the connection could be found (see loginsInFlight)
}

var errPeerClosed = errors.New("peer closed the connection")

// Why the server closes a connection or ends a session, each said once.
var (
	errGoingAway        = &protocol.Error{Code: protocol.CodeGoingAway, Reason: "server going away"}
	errMoveAway         = &protocol.Error{Code: protocol.CodeGoingAway, Reason: "this node is draining: reconnect elsewhere"}
	errDraining         = &protocol.Error{Code: protocol.CodeDraining, Reason: "this node is draining: reconnect elsewhere"}
	errStoreUnavailable = &protocol.Error{Code: protocol.CodeGoingAway, Reason: "stored messages unavailable; reconnect"}
	errRouteNotRecorded = &protocol.Error{Code: protocol.CodeGoingAway, Reason: "this node cannot record where the device is now; reconnect"}
	errLoginTimeout     = &protocol.Error{Code: protocol.CodeLoginTimeout, Reason: "no login before the deadline"}
	errSilent           = &protocol.Error{Code: protocol.CodeHeartbeatTimeout, Reason: "silent for 3 heartbeats"}
	errWriteTimedOut    = &protocol.Error{Code: protocol.CodeTooSlow, Reason: "too slow to read: write timed out"}
	errQueueFull        = &protocol.Error{Code: protocol.CodeTooSlow, Reason: "too slow to read: send queue full"}
	errServerQueuesFull = &protocol.Error{Code: protocol.CodeTooSlow, Reason: "too slow to read: the server's send queues are full"}
	errReplaced         = &protocol.Error{Code: protocol.CodeReplaced, Reason: "replaced by a newer connection"}
	errKicked           = &protocol.Error{Code: protocol.CodeKicked, Reason: "kicked by the app"}
	errTokenExpired     = &protocol.Error{Code: protocol.CodeTokenExpired, Reason: "token expired"}
)

// closeOf is the code and reason of a close for why: 0 and "closed" when
// the peer went away (why is nil).
func closeOf(why *protocol.Error) (protocol.Code, string) {
	if why == nil {
		return 0, "closed"
	}
	return why.Code, why.Reason
}

// session returns the connection's live session in app, if it has one.
func (c *conn) session(app string) (*session, bool) {
	for i := range c.sessions {
		if s := &c.sessions[i]; s.app == app && !s.over.Load() {
			return s, true
		}
	}
	return nil, false
}

// Reader states, for the poller path: a frame is being read (busy), the
// connection waits in the epoll set (idle), or its reading is over (done);
// again is busy, and the poller saw input meanwhile (edge-triggered: the
// turn reads the socket again before it goes idle).
const (
	readerBusy int32 = iota
	readerIdle
	readerDone
	readerAgain
)

// serve runs a new connection up to its login. The logged-in connection then
// waits for input in the poller, with no goroutine; the stack that the
// handshake and the token check grew is freed with this one. A connection
// refused by a per-IP limit (refusal) is told why once its protocol is
// known, and closed.
func (c *conn) serve(refusal error) {
	g := c.gw
	timeout := g.cfg.LoginTimeout
	if refusal != nil {
		timeout = min(timeout, refusalTimeout)
		defer g.refusing.Add(-1)
	}
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	err := c.handshake()
	var he handshakeError
	if errors.As(err, &he) {
		// The peer never spoke our protocol: there is nobody to tell why.
		c.mu.Lock()
		c.state = stateClosed
		c.mu.Unlock()
		c.closeSocket()
		g.forgetPending(c)
		g.metrics.Rejected.WithLabelValues("handshake").Inc()
		g.log.Debug("handshake failed", "remote", c.nc.RemoteAddr().String(), "err", he.error)
		return
	}
	if err == nil {
		err = refusal
	}
	for err == nil && c.sessions == nil { // WebSocket pings may come before the login
		err = c.readOne()
	}
	if err != nil {
		c.end(err)
		return
	}
	if g.poller == nil || c.fd < 0 {
		c.serveBlocking()
		return
	}
	// From here hbTimer alone enforces the heartbeat, also on a frame that
	// stalls half read (closing the socket ends the read): no read deadline,
	// so no second runtime timer per connection and none to move per frame.
	c.nc.SetReadDeadline(time.Time{})
	c.hbTimer = time.AfterFunc(3*c.heartbeat, c.heartbeatTimeout)
	c.edge = c.tls == nil
	c.idle()
}

// idle serves the frames that wait where the poller cannot see them (read
// ahead, or inside the TLS session), then leaves the connection to the
// poller. A TLS connection is armed one-shot for its next frame. A
// plaintext one is edge-triggered: it is registered once, and goes idle
// only once a read found its socket empty and no input came since (an
// event during the turn makes it read again), so it needs no re-arming.
func (c *conn) idle() {
	served := false
	for {
		for len(c.ahead) > 0 || c.tls != nil && c.tls.Readable() {
			if err := c.readOne(); err != nil {
				c.end(err)
				return
			}
			served = true
		}
		if c.edge && (!c.drained || c.hangup.Load()) { // a short read says no data is left, not that the peer closed
			more, err := c.probe()
			if err != nil {
				c.end(err)
				return
			}
			if more {
				continue
			}
		}
		if served {
			c.hbTimer.Reset(3 * c.heartbeat)
			served = false
		}
		if !c.registered { // one-shot: at every turn; edge-triggered: once
			c.registered = c.edge
			c.reader.Store(readerIdle)
			if !c.gw.poller.arm(c) && c.reader.CompareAndSwap(readerIdle, readerDone) {
				c.end(errPeerClosed) // the socket is closing
			}
			return
		}
		if c.reader.CompareAndSwap(readerBusy, readerIdle) {
			return
		}
		c.reader.Store(readerBusy) // readerAgain: input came during the turn
		c.drained = false
	}
}

// serveReady serves the input the poller saw coming, on one of its readers
// (or a goroutine of its own), then leaves the connection to the poller
// again. An edge-triggered connection's turn starts with a read that does
// not wait: the input may have been read by the turn before.
func (c *conn) serveReady() {
	if c.edge {
		c.drained = false
		c.idle()
		return
	}
	if err := c.readOne(); err != nil {
		c.end(err)
		return
	}
	c.hbTimer.Reset(3 * c.heartbeat)
	c.idle()
}

// heartbeatTimeout closes a connection that sent nothing for 3 heartbeats.
func (c *conn) heartbeatTimeout() {
	c.close(errSilent)
}

// serveBlocking reads a logged-in connection's frames in this goroutine,
// where the poller is not available.
func (c *conn) serveBlocking() {
	for {
		c.nc.SetReadDeadline(time.Now().Add(3 * c.heartbeat))
		if err := c.readOne(); err != nil {
			c.end(err)
			return
		}
	}
}

// readOne reads and serves one message (a WebSocket control frame counts,
// with nothing to serve); an error is fatal to the connection.
func (c *conn) readOne() error {
	buf, err := c.readMessage()
	switch {
	case err == nil:
		err = wires[c.kind].codec.serve(c, *buf)
	case errors.Is(err, errControlFrame):
		err = nil
	}
	bufpool.Put(buf)
	if c.tls != nil && c.tls.Pending() { // the session answered something by itself
		c.mu.Lock()
		if c.state < stateClosing {
			c.startWriterLocked()
		}
		c.mu.Unlock()
	}
	return err
}

// closeSocket closes the socket, out of the poller first; a reader waiting
// in the poller will not see it, so the connection is ended here.
func (c *conn) closeSocket() {
	if !c.closed.CompareAndSwap(false, true) {
		return
	}
	if c.gw.poller != nil && c.fd >= 0 {
		c.gw.poller.forget(c)
	}
	c.nc.Close()
	c.gw.sockets.Add(-1)
	if c.counted.Load() {
		c.gw.ipLimits.release(ipOf(c.nc))
	}
	if c.reader.CompareAndSwap(readerIdle, readerDone) {
		c.gw.track(func() { c.end(errPeerClosed) })
	}
}

// end closes the connection for the reader's final error and forgets it,
// once.
func (c *conn) end(err error) {
	if !c.ended.CompareAndSwap(false, true) {
		return
	}
	g := c.gw
	if c.hbTimer != nil {
		c.hbTimer.Stop()
	}
	why := c.classify(err)
	c.close(why)
	g.forgetPending(c)
	c.mu.Lock()
	label, flushed := c.reason, c.state == stateClosed
	c.mu.Unlock()
	if flushed { // the final frames are out and the peer closed (or read no more): done lingering
		c.closeSocket()
	}
	if c.sessions == nil {
		g.metrics.Rejected.WithLabelValues(label).Inc()
		code, reason := closeOf(why)
		g.log.Info("login refused", "remote", c.nc.RemoteAddr().String(), "code", int(code), "reason", reason)
		return
	}
	for i := range c.sessions {
		s := &c.sessions[i]
		g.expiries.remove(s)
		g.unregister(c, s)
		c.endSession(s, label)
	}
	g.groups.leaveAll(c)
	g.live.Add(-1)
	g.metrics.Disconnects.WithLabelValues(label).Inc()
	g.log.Debug("disconnected", "device", c.device, "reason", label)
}

// classify turns the reader's final error into a close code and reason.
func (c *conn) classify(err error) *protocol.Error {
	var pe *protocol.Error
	var ne net.Error
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.As(err, &ne) && ne.Timeout():
		if c.sessions == nil {
			return errLoginTimeout
		}
		return errSilent
	}
	return nil
}

// handshakeError is a failure before the peer spoke our protocol.
type handshakeError struct{ error }

// handshake tells the protocol from the first bytes: 0x16 starts a TLS
// session, inside which the same tells again; "GET " starts a WebSocket
// upgrade; a 0x00 starts the length prefix of a native frame, and 0x10 an
// MQTT CONNECT. A peer silent
// until the login deadline is taken for a native one, so that it learns why
// it is closed (4002).
func (c *conn) handshake() error {
	if _, err := io.ReadFull(c.input(), c.hdr[:4]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return err
		}
		return handshakeError{err}
	}
	g := c.gw
	switch {
	case c.hdr[0] == tlssession.RecordHandshake && c.tls == nil:
		if g.tlsConfig == nil {
			return handshakeError{errors.New("TLS is not configured")}
		}
		if err := c.startTLS(); err != nil {
			return err
		}
		err := c.handshake()
		c.tls.SealWrites()
		return err
	case c.tls == nil && g.tlsRequired:
		return c.refusePlaintext()
	case string(c.hdr[:4]) == "GET ":
		return c.upgrade()
	case c.hdr[0] == 0:
		c.kind, c.sniffed = wireTCP, 4
	case c.hdr[0] == byte(mqtt.Connect)<<4:
		c.kind, c.sniffed = wireMQTT, 4
	default:
		return handshakeError{errors.New("unknown protocol")}
	}
	return nil
}

// upgrade completes a WebSocket upgrade, at /ws (the subprotocol names the
// wire: longlink.v1, longlink.json when none, or mqtt) or at /mqtt (MQTT).
func (c *conn) upgrade() error {
	var w io.Writer = c.nc
	if c.tls != nil {
		w = c.tls
	}
	rw := struct {
		io.Reader
		io.Writer
	}{&boundedRequest{r: io.MultiReader(bytes.NewReader(c.hdr[:4]), c.input())}, w}
	atMQTT := false
	u := ws.Upgrader{
		OnRequest: func(uri []byte) error {
			switch path, _, _ := bytes.Cut(uri, []byte("?")); string(path) {
			case "/ws":
			case "/mqtt":
				atMQTT = true
			default:
				return ws.RejectConnectionError(ws.RejectionStatus(http.StatusNotFound),
					ws.RejectionReason("the WebSocket endpoints are /ws and /mqtt"))
			}
			return nil
		},
		Protocol: func(p []byte) bool {
			return string(p) == SubprotocolMQTT || !atMQTT && (string(p) == SubprotocolBinary || string(p) == SubprotocolJSON)
		},
	}
	hs, err := u.Upgrade(rw)
	if errors.Is(err, errRequestTooLarge) {
		io.WriteString(w, "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Type: text/plain\r\n"+
			"Content-Length: 50\r\n\r\nrequest headers over 8 KiB a line or 16 KiB in all")
	}
	if err != nil {
		return handshakeError{err}
	}
	switch {
	case atMQTT || hs.Protocol == SubprotocolMQTT:
		c.kind = wireWSMQTT
	case hs.Protocol == SubprotocolBinary:
		c.kind = wireWSBinary
	default:
		c.kind = wireWSJSON
	}
	return nil
}

// Bounds of a WebSocket upgrade request: before login, it is all the
// server holds for the connection.
const (
	maxRequestLine  = 8 << 10
	maxRequestBytes = 16 << 10
)

var errRequestTooLarge = errors.New("upgrade request over its bounds")

// boundedRequest reads an upgrade request, and fails once it has given
// maxRequestBytes in all, or more than maxRequestLine in one line.
type boundedRequest struct {
	r           io.Reader
	total, line int // bytes given, and since the last line's end
}

func (b *boundedRequest) Read(p []byte) (int, error) {
	if b.total >= maxRequestBytes {
		return 0, errRequestTooLarge
	}
	n, err := b.r.Read(p[:min(len(p), maxRequestBytes-b.total)])
	b.total += n
	over := false
	for rest := p[:n]; !over; {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			b.line += len(rest)
			over = b.line > maxRequestLine
			break
		}
		over = b.line+i > maxRequestLine
		b.line, rest = 0, rest[i+1:]
	}
	if over {
		// Not a byte of this read is given: the parser would find a whole
		// request in it and never ask again.
		b.total = maxRequestBytes
		return 0, errRequestTooLarge
	}
	return n, err
}

// refusePlaintext turns away a plaintext connection where tls.required is
// set: a native one with error 4000, an MQTT one with CONNACK "not
// authorized", a WebSocket upgrade with HTTP 426.
func (c *conn) refusePlaintext() error {
	c.nc.SetWriteDeadline(time.Now().Add(closeGrace))
	switch {
	case string(c.hdr[:4]) == "GET ":
		io.WriteString(c.nc, "HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\nContent-Type: text/plain\r\n"+
			"Content-Length: 33\r\n\r\nTLS required: connect with wss://")
		return handshakeError{errors.New("plaintext WebSocket refused: TLS required")}
	case c.hdr[0] == byte(mqtt.Connect)<<4:
		c.nc.Write(mqtt.AppendConnack(nil, false, mqtt.RefusedNotAuthorized))
		return handshakeError{errors.New("plaintext MQTT refused: TLS required")}
	}
	c.kind = wireTCP
	return protocol.Errorf(protocol.CodeBadFrame, "TLS required on this port")
}

// input is where frames are read: the socket, or its TLS session.
func (c *conn) input() io.Reader {
	switch {
	case c.tls != nil:
		return c.tls
	case c.edge:
		return (*aheadReader)(c)
	}
	return c.nc
}

// transport names how the connection came: tcp, ws, ws_json, mqtt or
// ws_mqtt; under TLS tls, wss, wss_json, mqtts or wss_mqtt.
func (c *conn) transport() string {
	if c.tls == nil {
		return wires[c.kind].name
	}
	return wires[c.kind].tlsName
}

// handle serves one frame; an error it returns is fatal to the connection.
func (c *conn) handle(f *protocol.Frame) error {
	if c.sessions == nil {
		if f.Op != protocol.OpLogin {
			return protocol.Errorf(protocol.CodeAuthFailed, "the first frame must be a login, not %s", f.Op)
		}
		return c.handleLogin(f, nil)
	}
	switch f.Op {
	case protocol.OpPing:
		c.reply(&protocol.Frame{Op: protocol.OpPong, Ref: f.Ref})
	case protocol.OpAck:
		c.handleAck(f)
	case protocol.OpLogin:
		c.replyError(f.Ref, protocol.CodeBadFrame, "already logged in")
	case protocol.OpJoin:
		c.handleJoin(f)
	case protocol.OpLeave:
		c.handleLeave(f)
	case protocol.OpRefresh:
		c.handleRefresh(f)
	case protocol.OpUp:
		c.handleUp(f)
	case protocol.OpStats:
		c.handleStats(f)
	case protocol.OpVendorToken:
		c.handleVendorToken(f)
	default:
		return protocol.Errorf(protocol.CodeBadFrame, "op %s is sent by servers, not clients", f.Op)
	}
	return nil
}

// handleLogin verifies the token(s) (and check, if set, approves each token's
// claims), grants a heartbeat, queues the welcome and registers the
// connection, replacing the device's older one.
func (c *conn) handleLogin(f *protocol.Frame, check func(auth.Claims) error) error {
	g := c.gw
	if err := g.admitLogin(); err != nil {
		return err
	}
	tokens, seqs, err := loginTokens(f)
	if err != nil {
		return err
	}
	l, err := verifyLogin(f, tokens, g.secrets, check)
	if err != nil {
		return err
	}
	c.device, c.heartbeat, c.since = l.device, g.grantHeartbeat(f.Heartbeat), time.Now().UnixNano()
	welcome := &protocol.Frame{Op: protocol.OpWelcome, Ref: f.Ref, Device: []byte(l.device),
		Heartbeat: uint32(c.heartbeat / time.Second)}
	g.loggingIn.add(c, l)
	defer g.loggingIn.remove(c, l)
	if err := c.claimRoutes(l, seqs); err != nil {
		return err
	}
	for i := range l.sessions {
		s := &l.sessions[i]
		if s.sentSeq, err = c.clampSeq(s, seqs[i]); err != nil {
			c.releaseRoutes(l.device, l.sessions)
			return err
		}
		l.acks[i].seq = s.sentSeq
		welcome.Apps = append(welcome.Apps, []byte(s.app))
		if g.router == nil { // a cluster's claim bound it
			g.mailboxes.Bind(s.app, l.device, s.user)
		}
	}
	if err := c.goLive(l, welcome); err != nil {
		c.releaseRoutes(l.device, l.sessions)
		return err
	}
	c.register(l)
	return nil
}

// claimRoutes records, in a cluster, that this node holds the login's
// sessions, before the welcome: a welcomed device is routable. Each claim
// reads, with the route, what the session's first sync round needs (the
// device's last seq, its broadcast cursor and its mailbox after seqs[i]:
// session.first). If a route cannot be recorded the login is refused with
// 4009 (reconnect), and the routes recorded are given back.
func (c *conn) claimRoutes(l *login, seqs []uint64) error {
	g := c.gw
	if g.router == nil { // this node alone numbers the sessions
		for i := range l.sessions {
			l.sessions[i].number = g.numbers.next()
		}
		return nil
	}
	ctx := g.storeCall()
	for i := range l.sessions {
		claimed, err := g.router.Claim(ctx, l.sessions[i].app, l.device, l.sessions[i].user, seqs[i], replayChunk)
		if err != nil {
			g.warn.Warn("login refused: route not recorded", "app", l.sessions[i].app, "device", l.device, "err", err)
			c.releaseRoutes(l.device, l.sessions[:i])
			return errRouteNotRecorded
		}
		l.sessions[i].number, l.sessions[i].first, l.sessions[i].cursor = claimed.Number, &claimed, claimed.Cursor
	}
	return nil
}

// releaseRoutes gives back device's routes for sessions, of a login that
// did not go live.
func (c *conn) releaseRoutes(device string, sessions []session) {
	if c.gw.router == nil {
		return
	}
	ctx, cancel := cleanupCall()
	defer cancel()
	for i := range sessions {
		c.gw.router.Release(ctx, sessions[i].app, device, sessions[i].number, 0)
	}
}

// admitLogin refuses a login while the node shuts down or drains, or past
// limits.logins_per_second.
func (g *Gateway) admitLogin() error {
	switch {
	case g.closing.Load():
		return errGoingAway
	case g.draining.Load() || g.fenced.Load():
		return errDraining
	case g.logins != nil && !g.logins.Allow():
		g.metrics.Limited.WithLabelValues("logins_per_second").Inc()
		return protocol.Errorf(protocol.CodeRateLimited, "too many logins on this node now; retry")
	}
	return nil
}

// loginTokens returns the tokens of a login (token, or tokens for several
// apps) and the last_seq of each.
func loginTokens(f *protocol.Frame) (tokens [][]byte, seqs []uint64, err error) {
	tokens = f.Tokens
	switch {
	case len(f.Token) > 0 && len(tokens) > 0:
		return nil, nil, protocol.Errorf(protocol.CodeAuthFailed, "send token or tokens, not both")
	case len(f.Token) > 0:
		tokens = [][]byte{f.Token}
	case len(tokens) == 0:
		return nil, nil, protocol.Errorf(protocol.CodeAuthFailed, "login needs a token")
	}
	if seqs, err = lastSeqs(f, len(tokens)); err != nil {
		return nil, nil, err
	}
	if len(f.LastBSeqs) > 0 && len(f.LastBSeqs) != len(tokens) {
		return nil, nil, protocol.Errorf(protocol.CodeBadFrame, "last_bseqs has %d entries for %d tokens", len(f.LastBSeqs), len(tokens))
	}
	return tokens, seqs, nil
}

// login is a login whose tokens check: one device, one session per app.
type login struct {
	device   string
	sessions []session
	acks     []loginAck // for the sync loop, before it delivers
	expires  []time.Time
}

// verifyLogin checks each token (and check, if given: an MQTT CONNECT's
// names): one device, each app once.
func verifyLogin(f *protocol.Frame, tokens [][]byte, secrets auth.SecretFunc, check func(auth.Claims) error) (*login, error) {
	l := &login{sessions: make([]session, len(tokens)), acks: make([]loginAck, len(tokens)), expires: make([]time.Time, len(tokens))}
	for i, t := range tokens {
		claims, err := auth.Verify(string(t), secrets)
		if err != nil {
			return nil, protocol.Errorf(protocol.CodeAuthFailed, "%v", err)
		}
		if check != nil {
			if err := check(claims); err != nil {
				return nil, err
			}
		}
		if l.device != "" && claims.Device != l.device {
			return nil, protocol.Errorf(protocol.CodeAuthFailed, "tokens name different devices (%q, %q)", l.device, claims.Device)
		}
		l.device = claims.Device
		for j := range i {
			if l.sessions[j].app == claims.App {
				return nil, protocol.Errorf(protocol.CodeAuthFailed, "two tokens for app %q", claims.App)
			}
		}
		s := &l.sessions[i]
		s.app, s.user, s.groups, s.catchUp = claims.App, claims.User, claims.Groups, true
		if len(f.LastBSeqs) > 0 { // the store clamps it (at the ack, and when reading after it)
			s.byBSeq, s.sentBSeq = true, f.LastBSeqs[i]
		}
		l.acks[i].tags, l.acks[i].bseq = claims.Tags, s.sentBSeq
		l.expires[i] = claims.Expires
	}
	return l, nil
}

// goLive makes the connection live with l's sessions: the welcome is
// queued first, and stored messages wait for the replay, which acks each
// app's last_seq, copies unseen broadcasts and delivers each mailbox after
// its last_seq.
func (c *conn) goLive(l *login, welcome *protocol.Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateLogin {
		return errGoingAway
	}
	c.state, c.sessions = stateLive, l.sessions
	if c.missed { // a stored message came after the claims' reads
		for i := range c.sessions {
			c.sessions[i].first = nil
		}
	}
	c.gw.live.Add(1)
	// The welcome is the first frame, but it is not written before the
	// connection is registered: a client that has its welcome may log in
	// again at once, and that newer login must find this one to replace.
	// Holding the writer (writing, not scheduled) keeps everything queued
	// meanwhile behind the welcome.
	c.pushLocked(c.kind.encode(nil, welcome))
	c.writing = true
	c.startSyncLocked(l.acks)
	return nil
}

// register makes the live connection findable (ending the device's older
// sessions), counts it and arms its tokens' expiries, then lets the welcome
// out.
func (c *conn) register(l *login) {
	g := c.gw
	g.forgetPending(c)
	g.metrics.Connects.WithLabelValues(c.transport()).Inc()
	for i := range l.sessions {
		g.metrics.Connections.WithLabelValues(l.sessions[i].app, c.transport()).Inc()
	}
	// The older session's offline event, then this one's online event,
	// queued under the (app, device)'s lock: a later login of the device to
	// the app cannot get its events in between. A session that lost the
	// race to a newer login of the device is replaced at once.
	g.hub.register(c, func(s *session, old *conn, olds *session) {
		if olds != nil {
			c.inherit(s, old, olds)
			old.dropSession(olds, errReplaced)
		}
		g.events.Online(s.app, l.device, s.user, s.number)
	}, func(s *session) {
		g.events.Online(s.app, l.device, s.user, s.number)
		c.dropSession(s, errReplaced)
	})
	for i := range l.sessions {
		g.expiries.set(c, &l.sessions[i], l.expires[i])
	}
	g.writers.schedule(c) // the held writer: the welcome goes out
	g.log.Debug("logged in", "app", l.sessions[0].app, "device", l.device, "apps", len(l.sessions), "transport", c.transport())
}

// lastSeqs returns the login's last_seq per token: last_seqs, one per token
// in the same order, or last_seq for a login into one app.
func lastSeqs(f *protocol.Frame, tokens int) ([]uint64, error) {
	switch {
	case len(f.LastSeqs) > 0 && len(f.LastSeqs) != tokens:
		return nil, protocol.Errorf(protocol.CodeBadFrame, "last_seqs has %d entries for %d tokens", len(f.LastSeqs), tokens)
	case len(f.LastSeqs) > 0:
		return f.LastSeqs, nil
	case f.LastSeq > 0 && tokens > 1:
		return nil, protocol.Errorf(protocol.CodeBadFrame, "seqs are per app: a login into several apps sends last_seqs, one per token")
	}
	seqs := make([]uint64, tokens)
	seqs[0] = f.LastSeq
	return seqs, nil
}

// clampSeq returns a login's last_seq for session s, clamped to the last
// seq the store gave the device in its app (and counted): a client cannot
// skip messages it was never sent. In a cluster the claim of the route
// read that seq (s.first); on a single node it is read here.
func (c *conn) clampSeq(s *session, seq uint64) (uint64, error) {
	if seq == 0 {
		return 0, nil
	}
	var last uint64
	if s.first != nil {
		last = s.first.LastSeq
	} else {
		var err error
		if last, err = c.gw.mailboxes.LastSeq(c.gw.storeCall(), s.app, c.device); err != nil {
			c.gw.warn.Error("mailbox", "app", s.app, "device", c.device, "err", err)
			return 0, errStoreUnavailable
		}
	}
	if seq > last {
		c.gw.metrics.SeqClamped.WithLabelValues(s.app, "login").Inc()
		return last, nil
	}
	return seq, nil
}

// dropSession ends the session s for why (replaced, kicked): the
// connection closes with it if s was its last live session; otherwise it
// keeps its other apps and is told with an error frame naming the app.
func (c *conn) dropSession(s *session, why *protocol.Error) {
	last, ok := c.endSession(s, why.Code.Label())
	if !ok {
		return
	}
	c.gw.groups.leaveApp(c, s.app)
	if last {
		c.close(why)
		return
	}
	c.reply(&protocol.Frame{Op: protocol.OpError, App: []byte(s.app), Code: why.Code, Reason: []byte(why.Reason)})
}

// endSession ends s once: the app's backend hears that the device went
// offline there. It runs under c.mu so that a replaced session's offline
// event is queued before its successor's online event whoever calls first.
// ok reports that s was live; last, that no live session is left.
func (c *conn) endSession(s *session, reason string) (last, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.over.Load() {
		return false, false
	}
	s.over.Store(true)
	c.gw.events.Offline(s.app, c.device, s.user, reason, s.number)
	c.gw.metrics.Connections.WithLabelValues(s.app, c.transport()).Dec()
	for i := range c.sessions {
		if !c.sessions[i].over.Load() {
			return false, true
		}
	}
	return true, true
}

// reply queues a frame for this connection.
func (c *conn) reply(f *protocol.Frame) { c.send(c.kind.encode(nil, f)) }

func (c *conn) replyError(ref []byte, code protocol.Code, reason string) {
	c.reply(&protocol.Frame{Op: protocol.OpError, Ref: ref, Code: code, Reason: []byte(reason)})
}
