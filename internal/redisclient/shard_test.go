package redisclient

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/longlink/longlink/internal/testengine"
)

// Slot agrees with Redis's CLUSTER KEYSLOT, and each partition's tag
// hashes to its own slot: the partitions spread evenly over the slots.
func TestSlotsAsRedisHashesThem(t *testing.T) {
	rc := testengine.NewRedisCluster(t)
	c, err := New(rc.URL(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !Sharded(c) {
		t.Fatal("a Redis Cluster's client is not sharded")
	}
	ctx := context.Background()
	keys := []string{"", "a", "ll:demo:s:d1", "{}x", "x{}{y}", "{a}{b}", "ll:{" + Tag(7) + "}demo:m:d7"}
	for p := 0; p < Partitions; p += 97 {
		keys = append(keys, KeyIn(p, "ll:", "demo", "s", fmt.Sprint("d", p)))
	}
	for _, k := range keys {
		want, err := c.Do(ctx, c.B().ClusterKeyslot().Key(k).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if got := Slot(k); got != int(want) {
			t.Errorf("slot of %q: %d, Redis says %d", k, got, want)
		}
	}
	seen := make(map[int]bool)
	for p := range Partitions {
		slot := Slot(KeyIn(p, "ll:", "demo", "s", "d"))
		if slot != p*slots/Partitions || seen[slot] {
			t.Fatalf("partition %d hashes to slot %d", p, slot)
		}
		seen[slot] = true
	}
}

// Keys of one device share a partition; partitions of many devices are
// spread evenly (within 15% of their share, over 4 ranges of slots).
func TestPartitionsSpread(t *testing.T) {
	if Key("ll:", "demo", "s", "d1")[:len("ll:{"+Tag(Partition("demo", "d1"))+"}")] != "ll:{"+Tag(Partition("demo", "d1"))+"}" {
		t.Fatal("a key does not begin with its partition's tag")
	}
	if PartitionOfKey(Key("ll:", "demo", "m", "d1")) != Partition("demo", "d1") {
		t.Fatal("a key's partition is not its id's")
	}
	const devices, ranges = 100_000, 4
	var n [ranges]int
	for i := range devices {
		n[Slot(Key("ll:", "demo", "s", fmt.Sprint("device-", i)))*ranges/slots]++
	}
	for r, c := range n {
		if float64(c) > 1.15*devices/ranges {
			t.Errorf("slot range %d holds %d of %d devices", r, c, devices)
		}
	}
}

func TestPartitionsOf(t *testing.T) {
	ids := []string{"d1", "d1"} // one partition, named twice
	seen := map[int]bool{Partition("demo", "d1"): true}
	for i := range 1000 {
		id := fmt.Sprint("d", i)
		ids = append(ids, id)
		seen[Partition("demo", id)] = true
	}
	if got := PartitionsOf("demo", ids); got != len(seen) {
		t.Errorf("PartitionsOf: %d, want %d", got, len(seen))
	}
	if got := PartitionsOf("demo", nil); got != 0 {
		t.Errorf("PartitionsOf(nil): %d", got)
	}
}

// AppendKeys names the same keys as Key, in the kinds' order, after what
// the slice held.
func TestAppendKeys(t *testing.T) {
	kinds := []string{KindSeq, KindMailbox, KindMailbox, "k", KindRoute}
	for _, id := range []string{"d1", "device-with-a-longer-id", ""} {
		got := AppendKeys([]string{"first"}, "ll:", "demo", id, kinds...)
		want := []string{"first"}
		for _, kind := range kinds {
			want = append(want, Key("ll:", "demo", kind, id))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != len(want) {
			t.Errorf("AppendKeys of %q: %q, want %q", id, got, want)
		}
	}
}

// A stored delivery's keys of its device (seq, mailbox, route): each
// built by Key, and all three by AppendKeys.
func BenchmarkDeviceKeys(b *testing.B) {
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = fmt.Sprint("device-", i)
	}
	b.Run("Key", func(b *testing.B) {
		b.ReportAllocs()
		keys := make([]string, 0, 3)
		for i := range b.N {
			id := ids[i%len(ids)]
			keys = append(keys[:0], Key("ll:", "demo", KindSeq, id), Key("ll:", "demo", KindMailbox, id), Key("ll:", "demo", KindRoute, id))
		}
	})
	b.Run("AppendKeys", func(b *testing.B) {
		b.ReportAllocs()
		keys := make([]string, 0, 3)
		for i := range b.N {
			keys = AppendKeys(keys[:0], "ll:", "demo", ids[i%len(ids)], KindSeq, KindMailbox, KindRoute)
		}
	})
}
