package hooks

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/longlink/longlink/internal/fifo"
	"github.com/longlink/longlink/internal/golabel"
)

// Event is an online or offline event of one device in one app.
type Event struct {
	ID     string `json:"id"`   // unique; a retried batch carries the same ids
	Type   string `json:"type"` // "online" or "offline"
	App    string `json:"app"`
	Device string `json:"device"`
	User   string `json:"user,omitempty"`
	Node   string `json:"node"`
	At     string `json:"at"`
	Reason string `json:"reason"` // online: "login"; offline: closed, timeout, replaced, kicked, too_slow, ...
	// Session grows with each login of the (app, device) anywhere in the
	// cluster; an offline event carries the number of the session it ends.
	// A backend orders a device's events by it.
	Session uint64 `json:"session"`
}

// Backoff between attempts to deliver a batch.
const (
	minRetry = 100 * time.Millisecond
	maxRetry = 30 * time.Second
)

// Status delivers status events to each app's status webhook: in batches (by
// count and by time), in order, retried with backoff until a 2xx. While a
// backend does not answer, its app's events wait in a buffer bounded by
// hooks.status_buffer; when it is full the oldest are dropped and counted.
// Safe for concurrent use.
type Status struct {
	// Static after construction.
	opts   Options
	client *http.Client
	stop   chan struct{}
	wg     sync.WaitGroup

	// mu guards queues.
	mu     sync.Mutex
	queues map[string]*eventQueue // per app, each with its sender goroutine
}

// NewStatus returns a Status; senders start with each app's first event.
func NewStatus(o Options) *Status {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Status{opts: o, client: newClient(o.Config.StatusTimeout, o.Transport),
		stop: make(chan struct{}), queues: make(map[string]*eventQueue)}
}

// Close stops the senders; events not yet delivered are dropped.
func (s *Status) Close() {
	close(s.stop)
	s.wg.Wait()
}

// Backlog is how many events wait to be delivered, over every app.
func (s *Status) Backlog() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.queues {
		n += q.len()
	}
	return n
}

// Online records that device came online in app.
func (s *Status) Online(app, device, user string, session uint64) {
	s.emit(Event{Type: "online", App: app, Device: device, User: user, Reason: "login", Session: session})
}

// Offline records that device went offline in app, and why.
func (s *Status) Offline(app, device, user, reason string, session uint64) {
	s.emit(Event{Type: "offline", App: app, Device: device, User: user, Reason: reason, Session: session})
}

func (s *Status) emit(e Event) {
	if a, ok := s.opts.Apps.Get().ByID(e.App); !ok || a.Webhooks.Status == "" {
		return // nobody to tell
	}
	e.ID, e.Node, e.At = newID(s.opts.Node), s.opts.Node, timestamp(time.Now())
	if dropped := s.queue(e.App).push(e, s.opts.Config.StatusBuffer); dropped {
		s.opts.Metrics.StatusEvents.WithLabelValues(e.App, "dropped").Inc()
	}
}

// queue returns app's queue, starting its sender on first use.
func (s *Status) queue(app string) *eventQueue {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[app]
	if q == nil {
		q = &eventQueue{wake: make(chan struct{}, 1)}
		s.queues[app] = q
		s.wg.Add(1)
		golabel.Go("hooks.status", func() { s.send(app, q) })
	}
	return q
}

// send delivers app's events, a batch at a time, until Close.
func (s *Status) send(app string, q *eventQueue) {
	defer s.wg.Done()
	cfg := s.opts.Config
	for {
		if q.len() == 0 && !s.wait(q.wake, 0) {
			return
		}
		// Give the batch a moment to fill, unless it is full already.
		if q.len() < cfg.StatusBatch && !s.wait(nil, cfg.StatusLinger) {
			return
		}
		batch := q.take(cfg.StatusBatch)
		if len(batch) == 0 {
			continue // a wake-up left over from events an earlier batch took
		}
		for retry := minRetry; ; retry = min(2*retry, maxRetry) {
			err := s.post(app, batch)
			if err == nil {
				s.opts.Metrics.StatusEvents.WithLabelValues(app, "sent").Add(float64(len(batch)))
				break
			}
			s.opts.Metrics.StatusEvents.WithLabelValues(app, "retried").Add(float64(len(batch)))
			s.opts.Logger.Warn("status webhook", "app", app, "err", err, "retry_in", retry)
			if !s.wait(nil, retry) {
				return
			}
		}
	}
}

// wait waits for wake (if not nil), for d (if not 0), or for Close, and
// reports whether the sender should go on.
func (s *Status) wait(wake <-chan struct{}, d time.Duration) bool {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-wake:
	case <-timeout:
	case <-s.stop:
		return false
	}
	return true
}

func (s *Status) post(app string, batch []Event) error {
	a, ok := s.opts.Apps.Get().ByID(app)
	if !ok || a.Webhooks.Status == "" {
		return nil // the webhook was removed in a reload: nobody to tell
	}
	raw, _ := json.Marshal(struct {
		Events []Event `json:"events"`
	}{batch})
	resp, err := post(s.client, a.Webhooks.Status, a.WebhookKey(), raw)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch resp.StatusCode / 100 {
	case 2:
	case 3:
		return fmt.Errorf("status webhook answered %s: webhooks do not follow redirects", resp.Status)
	default:
		return fmt.Errorf("status webhook answered %s", resp.Status)
	}
	return nil
}

// eventQueue is a FIFO of events with a bound; safe for concurrent use.
type eventQueue struct {
	mu     sync.Mutex
	events fifo.Queue[Event]
	wake   chan struct{} // signalled when events arrive
}

// push appends e, dropping the oldest event if the queue holds max already.
func (q *eventQueue) push(e Event, max int) (dropped bool) {
	q.mu.Lock()
	if q.events.Len() >= max {
		q.events.Pop()
		dropped = true
	}
	q.events.Push(e)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return dropped
}

func (q *eventQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.events.Len()
}

// take removes and returns up to n of the oldest events.
func (q *eventQueue) take(n int) []Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.events.PopN(n)
}
