package gateway

import (
	"github.com/longlink/longlink/protocol"
)

// Bounds of what a stats op may say; beyond them a value is dropped and
// counted, never trusted (the labels and histograms stay what the server
// expects, whatever a client sends).
const (
	maxStatsRTTs     = 64     // ping samples per stats op
	maxClientRTTMs   = 60000  // a longer ping is a measurement error
	maxClientLoginMs = 120000 // so is a longer connect
	maxClientFailed  = 10000  // failed connects since the last stats
)

var clientNetworks = map[string]bool{"wifi": true, "cellular": true, "unknown": true}

// clientTransports are the transports a client may report, as the metric
// labels them (the SDKs name JSON over WebSocket "ws-json").
var clientTransports = map[string]string{
	"tcp": "tcp", "ws": "ws", "ws-json": "ws_json", "ws_json": "ws_json",
	"tls": "tls", "wss": "wss", "wss-json": "wss_json", "wss_json": "wss_json",
}

// handleStats records what the client measured, for the app it names (or the
// connection's first). It has no reply.
func (c *conn) handleStats(f *protocol.Frame) {
	m := c.gw.metrics
	app := c.sessions[0].app
	if len(f.App) > 0 {
		s, ok := c.sessionOf(f)
		if !ok {
			m.ClientDropped.WithLabelValues("app").Inc()
			return
		}
		app = s.app
	}
	network := string(f.Network)
	if network == "" {
		network = "unknown"
	}
	if !clientNetworks[network] {
		m.ClientDropped.WithLabelValues("network").Inc()
		return
	}
	transport, ok := clientTransports[string(f.Transport)]
	switch {
	case !ok && len(f.Transport) > 0:
		m.ClientDropped.WithLabelValues("transport").Inc()
		return
	case !ok:
		transport = c.transport() // not said: the one it uses now
	}
	labels := []string{app, transport, network}
	for i, ms := range f.RTTs {
		if i >= maxStatsRTTs || ms > maxClientRTTMs {
			m.ClientDropped.WithLabelValues("rtt").Inc()
			continue
		}
		m.ClientRTT.WithLabelValues(labels...).Observe(float64(ms) / 1000)
	}
	switch ms := f.ConnectMs; {
	case ms > maxClientLoginMs:
		m.ClientDropped.WithLabelValues("connect").Inc()
	case ms > 0:
		m.ClientConnect.WithLabelValues(labels...).Observe(float64(ms) / 1000)
	}
	switch {
	case f.Failures > maxClientFailed:
		m.ClientDropped.WithLabelValues("failures").Inc()
	case f.Failures > 0:
		m.ClientFailures.WithLabelValues(labels...).Add(float64(f.Failures))
	}
}
