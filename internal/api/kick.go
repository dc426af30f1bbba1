package api

import "net/http"

// handleKick closes devices' connections with 4008.
func (s *Server) handleKick(w http.ResponseWriter, r *http.Request) error {
	req, err := s.decodeDevices(w, r, false)
	if err != nil {
		return err
	}
	n, err := s.fanout.Kick(r.Context(), req.App, req.Devices)
	if err != nil {
		return clusterDown(err)
	}
	writeJSON(w, http.StatusOK, map[string]int{"kicked": n})
	return nil
}
