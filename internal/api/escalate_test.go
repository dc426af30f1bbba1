package api

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/longlink/longlink/internal/bridge/bridgetest"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/metrics"
	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/internal/store/memstore"
)

// Which tokens an escalation entry goes to, by the outcomes its message's
// copies had: the first attempt to those with none yet or pending (sent
// again after a claim that ended unfinished), a retry to the pending ones
// only, a recall to those the vendor took.
func TestEscalationTargets(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(store.Options{})
	devices := []string{"none", "accepted", "failed", "pending"}
	m := store.Message{App: "demo", ID: "m1", Data: []byte("x"), Expires: time.Now().Add(time.Hour), Target: store.TargetDevices}
	if _, err := st.Append(ctx, devices, m, ""); err != nil {
		t.Fatal(err)
	}
	for _, d := range devices {
		if err := st.SetVendorToken(ctx, "demo", d, "fcm", "tok-"+d); err != nil {
			t.Fatal(err)
		}
	}
	err := st.Escalated(ctx, "demo", "m1", []store.Escalation{{Device: "accepted", Vendor: "fcm", Outcome: store.VendorAccepted},
		{Device: "failed", Vendor: "fcm", Outcome: store.VendorFailed}, {Device: "pending", Vendor: "fcm", Outcome: store.VendorPending}})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{store: st}
	for _, c := range []struct { // targets come in device order
		e    escalation
		want []string
	}{
		{escalation{ID: "m1"}, []string{"none", "pending"}},
		{escalation{ID: "m1", Attempt: 1}, []string{"pending"}},
		{escalation{ID: "m1", Recall: true}, []string{"accepted"}},
	} {
		targets, err := s.escalationTargets(ctx, "demo", &c.e)
		var got []string
		for _, tg := range targets {
			got = append(got, tg.device)
			if tg.token != "tok-"+tg.device || tg.vendor != "fcm" {
				t.Errorf("%+v: target %+v", c.e, tg)
			}
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%+v: %v %v, want %v", c.e, got, err, c.want)
		}
	}
}

// A claim's sends stop at its deadline (half the lease: another node may
// claim the entry at its end): none starts after it, and the entry is left
// unfinished, for the sends left to be made when it is claimed again.
// Before it, every target is sent to and its outcome kept.
func TestSendEscalationStopsAtTheDeadline(t *testing.T) {
	ctx := context.Background()
	v, srv, sa := bridgetest.FCM(t)
	saFile := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(saFile, sa, 0o600); err != nil {
		t.Fatal(err)
	}
	st := memstore.New(store.Options{})
	m := store.Message{App: "demo", ID: "m1", Data: []byte("x"), Expires: time.Now().Add(time.Hour), Target: store.TargetDevices}
	if _, err := st.Append(ctx, []string{"d1", "d2"}, m, ""); err != nil {
		t.Fatal(err)
	}
	app := config.App{ID: "demo", PushBridge: config.PushBridge{FCM: config.FCMVendor{ServiceAccountFile: saFile, URL: srv.URL}}}
	s := &Server{store: st, apps: config.NewLiveApps([]config.App{app}), metrics: metrics.New(), log: slog.New(slog.DiscardHandler),
		bridgeState: bridgeState{bridges: map[string]appSenders{}, vendorClient: srv.Client(), vendorSlots: make(chan struct{}, escalationSends)}}
	e := &escalation{ID: "m1", Expires: m.Expires.UnixMilli()}
	targets := []vendorTarget{{device: "d1", vendor: "fcm", token: "tok-1"}, {device: "d2", vendor: "fcm", token: "tok-2"}}

	if _, _, finished := s.sendEscalation(ctx, "demo", e, targets, time.Now().Add(-time.Millisecond)); finished || v.Total() != 0 {
		t.Fatalf("past the deadline: finished %v, %d sent", finished, v.Total())
	}
	pending, _, finished := s.sendEscalation(ctx, "demo", e, targets, time.Now().Add(time.Minute))
	outcomes, _ := st.Escalations(ctx, "demo", "m1")
	if !finished || len(pending) != 0 || v.Total() != 2 || len(outcomes) != 2 {
		t.Fatalf("before the deadline: finished %v, pending %v, %d sent, outcomes %v", finished, pending, v.Total(), outcomes)
	}
}
