package api

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/longlink/longlink/internal/bridge"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/store"
)

// The OS push bridge (docs/push-bridge.md): a stored push with "escalate"
// (or to an app with a default) keeps, with its message (Message.Then), an
// entry of the store's schedules due "after" from now, keyed
// <message id>/escalate/0.
// When it falls due, FireDue claims it like a scheduled push (each by one
// node, for claimLease) and sends the copies still waiting for an ack
// through their devices' OS push tokens, escalationSends at a time per
// node. Each notification's outcome is kept in the message's report before
// the entry is done, so a claim that ends unfinished (its node died, or
// half its lease passed) is taken up again where it stopped: a copy is
// sent again only if its node died before it kept the vendor's answer.
// What a vendor asks to send again later (rate limits, unavailable) is
// kept pending, and a new entry at its Retry-After, numbered on, sends the
// pending ones; a dead token is dropped. A recall of a message some
// vendors took keeps an entry <message id>/escalate/recall, due at once,
// that sends each of those tokens the recall (once: a recall answered
// "later" is not sent again).

// escalateRequest is a push's "escalate".
type escalateRequest struct {
	After string            `json:"after"`
	Title string            `json:"title,omitempty"`
	Body  string            `json:"body,omitempty"`
	Data  map[string]string `json:"data,omitempty"`
}

// escalation is an escalation entry's request: what to send, and to whom.
type escalation struct {
	ID       string            `json:"id"` // the message's
	Title    string            `json:"title,omitempty"`
	Body     string            `json:"body,omitempty"`
	Data     map[string]string `json:"data,omitempty"`
	High     bool              `json:"high,omitempty"`
	Collapse string            `json:"collapse,omitempty"`
	Expires  int64             `json:"expires"` // the message's, unix ms
	// Offline: after 0, only the devices with no live session now.
	Offline bool `json:"offline,omitempty"`
	// Quiet, if set, holds it until the window ends (not with High).
	Quiet *config.Quiet `json:"quiet,omitempty"`
	// Recall: not the message but its recall, to the tokens that took it.
	Recall  bool `json:"recall,omitempty"`
	Attempt int  `json:"attempt,omitempty"` // the vendor's retries so far: 0 sends every waiting copy, more the pending ones
	Entry   int  `json:"entry,omitempty"`   // its key's number: one more at each retry or hold
}

// vendorTarget is a device's token of a vendor.
type vendorTarget struct {
	device, vendor, token string
}

const (
	escalationMark = "/escalate/"
	// maxEscalationAttempts bounds the retries of one escalation.
	maxEscalationAttempts = 5
	// escalationSends bounds the notifications a node has at its vendors
	// at once.
	escalationSends = 16
	// maxEscalationText bounds a title or body; maxEscalationData the data keys.
	maxEscalationText = 1024
	maxEscalationData = 16
)

// key is e's key in the store's schedules.
func (e *escalation) key() string {
	if e.Recall {
		return e.ID + escalationMark + "recall"
	}
	return e.ID + escalationMark + strconv.Itoa(e.Entry)
}

func isEscalation(id string) bool { return strings.Contains(id, escalationMark) }

// checkEscalate checks a push's escalate and priority against its target
// and its app's vendors.
func (s *Server) checkEscalate(req *pushRequest, target store.Target) error {
	if req.Priority != "" && req.Priority != "high" && req.Priority != "normal" {
		return errorf(http.StatusBadRequest, "priority must be high or normal")
	}
	if req.Quiet != nil {
		if _, _, err := req.Quiet.Until(time.Now()); err != nil {
			return errorf(http.StatusBadRequest, "quiet: %v", err)
		}
	}
	e := req.Escalate
	if e == nil {
		return nil
	}
	after, err := time.ParseDuration(e.After)
	switch {
	case req.TTL == 0 || target == store.TargetGroup || target == store.TargetBroadcast:
		return errorf(http.StatusBadRequest, "escalate needs a stored push (a ttl) to devices, users or tags")
	case !req.reported():
		return errorf(http.StatusBadRequest, "escalate needs the push's delivery report (report: false leaves it out)")
	case err != nil || after < 0 || after >= time.Duration(req.TTL)*time.Second:
		return errorf(http.StatusBadRequest, "escalate.after must be a duration from 0s to below the ttl, like 30s")
	case len(e.Title) > maxEscalationText || len(e.Body) > maxEscalationText:
		return errorf(http.StatusBadRequest, "escalate.title and escalate.body are up to %d bytes", maxEscalationText)
	case len(e.Data) > maxEscalationData:
		return errorf(http.StatusBadRequest, "escalate.data has up to %d keys", maxEscalationData)
	case e.Data[bridge.IDKey] != "":
		return errorf(http.StatusBadRequest, "escalate.data may not set %s: it is the message's id", bridge.IDKey)
	}

	if a, ok := s.apps.Get().ByID(req.App); !ok || len(a.PushBridge.Vendors()) == 0 {
		return errorf(http.StatusBadRequest, "app %s has no OS push vendor (push_bridge) to escalate to", req.App)
	}
	return nil
}

