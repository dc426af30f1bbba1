package gateway

import "testing"

// A PUBACK's packet identifier names the newest seq (or bseq) sent with
// its remainder, across the wrap of the identifier space.
func TestPacketIDs(t *testing.T) {
	for _, tc := range []struct {
		seq, sent uint64
		broadcast bool
	}{
		{1, 1, false}, {1, 1, true}, {5, 9, false}, {idSpan, idSpan, false}, {idSpan + 1, idSpan + 3, true},
		{99990, 100000, false}, {100000 - idSpan + 1, 100000, true}, {1 << 40, 1<<40 + 7, false},
	} {
		id := packetID(tc.seq, tc.broadcast)
		if id == 0 || (id%2 == 0) != tc.broadcast {
			t.Fatalf("packetID(%d, %v) = %d", tc.seq, tc.broadcast, id)
		}
		if got := seqOfID(id, tc.sent); got != tc.seq {
			t.Fatalf("seqOfID(%d, %d) = %d, want %d", id, tc.sent, got, tc.seq)
		}
	}
	// Nothing sent yet, or an identifier that names a seq not sent.
	if got := seqOfID(packetID(3, false), 0); got != 0 {
		t.Fatalf("with nothing sent: %d", got)
	}
	if got := seqOfID(packetID(8, false), 5); got != 0 {
		t.Fatalf("an identifier ahead of what was sent: %d", got)
	}
}
