package api

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/protocol"
)

// The messages an app stored or scheduled: /v1/messages. A stored message's
// delivery report is kept by the store (made with the message, completed by
// send once it went out, its acks counted as they come) until
// store.ReportKept after the message expires. An online-only message never
// touches the store: its push's answer is all there is to know of it.

// handleMessages lists an app's scheduled pushes: GET /v1/messages?app=A&state=scheduled.
func (s *Server) handleMessages(w http.ResponseWriter, r *http.Request) error {
	app := r.URL.Query().Get("app")
	if err := s.authorize(r, app); err != nil {
		return err
	}
	if state := r.URL.Query().Get("state"); state != "scheduled" {
		return errorf(http.StatusBadRequest, "state=scheduled is the only list there is (not %q)", state)
	}
	list, err := s.store.Scheduled(r.Context(), app, maxScheduled)
	if err != nil {
		return unavailable(err)
	}
	out := []map[string]any{}
	for _, p := range list {
		if !isEscalation(p.ID) { // the bridge's entries, not pushes
			out = append(out, scheduledJSON(p))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": out})
	return nil
}

func scheduledJSON(p store.Scheduled) map[string]any {
	return map[string]any{"id": p.ID, "state": "scheduled", "scheduled_at": p.At.UTC().Format(time.RFC3339Nano),
		"push": json.RawMessage(p.Request)}
}

// handleMessage answers a message's delivery report, or its schedule:
// GET /v1/messages/{id}?app=A.
func (s *Server) handleMessage(w http.ResponseWriter, r *http.Request) error {
	app, id := r.URL.Query().Get("app"), r.PathValue("id")
	if err := s.authorize(r, app); err != nil {
		return err
	}
	rep, ok, err := s.store.Report(r.Context(), app, id)
	if err != nil {
		return unavailable(err)
	}
	if ok {
		writeJSON(w, http.StatusOK, reportJSON(rep))
		return nil
	}
	p, ok, err := s.store.FindScheduled(r.Context(), app, id)
	switch {
	case err != nil:
		return unavailable(err)
	case !ok:
		return notFound(app, id)
	}
	writeJSON(w, http.StatusOK, scheduledJSON(p))
	return nil
}

func notFound(app, id string) error {
	return errorf(http.StatusNotFound, "no stored message %q in app %s (reports are kept until 24 h after a message expires; online-only messages, handed over when sent, and those pushed with \"report\": false keep none)", id, app)
}

func reportJSON(r store.Report) map[string]any {
	return map[string]any{"id": r.ID, "state": r.State, "target": r.Target, "targeted": r.Targeted,
		"online": r.Online, "stored": r.Stored, "acked": r.Acked, "expired": r.Expired(time.Now()),
		"recalled": r.Recalled, "escalated": r.Escalated, "vendor_accepted": r.VendorAccepted, "vendor_failed": r.VendorFailed,
		"created_at": r.Created.UTC().Format(time.RFC3339Nano),
		"expires_at": r.Expires.UTC().Format(time.RFC3339Nano)}
}

// handleDeleteMessage cancels a scheduled push, or recalls a sent one:
// DELETE /v1/messages/{id}?app=A.
func (s *Server) handleDeleteMessage(w http.ResponseWriter, r *http.Request) error {
	app, id := r.URL.Query().Get("app"), r.PathValue("id")
	if err := s.authorize(r, app); err != nil {
		return err
	}
	if ok, err := s.store.Unschedule(r.Context(), app, id); err != nil {
		return unavailable(err)
	} else if ok {
		writeJSON(w, http.StatusOK, map[string]any{"recalled": 0, "cancelled": true})
		return nil
	}
	rep, n, ok, err := s.store.Recall(r.Context(), app, id)
	switch {
	case err != nil:
		return unavailable(err)
	case !ok:
		return notFound(app, id)
	}
	told, err := s.tellRecalled(r.Context(), app, rep)
	if err != nil {
		return &httpError{status: http.StatusServiceUnavailable, cause: err,
			msg: "the message is recalled where it waited, but the cluster could not be reached to tell online devices; repeat the call"}
	}
	recalls, err := s.recallEscalated(r.Context(), app, rep)
	if err != nil {
		return &httpError{status: http.StatusServiceUnavailable, cause: err,
			msg: "the message is recalled where it waited, but its recall at the OS push vendors that took it could not be kept; repeat the call"}
	}
	writeJSON(w, http.StatusOK, map[string]any{"recalled": n, "notified": told, "vendor_recalls": recalls})
	return nil
}

// tellRecalled sends the recall op to the connections of the recalled
// message's audience that are online now, and returns how many.
func (s *Server) tellRecalled(ctx context.Context, app string, r store.Report) (int, error) {
	f := protocol.Frame{Op: protocol.OpRecall, App: []byte(app), ID: []byte(r.ID)}
	if r.Target == store.TargetBroadcast {
		return s.fanout.Broadcast(ctx, app, f)
	}
	return s.fanout.PushDevices(ctx, app, r.Audience, f)
}
