package api

import (
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
	nodes := []Endpoints{s.endpoints}
	if s.peers != nil {
		peers, err := s.peers(r.Context())
		if err != nil {
			s.writeError(w, r, clusterDown(err))
			return
		}
		nodes = append(nodes, peers...)
	}
	var eps []endpoint
	for _, n := range nodes {
		eps = append(eps, endpoint{Transport: "tcp", Address: n.TCP}, endpoint{Transport: "ws", URL: n.WS})
	}
	writeJSON(w, http.StatusOK, map[string]any{"endpoints": eps, "heartbeat": int(s.endpoints.Heartbeat.Seconds())})
}
