package logbound

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// A storm of one warning makes one line at once, then one per interval
// that counts the rest and keeps the latest reason; another warning is
// its own kind.
func TestBoundedWarnings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var out bytes.Buffer
		log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return out.Write(p)
		}), &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
		l := New(log, 5*time.Second)
		for i := range 100 { // 100 of each in 13 s
			l.Warn("a node did not answer", "node", "n2", "err", i)
			l.Warn("lease not renewed", "err", "EOF")
			time.Sleep(130 * time.Millisecond)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, kind := range []string{`msg="a node did not answer"`, `msg="lease not renewed"`} {
			var lines []string
			for line := range strings.Lines(out.String()) {
				if strings.Contains(line, kind) {
					lines = append(lines, strings.TrimSpace(line))
				}
			}
			counted := 1 // the first line's; the others (no warning falls on an interval's end) count those held
			for _, line := range lines {
				var n int
				if _, after, ok := strings.Cut(line, "repeated="); ok {
					fmt.Sscan(after, &n)
				}
				counted += n
			}
			if len(lines) != 4 || counted != 100 {
				t.Errorf("%s: %d lines counting %d warnings, want 4 lines (one, then one per 5 s of 13) counting 100:\n%s",
					kind, len(lines), counted, strings.Join(lines, "\n"))
			}
			if kind == `msg="a node did not answer"` && (!strings.HasSuffix(lines[0], "err=0") || !strings.Contains(lines[len(lines)-1], "err=99 ")) {
				t.Errorf("the lines do not keep the first reason, then the latest:\n%s", strings.Join(lines, "\n"))
			}
		}
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
