package api

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/protocol"
)

// pushRequest is the body of POST /v1/push. Encoded (a scheduled push is
// kept so), it leaves out what the request left out.
type pushRequest struct {
	App        string     `json:"app"`
	Devices    []string   `json:"devices,omitempty"`
	Users      []string   `json:"users,omitempty"`
	Group      string     `json:"group,omitempty"`
	Broadcast  bool       `json:"broadcast,omitempty"`
	Tags       *tagTarget `json:"tags,omitempty"`
	Data       *string    `json:"data,omitempty"`
	DataBase64 *string    `json:"data_base64,omitempty"`
	TTL        int64      `json:"ttl,omitempty"`
	ID         string     `json:"id,omitempty"`
	Collapse   string     `json:"collapse,omitempty"`
	At         string     `json:"at,omitempty"`
	// Report false keeps no delivery report for a stored push (nor the
	// list of its copies that recall uses).
	Report *bool `json:"report,omitempty"`
	// Escalate sends the copies not acked in time through the devices' OS
	// push channels (escalate.go); Priority "high" makes that
	// notification wake the device.
	Escalate *escalateRequest `json:"escalate,omitempty"`
	Priority string           `json:"priority,omitempty"`
	// Quiet holds the escalation (not the socket delivery) until the
	// window ends, unless Priority is high; without it, the app's
	// push_bridge.quiet applies.
	Quiet *config.Quiet `json:"quiet,omitempty"`
}

// reported reports whether a stored push keeps its delivery report.
func (req *pushRequest) reported() bool { return req.Report == nil || *req.Report }

type pushResponse struct {
	ID        string `json:"id"`
	Online    int    `json:"online"`
	Offline   int    `json:"offline"`
	Duplicate bool   `json:"duplicate,omitempty"` // a repeated id: nothing new was stored (resend)
}

// maxKeyBytes bounds an idempotency key; maxCollapseBytes a collapse key.
const (
	maxKeyBytes      = 256
	maxCollapseBytes = 64
)

func (req *pushRequest) appID() string { return req.App }

func (s *Server) handlePush(w http.ResponseWriter, r *http.Request) error {
	// An app's backend is held to its push rate before its body is read;
	// an operator's push, once its app is known.
	var req pushRequest
	c, err := s.decodeAs(w, r, &req, func(c caller) error {
		if c.app == "" {
			return nil
		}
		return s.allowPush(c.app)
	})
	if err == nil && c.app == "" {
		err = s.allowPush(req.App)
	}
	if err != nil {
		return err
	}
	data, target, err := s.checkPush(&req)
	if err != nil {
		return err
	}
	if req.At != "" {
		out, err := s.schedule(r.Context(), &req)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusAccepted, out)
		return nil
	}
	resp, err := s.send(r.Context(), &req, target, protocol.Frame{Op: protocol.OpPush, App: []byte(req.App),
		ID: []byte(s.newMessageID()), Data: data})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// send makes a checked push now, and counts it.
func (s *Server) send(ctx context.Context, req *pushRequest, target store.Target, f protocol.Frame) (pushResponse, error) {
	var resp pushResponse
	var err error
	if req.TTL > 0 && target != store.TargetGroup { // groups are online-only: ttl is ignored
		resp, err = s.pushStored(ctx, req, target, f)
		if err == nil && !resp.Duplicate && resp.Online > 0 && req.reported() { // for its delivery report (which says 0 until told)
			s.store.Sent(req.App, resp.ID, resp.Online)
		}
	} else {
		resp, err = s.pushOnline(ctx, req, target, f)
	}
	if err == nil && !resp.Duplicate {
		s.metrics.Pushed.WithLabelValues(req.App, string(target)).Inc()
	}
	return resp, err
}

