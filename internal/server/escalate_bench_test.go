package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
)

// processCPU is the CPU time (user and system) the processes pids have
// used so far.
func processCPU(b testing.TB, pids ...int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Fatal(err)
		}
		// After the command's closing parenthesis: state is field 3, utime 14, stime 15.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		for _, v := range f[11:13] {
			ticks, _ := strconv.Atoi(v)
			total += time.Duration(ticks) * time.Second / 100 // USER_HZ
		}
	}
	return total
}

// What the escalation check costs a stored message that is acked in time:
// blocks of 50 stored pushes to 100 devices online that ack them, with
// and without escalate (after 1s), interleaved; each block ends with one
// escalation to an offline device, whose vendor call says the block's
// escalations (due before it) are done. The CPU of every process (the
// node, or the two nodes, Redis and NATS) over each block, per delivered
// message, and its difference: the check's cost.
func BenchmarkEscalationCheck(b *testing.B) {
	b.Run("single", func(b *testing.B) {
		br := newBridged(b)
		c, call := br.start(b)
		escalationCheck(b, br, []*child{c}, call, nil)
	})
	b.Run("cluster", func(b *testing.B) {
		br := newBridged(b)
		r, nats := testengine.Redis(b), testengine.NATS(b)
		cluster := fmt.Sprintf("cluster: {redis: %q, nats: %q, lease: 2s}", r.URL(), nats.NATSURL())
		n1, call := br.start(b, "node: n1", cluster)
		n2, _ := br.start(b, "node: n2", cluster)
		escalationCheck(b, br, []*child{n1, n2}, call, []int{r.Pid(), nats.Pid()})
	})
}

func escalationCheck(b *testing.B, br bridged, nodes []*child, call apiCall, engines []int) {
	const devices, pushes = 100, 50
	names := make([]string, devices)
	for i := range names {
		names[i] = fmt.Sprint("d", i)
		dialDevice(b, client.Config{Addr: nodes[i%len(nodes)].gateway, Token: testserver.MintToken(b, testserver.Demo, names[i], ""),
			OnPush: func(client.Push) {}})
	}
	sentinel := dialDevice(b, client.Config{Addr: nodes[0].gateway, Token: testserver.MintToken(b, testserver.Demo, "sentinel", "")})
	if err := sentinel.SetVendorToken(b.Context(), "demo", "fcm", "tok-sentinel"); err != nil {
		b.Fatal(err)
	}
	sentinel.Close()
	waitOffline(b, call, "sentinel")
	pids := engines
	for _, n := range nodes {
		pids = append(pids, n.cmd.Process.Pid)
	}
	// block makes one block, and returns its CPU.
	block := func(escalate bool) time.Duration {
		before := processCPU(b, pids...)
		var last string
		for range pushes {
			body := map[string]any{"devices": names, "data": "hello", "ttl": 600}
			if escalate {
				body["escalate"] = map[string]any{"after": "1s"}
			}
			last = pushTo(b, call, body)["id"].(string)
		}
		testwait.Eventually(b, "the block acked", func() bool {
			_, out := call(http.MethodGet, "/v1/messages/"+last+"?app=demo", testserver.Demo.APIKey, nil)
			return out["acked"] == float64(devices)
		})
		barrier := pushTo(b, call, map[string]any{"devices": []string{"sentinel"}, "data": "end", "ttl": 600, "escalate": map[string]any{"after": "1s"}})
		testwait.Eventually(b, "the block's escalations", func() bool {
			ids := fcmSent(b, br.v, "tok-sentinel")
			return len(ids) > 0 && ids[len(ids)-1] == barrier["id"].(string)
		})
		return processCPU(b, pids...) - before
	}
	block(true) // warm up
	var plain, checked time.Duration
	b.ResetTimer()
	for range b.N {
		plain += block(false)
		checked += block(true)
	}
	per := float64(b.N * pushes * devices)
	b.ReportMetric(float64(plain.Microseconds())/per, "plain-cpu-µs/delivery")
	b.ReportMetric(float64(checked.Microseconds())/per, "escalate-cpu-µs/delivery")
	b.ReportMetric(float64((checked-plain).Microseconds())/per, "check-cpu-µs/delivery")
	b.ReportMetric(float64((checked-plain).Microseconds())/float64(b.N*pushes), "check-cpu-µs/push")
}

// BenchmarkEscalation measures the bridge where most devices are awake: 100
// devices with FCM tokens, 90 online (acking) and 10 not; each op is one
// stored push to all 100, escalated after 1s. It reports the vendor calls
// per 1,000 stored deliveries (only the unacked copies cost one: target
// 100) and how long past its due time each escalation reached the vendor
// (p50, p99; the scheduler looks every 500 ms).
func BenchmarkEscalation(b *testing.B) {
	v, c, call := startBridged(b)
	const devices, offline = 100, 10
	names := make([]string, devices)
	ctx := context.Background()
	for i := range names {
		names[i] = fmt.Sprint("d", i)
		dev := dialDevice(b, client.Config{Addr: c.gateway, Token: testserver.MintToken(b, testserver.Demo, names[i], ""),
			OnPush: func(client.Push) {}})
		if err := dev.SetVendorToken(ctx, "demo", "fcm", "tok-"+names[i]); err != nil {
			b.Fatal(err)
		}
		if i < offline {
			dev.Close()
		}
	}
	waitOffline(b, call, names[:offline]...)
	due := map[string]time.Time{}
	b.ResetTimer()
	for range b.N {
		out := pushTo(b, call, map[string]any{"devices": names, "data": "hello", "ttl": 600, "escalate": map[string]any{"after": "1s"}})
		due[out["id"].(string)] = time.Now().Add(time.Second)
	}
	testwait.Eventually(b, "the escalations", func() bool { return v.Total() >= offline*b.N })
	b.StopTimer()
	var lags []time.Duration
	times := v.Times()
	for i, body := range v.Bodies() {
		var m struct {
			Message struct{ Data map[string]string }
		}
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			b.Fatal(err)
		}
		lags = append(lags, times[i].Sub(due[m.Message.Data["longlink_id"]]))
	}
	slices.Sort(lags)
	b.ReportMetric(float64(v.Total())*1000/float64(devices*b.N), "calls/1000-deliveries")
	b.ReportMetric(float64(lags[len(lags)/2].Milliseconds()), "lag-p50-ms")
	b.ReportMetric(float64(lags[len(lags)*99/100].Milliseconds()), "lag-p99-ms")
}
