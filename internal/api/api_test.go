package api

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/logbound"
)

// One stored push may write at most limits.push_bytes (413), and one app
// may have at most limits.app_pending_bytes being written at once (429);
// apps do not share the bound, and released bytes count no more.
func TestReserve(t *testing.T) {
	cfg := config.Default()
	cfg.Limits.PushBytes, cfg.Limits.AppPendingBytes = 100, 150
	s := &Server{cfg: cfg}
	status := func(err error) int {
		var he *httpError
		if !errors.As(err, &he) {
			return 0
		}
		return he.status
	}
	if _, err := s.reserve("a", 101); status(err) != http.StatusRequestEntityTooLarge {
		t.Fatalf("over push_bytes: %v", err)
	}
	release, err := s.reserve("a", 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.reserve("a", 60); status(err) != http.StatusTooManyRequests {
		t.Fatalf("over app_pending_bytes: %v", err)
	}
	if r, err := s.reserve("b", 100); err != nil {
		t.Fatalf("another app refused: %v", err)
	} else {
		r()
	}
	release()
	if _, err := s.reserve("a", 100); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

// An error that is not an httpError (a bug, a failed dependency) answers
// 500 "internal error": its text, which may hold paths and Go names, stays
// in the log.
func TestInternalErrorsStayInTheLog(t *testing.T) {
	var log bytes.Buffer
	lg := slog.New(slog.NewTextHandler(&log, nil))
	s := &Server{log: lg, errLog: logbound.New(lg, logbound.Interval)}
	rec := httptest.NewRecorder()
	s.writeError(rec, httptest.NewRequest(http.MethodPost, "/v1/push", nil),
		errors.New("pebble: open /var/lib/longlink/store/000042.sst: no space left"))
	if rec.Code != 500 || strings.TrimSpace(rec.Body.String()) != `{"error":"internal error"}` {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(log.String(), "000042.sst") {
		t.Fatalf("the cause is not in the log: %s", log.String())
	}
	rec = httptest.NewRecorder()
	s.writeError(rec, httptest.NewRequest(http.MethodPost, "/v1/push", nil), unavailable(errors.New("store: closed")))
	if rec.Code != 503 || strings.Contains(rec.Body.String(), "store: closed") {
		t.Fatalf("503 carries its cause: %d %s", rec.Code, rec.Body)
	}
}