// escalationOf is what a checked stored push escalates, and after how
// long: its own escalate, or its app's default; nil for none.
func (s *Server) escalationOf(req *pushRequest, target store.Target, id string, expires time.Time) (*escalation, time.Duration) {
	a, ok := s.apps.Get().ByID(req.App)
	if !ok {
		return nil, 0
	}
	e, d := req.Escalate, a.PushBridge.Escalate
	if e == nil {
		if d.After <= 0 || d.After >= time.Until(expires) || !req.reported() || target == store.TargetBroadcast || target == store.TargetGroup {
			return nil, 0
		}
		e = &escalateRequest{After: d.After.String(), Title: d.Title, Body: d.Body}
	}
	after, _ := time.ParseDuration(e.After) // checked
	quiet := req.Quiet
	if quiet == nil && a.PushBridge.Quiet != (config.Quiet{}) {
		quiet = &a.PushBridge.Quiet
	}
	return &escalation{ID: id, Title: e.Title, Body: e.Body, Data: e.Data, High: req.Priority == "high",
		Collapse: req.Collapse, Expires: expires.UnixMilli(), Offline: after == 0, Quiet: quiet}, after
}

// scheduleEscalation keeps e, due after d.
func (s *Server) scheduleEscalation(ctx context.Context, app string, e *escalation, d time.Duration) error {
	return s.store.Schedule(ctx, escalationEntry(app, e, d))
}

// escalationEntry is e's entry in the store's schedules, due after d.
func escalationEntry(app string, e *escalation, d time.Duration) store.Scheduled {
	body, _ := json.Marshal(e) // strings, numbers, maps of strings: it cannot fail
	return store.Scheduled{App: app, ID: e.key(), At: time.Now().Add(d), Request: body}
}

// escalate makes a due escalation entry p, claimed at claimed: every copy
// of its message still waiting for an ack goes to its device's OS push
// tokens.
func (s *Server) escalate(ctx context.Context, p store.Scheduled, claimed time.Time) {
	var e escalation
	if err := json.Unmarshal(p.Request, &e); err != nil {
		s.log.Error("escalation unreadable: dropped", "app", p.App, "key", p.ID, "err", err)
		s.unschedule(ctx, p)
		return
	}
	if end, quiet := e.quietUntil(time.Now()); quiet {
		held := e
		held.Entry++
		if err := s.scheduleEscalation(ctx, p.App, &held, time.Until(end)); err != nil {
			s.log.Warn("escalation not held for its quiet hours now; it is tried again after its claim", "app", p.App, "id", e.ID, "err", err)
			return
		}
		s.unschedule(ctx, p)
		return
	}
	targets, err := s.escalationTargets(ctx, p.App, &e)
	if err != nil {
		s.log.Warn("escalation not made now; it is tried again after its claim", "app", p.App, "id", e.ID, "err", err)
		return
	}
	pending, wait, finished := s.sendEscalation(ctx, p.App, &e, targets, claimed.Add(claimLease/2))
	if !finished {
		return // the rest when the lease ends
	}
	if len(pending) > 0 && !s.retryEscalation(ctx, p.App, e, wait) {
		for i := range pending {
			pending[i].Outcome = store.VendorFailed
		}
		if err := s.store.Escalated(ctx, p.App, e.ID, pending); err != nil {
			s.log.Warn("escalation: retries given up, but not counted failed", "app", p.App, "id", e.ID, "err", err)
		}
	}
	s.unschedule(ctx, p)
}

