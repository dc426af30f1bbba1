package tlssession

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longlink/longlink/internal/certs"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/protocol"
)

// corkedConn is a client's socket that holds its writes after the first
// (the ClientHello) while corked, and writes them all in one go when
// uncorked; flip corrupts the next write.
type corkedConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	writes int
	flip   bool
	held   []byte
}

func (c *corkedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.flip {
		p, c.flip = bytes.Clone(p), false
		p[len(p)-1] ^= 1 // the AEAD tag
	}
	if c.writes++; c.corked && c.writes > 1 {
		c.held = append(c.held, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *corkedConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	_, err := c.Conn.Write(c.held)
	return err
}

// server is the server's end of a session: its socket, and its session.
type server struct {
	nc  net.Conn
	tls Session
}

// tlsFixture is a server's TLS configuration and a client's that trusts
// it, with a session cache, so that a second connection resumes.
type tlsFixture struct {
	server, client *tls.Config
	crypto         *tls.Config // the server's where crypto/tls keeps every session
	cryptoTLS      bool        // tls.record_layer: crypto/tls
}

func newTLSFixture(t *testing.T) *tlsFixture {
	certFile, keyFile, certPEM, err := certs.WriteSelfSigned(t.TempDir(), []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := certs.Load(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := certs.ClientConfig(certPEM, false)
	if err != nil {
		t.Fatal(err)
	}
	ccfg.ServerName, ccfg.ClientSessionCache = "127.0.0.1", tls.NewLRUClientSessionCache(1)
	return &tlsFixture{server: ServerConfig(kp.Config(), true), client: ccfg, crypto: kp.Config()}
}

// pair connects a TLS client (up to maxVersion) to a server socket over
// loopback, runs the handshake through Start, and has the client
// send "first". Under TLS 1.3 the client's Finished and that first record
// go in one TCP write, so the server finds them together on the socket.
func (f *tlsFixture) pair(t *testing.T, maxVersion uint16) (*server, *tls.Conn, *corkedConn) {
	t.Helper()
	ccfg := f.client.Clone()
	ccfg.MaxVersion = maxVersion
	raw, nc := testengine.LoopbackPair(t)
	cc := &corkedConn{Conn: raw, corked: maxVersion == tls.VersionTLS13}
	client := tls.Client(cc, ccfg)
	t.Cleanup(func() { client.Close() })
	clientDone := make(chan error, 1)
	go func() {
		err := client.Handshake()
		if err == nil {
			_, err = client.Write([]byte("first"))
		}
		if err == nil && cc.corked {
			err = cc.uncork()
		}
		clientDone <- err
	}()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	var hdr [4]byte // what the gateway's sniffer reads
	if _, err := io.ReadFull(nc, hdr[:]); err != nil {
		t.Fatal(err)
	}
	cfg := f.server
	if f.cryptoTLS {
		cfg = f.crypto
	}
	s, err := Start(nc, hdr[:], cfg, !f.cryptoTLS)
	if err != nil {
		t.Fatal(err)
	}
	c := &server{tls: s, nc: nc}
	if err := <-clientDone; err != nil {
		t.Fatal(err)
	}
	c.tls.SealWrites()
	first := make([]byte, 5)
	if _, err := io.ReadFull(c.tls, first); err != nil || string(first) != "first" {
		t.Fatalf("first record: %q, %v", first, err)
	}
	return c, client, cc
}

// exchange sends frames both ways through the session: small ones, and one
// larger than a record.
func exchange(t *testing.T, c *server, client *tls.Conn) {
	t.Helper()
	big := strings.Repeat("b", 40000)
	go client.Write([]byte("up " + big))
	got := make([]byte, len("up ")+len(big))
	if _, err := io.ReadFull(c.tls, got); err != nil || string(got) != "up "+big {
		t.Fatalf("server read %d bytes, %v", len(got), err)
	}
	bufs, err := c.tls.Seal([][]byte{[]byte("one "), []byte("two "), []byte(big)}, true)
	if err != nil {
		t.Fatal(err)
	}
	go bufs.WriteTo(c.nc)
	all, err := io.ReadAll(client) // to the close_notify
	if err != nil || string(all) != "one two "+big {
		t.Fatalf("client read %d bytes, %v", len(all), err)
	}
}

// TestTLS13TakenOver: a TLS 1.3 session leaves crypto/tls after its
// handshake for the record layer, keeping the record the client sent
// right behind its Finished, and carries frames both ways, one larger than
// a record, to the close_notify; also after the session ticket crypto/tls
// sent under the new keys, and in a resumed session. A TLS 1.2 session
// stays with crypto/tls, and so does every session with tls.record_layer:
// crypto/tls.
func TestTLS13TakenOver(t *testing.T) {
	f := newTLSFixture(t)
	for _, tc := range []struct {
		name      string
		version   uint16
		resumed   bool
		cryptoTLS bool
	}{
		{"TLS 1.3", tls.VersionTLS13, false, false}, {"TLS 1.3 resumed", tls.VersionTLS13, true, false},
		{"TLS 1.2", tls.VersionTLS12, false, false}, {"TLS 1.3 with crypto/tls records", tls.VersionTLS13, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.cryptoTLS = tc.cryptoTLS
			c, client, _ := f.pair(t, tc.version)
			if resumed := client.ConnectionState().DidResume; resumed != tc.resumed {
				t.Fatalf("resumed: %v", resumed)
			}
			if r, ok := c.tls.(*records); ok != (tc.version == tls.VersionTLS13 && !tc.cryptoTLS) {
				t.Fatalf("session is %T", c.tls)
			} else if ok && r.out.seq != 1 {
				t.Fatalf("the server's first record is number %d, after the one ticket", r.out.seq)
			}
			exchange(t, c, client)
		})
	}
}

// TestTLS13BadRecord: a record that fails authentication ends the session,
// and the client gets a bad_record_mac alert instead of what the server
// still had to send.
func TestTLS13BadRecord(t *testing.T) {
	c, client, cc := newTLSFixture(t).pair(t, tls.VersionTLS13)
	cc.mu.Lock()
	cc.flip = true
	cc.mu.Unlock()
	go client.Write([]byte("tampered"))
	var re *recordError
	if _, err := c.tls.Read(make([]byte, 8)); !errors.As(err, &re) || re.alert != alertBadRecordMAC {
		t.Fatalf("read: %v", err)
	}
	bufs, err := c.tls.Seal([][]byte{[]byte("not for a broken session")}, true)
	if err != nil {
		t.Fatal(err)
	}
	bufs.WriteTo(c.nc)
	c.nc.Close()
	_, err = io.ReadAll(client)
	if err == nil || !strings.Contains(err.Error(), "bad record MAC") {
		t.Fatalf("client got %v, want the bad_record_mac alert", err)
	}
}

// peer is the client's side of a records session, for tests that write
// records the way no TLS client would.
type peer struct{ in, out direction }

// newPipeRecords returns a records session over an in-memory pipe, and
// its peer.
func newPipeRecords(t testing.TB) (*records, *peer, net.Conn) {
	s := suites13[tls.TLS_AES_128_GCM_SHA256]
	a, b := net.Pipe()
	r := &records{nc: a, suite: s}
	p := &peer{}
	for _, err := range []error{
		r.in.setSecret(s, bytes.Repeat([]byte{1}, 32)), p.out.setSecret(s, bytes.Repeat([]byte{1}, 32)),
		r.out.setSecret(s, bytes.Repeat([]byte{2}, 32)), p.in.setSecret(s, bytes.Repeat([]byte{2}, 32)),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return r, p, b
}

// readRecords opens the records in b with p's in direction.
func (p *peer) readRecords(t *testing.T, b []byte) (contents []string, types []byte) {
	t.Helper()
	for len(b) > 0 {
		n := recordHeaderLen + int(binary.BigEndian.Uint16(b[3:]))
		content, typ, err := p.in.open(nil, b[:n])
		if err != nil {
			t.Fatalf("record %d: %v", len(types), err)
		}
		contents, types = append(contents, string(content)), append(types, typ)
		b = b[n:]
	}
	return contents, types
}

// TestTLS13KeyUpdate: a key update the peer asks an answer for is answered
// under the old key before anything under the new one, and both directions
// move to their next keys.
func TestTLS13KeyUpdate(t *testing.T) {
	r, p, peerConn := newPipeRecords(t)
	var in []byte
	in = p.out.seal(in, []byte{handshakeKeyUpdate, 0, 0, 1, 1}, RecordHandshake)
	if err := p.out.update(r.suite); err != nil {
		t.Fatal(err)
	}
	in = p.out.seal(in, []byte("after"), recordAppData)
	go peerConn.Write(in)
	got := make([]byte, 5)
	if _, err := io.ReadFull(r, got); err != nil || string(got) != "after" {
		t.Fatalf("read %q, %v", got, err)
	}
	if !r.Pending() {
		t.Fatal("the key update was not answered")
	}
	bufs, err := r.Seal([][]byte{[]byte("new key")}, false)
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Join(bufs, nil)
	// The answer, under the old key.
	n := recordHeaderLen + int(binary.BigEndian.Uint16(b[3:]))
	contents, types := p.readRecords(t, b[:n])
	if types[0] != RecordHandshake || contents[0] != string([]byte{handshakeKeyUpdate, 0, 0, 1, 0}) {
		t.Fatalf("first record: type %d %q", types[0], contents[0])
	}
	if err := p.in.update(r.suite); err != nil {
		t.Fatal(err)
	}
	if contents, _ := p.readRecords(t, b[n:]); len(contents) != 1 || contents[0] != "new key" {
		t.Fatalf("after the update: %q", contents)
	}
}

// TestTLS13BadKeyUpdate: a handshake record that is not one whole key
// update ends the session with the alert RFC 8446 names for its fault, as
// the last record the peer gets.
func TestTLS13BadKeyUpdate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content []byte
		alert   byte
	}{
		{"another message", []byte{4, 0, 0, 1, 0}, alertUnexpected},
		{"a header cut short", []byte{handshakeKeyUpdate, 0}, alertUnexpected},
		{"a wrong length", []byte{handshakeKeyUpdate, 0, 0, 2, 0, 0}, alertDecodeError},
		{"split over records", []byte{handshakeKeyUpdate, 0, 0, 1}, alertUnexpected},
		{"a second message behind it", []byte{handshakeKeyUpdate, 0, 0, 1, 0, handshakeKeyUpdate}, alertUnexpected},
		{"an unknown request", []byte{handshakeKeyUpdate, 0, 0, 1, 2}, alertIllegalParam},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, p, peerConn := newPipeRecords(t)
			go peerConn.Write(p.out.seal(nil, tc.content, RecordHandshake))
			var re *recordError
			if _, err := r.Read(make([]byte, 1)); !errors.As(err, &re) || re.alert != tc.alert {
				t.Fatalf("read: %v, want alert %d", err, tc.alert)
			}
			bufs, err := r.Seal([][]byte{[]byte("not for a broken session")}, true)
			if err != nil {
				t.Fatal(err)
			}
			contents, types := p.readRecords(t, bytes.Join(bufs, nil))
			if len(types) != 1 || types[0] != recordAlert || contents[0] != string([]byte{2, tc.alert}) {
				t.Fatalf("sent %d records, types %v %q: want the fatal alert alone", len(types), types, contents)
			}
		})
	}
}

