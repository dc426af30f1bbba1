// Package bufpool lends read buffers: an idle connection holds none. The
// gateway reads frames into them, and the TLS record layer records.
package bufpool

import "sync"

// size is the capacity of a pooled buffer; larger ones are made, and left
// to the garbage collector.
const size = 4096

var pool = sync.Pool{New: func() any { b := make([]byte, size); return &b }}

// Get returns a buffer of n bytes.
func Get(n int) *[]byte {
	if n > size {
		b := make([]byte, n)
		return &b
	}
	b := pool.Get().(*[]byte)
	*b = (*b)[:n]
	return b
}

// Grow returns b (nil: a new buffer) resized to n bytes, keeping its
// contents. It grows capacity geometrically, up to limit.
func Grow(b *[]byte, n, limit int) *[]byte {
	switch {
	case b == nil:
		return Get(n)
	case n <= cap(*b):
		*b = (*b)[:n]
		return b
	}
	next := make([]byte, n, min(max(2*cap(*b), n), limit))
	copy(next, *b)
	Put(b)
	return &next
}

// Put gives b back (nil does nothing).
func Put(b *[]byte) {
	if b != nil && cap(*b) == size {
		pool.Put(b)
	}
}
