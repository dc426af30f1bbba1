package api

import "net/http"

// handleKick closes devices' connections with 4008.
func (s *Server) handleKick(w http.ResponseWriter, r *http.Request) {
	req, err := s.decodeDevices(w, r, false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	n, err := s.fanout.Kick(r.Context(), req.App, req.Devices)
	if err != nil {
		s.writeError(w, r, clusterDown(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"kicked": n})
}
