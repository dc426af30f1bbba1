package client

// recentIDCount is how many message ids a client remembers to drop repeats.
const recentIDCount = 4096

// recentIDs remembers the last n message ids seen. It grows as ids come, so
// a client that receives little holds little. Not safe for concurrent use.
type recentIDs struct {
	n    int
	ring []string
	next int // where the next id goes once the ring is full
	set  map[string]struct{}
}

func newRecentIDs(n int) recentIDs { return recentIDs{n: n} }

// add records id and reports whether it was seen before.
func (r *recentIDs) add(id string) bool {
	if _, ok := r.set[id]; ok {
		return true
	}
	if r.set == nil {
		r.set = make(map[string]struct{})
	}
	if len(r.ring) < r.n {
		r.ring = append(r.ring, id)
	} else {
		delete(r.set, r.ring[r.next])
		r.ring[r.next] = id
		r.next = (r.next + 1) % r.n
	}
	r.set[id] = struct{}{}
	return false
}
