package api

import (
	"context"
	"net/http"

	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/nodeinfo"
	"github.com/longlink/longlink/protocol"
)

type presence struct {
	Online bool `json:"online"`
}

func (s *Server) handlePresence(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	app := q.Get("app")
	if err := s.authorize(r, app); err != nil {
		return err
	}
	devices := q["device"]
	if len(devices) == 0 || len(devices) > maxPresence {
		return errorf(http.StatusBadRequest, "give 1 to %d device parameters", maxPresence)
	}
	for _, d := range devices {
		if err := checkDevice(d); err != nil {
			return err
		}
	}
	online, err := s.fanout.Online(r.Context(), app, devices)
	if err != nil {
		return clusterDown(err)
	}
	out := make(map[string]presence, len(devices))
	for _, d := range devices {
		out[d] = presence{Online: online[d]}
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": out})
	return nil
}

// handleDispatch tells a device where to connect. It needs no key: devices
// call it before they have anything but their token.
func (s *Server) handleDispatch(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	app, device := q.Get("app"), q.Get("device")
	if err := s.checkAppDevice(app, device); err != nil {
		return err
	}
	nodes, err := s.nodes(r.Context())
	if err != nil {
		return clusterDown(err)
	}
	nodes = s.dispatcher.order(s.cfg.Dispatch, app, device, nodes)
	writeJSON(w, http.StatusOK, map[string]any{"endpoints": Endpoints(nodes), "heartbeat": int(s.cfg.Gateway.Heartbeat.Seconds())})
	return nil
}

// Endpoints lists where devices reach the serving nodes of nodes, in their
// order: draining nodes are left out.
func Endpoints(nodes []nodeinfo.Info) []protocol.Endpoint {
	eps := []protocol.Endpoint{}
	for _, n := range nodes {
		if n.State != nodeinfo.Serving {
			continue
		}
		if n.Plain {
			eps = append(eps, protocol.Endpoint{Transport: "tcp", Address: n.Gateway},
				protocol.Endpoint{Transport: "ws", URL: "ws://" + n.Gateway + "/ws"})
		}
		if n.TLS {
			eps = append(eps, protocol.Endpoint{Transport: "tls", Address: n.Gateway},
				protocol.Endpoint{Transport: "wss", URL: "wss://" + n.Gateway + "/ws"})
		}
	}
	return eps
}

// checkAppDevice checks an (app, device) a call names without a key: 404
// for an unknown app, 400 for a bad device id.
func (s *Server) checkAppDevice(app, device string) error {
	if _, ok := s.apps.Get().ByID(app); !ok {
		return errorf(http.StatusNotFound, "unknown app %q", app)
	}
	return checkDevice(device)
}

// checkDevice answers 400 for a bad device id.
func checkDevice(device string) error {
	if auth.CheckDevice(device) != nil {
		return errorf(http.StatusBadRequest, "device %q must be 1-128 printable ASCII bytes", device)
	}
	return nil
}

// nodes returns this node, then the cluster's other live ones.
func (s *Server) nodes(ctx context.Context) ([]nodeinfo.Info, error) {
	nodes := []nodeinfo.Info{s.self()}
	if s.peers != nil {
		peers, err := s.peers(ctx)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, peers...)
	}
	return nodes, nil
}
