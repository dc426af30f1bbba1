package gateway

import (
	"bytes"
	"errors"
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

// handleAck trims the mailbox of the app the ack names (or of the only app) up
// to its seq, and moves the device's cursor in the app's broadcast log to
// its bseq. Errors are not fatal.
func (c *conn) handleAck(f *protocol.Frame) {
	s, ok := c.sessionOf(f)
	if !ok {
		c.replyError(f.Ref, protocol.CodeBadFrame, "ack: not logged into app "+string(f.App))
		return
	}
	if f.Seq > 0 {
		c.ackSeq(s, f.Seq)
	}
	if f.BSeq > 0 {
		c.ackBroadcast(s, f.BSeq)
	}
	c.gw.metrics.Acks.WithLabelValues(s.app).Inc()
}

// handleRefresh takes a new token for one app of the connection: the session's
// expiry moves to the new token's. A bad token is a non-fatal 4001: the
// connection keeps its current token until it expires.
func (c *conn) handleRefresh(f *protocol.Frame) {
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

// handleJoin puts the connection in a group of the app the frame names, if
// its token allows it; errors are not fatal.
func (c *conn) handleJoin(f *protocol.Frame) { c.joinOrLeave(f, false) }

// handleLeave takes the connection out of a group; errors are not fatal.
func (c *conn) handleLeave(f *protocol.Frame) { c.joinOrLeave(f, true) }

func (c *conn) joinOrLeave(f *protocol.Frame, leave bool) {
	s, ok := c.sessionOf(f)
	if !ok {
		c.replyError(f.Ref, protocol.CodeBadFrame, "not logged into app "+string(f.App))
		return
	}
	if err := c.joinGroup(s, string(f.Group), leave); err != nil {
		c.replyError(f.Ref, err.Code, err.Reason)
		return
	}
	c.reply(&protocol.Frame{Op: protocol.OpOK, Ref: f.Ref})
}

// joinGroup puts the connection in s's app's group, if the session's token
// allows it, or takes it out (leave).
func (c *conn) joinGroup(s *session, group string, leave bool) *protocol.Error {
	if !protocol.ValidName(group) {
		return protocol.Errorf(protocol.CodeBadFrame, "group must be 1-128 printable ASCII bytes, no spaces")
	}
	if !leave && !auth.GroupAllowed(s.groups, group) {
		return protocol.Errorf(protocol.CodeNotAllowed, "not allowed")
	}
	k := groupKey{app: s.app, name: group}
	if leave {
		c.gw.groups.leave(c, k)
	} else if err := c.gw.groups.join(c, k, c.gw.cfg.MaxGroups); errors.Is(err, errNotAnnounced) {
		return protocol.Errorf(protocol.CodeGoingAway, "%v", err)
	} else if err != nil {
		return protocol.Errorf(protocol.CodeBadFrame, "%v", err)
	}
	return nil
}

// handleVendorToken keeps the device's OS push token of a vendor in the
// app the frame names (an empty token removes it), and answers ok once it
// is durable. The connection's next frame waits for the write: a device
// registers its token once per login. Errors are not fatal.
func (c *conn) handleVendorToken(f *protocol.Frame) {
	s, ok := c.sessionOf(f)
	if !ok {
		c.replyError(f.Ref, protocol.CodeBadFrame, "not logged into app "+string(f.App))
		return
	}
	vendor, token := string(f.Vendor), string(f.Token)
	if err := protocol.CheckVendorToken(vendor, token); err != nil {
		c.replyError(f.Ref, protocol.CodeBadFrame, "vendor_token: "+err.Error())
		return
	}
	if err := c.gw.mailboxes.SetVendorToken(c.gw.storeCall(), s.app, c.device, vendor, token); err != nil {
		c.gw.log.Warn("could not keep a vendor token", "app", s.app, "device", c.device, "err", err)
		c.replyError(f.Ref, protocol.CodeUpstreamUnavailable, "could not keep the token; try again")
		return
	}
	c.reply(&protocol.Frame{Op: protocol.OpOK, Ref: f.Ref})
}

// handleUp forwards data to the app's backend for biz; the answer comes back as
// up_reply with the same ref. Errors are not fatal.
func (c *conn) handleUp(f *protocol.Frame) {
	s, ok := c.sessionOf(f)
	if !ok {
		c.replyError(f.Ref, protocol.CodeBadFrame, "not logged into app "+string(f.App))
		return
	}
	ref := bytes.Clone(f.Ref)
	c.forwardUp(s, string(f.Biz), f.Data, func(status int, body []byte, err *protocol.Error) {
		if err != nil {
			c.replyError(ref, err.Code, err.Reason)
			return
		}
		c.reply(&protocol.Frame{Op: protocol.OpUpReply, Ref: ref, Status: uint32(status), Data: body})
	})
}

// forwardUp hands data from the device to s's app's backend for biz (data
// is copied), and calls answer with the backend's answer, or with why
// there is none: an unknown biz, too many up frames, the backend busy or
// unreachable (a short reason; the detail is in the log).
func (c *conn) forwardUp(s *session, biz string, data []byte, answer func(status int, body []byte, err *protocol.Error)) {
	g := c.gw
	switch {
	case !g.upstream.HasBiz(s.app, biz):
		g.metrics.Upstream.WithLabelValues(s.app, "unknown_biz").Inc()
		answer(0, nil, protocol.Errorf(protocol.CodeBadFrame, "unknown biz %s", biz))
		return
	case !c.allowUp():
		g.metrics.Upstream.WithLabelValues(s.app, "rate_limited").Inc()
		answer(0, nil, protocol.Errorf(protocol.CodeRateLimited, "too many up frames; slow down"))
		return
	}
	call := hooks.UpCall{App: s.app, Device: c.device, User: s.user, Biz: biz, Data: bytes.Clone(data),
		Reply: func(status int, body []byte, err error) {
			if err != nil {
				answer(0, nil, protocol.Errorf(protocol.CodeUpstreamUnavailable, "upstream unavailable: %v", err))
				return
			}
			answer(status, body, nil)
		}}
	if !g.upstream.Forward(call) {
		answer(0, nil, protocol.Errorf(protocol.CodeUpstreamUnavailable, "upstream busy; try again"))
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
