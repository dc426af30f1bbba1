package gateway

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/longlink/longlink/internal/testengine"
)

// TestWriteNonBlocking: against a peer that does not read, writeNonBlocking
// stops when the socket is full instead of waiting, leaves exactly the
// unwritten bytes in bufs (cutting a buffer where the kernel did), and what
// the peer then reads, followed by the rest, is the whole input in order.
func TestWriteNonBlocking(t *testing.T) {
	client, server := testengine.LoopbackPair(t)

	var want []byte
	var bufs net.Buffers
	for i := range 2000 { // 2000 buffers of 4099 bytes: far more than the socket holds
		b := bytes.Repeat([]byte{byte(i)}, 4099)
		want = append(want, b...)
		bufs = append(bufs, b)
	}
	rc, fd := rawOf(server)
	if rc == nil || fd < 0 {
		t.Fatal("no raw access to a TCP socket")
	}
	blocked, err := writeNonBlocking(rc, &bufs)
	if err != nil || !blocked {
		t.Fatalf("blocked %v, err %v: want a full socket and no error", blocked, err)
	}
	left := 0
	for _, b := range bufs {
		left += len(b)
	}
	if left == 0 || left == len(want) {
		t.Fatalf("%d of %d bytes left: want some written and some not", left, len(want))
	}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	if _, err := bufs.WriteTo(server); err != nil {
		t.Fatal(err)
	}
	server.Close()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("peer read %d bytes, not the %d written in order", len(b), len(want))
	}
	if _, err := writeNonBlocking(rc, &net.Buffers{[]byte("x")}); err == nil {
		t.Fatal("a write to a closed socket succeeded")
	}
}

// TestConsume drops written bytes across buffer boundaries.
func TestConsume(t *testing.T) {
	bufs := net.Buffers{[]byte("abc"), []byte("de"), []byte("fgh")}
	consume(&bufs, 4)
	if len(bufs) != 2 || string(bufs[0]) != "e" || string(bufs[1]) != "fgh" {
		t.Fatalf("after 4 bytes: %q", bufs)
	}
	consume(&bufs, 4)
	if len(bufs) != 0 {
		t.Fatalf("after all bytes: %q", bufs)
	}
}
