package api

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/protocol"
)

// tagsRequest is the body of POST /v1/tags.
type tagsRequest struct {
	App     string   `json:"app"`
	Devices []string `json:"devices"`
	Add     []string `json:"add"`
	Remove  []string `json:"remove"`
}

func (r *tagsRequest) appID() string { return r.App }

// handleTags adds tags to and removes tags from devices, durably, all or
// nothing.
func (s *Server) handleTags(w http.ResponseWriter, r *http.Request) error {
	var req tagsRequest
	if _, err := s.decodeAs(w, r, &req, nil); err != nil {
		return err
	}
	devices, err := checkIDs("devices", req.Devices)
	if err == nil {
		err = checkTagChange(req.Add, req.Remove)
	}
	if err != nil {
		return err
	}
	switch err := s.store.Tag(r.Context(), req.App, devices, req.Add, req.Remove); {
	case errors.Is(err, store.ErrTooManyTags):
		return errorf(http.StatusBadRequest, "a device would have more than %d tags: nothing was changed", protocol.MaxTags)
	case err != nil:
		return unavailable(err)
	}
	writeJSON(w, http.StatusOK, map[string]int{"devices": len(devices)})
	return nil
}

// checkTagChange checks the tags a call adds and removes.
func checkTagChange(add, remove []string) error {
	if len(add) == 0 && len(remove) == 0 {
		return errorf(http.StatusBadRequest, "give add or remove, or both")
	}
	if err := checkTags(namedTags{"add", add}, namedTags{"remove", remove}); err != nil {
		return err
	}
	for _, t := range add {
		if slices.Contains(remove, t) {
			return errorf(http.StatusBadRequest, "tag %q is both added and removed", t)
		}
	}
	return nil
}

// tagTarget is a push's "tags" target: devices with any of Any, all of
// All, none of Not.
type tagTarget struct {
	Any []string `json:"any,omitempty"`
	All []string `json:"all,omitempty"`
	Not []string `json:"not,omitempty"`
}

// check checks a tag expression.
func (t *tagTarget) check() error {
	if len(t.Any) == 0 && len(t.All) == 0 {
		return errorf(http.StatusBadRequest, "tags needs any or all (not alone selects nothing)")
	}
	return checkTags(namedTags{"tags.any", t.Any}, namedTags{"tags.all", t.All}, namedTags{"tags.not", t.Not})
}

// namedTags is a list of tags and the key it came in, for errors.
type namedTags struct {
	key  string
	tags []string
}

// checkTags checks lists of tags (auth.CheckTags), in order.
func checkTags(lists ...namedTags) error {
	for _, l := range lists {
		if err := auth.CheckTags(l.tags); err != nil {
			return errorf(http.StatusBadRequest, "%s: %v", l.key, err)
		}
	}
	return nil
}

// tagDevices returns the devices a push's tags select.
func (s *Server) tagDevices(ctx context.Context, app string, t *tagTarget) ([]string, error) {
	devices, err := s.store.TagDevices(ctx, app, store.TagQuery{Any: t.Any, All: t.All, Not: t.Not})
	if err != nil {
		return nil, unavailable(err)
	}
	return devices, nil
}
