package api

import (
	"context"
	"net/http"

	"github.com/longlink/longlink/protocol"
)

// devicesRequest is the body of the calls that act on devices' connections.
type devicesRequest struct {
	App     string   `json:"app"`
	Group   string   `json:"group,omitempty"`
	Devices []string `json:"devices"`
}

func (r *devicesRequest) appID() string { return r.App }

// decodeDevices decodes and checks a devicesRequest; withGroup says whether
// the call names a group.
func (s *Server) decodeDevices(w http.ResponseWriter, r *http.Request, withGroup bool) (*devicesRequest, error) {
	var req devicesRequest
	if _, err := s.decodeAs(w, r, &req, nil); err != nil {
		return nil, err
	}
	if withGroup && !protocol.ValidName(req.Group) {
		return nil, errorf(http.StatusBadRequest, "group %q must be 1-128 printable ASCII bytes, no spaces", req.Group)
	}
	if !withGroup && req.Group != "" {
		return nil, errorf(http.StatusBadRequest, "unknown key group")
	}
	var err error
	req.Devices, err = checkIDs("devices", req.Devices)
	return &req, err
}

// handleGroup adds devices' connections to a group (join: Fanout.Join), or
// removes them (Fanout.Leave). Only connections live now are members:
// membership ends with the connection.
func (s *Server) handleGroup(join func(ctx context.Context, app, group string, devices []string) (int, error)) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		req, err := s.decodeDevices(w, r, true)
		if err != nil {
			return err
		}
		n, err := join(r.Context(), req.App, req.Group, req.Devices)
		if err != nil {
			return clusterDown(err)
		}
		writeJSON(w, http.StatusOK, map[string]int{"online": n})
		return nil
	}
}
