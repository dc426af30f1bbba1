package memstore

import (
	"testing"

	"github.com/longlink/longlink/internal/store"
	"github.com/longlink/longlink/internal/store/storetest"
)

// backend opens every store of one test over the same Data, as a durable
// backend reopens its place.
func backend(t testing.TB) storetest.Opener {
	d := NewData()
	return func(o store.Options) store.Store {
		s := Open(d, o)
		t.Cleanup(func() { s.Close() })
		return s
	}
}

func TestConformance(t *testing.T) { storetest.Run(t, backend) }
