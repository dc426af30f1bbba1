package redisclient

import (
	"context"
	"testing"
	"time"

	"github.com/longlink/longlink/internal/testengine"
	"github.com/redis/rueidis"
)

// After Redis is killed and restarted (from its AOF), the next writes
// succeed, one command or a pipeline: each meets one of the client's
// connections broken by the restart, and is resent on the next (rueidis
// alone failed them with EOF, whoever made them).
func TestWritesAfterARestart(t *testing.T) {
	for _, w := range []struct {
		name  string
		write func(ctx context.Context, c rueidis.Client) error
	}{
		{"command", func(ctx context.Context, c rueidis.Client) error {
			return c.Do(ctx, c.B().Set().Key("k").Value("v").Build()).Error()
		}},
		{"pipeline", func(ctx context.Context, c rueidis.Client) error {
			for _, res := range c.DoMulti(ctx, c.B().Set().Key("k").Value("v").Build(), c.B().Set().Key("l").Value("w").Build()) {
				if err := res.Error(); err != nil {
					return err
				}
			}
			return nil
		}},
	} {
		t.Run(w.name, func(t *testing.T) {
			r := testengine.Redis(t)
			c, err := New(r.URL(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			for round := range 3 {
				for i := range 8 { // more writes than the client has connections
					if err := w.write(ctx, c); err != nil {
						t.Fatalf("round %d: write %d: %v", round, i, err)
					}
				}
				r.Stop()
				r.Start()
			}
			if v, err := c.Do(ctx, c.B().Get().Key("k").Build()).ToString(); err != nil || v != "v" {
				t.Fatalf("read back %q, %v", v, err)
			}
		})
	}
}

// A script runs on a Redis that does not have it yet (it is loaded), and
// again after a restart, which forgets it; with Redis away it fails with an
// error, for one call and for many.
func TestScriptLoadedAsNeeded(t *testing.T) {
	r := testengine.Redis(t)
	c, err := New(r.URL(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	incr := NewScript("#!lua\nreturn redis.call('INCR', KEYS[1])")
	ctx := context.Background()
	for want := range int64(2) {
		if n, err := incr.Exec(ctx, c, []string{"n"}, nil).AsInt64(); err != nil || n != want+1 {
			t.Fatalf("run %d: %d %v", want, n, err)
		}
		r.Stop()
		r.Start()
	}
	r.Stop()
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if err := incr.Exec(short, c, []string{"n"}, nil).Error(); err == nil {
		t.Fatal("a script ran with Redis away")
	}
	for _, res := range incr.ExecMulti(short, c, []rueidis.LuaExec{{Keys: []string{"a"}}, {Keys: []string{"b"}}}) {
		if res.Error() == nil {
			t.Fatal("a script ran with Redis away")
		}
	}
}
