package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/internal/metrics"
	"github.com/longlink/longlink/internal/redisclient"
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

// The same suite on a Redis Cluster of 3 primaries and 3 replicas: one
// cluster for every case, each case under a key prefix of its own (the
// cluster takes seconds to start).
func TestConformanceOnRedisCluster(t *testing.T) {
	rc := testengine.NewRedisCluster(t)
	var cases atomic.Int64
	storetest.Run(t, func(t testing.TB) storetest.Opener {
		prefix := fmt.Sprintf("case%d:", cases.Add(1))
		return func(o store.Options) store.Store {
			s, err := Open(Options{Options: o, URL: rc.URL(), Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
	})
}

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

// On a Redis Cluster the keys of 100,000 devices spread over the
// primaries: none holds more than 1.15 times its share.
func TestSpreadOverPrimaries(t *testing.T) {
	rc := testengine.NewRedisCluster(t)
	s := open(t, rc.URL())
	devices := make([]string, 100_000)
	for i := range devices {
		devices[i] = fmt.Sprint("device-", i)
	}
	if _, err := s.Append(context.Background(), devices, msg("m1"), ""); err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	var total int64
	primaries, _ := rc.Roles(t)
	nodes := s.client.Nodes() // the client's connection to each primary
	for _, p := range primaries {
		node, ok := nodes[p.Addr]
		if !ok {
			t.Fatalf("the client has no connection to primary %s", p.Addr)
		}
		n, err := node.Do(context.Background(), node.B().Dbsize().Build()).AsInt64()
		if err != nil {
			t.Fatal(p.Addr, err)
		}
		sizes, total = append(sizes, n), total+n
	}
	if len(sizes) != 3 || total < 2*int64(len(devices)) {
		t.Fatalf("primaries hold %v keys", sizes)
	}
	for _, n := range sizes {
		if float64(n) > 1.15*float64(total)/3 {
			t.Errorf("a primary holds %d of %d keys: %v", n, total, sizes)
		}
	}
}

// On a Redis Cluster a push is atomic per partition: a retry of a push
// whose first try reached only some partitions (here: a first try to half
// of the devices) stores the first message in the partitions it missed,
// once, and answers the first id.
func TestRetryCompletesAPartialPush(t *testing.T) {
	rc := testengine.NewRedisCluster(t)
	s := open(t, rc.URL())
	ctx := context.Background()
	devices := make([]string, 64)
	for i := range devices {
		devices[i] = fmt.Sprint("d", i)
	}
	first, err := s.Append(ctx, devices[:32], msg("first"), "order-1")
	if err != nil || first.Dup {
		t.Fatalf("first try: %+v %v", first, err)
	}
	for range 2 {
		again, err := s.Append(ctx, devices, msg("again"), "order-1")
		if err != nil || !again.Dup || again.ID != "first" {
			t.Fatalf("retry: %+v %v", again, err)
		}
	}
	for _, d := range devices {
		got, err := s.Since(ctx, "demo", d, 0, 10)
		if err != nil || len(got) != 1 || got[0].ID != "first" || got[0].Seq != 1 {
			t.Fatalf("%s has %+v %v; want the first message once", d, got, err)
		}
	}
}

// An append reads each device's route (the cluster's, in the device's
// partition) with its copy, so that the push needs no read of its own: on
// one server and on a Redis Cluster.
func TestAppendReadsRoutes(t *testing.T) {
	for _, r := range []interface{ URL() string }{testengine.Redis(t), testengine.NewRedisCluster(t)} {
		s := open(t, r.URL())
		ctx := context.Background()
		devices := []string{"d1", "d2", "d3"}
		if err := s.client.Do(ctx, s.client.B().Set().Key(s.key("demo", redisclient.KindRoute, "d2")).Value("n1 x 7").Build()).Error(); err != nil {
			t.Fatal(err)
		}
		res, err := s.Append(ctx, devices, msg("m1"), "")
		if err != nil || !slices.Equal(res.Routes, []string{"", "n1 x 7", ""}) {
			t.Fatalf("append: routes %q, %v", res.Routes, err)
		}
	}
}

// The acks of one broadcast, however many batches they come in, read the
// app's log once (the writer keeps what it read), and are added to the
// broadcast's report (within a second): those that move cursors here
// (AckBroadcast) and those of cursors kept in the nodes' memory
// (BroadcastAcked).
func TestBroadcastAcksReadTheLogOnce(t *testing.T) {
	for name, ack := range map[string]func(s *Store, device string){
		"AckBroadcast":   func(s *Store, device string) { s.AckBroadcast("demo", device, 1) },
		"BroadcastAcked": func(s *Store, _ string) { s.BroadcastAcked("demo", 0, 1) },
	} {
		t.Run(name, func(t *testing.T) {
			s := open(t, testengine.Redis(t).URL())
			ctx := context.Background()
			b := msg("b1")
			b.Target = store.TargetBroadcast
			if _, err := s.AppendBroadcast(ctx, b, ""); err != nil {
				t.Fatal(err)
			}
			reads := func() int { return calls(t, s, "zrangebyscore") }
			before := reads()
			for i := range 50 { // each ack in a batch of its own
				ack(s, fmt.Sprint("d", i))
				done := make(chan struct{})
				s.queue(write{done: done})
				<-done
			}
			if n := reads() - before; n != 1 {
				t.Errorf("50 batches of acks read the log %d times", n)
			}
			testwait.EventuallyNil(t, func() error {
				if r, ok, err := s.Report(ctx, "demo", "b1"); err != nil || !ok || r.Acked != 50 {
					return fmt.Errorf("report: %+v %v %v", r, ok, err)
				}
				return nil
			})
		})
	}
}

// A read of users' devices waits for the writer only while bindings are
// queued: with Redis refusing writes (CLIENT PAUSE WRITE), a batch of acks
// stuck in the writer does not hold it up; a binding does, until it is
// written.
func TestUserDevicesWaitOnlyForBindings(t *testing.T) {
	s := open(t, testengine.Redis(t).URL())
	ctx := context.Background()
	s.Bind("demo", "phone", "alice")
	if got, err := s.UserDevices(ctx, "demo", []string{"alice"}); err != nil || !slices.Equal(got, []string{"phone"}) {
		t.Fatalf("alice's devices: %v %v", got, err)
	}
	// The writer is held by a write of the test's own kind until release.
	// (Holding Redis instead, with CLIENT PAUSE WRITE, held the reads too:
	// they share the client's pipeline with the paused scripts.)
	held, release := make(chan struct{}), make(chan struct{})
	hold := &writeKind{func(*Store, context.Context, []write) error {
		close(held)
		<-release
		return nil
	}}
	s.queue(write{kind: hold})
	<-held
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	s.Ack("demo", "phone", 1) // waits behind the held writer
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if got, err := s.UserDevices(short, "demo", []string{"alice"}); err != nil || !slices.Equal(got, []string{"phone"}) {
		t.Fatalf("alice's devices behind a batch of acks: %v %v", got, err)
	}

	s.Bind("demo", "laptop", "alice") // queued behind the held writer
	read := make(chan []string, 1)
	go func() {
		got, err := s.UserDevices(ctx, "demo", []string{"alice"})
		if err != nil {
			t.Error(err)
		}
		read <- got
	}()
	select {
	case got := <-read:
		t.Fatalf("the read did not wait for the binding to be written: %v", got)
	case <-time.After(300 * time.Millisecond): // no answer while the binding waits
	}
	released = true
	close(release)
	if got := <-read; !slices.Equal(got, []string{"laptop", "phone"}) {
		t.Fatalf("alice's devices after a binding: %v", got)
	}
}

// calls is how many times the Redis server of s has run command (its
// commands inside scripts included).
func calls(t *testing.T, s *Store, command string) int {
	t.Helper()
	info, err := s.client.Do(context.Background(), s.client.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	_, stats, _ := strings.Cut(info, "cmdstat_"+command+":calls=")
	n, _ := strconv.Atoi(stats[:strings.IndexAny(stats+",", ",")])
	return n
}

// With replicas_ack, a stored push returns only once a replica of each
// primary it wrote to has it; with the replicas stalled, it fails with
// ErrNotReplicated within replicas_ack_timeout (on one server, which has
// no replica, always).
func TestReplicasAck(t *testing.T) {
	acked := func(o *Options) { o.ReplicasAck, o.ReplicasAckTimeout = 1, 200*time.Millisecond }
	rc := testengine.NewRedisCluster(t)
	s := open(t, rc.URL(), acked)
	devices := []string{"d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8"}
	if _, err := s.Append(context.Background(), devices, msg("m1"), "k1"); err != nil {
		t.Fatalf("a push with every replica up: %v", err)
	}
	if _, err := s.AppendBroadcast(context.Background(), msg("b1"), "k2"); err != nil {
		t.Fatalf("a broadcast with every replica up: %v", err)
	}
	_, replicas := rc.Roles(t)
	if len(replicas) != 3 {
		t.Fatalf("%d replicas", len(replicas))
	}
	for _, r := range replicas {
		r.Signal(syscall.SIGSTOP)
	}
	start := time.Now()
	_, err := s.Append(context.Background(), devices, msg("m2"), "k3")
	if !errors.Is(err, store.ErrNotReplicated) {
		t.Fatalf("a push with the replicas stalled: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the push failed after %v", took)
	}
	for _, r := range replicas {
		r.Signal(syscall.SIGCONT)
	}
	testwait.Eventually(t, "the retry to succeed with the replicas back", func() bool {
		res, err := s.Append(context.Background(), devices, msg("m2 again"), "k3")
		return err == nil && res.ID == "m2"
	})

	single := open(t, testengine.Redis(t).URL(), acked)
	if _, err := single.Append(context.Background(), devices, msg("m1"), ""); !errors.Is(err, store.ErrNotReplicated) {
		t.Fatalf("a push to a server with no replica: %v", err)
	}
}

// Kill -9 of a primary during stored pushes, with replicas_ack 1, loses
// none that returned: its replica, promoted, has them all. (The promoted
// one has no replica then: pushes that write to it wait replicas_ack_timeout
// and fail, until it has one.) The same run without replicas_ack is logged
// with what it lost.
func TestFailoverLosesNoAcknowledgedPush(t *testing.T) {
	testengine.Long(t, "a Redis Cluster's failover")
	for _, replicas := range []int{1, 0} {
		rc := testengine.NewRedisCluster(t)
		s := open(t, rc.URL(), func(o *Options) {
			o.ReplicasAck, o.ReplicasAckTimeout, o.Timeout = replicas, time.Second, 2*time.Second
		})
		primaries, _ := rc.Roles(t)
		var mu sync.Mutex
		var ok []store.Message
		var done atomic.Bool
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				for i := 0; !done.Load(); i++ {
					m := msg(fmt.Sprint(g, "-", i))
					if _, err := s.Append(context.Background(), []string{fmt.Sprint("d", g)}, m, m.ID); err == nil {
						mu.Lock()
						ok = append(ok, m)
						mu.Unlock()
					}
				}
			})
		}
		testwait.Eventually(t, "pushes before the kill", func() bool { mu.Lock(); defer mu.Unlock(); return len(ok) >= 500 })
		primaries[0].Stop()
		testwait.Eventually(t, "a replica promoted", func() bool { p, _ := rc.Roles(t); return len(p) == 3 })
		mu.Lock()
		promoted := len(ok)
		mu.Unlock()
		testwait.Eventually(t, "pushes after the failover", func() bool { mu.Lock(); defer mu.Unlock(); return len(ok) >= promoted+100 })
		done.Store(true)
		wg.Wait()
		lost := 0
		for _, m := range ok {
			g, _, _ := strings.Cut(m.ID, "-")
			var got []store.Stored
			testwait.Eventually(t, "the device's mailbox read", func() bool {
				var err error
				got, err = s.Since(context.Background(), "demo", "d"+g, 0, 1_000_000)
				return err == nil
			})
			if !slices.ContainsFunc(got, func(st store.Stored) bool { return st.ID == m.ID }) {
				lost++
			}
		}
		t.Logf("replicas_ack %d: %d pushes returned, %d of them lost with the primary", replicas, len(ok), lost)
		if replicas > 0 && lost > 0 {
			t.Errorf("replicas_ack %d: %d of %d acknowledged pushes lost", replicas, lost, len(ok))
		}
	}
}

// Moving 1,000 slots between primaries (their keys with them) while
// devices are pushed to, acked and read loses nothing and fails no call:
// the client follows MOVED and ASK, and sends again a script answered
// TRYAGAIN (its keys split between the two primaries for a moment).
func TestReshardingUnderLoad(t *testing.T) {
	testengine.Long(t, "a reshard of 1,000 slots")
	rc := testengine.NewRedisCluster(t)
	s := open(t, rc.URL())
	var done atomic.Bool
	var calls, failed atomic.Int64
	var mu sync.Mutex
	stored := make(map[string][]string) // by e device, never acked
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; !done.Load(); i++ {
				devices := []string{fmt.Sprint("d", g, "-", i%50), fmt.Sprint("d", g, "-", (i+7)%50), fmt.Sprint("e", i%200)}
				m := msg(fmt.Sprint(g, "-", i))
				res, err := s.Append(context.Background(), devices, m, fmt.Sprint("k", g, "-", i))
				if err == nil {
					mu.Lock()
					stored[devices[2]] = append(stored[devices[2]], m.ID)
					mu.Unlock()
					s.Ack("demo", devices[0], res.Seqs[0])
					_, err = s.Since(context.Background(), "demo", devices[1], 0, 10)
				}
				calls.Add(1)
				if err != nil {
					failed.Add(1)
					t.Errorf("a call during the reshard: %v", err)
				}
			}
		})
	}
	testwait.Eventually(t, "pushes before the reshard", func() bool { return calls.Load() >= 200 })
	rc.Reshard(t, 1000)
	before := calls.Load()
	testwait.Eventually(t, "pushes after the reshard", func() bool { return calls.Load() >= before+200 })
	done.Store(true)
	wg.Wait()
	t.Logf("%d calls, %d failed", calls.Load(), failed.Load())
	for i := range 200 {
		got, err := s.Since(context.Background(), "demo", fmt.Sprint("e", i), 0, 1_000_000)
		if err != nil {
			t.Fatal(err)
		}
		seen := make(map[string]bool)
		for _, m := range got {
			if seen[m.ID] {
				t.Fatalf("e%d has %s twice", i, m.ID)
			}
			seen[m.ID] = true
		}
		for _, id := range stored[fmt.Sprint("e", i)] {
			if !seen[id] {
				t.Fatalf("e%d lost %s", i, id)
			}
		}
	}
}

