// Package nodeinfo is what a node says about itself to the other nodes of
// a cluster: kept in its lease in Redis and sent over the bus. It is its
// own format, apart from the HTTP API's (package api renders it), so that
// renaming a field of the API cannot change what is stored.
package nodeinfo

import (
	"errors"
	"time"

	"github.com/longlink/longlink/internal/metrics"
)

// State is what a node does with logins.
type State string

// A node's states.
const (
	Serving  State = "serving"
	Draining State = "draining" // refusing logins, moving its devices away
)

// Info is one node. In a cluster every node keeps its own in its lease.
type Info struct {
	Node        string    `json:"node"`
	State       State     `json:"state"`
	Connections int       `json:"connections"`
	Gateway     string    `json:"gateway"` // host:port devices reach the gateway at
	API         string    `json:"api"`     // the API's base URL
	StartedAt   time.Time `json:"started_at"`
	Plain       bool      `json:"plain"` // the gateway takes native TCP and ws://
	TLS         bool      `json:"tls"`   // the gateway takes TLS and wss://
}

// Stats is one node's figures at one moment, for the dashboard: the node,
// and its metrics (the same as its /metrics). Counters are totals since
// the node started; a reader takes rates from two snapshots.
type Stats struct {
	Info
	At      time.Time        `json:"at"`
	Samples []metrics.Sample `json:"samples"`
}

// StatsOf returns the figures of the node self says, from m, now.
func StatsOf(self Info, m *metrics.Metrics) Stats {
	return Stats{Info: self, At: time.Now().UTC(), Samples: m.Snapshot()}
}

// ErrNoNode is the error of a request for a node that is not live.
var ErrNoNode = errors.New("no such live node")
