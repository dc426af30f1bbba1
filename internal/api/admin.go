package api

import (
	"cmp"
	"errors"
	"net/http"
	"time"

	"github.com/longlink/longlink/internal/gateway"
	"github.com/longlink/longlink/internal/metrics"
	"github.com/longlink/longlink/internal/nodeinfo"
	"github.com/longlink/longlink/internal/store"
)

// nodeJSON is a node as the API shows it. What nodes keep in their leases
// is nodeinfo.Info: the two are apart, so that a field renamed here does
// not change what is stored in Redis.
type nodeJSON struct {
	Node        string    `json:"node"`
	State       string    `json:"state"`
	Connections int       `json:"connections"`
	Gateway     string    `json:"gateway"`
	API         string    `json:"api"`
	StartedAt   time.Time `json:"started_at"`
	Plain       bool      `json:"plain"`
	TLS         bool      `json:"tls"`
}

func nodeJSONOf(n nodeinfo.Info) nodeJSON {
	return nodeJSON{Node: n.Node, State: string(n.State), Connections: n.Connections, Gateway: n.Gateway,
		API: n.API, StartedAt: n.StartedAt, Plain: n.Plain, TLS: n.TLS}
}

// nodeStatsJSON is a node's figures as /v1/admin/stats shows them.
type nodeStatsJSON struct {
	nodeJSON
	At      time.Time        `json:"at"`
	Samples []metrics.Sample `json:"samples"`
}

// handleStats gives every node's figures: this node's, then in a cluster
// each other live node's.
func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) error {
	nodes, err := s.stats(r.Context())
	if err != nil {
		return clusterDown(err)
	}
	views := make([]nodeStatsJSON, len(nodes))
	for i, n := range nodes {
		views[i] = nodeStatsJSON{nodeJSONOf(n.Info), n.At, n.Samples}
	}
	writeJSON(w, http.StatusOK, map[string]any{"nodes": views})
	return nil
}

// handleNodes lists the nodes: this one, then the cluster's other live
// ones (as their leases last said).
func (s *Server) handleNodes(w http.ResponseWriter, r *http.Request) error {
	nodes, err := s.nodes(r.Context())
	if err != nil {
		return clusterDown(err)
	}
	views := make([]nodeJSON, len(nodes))
	for i, n := range nodes {
		views[i] = nodeJSONOf(n)
	}
	writeJSON(w, http.StatusOK, map[string]any{"nodes": views})
	return nil
}

// handleDrain starts draining this node, or the live node ?node= names,
// and answers at once, with the node as it is then (state draining).
func (s *Server) handleDrain(w http.ResponseWriter, r *http.Request) error {
	node := r.URL.Query().Get("node")
	s.log.Info("drain requested", "remote", r.RemoteAddr, "node", cmp.Or(node, s.cfg.Node))
	var info nodeinfo.Info
	switch {
	case node == "" || node == s.cfg.Node:
		s.drain()
		info = s.self()
	case s.drainAt == nil:
		return errorf(http.StatusNotFound, "no node %q: this node runs alone", node)
	default:
		var err error
		if info, err = s.drainAt(r.Context(), node); errors.Is(err, nodeinfo.ErrNoNode) {
			return errorf(http.StatusNotFound, "no live node %q", node)
		} else if err != nil {
			return clusterDown(err)
		}
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"node": nodeJSONOf(info),
		"drain_period_ms": s.cfg.Gateway.DrainPeriod.Milliseconds()})
	return nil
}

// deviceAnswer is what /v1/admin/devices tells about a device.
type deviceAnswer struct {
	App    string `json:"app"`
	Device string `json:"device"`
	Online bool   `json:"online"`
	*gateway.DeviceInfo
	// Waiting counts the stored messages in the device's mailbox, not yet
	// acked; BroadcastsWaiting the stored broadcasts of the app's log after
	// the device's cursor (for a client that takes them by seq, those not
	// yet copied into its mailbox). Each at most store.mailbox_limit.
	Waiting           int `json:"stored_waiting"`
	BroadcastsWaiting int `json:"broadcasts_waiting"`
}

// handleDevice tells where a device is connected and how many stored
// messages wait for it.
func (s *Server) handleDevice(w http.ResponseWriter, r *http.Request) error {
	app, device := r.PathValue("app"), r.PathValue("device")
	if err := s.checkAppDevice(app, device); err != nil {
		return err
	}
	info, err := s.fanout.Device(r.Context(), app, device)
	if err != nil {
		return clusterDown(err)
	}
	waiting, err := s.store.Since(r.Context(), app, device, 0, s.cfg.Store.MailboxLimit)
	var broadcasts []store.Stored
	if err == nil {
		var after uint64 // a live session's cursor, in a cluster, is in its node's memory
		if info != nil {
			after = info.AckedBSeq
		}
		broadcasts, _, err = s.store.Broadcasts(r.Context(), app, device, after, s.cfg.Store.MailboxLimit)
	}
	if err != nil {
		return &httpError{status: http.StatusServiceUnavailable, msg: "cannot read the store now; retry later", cause: err}
	}
	writeJSON(w, http.StatusOK, deviceAnswer{App: app, Device: device, Online: info != nil, DeviceInfo: info,
		Waiting: len(waiting), BroadcastsWaiting: len(broadcasts)})
	return nil
}