// FuzzRecords feeds a session records of any content type and content,
// properly sealed: it returns their application data in order, or an
// error, and never panics or hands back more than the peer sent.
func FuzzRecords(f *testing.F) {
	f.Add([]byte{recordAppData, 'h', 'i', 0, RecordHandshake, handshakeKeyUpdate, 0, 0, 1, 1})
	f.Add([]byte{recordAlert, 1, 0})
	f.Add([]byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, script []byte) {
		r, p, peerConn := newPipeRecords(t)
		// The script is records separated by 0xff: a content type, then the
		// content. The session must return the application data of the
		// records up to the first it refuses.
		var in, want []byte
		for part := range bytes.SplitSeq(script, []byte{0xff}) {
			if len(part) == 0 {
				continue
			}
			in = p.out.seal(in, part[1:], part[0])
			// As the receiver sees it: zeros at the end are padding, and
			// the last other byte is the content type.
			inner := bytes.TrimRight(append(bytes.Clone(part[1:]), part[0]), "\x00")
			if len(inner) > 0 && inner[len(inner)-1] == recordAppData {
				want = append(want, inner[:len(inner)-1]...)
			}
		}
		go func() {
			peerConn.Write(in)
			peerConn.Close()
		}()
		got, _ := io.ReadAll(io.LimitReader(r, int64(len(want))+1))
		if !bytes.HasPrefix(want, got) {
			t.Fatalf("read %q, which the peer did not send as %q", got, want)
		}
		r.nc.Close() // ends the peer's write, if the session stopped reading
	})
}

