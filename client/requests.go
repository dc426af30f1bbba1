package client

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/longlink/longlink/protocol"
)

// ErrNotConnected is returned by requests made while the client has no
// connection (between a loss and the reconnect, or after Close).
var ErrNotConnected = errors.New("client: not connected")

// requestTimeout bounds writing one request.
const requestTimeout = 10 * time.Second

// request sends f with a fresh ref and waits for the reply with that ref:
// ok, up_reply, or an error (returned as *protocol.Error).
func (c *Client) request(ctx context.Context, f *protocol.Frame) (protocol.Frame, error) {
	ref := strconv.FormatUint(c.nextRef.Add(1), 36)
	f.Ref = []byte(ref)
	reply := make(chan protocol.Frame, 1)
	c.mu.Lock()
	w := c.current
	if w == nil || c.ctx.Err() != nil {
		c.mu.Unlock()
		return protocol.Frame{}, ErrNotConnected
	}
	c.pending[ref] = reply
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, ref)
		c.mu.Unlock()
	}()
	if err := w.WriteFrame(f, requestTimeout); err != nil {
		return protocol.Frame{}, err
	}
	select {
	case r, ok := <-reply:
		if !ok {
			return protocol.Frame{}, ErrNotConnected
		}
		if r.Op == protocol.OpError {
			return r, &protocol.Error{Code: r.Code, Reason: string(r.Reason)}
		}
		return r, nil
	case <-ctx.Done():
		return protocol.Frame{}, ctx.Err()
	}
}

// answer hands a reply to the request waiting for its ref, and reports
// whether one was.
func (c *Client) answer(f protocol.Frame) bool {
	if len(f.Ref) == 0 {
		return false
	}
	c.mu.Lock()
	reply, ok := c.pending[string(f.Ref)]
	delete(c.pending, string(f.Ref))
	c.mu.Unlock()
	if ok {
		reply <- f
	}
	return ok
}

// failPending ends the requests of a connection that is gone.
func (c *Client) failPending() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ref, reply := range c.pending {
		close(reply)
		delete(c.pending, ref)
	}
}

// Join adds this connection to a group of app; the client joins it again
// after every reconnect, until Leave.
func (c *Client) Join(ctx context.Context, app, group string) error {
	if _, err := c.request(ctx, &protocol.Frame{Op: protocol.OpJoin, App: []byte(app), Group: []byte(group)}); err != nil {
		return err
	}
	c.mu.Lock()
	c.groups[[2]string{app, group}] = true
	c.mu.Unlock()
	return nil
}

// SetVendorToken registers this device's OS push token of vendor ("fcm",
// "apns", "hms"...; protocol.Vendors) in app, once the server has it
// durably; an empty token removes it. Call it when the OS gives the app a
// token: at each start of the app, and when it changes.
func (c *Client) SetVendorToken(ctx context.Context, app, vendor, token string) error {
	_, err := c.request(ctx, &protocol.Frame{Op: protocol.OpVendorToken, App: []byte(app), Vendor: []byte(vendor), Token: []byte(token)})
	return err
}

// Leave removes this connection from a group of app.
func (c *Client) Leave(ctx context.Context, app, group string) error {
	c.mu.Lock()
	delete(c.groups, [2]string{app, group})
	c.mu.Unlock()
	_, err := c.request(ctx, &protocol.Frame{Op: protocol.OpLeave, App: []byte(app), Group: []byte(group)})
	return err
}

// rejoin joins again, on a new connection, the groups joined before.
func (c *Client) rejoin(w *Conn, timeout time.Duration) error {
	c.mu.Lock()
	var joins []*protocol.Frame
	for g := range c.groups {
		joins = append(joins, &protocol.Frame{Op: protocol.OpJoin, App: []byte(g[0]), Group: []byte(g[1])})
	}
	c.mu.Unlock()
	for _, f := range joins {
		if err := w.WriteFrame(f, timeout); err != nil {
			return err
		}
	}
	return nil
}

// Up sends data to app's backend for biz and returns the backend's answer:
// its HTTP status and body. A *protocol.Error with code 4010 means the
// backend could not be reached, 4005 that this device sends too fast.
func (c *Client) Up(ctx context.Context, app, biz string, data []byte) (status int, body []byte, err error) {
	r, err := c.request(ctx, &protocol.Frame{Op: protocol.OpUp, App: []byte(app), Biz: []byte(biz), Data: data})
	if err != nil {
		return 0, nil, err
	}
	return int(r.Status), r.Data, nil
}
