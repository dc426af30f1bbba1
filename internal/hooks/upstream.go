// Package hooks calls app backends: it forwards devices' upstream data
// through a bounded pool of long-lived workers over persistent connections,
// and delivers online/offline status events in batches, retried until the
// backend takes them.
package hooks

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/golabel"
	"github.com/longlink/longlink/internal/metrics"
)

// Options configure the hooks.
type Options struct {
	Config       config.Hooks     // validated
	Apps         *config.LiveApps // webhook URLs are read at each call, so reloads apply
	Node         string           // this node's name, sent with every call
	MaxReplySize int              // the largest upstream answer passed back to a device
	Metrics      *metrics.Metrics // required
	Logger       *slog.Logger     // nil means slog.Default()
	// Transport carries the calls to the backends; nil means HTTP over
	// the network (tests give one in memory, where time is a test's).
	Transport http.RoundTripper
}

// UpCall is one up frame on its way to the app's backend.
type UpCall struct {
	App, Device, User, Biz string
	Data                   []byte
	// Reply is called once, from a worker, with the backend's status and
	// body, or with an error when the backend could not be reached.
	Reply func(status int, body []byte, err error)
}

// Upstream forwards up frames. Safe for concurrent use.
type Upstream struct {
	// Static after construction.
	opts   Options
	client *http.Client
	calls  chan UpCall
	stop   chan struct{}
	wg     sync.WaitGroup
}

// NewUpstream starts the worker pool.
func NewUpstream(o Options) *Upstream {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	n := o.Config.UpstreamWorkers
	transport := o.Transport
	if transport == nil {
		transport = &http.Transport{
			DialContext:         (&net.Dialer{Timeout: o.Config.UpstreamTimeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        n,
			MaxIdleConnsPerHost: n,
			IdleConnTimeout:     90 * time.Second,
		}
	}
	u := &Upstream{
		opts:   o,
		client: newClient(o.Config.UpstreamTimeout, transport),
		calls:  make(chan UpCall, o.Config.UpstreamQueue),
		stop:   make(chan struct{}),
	}
	for range n {
		u.wg.Add(1)
		golabel.Go("hooks.upstream", u.work)
	}
	return u
}

// Close stops the workers after their current calls.
func (u *Upstream) Close() {
	close(u.stop)
	u.wg.Wait()
	u.client.CloseIdleConnections()
}

// HasBiz reports whether app has an upstream webhook for biz.
func (u *Upstream) HasBiz(app, biz string) bool {
	_, _, ok := u.url(app, biz)
	return ok
}

func (u *Upstream) url(app, biz string) (url, secret string, ok bool) {
	a, ok := u.opts.Apps.Get().ByID(app)
	if !ok {
		return "", "", false
	}
	url, ok = a.Webhooks.Upstream[biz]
	return url, a.WebhookKey(), ok
}

// Backlog is how many calls wait for a worker.
func (u *Upstream) Backlog() int { return len(u.calls) }

// Forward queues c for a worker. It never blocks: false means the queue is
// full (or the pool stopped), and the caller answers the device itself.
func (u *Upstream) Forward(c UpCall) bool {
	select {
	case <-u.stop:
		return false
	default:
	}
	select {
	case u.calls <- c:
		return true
	default:
		u.opts.Metrics.Upstream.WithLabelValues(c.App, "busy").Inc()
		return false
	}
}

func (u *Upstream) work() {
	defer u.wg.Done()
	for {
		select {
		case <-u.stop:
			return
		case c := <-u.calls:
			u.call(c)
		}
	}
}

// The errors an UpCall's Reply gets: short and stable, fit for a device
// to read. What exactly failed (the URL, the network error) goes to the log.
var (
	ErrNoWebhook   = errors.New("no upstream webhook for this biz")
	ErrUnreachable = errors.New("the backend could not be reached")
	ErrTimeout     = errors.New("the backend did not answer in time")
	ErrTooLarge    = errors.New("the backend's answer is too large")
	ErrRedirect    = errors.New("the backend answered with a redirect, which is not followed")
)

// fail tells the device why its call failed, and the log what exactly.
func (u *Upstream) fail(c UpCall, result string, short, detail error) {
	u.opts.Metrics.Upstream.WithLabelValues(c.App, result).Inc()
	u.opts.Logger.Warn("upstream call failed", "app", c.App, "device", c.Device, "biz", c.Biz, "err", detail)
	c.Reply(0, nil, short)
}

func (u *Upstream) call(c UpCall) {
	url, secret, ok := u.url(c.App, c.Biz)
	if !ok { // the app or biz went away in a reload
		c.Reply(0, nil, ErrNoWebhook)
		return
	}
	body := struct {
		ID         string `json:"id"`
		App        string `json:"app"`
		Device     string `json:"device"`
		User       string `json:"user,omitempty"`
		Biz        string `json:"biz"`
		Data       string `json:"data,omitempty"`
		DataBase64 string `json:"data_base64,omitempty"`
		Node       string `json:"node"`
		At         string `json:"at"`
	}{ID: newID(u.opts.Node), App: c.App, Device: c.Device, User: c.User, Biz: c.Biz, Node: u.opts.Node, At: timestamp(time.Now())}
	if utf8.Valid(c.Data) {
		body.Data = string(c.Data)
	} else {
		body.DataBase64 = base64.StdEncoding.EncodeToString(c.Data)
	}
	raw, _ := json.Marshal(body)
	start := time.Now()
	defer func() { u.opts.Metrics.UpstreamSeconds.WithLabelValues(c.App).Observe(time.Since(start).Seconds()) }()
	resp, err := post(u.client, url, secret, raw)
	if err != nil {
		u.fail(c, "unreachable", shortNetError(err), err)
		return
	}
	reply, err := io.ReadAll(io.LimitReader(resp.Body, int64(u.opts.MaxReplySize)+1))
	resp.Body.Close()
	switch {
	case err != nil:
		u.fail(c, "unreachable", shortNetError(err), err)
	case resp.StatusCode/100 == 3:
		u.fail(c, "redirect", ErrRedirect, fmt.Errorf("%s answered %s: webhooks do not follow redirects", url, resp.Status))
	case len(reply) > u.opts.MaxReplySize:
		u.fail(c, "too_large", ErrTooLarge, fmt.Errorf("%s answered more than %d bytes", url, u.opts.MaxReplySize))
	default:
		u.opts.Metrics.Upstream.WithLabelValues(c.App, "answered").Inc()
		c.Reply(resp.StatusCode, reply, nil)
	}
}

// shortNetError is ErrTimeout or ErrUnreachable, after err.
func shortNetError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrTimeout
	}
	return ErrUnreachable
}

// timestamp formats the time of an event or call: RFC 3339, UTC, milliseconds.
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }
