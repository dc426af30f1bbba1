package api

import (
	"context"
	"slices"
	"testing"
	"time"

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
