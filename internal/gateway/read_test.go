package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/gobwas/ws"

	"github.com/longlink/longlink/internal/bufpool"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/protocol"
)

// readerConn is a net.Conn that only reads, from r; enough for the frame
// reader (a connection that is not live sends nothing).
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// readingConn returns a connection in its login state that reads input as
// wire kind k.
func readingConn(k wireKind, input []byte) *conn {
	g := &Gateway{cfg: config.Gateway{MaxFrameBytes: 64 << 10, MaxLoginBytes: 64 << 10}}
	nc := readerConn{r: bytes.NewReader(input)}
	return &conn{gw: g, nc: nc, kind: k}
}

// fragmented returns one masked client message carrying payload, cut into
// frames of size bytes.
func fragmented(op ws.OpCode, payload []byte, size int) []byte {
	var out bytes.Buffer
	for i := 0; i < len(payload) || i == 0; i += size {
		part := bytes.Clone(payload[i:min(i+size, len(payload))])
		h := ws.Header{OpCode: ws.OpContinuation, Length: int64(len(part)), Masked: true, Mask: ws.NewMask(),
			Fin: i+size >= len(payload)}
		if i == 0 {
			h.OpCode = op
		}
		ws.Cipher(part, h.Mask, 0)
		ws.WriteHeader(&out, h)
		out.Write(part)
	}
	return out.Bytes()
}

func TestWSFragmentsReassembled(t *testing.T) {
	frame := protocol.AppendBinary(nil, &protocol.Frame{Op: protocol.OpUp, App: []byte("demo"),
		Biz: []byte("chat"), Data: bytes.Repeat([]byte("x"), 20000)})
	c := readingConn(wireWSBinary, fragmented(ws.OpBinary, frame, 1000)) // 21 fragments
	var f protocol.Frame
	buf, err := c.readMessage()
	if err == nil {
		err = protocol.DecodeBinary((*buf)[protocol.LengthSize:], &f)
	}
	if err != nil || len(f.Data) != 20000 || string(f.Biz) != "chat" {
		t.Fatalf("got %v, %d bytes of data", err, len(f.Data))
	}
	bufpool.Put(buf)
}

// The repro, cut short: a message in 65,536 one-byte fragments
// cost the server quadratic CPU (each fragment copied all before it). Now
// a message in more than maxFragments fragments is refused at the first
// one over.
func TestWSFragmentFloodRefused(t *testing.T) {
	login := protocol.AppendJSON(nil, &protocol.Frame{Op: protocol.OpPing})
	input := fragmented(ws.OpText, append(login, bytes.Repeat([]byte(" "), 65536-len(login))...), 1)
	c := readingConn(wireWSJSON, input)
	_, err := c.readMessage()
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeBadFrame {
		t.Fatalf("65,536 fragments: %v, want 4000", err)
	}
	if read := len(input) - c.nc.(readerConn).r.(*bytes.Reader).Len(); read > 8*(maxFragments+1) {
		t.Fatalf("read %d bytes before refusing; want it refused at fragment %d", read, maxFragments+1)
	}
}

// BenchmarkWSFragments: reassembling a 64 KiB message costs about the same
// in 64 fragments as in one (linear, not quadratic, in its size).
func BenchmarkWSFragments(b *testing.B) {
	for _, n := range []int{1, maxFragments} {
		frame := protocol.AppendBinary(nil, &protocol.Frame{Op: protocol.OpUp, Data: make([]byte, 60000)})
		input := fragmented(ws.OpBinary, frame, (len(frame)+n-1)/n)
		b.Run(fmt.Sprintf("fragments=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				c := readingConn(wireWSBinary, input)
				buf, err := c.readMessage()
				if err != nil {
					b.Fatal(err)
				}
				bufpool.Put(buf)
			}
		})
	}
}

// FuzzReadMessage feeds arbitrary bytes to the message reader of every wire
// kind: it must return messages or an error, never panic, and never hand
// back a message over the frame limit (plus the largest header, MQTT's).
func FuzzReadMessage(f *testing.F) {
	ping := protocol.AppendBinary(nil, &protocol.Frame{Op: protocol.OpPing})
	f.Add(uint8(wireTCP), ping)
	f.Add(uint8(wireWSBinary), fragmented(ws.OpBinary, ping, 2))
	f.Add(uint8(wireWSJSON), fragmented(ws.OpText, []byte(`{"op":"ping","ref":"p"}`), 5))
	huge := binary.BigEndian.AppendUint32(nil, 1<<20)
	f.Add(uint8(wireTCP), huge)
	f.Add(uint8(wireMQTT), []byte{0xc0, 0, 0x10, 0xff, 0xff, 0xff, 0x7f})
	f.Add(uint8(wireWSMQTT), fragmented(ws.OpBinary, []byte{0xc0, 0}, 1))
	f.Fuzz(func(t *testing.T, kind uint8, input []byte) {
		c := readingConn(wireKind(kind%uint8(numWireKinds)), input)
		for range 100 {
			buf, err := c.readMessage()
			if buf != nil && len(*buf) > c.gw.cfg.MaxFrameBytes+5 {
				t.Fatalf("a message of %d bytes passed the limit", len(*buf))
			}
			bufpool.Put(buf)
			if err != nil && !errors.Is(err, errControlFrame) {
				return
			}
		}
	})
}