// pttl is how long key has to live (-1: for ever, -2: gone).
func pttl(t *testing.T, s *Store, key string) time.Duration {
	t.Helper()
	ms, err := s.client.Do(context.Background(), s.client.B().Pttl().Key(key).Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	if ms < 0 {
		return time.Duration(ms)
	}
	return time.Duration(ms) * time.Millisecond
}

// With a device expiry, a device's seq counter and cursor live that long
// after its last push, ack or catch-up (at least as long as its messages),
// and then go: its seqs start over. Without one, they live for ever.
func TestDeviceKeysExpire(t *testing.T) {
	r := testengine.Redis(t)
	s := open(t, r.URL(), func(o *Options) { o.DeviceExpiry = time.Hour })
	ctx := context.Background()
	seq, cursor := s.key("demo", redisclient.KindSeq, "d1"), s.key("demo", redisclient.KindCursor, "d1")
	long := msg("long")
	long.Expires = time.Now().Add(2 * time.Hour)
	if _, err := s.Append(ctx, []string{"d1"}, long, ""); err != nil {
		t.Fatal(err)
	}
	if got := pttl(t, s, seq); got < 119*time.Minute {
		t.Fatalf("the seq counter of a device with a message for 2h lives %v", got)
	}
	if _, err := s.Append(ctx, []string{"d1"}, msg("short"), ""); err != nil { // 1h: not shortened
		t.Fatal(err)
	}
	if got := pttl(t, s, seq); got < 119*time.Minute {
		t.Fatalf("a shorter message shortened the counter's life to %v", got)
	}
	if _, err := s.AppendBroadcast(ctx, msg("b1"), ""); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CatchUp(ctx, "demo", "d1"); n != 1 || err != nil {
		t.Fatalf("catch up: %d %v", n, err)
	}
	if got := pttl(t, s, cursor); got < 59*time.Minute || got > 9*time.Hour/8 {
		t.Fatalf("the cursor lives %v after a catch-up", got)
	}
	s.AckBroadcast("demo", "d2", 1)
	cursor2 := s.key("demo", redisclient.KindCursor, "d2")
	testwait.Eventually(t, "d2's cursor to live an hour after its ack", func() bool {
		got := pttl(t, s, cursor2)
		return got > 59*time.Minute && got <= 9*time.Hour/8
	})

	brief := open(t, r.URL(), func(o *Options) { o.DeviceExpiry, o.Prefix = 200*time.Millisecond, "brief:" })
	m := msg("gone soon")
	m.Expires = time.Now().Add(100 * time.Millisecond)
	for range 2 {
		if _, err := brief.Append(ctx, []string{"d1"}, m, ""); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Eventually(t, "an unused device's seqs to start over", func() bool {
		last, err := brief.LastSeq(ctx, "demo", "d1")
		return err == nil && last == 0
	})

	forever := open(t, r.URL(), func(o *Options) { o.Prefix = "forever:" })
	if _, err := forever.Append(ctx, []string{"d1"}, msg("kept"), ""); err != nil {
		t.Fatal(err)
	}
	if got := pttl(t, forever, forever.key("demo", redisclient.KindSeq, "d1")); got != -1 {
		t.Fatalf("without a device expiry the seq counter lives %v", got)
	}
}

// With a device expiry, a device's OS push tokens live that long after the
// last registration (devices register theirs at each login); without one,
// for ever.
func TestVendorTokensExpire(t *testing.T) {
	r := testengine.Redis(t)
	ctx := context.Background()
	s := open(t, r.URL(), func(o *Options) { o.DeviceExpiry = time.Hour })
	if err := s.SetVendorToken(ctx, "demo", "d1", "fcm", "f1"); err != nil {
		t.Fatal(err)
	}
	if got := pttl(t, s, s.key("demo", "vt", "d1")); got < 59*time.Minute || got > 9*time.Hour/8 {
		t.Fatalf("the tokens live %v after a registration", got)
	}
	forever := open(t, r.URL(), func(o *Options) { o.Prefix = "forever:" })
	if err := forever.SetVendorToken(ctx, "demo", "d1", "fcm", "f1"); err != nil {
		t.Fatal(err)
	}
	if got := pttl(t, forever, forever.key("demo", "vt", "d1")); got != -1 {
		t.Fatalf("without a device expiry the tokens live %v", got)
	}
}

// A device's keys written often keep the expiry they were given for a
// while (an eighth of their life) instead of having it written again at
// each write: a second message and its ack write no expiry, nor a second
// broadcast ack (its cursor moved).
func TestBusyKeysKeepTheirExpiry(t *testing.T) {
	s := open(t, testengine.Redis(t).URL(), func(o *Options) { o.DeviceExpiry = time.Hour })
	ctx := context.Background()
	if _, err := s.Append(ctx, []string{"d1"}, msg("m1"), ""); err != nil {
		t.Fatal(err)
	}
	before := calls(t, s, "pexpire")
	if _, err := s.Append(ctx, []string{"d1"}, msg("m2"), ""); err != nil {
		t.Fatal(err)
	}
	written := func() { // once the writes queued are written
		done := make(chan struct{})
		s.queue(write{done: done})
		<-done
	}
	s.Ack("demo", "d1", 2)
	written()
	if got := pttl(t, s, s.key("demo", redisclient.KindMailbox, "d1")); got != -2 {
		t.Fatalf("the mailbox is still there after the ack (PTTL %v)", got)
	}
	if n := calls(t, s, "pexpire") - before; n != 0 {
		t.Errorf("a second message and its ack wrote %d expiries", n)
	}
	if got := pttl(t, s, s.key("demo", redisclient.KindSeq, "d1")); got < 59*time.Minute || got > 9*time.Hour/8 {
		t.Errorf("the seq counter lives %v", got)
	}

	for _, id := range []string{"b1", "b2"} {
		if _, err := s.AppendBroadcast(ctx, msg(id), ""); err != nil {
			t.Fatal(err)
		}
	}
	s.AckBroadcast("demo", "d1", 1)
	written()
	before = calls(t, s, "pexpire")
	s.AckBroadcast("demo", "d1", 2)
	written()
	if n := calls(t, s, "pexpire") - before; n != 0 {
		t.Errorf("a second broadcast ack wrote %d expiries", n)
	}
	if got := pttl(t, s, s.key("demo", redisclient.KindCursor, "d1")); got < 59*time.Minute || got > 9*time.Hour/8 {
		t.Errorf("the cursor lives %v", got)
	}
}

// A stored delivery to a device that acked everything before reads one
// expiry: its seq counter's, by the append. The mailbox the append makes
// gets its expiry unread, and the ack reads none (the push kept the
// counter).
func TestStoredDeliveryReadsOneExpiry(t *testing.T) {
	s := open(t, testengine.Redis(t).URL(), func(o *Options) { o.DeviceExpiry = time.Hour })
	ctx := context.Background()
	written := func() { // once the writes queued are written
		done := make(chan struct{})
		s.queue(write{done: done})
		<-done
	}
	if _, err := s.Append(ctx, []string{"d1"}, msg("m1"), ""); err != nil {
		t.Fatal(err)
	}
	s.Ack("demo", "d1", 1)
	written()
	before := calls(t, s, "pttl")
	if _, err := s.Append(ctx, []string{"d1"}, msg("m2"), ""); err != nil {
		t.Fatal(err)
	}
	if got := pttl(t, s, s.key("demo", redisclient.KindMailbox, "d1")); got < 59*time.Minute || got > 9*time.Hour/8 {
		t.Errorf("the mailbox made by the append lives %v", got)
	}
	s.Ack("demo", "d1", 2)
	written()
	if n := calls(t, s, "pttl") - before - 1; n != 1 { // less the test's own
		t.Errorf("a stored delivery read %d expiries; want 1", n)
	}
}

// A message's escalation outcomes expire with its report.
func TestEscalationsExpireWithTheirReport(t *testing.T) {
	s := open(t, testengine.Redis(t).URL())
	m := store.Message{App: "demo", ID: "m1", Data: []byte("x"), Expires: time.Now().Add(time.Hour), Target: store.TargetDevices}
	if _, err := s.Append(context.Background(), []string{"d1"}, m, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Escalated(context.Background(), "demo", "m1", []store.Escalation{{Device: "d1", Vendor: "fcm", Outcome: store.VendorAccepted}}); err != nil {
		t.Fatal(err)
	}
	report, outcomes := pttl(t, s, s.key("demo", "r", "m1")), pttl(t, s, s.key("demo", "e", "m1"))
	if report < time.Hour || outcomes < report-time.Second || outcomes > report {
		t.Fatalf("the report lives %v, its outcomes %v", report, outcomes)
	}
}
