package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
	"github.com/longlink/longlink/protocol"
)

// The idle-connection benchmark runs its devices in a child process (this
// test binary, re-executed), so that the server's memory is measured alone.
const idleAddrEnv = "LONGLINK_IDLE_CLIENTS_ADDR"

func TestMain(m *testing.M) {
	if path := os.Getenv(serveConfigEnv); path != "" {
		if n, err := strconv.ParseUint(os.Getenv(serveNofileEnv), 10, 64); err == nil {
			lim := syscall.Rlimit{Cur: n, Max: n}
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		os.Exit(serveForTest(path))
	}
	if addr := os.Getenv(idleAddrEnv); addr != "" {
		n, _ := strconv.Atoi(os.Getenv("LONGLINK_IDLE_CLIENTS_N"))
		if err := idleClients(addr, n); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// idleClients logs n devices in, pings once on each, says "ready", and holds
// them until stdin closes.
func idleClients(addr string, n int) error {
	conns := make([]net.Conn, 0, n)
	var f protocol.Frame
	for i := 0; i < n; i++ {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		conns = append(conns, nc)
		tok, err := auth.Mint(testserver.Demo.ID, testserver.Demo.Secret, fmt.Sprintf("idle-%d", i), "", time.Hour)
		if err != nil {
			return err
		}
		if _, err := nc.Write(protocol.AppendBinary(nil, &protocol.Frame{Op: protocol.OpLogin, Token: []byte(tok), Heartbeat: 300})); err != nil {
			return err
		}
		if err := readOp(nc, &f, protocol.OpWelcome); err != nil {
			return fmt.Errorf("login %d: %w", i, err)
		}
		// One ping, so that the server has served a frame since login.
		if _, err := nc.Write(protocol.AppendBinary(nil, &protocol.Frame{Op: protocol.OpPing})); err != nil {
			return err
		}
		if err := readOp(nc, &f, protocol.OpPong); err != nil {
			return fmt.Errorf("ping %d: %w", i, err)
		}
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	runtime.KeepAlive(conns) // unreferenced sockets are closed by their finalizers
	return nil
}

func readOp(nc io.Reader, f *protocol.Frame, want protocol.Op) error {
	var prefix [protocol.LengthSize]byte
	if _, err := io.ReadFull(nc, prefix[:]); err != nil {
		return err
	}
	n, err := protocol.BodyLength(prefix, 1<<16)
	if err != nil {
		return err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(nc, body); err != nil {
		return err
	}
	if err := protocol.DecodeBinary(body, f); err != nil || f.Op != want {
		return fmt.Errorf("got %v (%v), want %v", f.Op, err, want)
	}
	return nil
}

// BenchmarkIdleConnections reports the server's memory per idle, logged-in
// TCP connection: RSS, Go heap objects and goroutine stacks. Kernel socket
// buffers are in none of them. Run with -benchtime 1x.
func BenchmarkIdleConnections(b *testing.B) {
	const n = 10000
	ts := testserver.Start(b)
	before := memorySnapshot(b)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), idleAddrEnv+"="+ts.GatewayAddr(), "LONGLINK_IDLE_CLIENTS_N="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
		b.Fatalf("client process: %q", line)
	}
	testwait.Eventually(b, "every connection registered", func() bool {
		return strings.Contains(ts.Metrics(), fmt.Sprintf(`longlink_connections{app="demo",transport="tcp"} %d`, n))
	})
	after := memorySnapshot(b)
	for b.Loop() {
	}
	per := func(a, b uint64) float64 { return float64(int64(a)-int64(b)) / n } // may be below 0
	b.ReportMetric(per(after.rss, before.rss), "rss-bytes/conn")
	b.ReportMetric(per(after.heap, before.heap), "heap-bytes/conn")
	b.ReportMetric(per(after.stacks, before.stacks), "stack-bytes/conn")
}

type memory struct{ rss, heap, stacks uint64 }

func memorySnapshot(b *testing.B) memory {
	runtime.GC()
	debug.FreeOSMemory()
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(samples)
	rss := procStatus(b, os.Getpid(), "VmRSS")
	return memory{rss: uint64(rss), heap: samples[0].Value.Uint64(), stacks: samples[1].Value.Uint64()}
}
