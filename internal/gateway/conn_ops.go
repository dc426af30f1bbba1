package gateway

import (
	"bytes"
	"time"

	"github.com/longlink/longlink/internal/hooks"
	"github.com/longlink/longlink/protocol"
)

// appOf returns the app an op names, or the connection's only app when it
// names none; ok is false when the connection is not logged into it.
func (c *conn) appOf(f *protocol.Frame) (app string, ok bool) {
	if len(f.App) == 0 && len(c.apps) == 1 {
		return c.apps[0], true
	}
	return string(f.App), c.serves(string(f.App))
}

// joinOrLeave serves join and leave; errors are not fatal.
func (c *conn) joinOrLeave(f *protocol.Frame) {
	app, ok := c.appOf(f)
	if !ok {
		c.replyError(f.Ref, protocol.CodeBadFrame, "not logged into app "+string(f.App))
		return
	}
	if !protocol.ValidName(string(f.Group)) {
		c.replyError(f.Ref, protocol.CodeBadFrame, "group must be 1-128 printable ASCII bytes, no spaces")
		return
	}
	k := groupKey{app: app, name: string(f.Group)}
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
	app, ok := c.appOf(f)
	switch {
	case !ok:
		c.replyError(f.Ref, protocol.CodeBadFrame, "not logged into app "+string(f.App))
		return
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
	call := hooks.UpCall{App: app, Device: c.device, User: c.userOf(app), Biz: string(f.Biz), Data: bytes.Clone(f.Data),
		Reply: func(status int, body []byte, err error) {
			if err != nil {
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

func (c *conn) userOf(app string) string {
	for _, s := range c.sessions {
		if s.app == app {
			return s.user
		}
	}
	return ""
}

// sendOffline tells the apps' backends, once, that this connection went
// offline. It runs under c.mu so that a replaced connection's offline event
// is queued before its successor's online event whoever calls first.
func (c *conn) sendOffline(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.offlineSent {
		return
	}
	c.offlineSent = true
	for _, s := range c.sessions {
		c.gw.events.Offline(s.app, c.device, s.user, reason)
	}
}
