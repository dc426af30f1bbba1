package cluster

import (
	"context"
	"fmt"
	"sync"

	"github.com/longlink/longlink/internal/golabel"
)

// One live session per (app, device) through faults: a login claims the
// device's route and tells the node of the older session to end it
// (tellReplaced). When that node cannot be told (the bus, or it, is away),
// two ways close the older session once it can be:
//   - the node that could not tell asks again at each renewal of its lease
//     (untold), as long as the other node holds the session;
//   - a node that comes back to the bus, or renews its lease after a gap
//     (it was stalled, or Redis away; its lease may have lapsed, and then
//     nobody asks it), checks every session it holds against its route and
//     ends those whose route names a newer session (audit).
//
// There is no periodic audit: it would read every device's route from
// Redis again and again, a per-device load that grows with the fleet, for
// the one case the two above miss (the node that could not tell died before
// it told; the older session then lives until its device goes away).

// maxUntold bounds the replaced sessions whose node is yet to be told; past
// it they wait for that node's own audit.
const maxUntold = 100_000

// untoldKey is a node, in one run, and an app: one request tells it all of
// the app's replaced sessions.
type untoldKey struct {
	node, incarnation, app string
}

// untold are the replaced sessions whose node was not told yet. Safe for
// concurrent use.
type untold struct {
	mu sync.Mutex
	m  map[untoldKey][]replaced
	n  int
}

// add records that older's node is to be told that r replaced its session;
// false when too many wait already.
func (u *untold) add(older route, r replaced) bool {
	return u.put(untoldKey{node: older.node, incarnation: older.incarnation, app: r.app}, []replaced{r})
}

func (u *untold) put(k untoldKey, rs []replaced) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n+len(rs) > maxUntold {
		return false
	}
	if u.m == nil {
		u.m = make(map[untoldKey][]replaced)
	}
	u.m[k] = append(u.m[k], rs...)
	u.n += len(rs)
	return true
}

// take returns everything waiting, and forgets it.
func (u *untold) take() map[untoldKey][]replaced {
	u.mu.Lock()
	defer u.mu.Unlock()
	m := u.m
	u.m, u.n = nil, 0
	return m
}

// tellUntold asks again, at once and within peerWait, the nodes not told
// yet that their sessions were replaced; those that still do not answer are
// asked at the next renewal. A node no longer in the run that held the
// session is left out: the session ended with it, or (its lease lapsed) it
// checks its sessions when it comes back.
func (n *Node) tellUntold() {
	batches := n.untold.take()
	if len(batches) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), peerWait)
	defer cancel()
	runs, err := n.runs(ctx)
	var wg sync.WaitGroup
	for k, rs := range batches {
		if err == nil && !sameRun(route{node: k.node, incarnation: k.incarnation}, runs) {
			continue
		}
		wg.Go(func() {
			if _, err := n.request(ctx, k.node, replaceRequest(k.app, rs)); err != nil {
				n.untold.put(k, rs)
			}
		})
	}
	wg.Wait()
}

// startAudit starts an audit unless one runs.
func (n *Node) startAudit() {
	if !n.auditing.CompareAndSwap(false, true) {
		return
	}
	n.auditDue.Store(false)
	n.wg.Add(1)
	golabel.Go("cluster.audit", func() {
		defer n.wg.Done()
		defer n.auditing.Store(false)
		if err := n.audit(); err != nil {
			n.auditDue.Store(true) // at the next renewal
			n.warn.Warn("cluster: sessions not checked against their routes", "err", err)
		}
	})
}

// audit checks the sessions held here against their routes, and ends
// (4003) those whose route names a newer session: the device logged in
// again elsewhere while this node could not be told.
func (n *Node) audit() error {
	ctx := n.life // Close does not wait for a long audit
	sessions := n.gw.Sessions()
	keys := make([]string, len(sessions))
	for i, s := range sessions {
		keys[i] = n.routeKey(s.App, s.Device)
	}
	stale := make(map[string][]replaced) // by app
	err := n.readRoutes(ctx, keys, func(i int, r route) {
		if s := sessions[i]; r.session > s.Number {
			stale[s.App] = append(stale[s.App], replaced{app: s.App, device: s.Device, session: r.session})
		}
	})
	if err != nil {
		return fmt.Errorf("cluster: audit: %w", err)
	}
	ended := 0
	for app, rs := range stale {
		req := replaceRequest(app, rs)
		k, _ := n.gw.Replace(app, req.Devices, req.Sessions) // their cursors are saved as they end
		ended += k
	}
	if ended > 0 {
		n.log.Info("cluster: sessions replaced on other nodes while this node could not be told were ended", "sessions", ended)
	}
	return nil
}
