package server_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
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

// A plaintext connection served by the poller reads its socket ahead: one
// read takes a small frame whole (length prefix and body), where reading
// it piece by piece took two; frames that came together in one read are
// all served, though the socket holds nothing more to wake the poller.
func TestFramesReadAhead(t *testing.T) {
	ts := testserver.Start(t)
	nc, in, err := rawDevice(ts, "d1")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var f protocol.Frame
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

// Edge-triggered, a connection goes idle only once its socket is empty
// and no input came during its turn: 50 devices each write 300 pings,
// one write each, without waiting for the pongs (so input keeps landing
// while turns run), and every ping is answered.
func TestNoInputLeftBehind(t *testing.T) {
	ts := testserver.Start(t)
	const devices, pings = 50, 300
	ping := protocol.AppendBinary(nil, &protocol.Frame{Op: protocol.OpPing})
	errs := make(chan error, devices)
	for d := range devices {
		go func() {
			errs <- func() error {
				nc, in, err := rawDevice(ts, "d"+strconv.Itoa(d))
				if err != nil {
					return err
				}
				defer nc.Close()
				var f protocol.Frame
				wrote := make(chan error, 1)
				go func() {
					for range pings {
						if _, err := nc.Write(ping); err != nil {
							wrote <- err
							return
						}
					}
					wrote <- nil
				}()
				for i := range pings {
					if err := readOp(in, &f, protocol.OpPong); err != nil {
						return fmt.Errorf("device %d, pong %d: %w", d, i, err)
					}
				}
				return <-wrote
			}()
		}()
	}
	for range devices {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// A device that sends a frame and closes at once (its data and its FIN in
// one segment, taken in one turn) is seen offline: a read that leaves no data says
// nothing of the peer having closed.
func TestCloseRightAfterAFrame(t *testing.T) {
	ts := testserver.Start(t)
	ack := protocol.AppendBinary(nil, &protocol.Frame{Op: protocol.OpAck, Seq: 1}) // answered by nothing
	for i := range 20 {
		device := "d" + strconv.Itoa(i)
		nc, _, err := rawDevice(ts, device)
		if err != nil {
			t.Fatal(err)
		}
		testwait.Eventually(t, device+" online", func() bool { return online(t, ts, device) })
		// Corked, the ack waits in the client's kernel and goes out with
		// the FIN, in one segment.
		rc, err := nc.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, 1) })
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Write(ack); err != nil {
			t.Fatal(err)
		}
		nc.Close()
		testwait.Eventually(t, device+" offline", func() bool { return !online(t, ts, device) })
	}
}

// rawDevice logs device into ts's demo app over a plain TCP socket, and
// returns the socket and a buffered reader of it (a frame read in one
// read). Safe to call from any goroutine.
func rawDevice(ts *testserver.TS, device string) (net.Conn, *bufio.Reader, error) {
	nc, err := net.Dial("tcp", ts.GatewayAddr())
	if err != nil {
		return nil, nil, err
	}
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	in := bufio.NewReader(nc)
	tok, err := auth.Mint(testserver.Demo.ID, testserver.Demo.Secret, device, "", time.Hour)
	if err == nil {
		_, err = nc.Write(protocol.AppendBinary(nil, &protocol.Frame{Op: protocol.OpLogin, Token: []byte(tok), Heartbeat: 300}))
	}
	if err == nil {
		err = readOp(in, new(protocol.Frame), protocol.OpWelcome)
	}
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, in, nil
}
