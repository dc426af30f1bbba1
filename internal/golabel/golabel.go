// Package golabel names long-lived goroutines for profiles: a goroutine
// that calls Set carries the pprof label longlink=<name>, and so does every
// goroutine it starts, so that a CPU or goroutine profile
// (/debug/pprof/...?debug=1, or `go tool pprof -tagfocus longlink=...`)
// says which part of the server a sample is from.
package golabel

import (
	"context"
	"runtime/pprof"
)

// Label is a goroutine label, made once (setting it then costs nothing).
type Label struct{ ctx context.Context }

// New returns the label longlink=name.
func New(name string) Label {
	return Label{pprof.WithLabels(context.Background(), pprof.Labels("longlink", name))}
}

// Set labels the calling goroutine.
func (l Label) Set() { pprof.SetGoroutineLabels(l.ctx) }

// Go runs fn in a new goroutine labelled name.
func Go(name string, fn func()) {
	l := New(name)
	go func() {
		l.Set()
		fn()
	}()
}