// sendEscalation sends e to targets, escalationSends at a time across the
// node, starting none after deadline (another node may claim e's entry
// later), and keeps each outcome. It returns those pending (the vendor
// asked for them again later) and the longest Retry-After they got, and
// whether every target was sent to and its outcome kept.
func (s *Server) sendEscalation(ctx context.Context, app string, e *escalation, targets []vendorTarget, deadline time.Time) (
	pending []store.Escalation, wait time.Duration, finished bool) {
	senders := s.senders(app)
	var (
		sent   sync.WaitGroup
		mu     sync.Mutex // guards pending, wait and kept
		kept   = true
		cutOff bool
	)
	for _, t := range targets {
		sender := senders[t.vendor]
		if sender == nil {
			continue // a token of a vendor the app has no credentials for
		}
		s.vendorSlots <- struct{}{}
		if cutOff = time.Now().After(deadline); cutOff {
			<-s.vendorSlots
			break
		}
		sent.Go(func() {
			defer func() { <-s.vendorSlots }()
			outcome, retryAfter := s.notify(ctx, app, e, sender, t)
			if e.Recall {
				return // sent once
			}
			o := store.Escalation{Device: t.device, Vendor: t.vendor, Outcome: outcome}
			err := s.store.Escalated(ctx, app, e.ID, []store.Escalation{o})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				kept = false
				s.log.Warn("escalation: an outcome not kept; the copy is sent again after the claim", "app", app, "id", e.ID, "err", err)
			}
			if outcome == store.VendorPending {
				pending, wait = append(pending, o), max(wait, retryAfter)
			}
		})
	}
	sent.Wait()
	return pending, wait, kept && !cutOff
}

// notify sends e to t through sender, and returns what became of it (with
// the Retry-After of a pending one).
func (s *Server) notify(ctx context.Context, app string, e *escalation, sender bridge.Sender, t vendorTarget) (store.VendorOutcome, time.Duration) {
	expires := time.UnixMilli(e.Expires)
	r, err := sender.Send(ctx, bridge.Notification{Token: t.token, ID: e.ID, Title: e.Title, Body: e.Body, Data: e.Data,
		Collapse: e.Collapse, High: e.High, TTL: time.Until(expires), Recall: e.Recall})
	name, outcome := r.Outcome.String(), store.VendorFailed
	switch {
	case err != nil:
		name, outcome, r.RetryAfter = "error", store.VendorPending, bridge.DefaultRetry
		s.log.Warn("escalation: the vendor could not be reached", "app", app, "vendor", t.vendor, "err", err)
	case r.Outcome == bridge.Retry || r.Outcome == bridge.QuotaExceeded:
		outcome = store.VendorPending
	case r.Outcome == bridge.Accepted:
		outcome = store.VendorAccepted
	case r.Outcome == bridge.DeadToken:
		if err := s.store.DropVendorToken(ctx, app, t.device, t.vendor, t.token); err != nil {
			s.log.Warn("escalation: a dead token not dropped", "app", app, "vendor", t.vendor, "err", err)
		}
	case r.Outcome == bridge.Refused:
		s.log.Warn("escalation refused by the vendor", "app", app, "vendor", t.vendor, "id", e.ID, "reason", r.Reason)
	}
	counter := s.metrics.Escalations
	if e.Recall {
		counter = s.metrics.VendorRecalls
	}
	counter.WithLabelValues(app, t.vendor, name).Inc()
	return outcome, r.RetryAfter
}

// retryEscalation keeps the next attempt of e, due after wait, unless
// there have been too many or it would be past the message's expiry.
func (s *Server) retryEscalation(ctx context.Context, app string, e escalation, wait time.Duration) bool {
	e.Attempt, e.Entry = e.Attempt+1, e.Entry+1
	err := errors.New("too many, or past the message's expiry")
	if e.Attempt <= maxEscalationAttempts && time.Now().Add(wait).Before(time.UnixMilli(e.Expires)) {
		err = s.scheduleEscalation(ctx, app, &e, wait)
	}
	if err != nil {
		s.log.Warn("escalation: not sent again", "app", app, "id", e.ID, "err", err)
	}
	return err == nil
}

