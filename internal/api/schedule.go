package api

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/protocol"
)

// Scheduled pushes: POST /v1/push with "at" keeps the request as it was
// sent (checked now) in the store under the message id it will have, and
// answers 202; FireDue, run every moment by every node, claims the due ones
// (each by one node, for claimLease) and pushes them. A push whose node
// died after its claim is claimed again when the lease ends, and the
// idempotency key it is sent with ("scheduled:<id>") keeps it from being
// sent twice.
const (
	claimLease = 30 * time.Second
	claimBatch = 100
	// maxScheduled bounds the list of an app's scheduled pushes.
	maxScheduled = 1000
)

// schedule keeps req to be pushed at its "at", and returns the answer (a
// 202): the message id it will have.
func (s *Server) schedule(ctx context.Context, req *pushRequest) (map[string]any, error) {
	at, err := time.Parse(time.RFC3339Nano, req.At)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "at must be an RFC 3339 time, like 2026-12-04T08:00:00Z")
	}
	if !at.After(time.Now()) || at.After(time.Now().Add(s.cfg.API.MaxTTL)) {
		return nil, errorf(http.StatusBadRequest, "at must be in the future, and within api.max_ttl (%s); leave it out to push now", s.cfg.API.MaxTTL)
	}
	id := s.newMessageID()
	if first, used, err := s.keyUsed(ctx, req, id); err != nil {
		return nil, err
	} else if used { // a repeated key schedules nothing again
		return map[string]any{"id": first, "duplicate": true}, nil
	}
	body, _ := json.Marshal(req) // strings, numbers and slices: it cannot fail
	if err := s.store.Schedule(ctx, store.Scheduled{App: req.App, ID: id, At: at, Request: body}); err != nil {
		return nil, unavailable(err)
	}
	return map[string]any{"id": id, "scheduled_at": at.UTC().Format(time.RFC3339Nano)}, nil
}

// FireDue pushes the scheduled pushes that are due now, and makes the due
// escalations (side by side), and returns how many. A push that cannot be
// made now (the store or the cluster away) is tried again when its claim
// ends.
func (s *Server) FireDue(ctx context.Context) int {
	claimed := time.Now()
	due, err := s.store.ClaimDue(ctx, claimed, claimLease, claimBatch)
	if err != nil {
		s.log.Warn("scheduled pushes: cannot claim the due ones now", "err", err)
		return 0
	}
	var escalations sync.WaitGroup
	defer escalations.Wait()
	for _, p := range due {
		if isEscalation(p.ID) {
			escalations.Go(func() { s.escalate(ctx, p, claimed) })
			continue
		}
		if err := s.fire(ctx, p); err != nil {
			s.log.Warn("scheduled push not made; it is tried again after its claim", "app", p.App, "id", p.ID, "err", err)
			continue
		}
		if _, err := s.store.Unschedule(ctx, p.App, p.ID); err != nil {
			s.log.Warn("scheduled push made but not marked done; its key keeps it from going twice", "app", p.App, "id", p.ID, "err", err)
		}
	}
	return len(due)
}

// fire makes one scheduled push, as the API would have at its time. A
// request that no longer checks (its app gone) is dropped and logged.
func (s *Server) fire(ctx context.Context, p store.Scheduled) error {
	var req pushRequest
	if err := json.Unmarshal(p.Request, &req); err != nil {
		s.log.Error("scheduled push unreadable: dropped", "app", p.App, "id", p.ID, "err", err)
		return nil
	}
	if _, ok := s.apps.Get().ByID(req.App); !ok {
		s.log.Warn("scheduled push of an app that is gone: dropped", "app", p.App, "id", p.ID)
		return nil
	}
	req.At, req.ID = "", "scheduled:"+p.ID
	data, target, err := s.checkPush(&req)
	if err != nil {
		s.log.Warn("scheduled push no longer valid: dropped", "app", p.App, "id", p.ID, "err", err)
		return nil
	}
	_, err = s.send(ctx, &req, target, protocol.Frame{Op: protocol.OpPush, App: []byte(req.App), ID: []byte(p.ID), Data: data})
	return err
}