// keyUpdates seals n key updates that ask for an answer, each followed by
// an application data record (so that none is a record without data), the
// peer's keys moving after each.
func (p *peer) keyUpdates(t *testing.T, r *records, n int) []byte {
	t.Helper()
	var in []byte
	for range n {
		in = p.out.seal(in, []byte{handshakeKeyUpdate, 0, 0, 1, 1}, RecordHandshake)
		if err := p.out.update(r.suite); err != nil {
			t.Fatal(err)
		}
		in = p.out.seal(in, []byte("x"), recordAppData)
	}
	return in
}

// TestTLS13KeyUpdatesAnsweredOnce: key updates that come while the answer
// to the first still waits for the writer are answered by it: the session
// holds one answer at most, whatever the peer asks while it does not read.
func TestTLS13KeyUpdatesAnsweredOnce(t *testing.T) {
	r, p, peerConn := newPipeRecords(t)
	go peerConn.Write(p.keyUpdates(t, r, 3))
	got := make([]byte, 3)
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatal(err)
	}
	bufs, err := r.Seal([][]byte{[]byte("new key")}, false)
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Join(bufs, nil)
	n := recordHeaderLen + int(binary.BigEndian.Uint16(b[3:]))
	if _, types := p.readRecords(t, b[:n]); types[0] != RecordHandshake {
		t.Fatalf("first record: type %d, want the answer", types[0])
	}
	if err := p.in.update(r.suite); err != nil {
		t.Fatal(err)
	}
	if contents, types := p.readRecords(t, b[n:]); len(types) != 1 || contents[0] != "new key" {
		t.Fatalf("after the one answer: types %v %q, want the data alone under the next key", types, contents)
	}
}

// TestTLS13KeyUpdateFlood: a peer that updates its keys over and over is
// closed with 4005.
func TestTLS13KeyUpdateFlood(t *testing.T) {
	r, p, peerConn := newPipeRecords(t)
	go peerConn.Write(p.keyUpdates(t, r, keyUpdateBurst+1))
	var err error
	for read := 0; err == nil; read++ {
		if read > keyUpdateBurst {
			t.Fatalf("%d key updates at once were taken", keyUpdateBurst+1)
		}
		_, err = r.Read(make([]byte, 1))
	}
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeRateLimited {
		t.Fatalf("read: %v, want 4005", err)
	}
}