// pushStored stores the message (durably, before answering) and hands it to
// the devices online now; the others get it when they log in.
func (s *Server) pushStored(ctx context.Context, req *pushRequest, target store.Target, f protocol.Frame) (pushResponse, error) {
	m := store.Message{App: req.App, ID: string(f.ID), Data: f.Data, Collapse: req.Collapse, Target: target,
		Expires: time.Now().Add(time.Duration(req.TTL) * time.Second)}
	if !req.reported() {
		m.Target = ""
	}
	if target == store.TargetBroadcast {
		release, err := s.reserve(req.App, int64(len(f.Data)))
		if err != nil {
			return pushResponse{}, err
		}
		defer release()
		res, err := s.store.AppendBroadcast(ctx, m, req.ID)
		if err != nil {
			return pushResponse{}, unavailable(err)
		}
		if res.Dup {
			return s.resend(ctx, req.App, res.ID, f)
		}
		s.metrics.Stored.WithLabelValues(req.App).Inc()
		f.BSeq = res.Seqs[0]
		online, err := s.fanout.BroadcastStored(ctx, req.App, f)
		if err != nil {
			return pushResponse{}, stored(err)
		}
		return pushResponse{ID: res.ID, Online: online}, nil
	}
	devices := req.Devices
	switch target {
	case store.TargetUsers:
		var err error
		if devices, err = s.store.UserDevices(ctx, req.App, req.Users); err != nil {
			return pushResponse{}, unavailable(err)
		}
	case store.TargetTags:
		var err error
		if devices, err = s.tagDevices(ctx, req.App, req.Tags); err != nil {
			return pushResponse{}, err
		}
	}
	release, err := s.reserve(req.App, int64(len(f.Data))*int64(len(devices)))
	if err != nil {
		return pushResponse{}, err
	}
	defer release()
	// The escalation is kept with the message (or, in Redis, just before
	// it: one whose message was not stored finds no copy waiting, and sends
	// nothing).
	if e, after := s.escalationOf(req, target, m.ID, m.Expires); e != nil {
		entry := escalationEntry(req.App, e, after)
		m.Then = &entry
	}
	res, err := s.store.Append(ctx, devices, m, req.ID)
	if err != nil {
		return pushResponse{}, unavailable(err)
	}
	if res.Dup {
		return s.resend(ctx, req.App, res.ID, f)
	}
	s.metrics.Stored.WithLabelValues(req.App).Add(float64(len(devices)))
	online, err := s.fanout.PushStored(ctx, req.App, devices, res.Seqs, res.Routes, f)
	if err != nil {
		return pushResponse{}, stored(err)
	}
	return pushResponse{ID: res.ID, Online: online, Offline: len(devices) - online}, nil
}

// pushOnline hands the message to the connections live now; with an id, the
// key is recorded (durably) first so that a repeat sends nothing.
func (s *Server) pushOnline(ctx context.Context, req *pushRequest, target store.Target, f protocol.Frame) (pushResponse, error) {
	if first, used, err := s.keyUsed(ctx, req, string(f.ID)); err != nil || used {
		return pushResponse{ID: first, Duplicate: used}, err
	}
	if target == store.TargetGroup { // so that the device knows (MQTT: the PUBLISH's topic)
		f.Group = []byte(req.Group)
	}
	var online int
	var err error
	switch target {
	case store.TargetDevices:
		online, err = s.fanout.PushDevices(ctx, req.App, req.Devices, f)
	case store.TargetUsers:
		online, err = s.fanout.PushUsers(ctx, req.App, req.Users, f)
	case store.TargetTags:
		var devices []string
		if devices, err = s.tagDevices(ctx, req.App, req.Tags); err != nil {
			return pushResponse{}, err
		}
		online, err = s.fanout.PushDevices(ctx, req.App, devices, f)
	case store.TargetGroup:
		online, err = s.fanout.PushGroup(ctx, req.App, req.Group, f)
	case store.TargetBroadcast:
		online, err = s.fanout.Broadcast(ctx, req.App, f)
	}
	if err != nil {
		return pushResponse{}, clusterDown(err)
	}
	return pushResponse{ID: string(f.ID), Online: online}, nil
}

// clusterDown is the 503 of a call that could not find where devices are.
func clusterDown(err error) error {
	return &httpError{status: http.StatusServiceUnavailable, msg: "cannot reach the cluster now; retry later", cause: err}
}

// allowPush applies limits.push_per_second to app's push calls (a token
// bucket one second deep, per app).
func (s *Server) allowPush(app string) error {
	r := s.cfg.Limits.PushPerSecond
	if r <= 0 {
		return nil
	}
	v, _ := s.pushes.LoadOrStore(app, rate.NewLimiter(rate.Limit(r), max(int(r), 1)))
	if !v.(*rate.Limiter).Allow() {
		s.metrics.Limited.WithLabelValues("push_per_second").Inc()
		return errorf(http.StatusTooManyRequests, "app %s makes more than %v push calls per second (limits.push_per_second); retry shortly", app, r)
	}
	return nil
}

