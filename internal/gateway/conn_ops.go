package gateway

import (
	"bytes"
	"time"

	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/hooks"
	"github.com/longlink/longlink/protocol"
)

// sessionOf returns the live session of the app an op names, or the
// connection's only one when it names none; ok is false when the connection
// is not logged into that app (or no longer: replaced, kicked).
func (c *conn) sessionOf(f *protocol.Frame) (s *session, ok bool) {
	app := string(f.App)
	if app == "" && len(c.sessions) == 1 {
		app = c.sessions[0].app
	}
	return c.session(app)
}

// ack trims the mailbox of the app the ack names (or of the only app) up
// to its seq, and moves the device's cursor in the app's broadcast log to
// its bseq. Errors are not fatal.
func (c *conn) ack(f *protocol.Frame) {
	s, ok := c.sessionOf(f)
	if !ok {
		c.replyError(f.Ref, protocol.CodeBadFrame, "ack: not logged into app "+string(f.App))
		return
	}
	if f.Seq > 0 {
		c.gw.mailboxes.Ack(s.app, c.device, f.Seq)
	}
	if f.BSeq > 0 {
		c.gw.mailboxes.AckBroadcast(s.app, c.device, f.BSeq)
	}
	c.gw.metrics.Acks.WithLabelValues(s.app).Inc()
}

// refresh takes a new token for one app of the connection: the session's
// expiry moves to the new token's. A bad token is a non-fatal 4001: the
// connection keeps its current token until it expires.
func (c *conn) refresh(f *protocol.Frame) {
	claims, err := auth.Verify(string(f.Token), c.gw.secrets)
	if err != nil {
		c.gw.log.Info("refresh refused", "device", c.device, "remote", c.nc.RemoteAddr().String(), "reason", err)
		c.replyError(f.Ref, protocol.CodeAuthFailed, err.Error())
		return
	}
	s, ok := c.session(claims.App)
	if !ok || claims.Device != c.device {
		c.replyError(f.Ref, protocol.CodeAuthFailed, "the token names another app or device than this connection's")
		return
	}
	c.gw.expiries.set(c, s, claims.Expires)
	c.reply(&protocol.Frame{Op: protocol.OpOK, Ref: f.Ref})
}

// joinOrLeave serves join and leave; errors are not fatal.
func (c *conn) joinOrLeave(f *protocol.Frame) {
	s, ok := c.sessionOf(f)
	if !ok {
		c.replyError(f.Ref, protocol.CodeBadFrame, "not logged into app "+string(f.App))
		return
	}
	if !protocol.ValidName(string(f.Group)) {
		c.replyError(f.Ref, protocol.CodeBadFrame, "group must be 1-128 printable ASCII bytes, no spaces")
		return
	}
	if f.Op == protocol.OpJoin && !auth.GroupAllowed(s.groups, string(f.Group)) {
		c.replyError(f.Ref, protocol.CodeNotAllowed, "not allowed")
		return
	}
	k := groupKey{app: s.app, name: string(f.Group)}
	if f.Op == protocol.OpLeave {
		c.gw.groups.leave(c, k)
	} else if err := c.gw.groups.join(c, k, c.gw.cfg.MaxGroups); err != nil {
		c.replyError(f.Ref, protocol.CodeBadFrame, err.Error())
		return
	}
	c.reply(&protocol.Frame{Op: protocol.OpOK, Ref: f.Ref})
}

// up forwards data to the app's backend for biz; the answer comes back as
// up_reply with the same ref. Errors are not fatal.
func (c *conn) up(f *protocol.Frame) {
	g := c.gw
	s, ok := c.sessionOf(f)
	if !ok {
		c.replyError(f.Ref, protocol.CodeBadFrame, "not logged into app "+string(f.App))
		return
	}
	app := s.app
	switch {
	case !g.upstream.HasBiz(app, string(f.Biz)):
		g.metrics.Upstream.WithLabelValues(app, "unknown_biz").Inc()
		c.replyError(f.Ref, protocol.CodeBadFrame, "unknown biz "+string(f.Biz))
		return
	case !c.allowUp():
		g.metrics.Upstream.WithLabelValues(app, "rate_limited").Inc()
		c.replyError(f.Ref, protocol.CodeRateLimited, "too many up frames; slow down")
		return
	}
	ref := bytes.Clone(f.Ref)
	call := hooks.UpCall{App: app, Device: c.device, User: s.user, Biz: string(f.Biz), Data: bytes.Clone(f.Data),
		Reply: func(status int, body []byte, err error) {
			if err != nil { // a short reason from hooks; the detail is in the log
				c.replyError(ref, protocol.CodeUpstreamUnavailable, "upstream unavailable: "+err.Error())
				return
			}
			c.reply(&protocol.Frame{Op: protocol.OpUpReply, Ref: ref, Status: uint32(status), Data: body})
		}}
	if !g.upstream.Forward(call) {
		c.replyError(ref, protocol.CodeUpstreamUnavailable, "upstream busy; try again")
	}
}

// allowUp is the connection's token bucket for up frames. Owned by the reader.
func (c *conn) allowUp() bool {
	now := time.Now().UnixNano()
	burst := float64(c.gw.upBurst)
	if c.upAt == 0 {
		c.upTokens = burst
	} else {
		c.upTokens = min(burst, c.upTokens+float64(now-c.upAt)/1e9*c.gw.upRate)
	}
	c.upAt = now
	if c.upTokens < 1 {
		return false
	}
	c.upTokens--
	return true
}