// quietUntil reports whether e is held by its quiet hours at now (not if
// its priority is high), and until when.
func (e *escalation) quietUntil(now time.Time) (time.Time, bool) {
	if e.Quiet == nil || e.High {
		return time.Time{}, false
	}
	end, quiet, _ := e.Quiet.Until(now) // checked when it was kept
	return end, quiet
}

// escalationTargets are the device tokens e goes to now: those of its
// message's copies still waiting (of devices offline, if e says so) that
// have no outcome yet, or are pending (on a retry, only those); for a
// recall, those that took it.
func (s *Server) escalationTargets(ctx context.Context, app string, e *escalation) ([]vendorTarget, error) {
	var devices []string
	if !e.Recall {
		var err error
		if devices, err = s.waitingDevices(ctx, app, e); err != nil || len(devices) == 0 {
			return nil, err // most often, every copy acked in time
		}
	}
	outcomes, err := s.store.Escalations(ctx, app, e.ID)
	if err != nil {
		return nil, err
	}
	had := make(map[[2]string]store.VendorOutcome, len(outcomes))
	for _, o := range outcomes {
		had[[2]string{o.Device, o.Vendor}] = o.Outcome
		if e.Recall {
			devices = append(devices, o.Device)
		}
	}
	devices = slices.Compact(slices.Sorted(slices.Values(devices))) // sent in device order
	all, err := s.store.VendorTokens(ctx, app, devices)
	if err != nil {
		return nil, err
	}
	var targets []vendorTarget
	for i, d := range devices {
		tokens := all[i]
		for _, v := range slices.Sorted(maps.Keys(tokens)) {
			if o := had[[2]string{d, v}]; e.Recall && o == store.VendorAccepted ||
				!e.Recall && (o == store.VendorPending || o == 0 && e.Attempt == 0) {
				targets = append(targets, vendorTarget{device: d, vendor: v, token: tokens[v]})
			}
		}
	}
	return targets, nil
}

// waitingDevices are the devices whose copy of e's message waits for an
// ack (those offline now, if e says so).
func (s *Server) waitingDevices(ctx context.Context, app string, e *escalation) ([]string, error) {
	w, ok, err := s.store.Waiting(ctx, app, e.ID)
	if err != nil || !ok || !e.Offline {
		return w.Devices, err
	}
	online, err := s.fanout.Online(ctx, app, w.Devices)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(w.Devices, func(d string) bool { return online[d] }), nil
}

// recallEscalated keeps the recall of the message of report r of app at
// the vendors that took it, due now, and returns to how many tokens it
// goes.
func (s *Server) recallEscalated(ctx context.Context, app string, r store.Report) (int, error) {
	if r.VendorAccepted == 0 {
		return 0, nil
	}
	return r.VendorAccepted, s.scheduleEscalation(ctx, app, &escalation{ID: r.ID, Recall: true, Expires: r.Expires.UnixMilli()}, 0)
}

func (s *Server) unschedule(ctx context.Context, p store.Scheduled) {
	if _, err := s.store.Unschedule(ctx, p.App, p.ID); err != nil {
		s.log.Warn("done but not marked done", "app", p.App, "key", p.ID, "err", err)
	}
}

// appSenders are an app's senders, for the app's config they were built
// from.
type appSenders struct {
	app     *config.App
	senders map[string]bridge.Sender
}

// senders are app's senders, built again when its config changed (SIGHUP).
func (s *Server) senders(app string) map[string]bridge.Sender {
	a, ok := s.apps.Get().ByID(app)
	if !ok {
		return nil
	}
	s.bridgeMu.Lock()
	defer s.bridgeMu.Unlock()
	if b, ok := s.bridges[app]; ok && b.app == a {
		return b.senders
	}
	senders, err := bridge.Senders(a.PushBridge, s.vendorClient)
	if err != nil {
		s.log.Error("the app's push_bridge cannot be used; its escalations go nowhere", "app", app, "err", err)
	}
	s.bridges[app] = appSenders{app: a, senders: senders}
	return senders
}

// bridgeState is the Server's part of the bridge.
type bridgeState struct {
	bridgeMu     sync.Mutex
	bridges      map[string]appSenders // by app id
	vendorClient *http.Client
	vendorSlots  chan struct{} // escalationSends: one per notification at a vendor
}
