// Package fifo is a first-in, first-out queue kept in one slice, for queues
// that fill and drain in bursts: taken items are cleared at once (nothing
// stays reachable through the queue), and the consumed front is reclaimed
// once it is most of the slice, so the slice does not grow without bound.
package fifo

// Queue is a FIFO of T. The zero value is an empty queue. Not safe for
// concurrent use.
type Queue[T any] struct {
	items []T // items[head:] are waiting
	head  int
}

// Len returns how many items wait.
func (q *Queue[T]) Len() int { return len(q.items) - q.head }

// Push adds x at the back.
func (q *Queue[T]) Push(x T) { q.items = append(q.items, x) }

// Pop removes and returns the front item; the queue must not be empty.
func (q *Queue[T]) Pop() T {
	x := q.items[q.head]
	q.drop(1)
	return x
}

// PopN removes and returns up to n items from the front, in a new slice.
func (q *Queue[T]) PopN(n int) []T {
	n = min(n, q.Len())
	out := append([]T(nil), q.items[q.head:q.head+n]...)
	q.drop(n)
	return out
}

// drop clears and consumes the n front items, reclaiming the front.
func (q *Queue[T]) drop(n int) {
	clear(q.items[q.head : q.head+n])
	q.head += n
	switch {
	case q.head == len(q.items):
		q.items, q.head = q.items[:0], 0
	case q.head > 64 && q.head > len(q.items)/2:
		q.items = append(q.items[:0], q.items[q.head:]...)
		q.head = 0
	}
}