// reserve counts size bytes of app's stored pushes as waiting to be made
// durable, until release: one push may store at most limits.push_bytes
// (413), and one app have at most limits.app_pending_bytes waiting (429).
func (s *Server) reserve(app string, size int64) (release func(), err error) {
	l := s.cfg.Limits
	if size > l.PushBytes {
		return nil, errorf(http.StatusRequestEntityTooLarge,
			"this push would store %d bytes (data times target devices); limits.push_bytes is %d: split it", size, l.PushBytes)
	}
	v, _ := s.pending.LoadOrStore(app, new(atomic.Int64))
	n := v.(*atomic.Int64)
	if n.Add(size) > l.AppPendingBytes {
		n.Add(-size)
		return nil, errorf(http.StatusTooManyRequests,
			"app %s has %d bytes of stored pushes being written (limits.app_pending_bytes); retry shortly", app, l.AppPendingBytes)
	}
	return func() { n.Add(-size) }, nil
}

// keyUsed records req's idempotency key (if it has one) for the message
// id, durably, and reports whether the key was used before, and by which
// message. Pushes that store nothing use it (stored pushes record the key
// with their message).
func (s *Server) keyUsed(ctx context.Context, req *pushRequest, id string) (first string, used bool, err error) {
	if req.ID == "" {
		return "", false, nil
	}
	res, err := s.store.Append(ctx, nil, store.Message{App: req.App, ID: id}, req.ID)
	if err != nil {
		return "", false, unavailable(err)
	}
	return res.ID, res.Dup, nil
}

// resend answers a stored push whose key was used before, by message
// first: as a first success would, having handed the message again to its
// target devices online now that have not acked it (a first try answered
// 5xx, or not at all, may have stored it and handed it to nobody). A
// connection that was handed it already is not handed it twice.
func (s *Server) resend(ctx context.Context, app, first string, f protocol.Frame) (pushResponse, error) {
	w, ok, err := s.store.Waiting(ctx, app, first)
	if err != nil {
		return pushResponse{}, unavailable(err)
	}
	resp := pushResponse{ID: first, Duplicate: true}
	if !ok { // no report: an online-only message, one pushed with report false, or one no longer kept
		return resp, nil
	}
	f.ID, f.Data = []byte(first), w.Data
	var online int
	switch {
	case w.BSeq > 0:
		f.BSeq = w.BSeq
		online, err = s.fanout.BroadcastStored(ctx, app, f)
	case len(w.Devices) > 0:
		online, err = s.fanout.PushStored(ctx, app, w.Devices, w.Seqs, nil, f)
	}
	if err != nil {
		return pushResponse{}, stored(err)
	}
	if w.Online == 0 && online > 0 { // the first try did not record it
		s.store.Sent(app, first, online)
	}
	resp.Online = online
	if w.Target != store.TargetBroadcast {
		// The devices that have it (their copy no longer waits: acked; read
		// with the copies, not from the report's count, which an ack made
		// meanwhile may not have reached yet), and those it waits for.
		resp.Online, resp.Offline = w.Stored-len(w.Devices)+online, len(w.Devices)-online
	}
	return resp, nil
}

// stored is the error of a stored push whose message is durable but whose
// online devices could not be told: it answers 503, and a retry with the
// same id hands it to them (resend), or they get it at their next login.
func stored(err error) error {
	return &httpError{status: http.StatusServiceUnavailable, cause: err,
		msg: "the message is stored, but the cluster could not be reached to hand it to online devices; retry with the same id to hand it to them, or they get it at their next login"}
}

// unavailable turns a store failure into 503; the failure itself goes to
// the log, not to the caller.
func unavailable(err error) error {
	if errors.Is(err, store.ErrNotReplicated) {
		return &httpError{status: http.StatusServiceUnavailable, cause: err,
			msg: "the message is not yet on the Redis replicas cluster.replicas_ack asks for; retry with the same id"}
	}
	return &httpError{status: http.StatusServiceUnavailable, msg: "cannot store the message now; retry later", cause: err}
}

