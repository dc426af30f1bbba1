package client

import (
	"testing"
	"time"
)

func TestBackoffDoublesWithJitter(t *testing.T) {
	c := &Client{cfg: Config{MinBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second}}
	for n, step := range []time.Duration{100, 200, 400, 800, 1600, 2000, 2000} {
		step *= time.Millisecond
		if n == 5 || n == 6 {
			step = 2 * time.Second
		}
		seen := map[time.Duration]bool{}
		for i := 0; i < 200; i++ {
			d := c.backoff(n)
			if d < step/2 || d > step {
				t.Fatalf("attempt %d: %v outside [%v, %v]", n, d, step/2, step)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Fatalf("attempt %d: only %d distinct waits: no jitter", n, len(seen))
		}
	}
	if d := c.backoff(1000); d > 2*time.Second {
		t.Fatalf("no cap for a large attempt count: %v", d)
	}
}

func TestRecentIDs(t *testing.T) {
	r := newRecentIDs(3)
	for _, id := range []string{"a", "b", "c"} {
		if r.add(id) {
			t.Fatalf("%s seen before it was added", id)
		}
	}
	if !r.add("a") || !r.add("c") {
		t.Fatal("a repeat was not recognised")
	}
	r.add("d") // pushes "a" out
	if r.add("a") {
		t.Fatal("the oldest id was not forgotten")
	}
}
