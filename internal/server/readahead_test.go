package server_test

import (
	"bufio"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/protocol"
)

// A plaintext connection served by the poller reads its socket ahead: one
// read takes a small frame whole (length prefix and body), where reading
// it piece by piece took two; frames that came together in one read are
// all served, though the socket holds nothing more to wake the poller.
func TestFramesReadAhead(t *testing.T) {
	ts := testserver.Start(t)
	nc, err := net.Dial("tcp", ts.GatewayAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	tok, err := auth.Mint(testserver.Demo.ID, testserver.Demo.Secret, "d1", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var f protocol.Frame
	if _, err := nc.Write(protocol.AppendBinary(nil, &protocol.Frame{Op: protocol.OpLogin, Token: []byte(tok), Heartbeat: 300})); err != nil {
		t.Fatal(err)
	}
	in := bufio.NewReader(nc) // so that the client reads a frame in one read too
	if err := readOp(in, &f, protocol.OpWelcome); err != nil {
		t.Fatal(err)
	}
	ping := protocol.AppendBinary(nil, &protocol.Frame{Op: protocol.OpPing})

	// Three pings in one write: three pongs.
	if _, err := nc.Write(append(append(append([]byte(nil), ping...), ping...), ping...)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := readOp(in, &f, protocol.OpPong); err != nil {
			t.Fatalf("pong %d: %v", i, err)
		}
	}

	// One ping at a time: one read each by the server, and two by the
	// client for its pong (the first finds nothing yet, and the runtime
	// reads again once the socket is readable), counted over the whole
	// process. Reading the ping piece by piece made it four.
	const pings = 300
	before := readCalls(t)
	for i := range pings {
		if _, err := nc.Write(ping); err != nil {
			t.Fatal(err)
		}
		if err := readOp(in, &f, protocol.OpPong); err != nil {
			t.Fatalf("pong %d: %v", i, err)
		}
	}
	reads := readCalls(t) - before
	t.Logf("%d pings, one at a time: %d read calls in the process", pings, reads)
	if reads > 3*pings+pings/4 {
		t.Errorf("%d pings took %d read calls; want about 3 per ping (one by the server, two by the client)", pings, reads)
	}
}

// readCalls is how many read system calls this process has made
// (/proc/self/io's syscr).
func readCalls(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no syscr in /proc/self/io")
	return 0
}
