package fifo

import (
	"slices"
	"testing"
)

// TestQueue: items come out in order through Pop and PopN across many
// reclaims of the front, and a drained queue reuses its slice.
func TestQueue(t *testing.T) {
	var q Queue[int]
	next, want := 0, 0
	for round := range 200 {
		for range 7 + round%5 {
			q.Push(next)
			next++
		}
		if round%2 == 0 {
			got := q.PopN(5)
			if !slices.Equal(got, []int{want, want + 1, want + 2, want + 3, want + 4}) {
				t.Fatalf("round %d: PopN gave %v, want from %d", round, got, want)
			}
			want += 5
		} else if got := q.Pop(); got != want {
			t.Fatalf("round %d: Pop gave %d, want %d", round, got, want)
		} else {
			want++
		}
		if q.Len() != next-want {
			t.Fatalf("round %d: Len %d, want %d", round, q.Len(), next-want)
		}
		if q.head > 64 && q.head > len(q.items)/2 {
			t.Fatalf("round %d: front of %d consumed items not reclaimed (len %d)", round, q.head, len(q.items))
		}
	}
	rest := q.PopN(q.Len() + 10)
	if len(rest) != next-want || rest[0] != want || q.Len() != 0 || q.head != 0 || len(q.items) != 0 {
		t.Fatalf("draining: got %d items from %d, queue left with len %d head %d", len(rest), rest[0], len(q.items), q.head)
	}
}

// TestQueueClearsTaken: taken slots are zeroed, so the queue keeps nothing
// reachable.
func TestQueueClearsTaken(t *testing.T) {
	var q Queue[*int]
	for i := range 4 {
		q.Push(&i)
	}
	q.Pop()
	q.PopN(2)
	for i, p := range q.items[:q.head] {
		if p != nil {
			t.Fatalf("slot %d still holds a taken item", i)
		}
	}
}
