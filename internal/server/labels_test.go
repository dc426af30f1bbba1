package server_test

import (
	"bytes"
	"runtime/pprof"
	"strings"
	"testing"

	"github.com/longlink/longlink/internal/testserver"
)

// The long-lived goroutines carry a pprof label (longlink=<part>), so that
// a goroutine or CPU profile says which part of the server a sample is
// from.
func TestGoroutinesLabelled(t *testing.T) {
	ts := testserver.Start(t)
	ts.Listen(t, "d1")
	var profile bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&profile, 1); err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{"gateway.accept", "gateway.poller", "gateway.writer", "api.http", "hooks.upstream",
		"store.commit", "scheduler"} {
		if !strings.Contains(profile.String(), `"longlink":"`+part+`"`) {
			t.Errorf("no goroutine labelled longlink=%s", part)
		}
	}
}
