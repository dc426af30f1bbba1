package config

import (
	"sync/atomic"
)

// AppSet is an immutable set of apps, found by id or by API key. A reload
// replaces the whole set.
type AppSet struct {
	byID  map[string]*App
	byKey map[string]*App
}

// NewAppSet indexes apps (which must have passed Validate).
func NewAppSet(apps []App) *AppSet {
	s := &AppSet{byID: make(map[string]*App, len(apps)), byKey: make(map[string]*App, len(apps))}
	for i := range apps {
		s.byID[apps[i].ID] = &apps[i]
		s.byKey[apps[i].APIKey] = &apps[i]
	}
	return s
}

// ByID returns the app with that id.
func (s *AppSet) ByID(id string) (*App, bool) { a, ok := s.byID[id]; return a, ok }

// ByKey returns the app whose API key is key.
func (s *AppSet) ByKey(key string) (*App, bool) { a, ok := s.byKey[key]; return a, ok }

// Secret returns an app's token secret (an auth.SecretFunc).
func (s *AppSet) Secret(app string) (string, bool) {
	a, ok := s.byID[app]
	if !ok {
		return "", false
	}
	return a.Secret, true
}

// LiveApps holds the current AppSet; Set swaps it (config reload). Safe for
// concurrent use.
type LiveApps struct{ p atomic.Pointer[AppSet] }

// NewLiveApps returns a LiveApps holding apps.
func NewLiveApps(apps []App) *LiveApps {
	l := &LiveApps{}
	l.Set(apps)
	return l
}

// Get returns the current set.
func (l *LiveApps) Get() *AppSet { return l.p.Load() }

// Set replaces the current set.
func (l *LiveApps) Set(apps []App) { l.p.Store(NewAppSet(apps)) }

// Secret looks up an app's token secret in the current set.
func (l *LiveApps) Secret(app string) (string, bool) { return l.Get().Secret(app) }
