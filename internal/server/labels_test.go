package server_test

import (
	"bytes"
	"fmt"
	"runtime/pprof"
	"strings"
	"testing"

	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
)

// The long-lived goroutines carry a pprof label (longlink=<part>), so that
// a goroutine or CPU profile says which part of the server a sample is
// from. (They start as Start returns: the test waits for them.)
func TestGoroutinesLabelled(t *testing.T) {
	ts := testserver.Start(t)
	ts.Listen(t, "d1")
	parts := []string{"gateway.accept", "gateway.poller", "gateway.conn", "gateway.writer", "api.http", "hooks.upstream",
		"store.commit", "scheduler"}
	testwait.EventuallyNil(t, func() error {
		var profile bytes.Buffer
		if err := pprof.Lookup("goroutine").WriteTo(&profile, 1); err != nil {
			t.Fatal(err)
		}
		for _, part := range parts {
			if !strings.Contains(profile.String(), `"longlink":"`+part+`"`) {
				return fmt.Errorf("no goroutine labelled longlink=%s", part)
			}
		}
		return nil
	})
}
