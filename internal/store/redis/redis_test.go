package redis

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/internal/metrics"
	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/internal/store/storetest"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testwait"
)

// backend is a fresh redis-server per test; opening again reconnects.
func backend(t testing.TB) storetest.Opener {
	r := testengine.Redis(t)
	return func(o store.Options) store.Store {
		s, err := Open(Options{Options: o, URL: r.URL()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

func TestConformance(t *testing.T) { storetest.Run(t, backend) }

func open(t *testing.T, url string, edit ...func(*Options)) *Store {
	t.Helper()
	o := Options{Options: store.Options{Metrics: metrics.New()}, URL: url}
	for _, e := range edit {
		e(&o)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func msg(id string) store.Message {
	return store.Message{App: "demo", ID: id, Data: []byte(id), Expires: time.Now().Add(time.Hour)}
}

// Every push that Redis answered survives a crash of Redis (kill -9) when
// its AOF is fsynced at every write.
func TestAcknowledgedSurviveRedisCrash(t *testing.T) {
	r := testengine.Redis(t)
	s := open(t, r.URL())
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				if _, err := s.Append(context.Background(), []string{fmt.Sprint("d", g)}, msg(fmt.Sprint(g, "-", i)), ""); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	r.Stop()
	r.Start()
	for g := range 20 {
		var got []store.Stored
		testwait.Eventually(t, fmt.Sprint("10 messages for d", g), func() bool {
			var err error
			got, err = s.Since(context.Background(), "demo", fmt.Sprint("d", g), 0, 100)
			return err == nil && len(got) == 10
		})
	}
}

// While Redis is down a push fails with an error (within the timeout) and
// stores nothing; once it is back, pushes work again by themselves.
func TestRedisDownThenBack(t *testing.T) {
	r := testengine.Redis(t)
	s := open(t, r.URL(), func(o *Options) { o.Timeout = 300 * time.Millisecond })
	r.Stop()
	start := time.Now()
	if _, err := s.Append(context.Background(), []string{"d1"}, msg("lost"), ""); err == nil {
		t.Fatal("a push with Redis down succeeded")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the failed push took %v", took)
	}
	r.Start()
	testwait.Eventually(t, "a push to work again", func() bool {
		_, err := s.Append(context.Background(), []string{"d1"}, msg("kept"), "")
		return err == nil
	})
	got, err := s.Since(context.Background(), "demo", "d1", 0, 10)
	if err != nil || len(got) != 1 || got[0].ID != "kept" {
		t.Fatalf("after Redis came back: %+v %v", got, err)
	}
}

// Open warns when the server would lose acknowledged writes in a crash.
func TestWarnsWithoutFsyncAlways(t *testing.T) {
	r := testengine.Redis(t, "--appendfsync", "everysec")
	var log bytes.Buffer
	open(t, r.URL(), func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&log, nil)) })
	if !strings.Contains(log.String(), "appendfsync always") || !strings.Contains(log.String(), "everysec") {
		t.Fatalf("no warning: %q", log.String())
	}
}

func BenchmarkStore(b *testing.B) { storetest.Bench(b, backend) }
