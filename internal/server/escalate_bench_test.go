package server_test

import (
	"fmt"
	"net/http"
	"os"
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
