package api

import (
	"context"
	"net/http"

	"github.com/longlink/longlink/internal/auth"
)

type presence struct {
	Online bool `json:"online"`
}

func (s *Server) handlePresence(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	app := q.Get("app")
	if err := s.authorize(r, app); err != nil {
		s.writeError(w, r, err)
		return
	}
	devices := q["device"]
	if len(devices) == 0 || len(devices) > maxPresence {
		s.writeError(w, r, errorf(http.StatusBadRequest, "give 1 to %d device parameters", maxPresence))
		return
	}
	out := make(map[string]presence, len(devices))
	for _, d := range devices {
		if auth.CheckDevice(d) != nil {
			s.writeError(w, r, errorf(http.StatusBadRequest, "device %q must be 1-128 printable ASCII bytes", d))
			return
		}
		online, err := s.fanout.Online(app, d)
		if err != nil {
			s.writeError(w, r, clusterDown(err))
			return
		}
		out[d] = presence{Online: online}
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": out})
}

type endpoint struct {
	Transport string `json:"transport"`
	Address   string `json:"address,omitempty"`
	URL       string `json:"url,omitempty"`
}

// handleDispatch tells a device where to connect. It needs no key: devices
// call it before they have anything but their token.
func (s *Server) handleDispatch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	app, device := q.Get("app"), q.Get("device")
	if _, ok := s.apps.Get().ByID(app); !ok {
		s.writeError(w, r, errorf(http.StatusNotFound, "unknown app %q", app))
		return
	}
	if auth.CheckDevice(device) != nil {
		s.writeError(w, r, errorf(http.StatusBadRequest, "device %q must be 1-128 printable ASCII bytes", device))
		return
	}
	nodes, err := s.nodes(r.Context())
	if err != nil {
		s.writeError(w, r, clusterDown(err))
		return
	}
	var eps []endpoint
	for _, n := range nodes {
		if n.Plain {
			eps = append(eps, endpoint{Transport: "tcp", Address: n.Gateway}, endpoint{Transport: "ws", URL: "ws://" + n.Gateway + "/ws"})
		}
		if n.TLS {
			eps = append(eps, endpoint{Transport: "tls", Address: n.Gateway}, endpoint{Transport: "wss", URL: "wss://" + n.Gateway + "/ws"})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"endpoints": eps, "heartbeat": int(s.cfg.Gateway.Heartbeat.Seconds())})
}

// nodes returns this node, then the cluster's other live ones.
func (s *Server) nodes(ctx context.Context) ([]NodeInfo, error) {
	nodes := []NodeInfo{s.self()}
	if s.peers != nil {
		peers, err := s.peers(ctx)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, peers...)
	}
	return nodes, nil
}
