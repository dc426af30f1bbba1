package api

import (
	"encoding/base64"
	"net/http"

	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/gateway"
	"github.com/longlink/longlink/protocol"
)

// pushRequest is the body of POST /v1/push.
type pushRequest struct {
	App        string   `json:"app"`
	Devices    []string `json:"devices"`
	Users      []string `json:"users"`
	Group      string   `json:"group"`
	Broadcast  bool     `json:"broadcast"`
	Data       *string  `json:"data"`
	DataBase64 *string  `json:"data_base64"`
	TTL        int64    `json:"ttl"`
	ID         string   `json:"id"`
}

type pushResponse struct {
	ID      string `json:"id"`
	Online  int    `json:"online"`
	Offline int    `json:"offline"`
}

func (s *Server) handlePush(w http.ResponseWriter, r *http.Request) {
	var req pushRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := s.authorize(r, req.App); err != nil {
		writeError(w, err)
		return
	}
	data, target, err := s.checkPush(&req)
	if err != nil {
		writeError(w, err)
		return
	}
	id := s.newMessageID()
	m := gateway.NewMessage(&protocol.Frame{Op: protocol.OpPush, App: []byte(req.App), ID: []byte(id), Data: data})
	var online int
	switch target {
	case "devices":
		online = s.fanout.PushDevices(req.App, req.Devices, m)
	case "users":
		online = s.fanout.PushUsers(req.App, req.Users, m)
	case "broadcast":
		online = s.fanout.Broadcast(req.App, m)
	}
	s.metrics.Pushed.WithLabelValues(req.App, target).Inc()
	writeJSON(w, http.StatusOK, pushResponse{ID: id, Online: online})
}

// checkPush validates a push request, deduplicates its targets in place, and
// returns the payload and the target kind.
func (s *Server) checkPush(req *pushRequest) (data []byte, target string, err error) {
	targets := 0
	if req.Devices != nil {
		targets, target = targets+1, "devices"
	}
	if req.Users != nil {
		targets, target = targets+1, "users"
	}
	if req.Group != "" {
		targets, target = targets+1, "group"
	}
	if req.Broadcast {
		targets, target = targets+1, "broadcast"
	}
	if targets != 1 {
		return nil, "", errorf(http.StatusBadRequest, "give exactly one of devices, users, group, broadcast")
	}
	switch target {
	case "devices":
		if req.Devices, err = checkIDs("devices", req.Devices); err != nil {
			return nil, "", err
		}
	case "users":
		if req.Users, err = checkIDs("users", req.Users); err != nil {
			return nil, "", err
		}
	case "group":
		return nil, "", errorf(http.StatusBadRequest, "group pushes are not available on this server yet")
	}
	if req.TTL < 0 {
		return nil, "", errorf(http.StatusBadRequest, "ttl must be 0 (online only) or more seconds")
	}
	if req.TTL > 0 {
		return nil, "", errorf(http.StatusBadRequest, "stored messages (ttl > 0) are not available on this server yet; use ttl 0")
	}
	if req.ID != "" {
		return nil, "", errorf(http.StatusBadRequest, "idempotency keys (id) come with stored messages and are not available on this server yet")
	}
	if data, err = pushData(req); err != nil {
		return nil, "", err
	}
	if len(data) > s.cfg.API.MaxDataBytes {
		return nil, "", errorf(http.StatusRequestEntityTooLarge, "data is %d bytes; the limit is %d", len(data), s.cfg.API.MaxDataBytes)
	}
	return data, target, nil
}

func pushData(req *pushRequest) ([]byte, error) {
	switch {
	case req.Data != nil && req.DataBase64 != nil:
		return nil, errorf(http.StatusBadRequest, "give data or data_base64, not both")
	case req.Data != nil && *req.Data != "":
		return []byte(*req.Data), nil
	case req.DataBase64 != nil && *req.DataBase64 != "":
		d, err := base64.StdEncoding.DecodeString(*req.DataBase64)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "data_base64 is not base64: %v", err)
		}
		return d, nil
	}
	return nil, errorf(http.StatusBadRequest, "data is empty")
}

// checkIDs validates device or user ids and drops repeats.
func checkIDs(key string, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, errorf(http.StatusBadRequest, "%s is empty", key)
	}
	if len(ids) > maxTargets {
		return nil, errorf(http.StatusBadRequest, "%s has %d entries; the limit is %d per call", key, len(ids), maxTargets)
	}
	seen := make(map[string]struct{}, len(ids))
	out := ids[:0]
	for _, id := range ids {
		if auth.CheckDevice(id) != nil {
			return nil, errorf(http.StatusBadRequest, "%s: %q must be 1-128 printable ASCII bytes", key, id)
		}
		if _, dup := seen[id]; !dup {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	return out, nil
}