// checkPush validates a push request, deduplicates its targets in place, and
// returns the payload and the target kind.
func (s *Server) checkPush(req *pushRequest) (data []byte, target store.Target, err error) {
	if target, err = req.checkTarget(); err != nil {
		return nil, "", err
	}
	if err = s.checkStoring(req, target); err != nil {
		return nil, "", err
	}
	if err = s.checkEscalate(req, target); err != nil {
		return nil, "", err
	}
	if data, err = pushData(req); err != nil {
		return nil, "", err
	}
	if len(data) > s.cfg.API.MaxDataBytes {
		return nil, "", errorf(http.StatusRequestEntityTooLarge, "data is %d bytes; the limit is %d", len(data), s.cfg.API.MaxDataBytes)
	}
	return data, target, nil
}

// checkTarget checks that the push names exactly one target, and that one
// (deduplicating its ids in place), and returns its kind.
func (req *pushRequest) checkTarget() (target store.Target, err error) {
	targets := 0
	for _, t := range []struct {
		given bool
		kind  store.Target
	}{
		{req.Devices != nil, store.TargetDevices}, {req.Users != nil, store.TargetUsers},
		{req.Group != "", store.TargetGroup}, {req.Broadcast, store.TargetBroadcast}, {req.Tags != nil, store.TargetTags},
	} {
		if t.given {
			targets, target = targets+1, t.kind
		}
	}
	if targets != 1 {
		return "", errorf(http.StatusBadRequest, "give exactly one of devices, users, tags, group, broadcast")
	}
	switch target {
	case store.TargetDevices:
		req.Devices, err = checkIDs("devices", req.Devices)
	case store.TargetUsers:
		req.Users, err = checkIDs("users", req.Users)
	case store.TargetGroup:
		if !protocol.ValidName(req.Group) {
			err = errorf(http.StatusBadRequest, "group %q must be 1-128 printable ASCII bytes, no spaces", req.Group)
		}
	case store.TargetTags:
		err = req.Tags.check()
	}
	return target, err
}

// checkStoring checks how the push is kept: its ttl, idempotency key and
// collapse key.
func (s *Server) checkStoring(req *pushRequest, target store.Target) error {
	if maxTTL := int64(s.cfg.API.MaxTTL / time.Second); req.TTL < 0 || req.TTL > maxTTL {
		return errorf(http.StatusBadRequest, "ttl must be 0 (online only) to %d seconds", maxTTL)
	}
	if len(req.ID) > maxKeyBytes {
		return errorf(http.StatusBadRequest, "id is %d bytes; the limit is %d", len(req.ID), maxKeyBytes)
	}
	if req.Collapse == "" {
		return nil
	}
	switch {
	case req.TTL == 0 || target == store.TargetGroup:
		return errorf(http.StatusBadRequest, "collapse replaces a stored message: it needs a ttl, and a target other than group")
	case len(req.Collapse) > maxCollapseBytes || !protocol.ValidName(req.Collapse):
		return errorf(http.StatusBadRequest, "collapse must be 1-%d printable ASCII bytes, no spaces", maxCollapseBytes)
	}
	return nil
}

func pushData(req *pushRequest) ([]byte, error) {
	switch {
	case req.Data != nil && req.DataBase64 != nil:
		return nil, errorf(http.StatusBadRequest, "give data or data_base64, not both")
	case req.Data != nil && *req.Data != "":
		return []byte(*req.Data), nil
	case req.DataBase64 != nil && *req.DataBase64 != "":
		d, err := base64.StdEncoding.DecodeString(*req.DataBase64)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "data_base64 is not standard base64")
		}
		return d, nil
	}
	return nil, errorf(http.StatusBadRequest, "data is empty")
}

// checkIDs validates device or user ids and drops repeats.
func checkIDs(key string, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, errorf(http.StatusBadRequest, "%s is empty", key)
	}
	if len(ids) > maxTargets {
		return nil, errorf(http.StatusBadRequest, "%s has %d entries; the limit is %d per call", key, len(ids), maxTargets)
	}
	seen := make(map[string]struct{}, len(ids))
	out := ids[:0]
	for _, id := range ids {
		if !protocol.ValidName(id) {
			return nil, errorf(http.StatusBadRequest, "%s: %q must be 1-128 printable ASCII bytes, no spaces", key, id)
		}
		if _, dup := seen[id]; !dup {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	return out, nil
}
