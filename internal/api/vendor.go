package api

import (
	"net/http"

	"github.com/longlink/longlink/protocol"
)

// vendorRequest is the body of POST /v1/devices/vendor.
type vendorRequest struct {
	App    string `json:"app"`
	Device string `json:"device"`
	Vendor string `json:"vendor"`
	Token  string `json:"token"`
}

func (r *vendorRequest) appID() string { return r.App }

// handleSetVendorToken keeps a device's OS push token of a vendor (an
// empty token removes it), durably, as the device's own vendor_token op
// does.
func (s *Server) handleSetVendorToken(w http.ResponseWriter, r *http.Request) error {
	var req vendorRequest
	if _, err := s.decodeAs(w, r, &req, nil); err != nil {
		return err
	}
	if err := checkDevice(req.Device); err != nil {
		return err
	}
	if err := protocol.CheckVendorToken(req.Vendor, req.Token); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if err := s.store.SetVendorToken(r.Context(), req.App, req.Device, req.Vendor, req.Token); err != nil {
		return unavailable(err)
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	return nil
}

// handleVendorTokens answers a device's OS push tokens, by vendor.
func (s *Server) handleVendorTokens(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	app, device := q.Get("app"), q.Get("device")
	if err := s.authorize(r, app); err != nil {
		return err
	}
	if err := checkDevice(device); err != nil {
		return err
	}
	all, err := s.store.VendorTokens(r.Context(), app, []string{device})
	if err != nil {
		return unavailable(err)
	}
	tokens := all[0]
	if tokens == nil {
		tokens = map[string]string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": tokens})
	return nil
}
