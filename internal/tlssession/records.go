package tlssession

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/time/rate"

	"github.com/longlink/longlink/internal/bufpool"
	"github.com/longlink/longlink/protocol"
)

// A TLS 1.3 session after its handshake is two AEAD keys and two record
// counters, and that is all an idle device connection keeps of it here.
// crypto/tls runs the handshake; then, where the session is TLS 1.3,
// records takes over its traffic secrets (handed over through the session's
// own key log, which never leaves the process) and the tls.Conn, with its
// buffers sized by the ClientHello, is dropped. RFC 8446 section 5 is the
// record layer; section 4.6.3 is the key update, the only handshake message a
// client may send after the handshake.

// TLS record content types, and the limits of a TLS 1.3 record.
const (
	recordAlert     = 21
	recordAppData   = 23
	recordHeaderLen = 5
	maxPlaintext    = 1 << 14
	maxCiphertext   = maxPlaintext + 256
	// recordOverhead is what a record adds to its content: header, inner
	// content type and AEAD tag.
	recordOverhead = recordHeaderLen + 1 + 16

	handshakeKeyUpdate = 24
	alertCloseNotify   = 0
	alertUnexpected    = 10
	alertBadRecordMAC  = 20
	alertOverflow      = 22
	alertIllegalParam  = 47
	alertDecodeError   = 50

	// maxUseless bounds the records in a row that carry no application
	// data (empty ones, key updates), as crypto/tls does: each may cost a
	// decryption and a key schedule.
	maxUseless = 16
)

// suite13 is what a TLS 1.3 cipher suite takes to key its records.
type suite13 struct {
	hash   func() hash.Hash
	keyLen int
	aead   func(key []byte) (cipher.AEAD, error)
}

var suites13 = map[uint16]*suite13{
	tls.TLS_AES_128_GCM_SHA256:       {sha256.New, 16, newGCM},
	tls.TLS_AES_256_GCM_SHA384:       {sha512.New384, 32, newGCM},
	tls.TLS_CHACHA20_POLY1305_SHA256: {sha256.New, chacha20poly1305.KeySize, chacha20poly1305.New},
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// expandLabel is HKDF-Expand-Label with an empty context (RFC 8446 section
// 7.1).
func (s *suite13) expandLabel(secret []byte, label string, n int) []byte {
	info := make([]byte, 0, 4+6+len(label))
	info = binary.BigEndian.AppendUint16(info, uint16(n))
	info = append(info, byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0)
	out, err := hkdf.Expand(s.hash, secret, string(info), n)
	if err != nil {
		panic(err) // n is far below HKDF's limit of 255 hashes
	}
	return out
}

// direction is one direction's traffic key, IV and record counter.
type direction struct {
	aead   cipher.AEAD
	iv     [12]byte
	seq    uint64
	secret []byte // the traffic secret, for the next key update
}

func (d *direction) setSecret(s *suite13, secret []byte) error {
	aead, err := s.aead(s.expandLabel(secret, "key", s.keyLen))
	if err != nil {
		return err
	}
	d.aead, d.secret, d.seq = aead, secret, 0
	copy(d.iv[:], s.expandLabel(secret, "iv", len(d.iv)))
	return nil
}

// update moves to the next traffic secret (a key update).
func (d *direction) update(s *suite13) error {
	return d.setSecret(s, s.expandLabel(d.secret, "traffic upd", len(d.secret)))
}

// nonce is the IV xored with the record counter.
func (d *direction) nonce() [12]byte {
	n := d.iv
	for i := range 8 {
		n[4+i] ^= byte(d.seq >> (56 - 8*i))
	}
	return n
}

// seal appends a record of content type typ holding content.
func (d *direction) seal(dst, content []byte, typ byte) []byte {
	start := len(dst)
	dst = append(dst, recordAppData, 3, 3, 0, 0)
	return d.finish(append(dst, content...), start, typ)
}

// finish seals in place the record whose header starts dst[start:] and
// whose content follows it to the end of dst.
func (d *direction) finish(dst []byte, start int, typ byte) []byte {
	dst = append(dst, typ)
	binary.BigEndian.PutUint16(dst[start+3:], uint16(len(dst)-start-recordHeaderLen+d.aead.Overhead()))
	nonce := d.nonce()
	d.seq++
	body := start + recordHeaderLen
	return d.aead.Seal(dst[:body], nonce[:], dst[body:], dst[start:body])
}

// open decrypts record (header and body) into dst, and returns its content
// and inner content type.
func (d *direction) open(dst, record []byte) ([]byte, byte, error) {
	nonce := d.nonce()
	data, err := d.aead.Open(dst, nonce[:], record[recordHeaderLen:], record[:recordHeaderLen])
	if err != nil {
		return nil, 0, errBadRecordMAC
	}
	d.seq++
	i := len(data) - 1
	for i >= 0 && data[i] == 0 { // the padding
		i--
	}
	if i < 0 {
		return nil, 0, errNoContentType
	}
	return data[:i], data[i], nil
}

var (
	errBadRecordMAC     = &recordError{alertBadRecordMAC, "tls: record authentication failed"}
	errNoContentType    = &recordError{alertUnexpected, "tls: record without a content type"}
	errUnexpectedRecord = &recordError{alertUnexpected, "tls: unexpected record"}
	errRecordTooLong    = &recordError{alertOverflow, "tls: record too long"}
)

// recordError is a fatal error of the peer's records, and the alert that
// tells it so.
type recordError struct {
	alert  byte
	reason string
}

func (e *recordError) Error() string { return e.reason }

// records is a TLS 1.3 session's record layer, taken over from crypto/tls
// after the handshake.
type records struct {
	nc    net.Conn
	suite *suite13

	// Owned by the reader.
	in      direction
	hdr     [recordHeaderLen]byte
	buf     *[]byte       // the record whose content is being read; nil when idle
	plain   []byte        // what is left of its content
	useless int           // records in a row without application data
	updates *rate.Limiter // the peer's key updates (keyUpdateRate); nil until the first

	// mu guards the writing side: the writer seals under it, and the reader
	// answers a key update under it.
	mu       sync.Mutex
	out      direction
	sealed   []byte // records the session wrote by itself (a key update, an alert)
	answered bool   // sealed holds the answer to a key update
	broken   bool   // a fatal alert was sent: nothing follows it
}

// takeOver returns the record layer that replaces the handshaken tls.Conn
// tc, whose key log kl holds its traffic secrets and whose first flight
// (written to nc during the handshake) was flight. It reports false where
// the session stays with crypto/tls: TLS 1.2, or anything it cannot vouch
// for.
func takeOver(tc *tls.Conn, kl *keyLog, flight []byte, nc net.Conn) (*records, bool) {
	st := tc.ConnectionState()
	s, ok := suites13[st.CipherSuite]
	if st.Version != tls.VersionTLS13 || !ok || kl.client == nil || kl.server == nil {
		return nil, false
	}
	r := &records{nc: nc, suite: s}
	if r.in.setSecret(s, kl.client) != nil || r.out.setSecret(s, kl.server) != nil {
		return nil, false
	}
	n, ok := r.out.sentIn(flight)
	if !ok {
		return nil, false
	}
	r.out.seq = n
	return r, true
}

// sentIn counts the records in flight (the bytes crypto/tls wrote during
// the handshake) sealed under d's key: its session ticket, if it sent one.
// Those are the last records of the flight, numbered from 0; the ones before
// are sealed under the handshake key and do not open. It reports false if
// the flight does not parse or the records are out of turn.
func (d *direction) sentIn(flight []byte) (uint64, bool) {
	var ours [][]byte
	for len(flight) > 0 {
		if len(flight) < recordHeaderLen {
			return 0, false
		}
		n := recordHeaderLen + int(binary.BigEndian.Uint16(flight[3:]))
		if len(flight) < n {
			return 0, false
		}
		if flight[0] == recordAppData {
			ours = append(ours, flight[:n])
		}
		flight = flight[n:]
	}
	probe := *d
	var sent uint64
	for _, rec := range ours {
		probe.seq = sent
		if _, _, err := probe.open(nil, rec); err == nil {
			sent++
		} else if sent > 0 {
			return 0, false
		}
	}
	return sent, true
}

// keyLog keeps the application traffic secrets from one session's key log.
type keyLog struct{ client, server []byte }

func (k *keyLog) Write(line []byte) (int, error) {
	f := bytes.Fields(line) // label, client random, secret
	if len(f) != 3 {
		return 0, errors.New("key log: unexpected line")
	}
	var dst *[]byte
	switch string(f[0]) {
	case "CLIENT_TRAFFIC_SECRET_0":
		dst = &k.client
	case "SERVER_TRAFFIC_SECRET_0":
		dst = &k.server
	default: // the handshake's secrets: crypto/tls keeps those
		return len(line), nil
	}
	secret := make([]byte, hex.DecodedLen(len(f[2])))
	if _, err := hex.Decode(secret, f[2]); err != nil {
		return 0, err
	}
	*dst = secret
	return len(line), nil
}

// Read reads application data, one record at a time.
func (r *records) Read(p []byte) (int, error) {
	for len(r.plain) == 0 {
		if err := r.readRecord(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.plain)
	if r.plain = r.plain[n:]; len(r.plain) == 0 {
		bufpool.Put(r.buf)
		r.buf, r.plain = nil, nil
	}
	return n, nil
}

// readRecord reads the next record, and keeps its content if it is
// application data.
func (r *records) readRecord() error {
	if _, err := io.ReadFull(r.nc, r.hdr[:]); err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint16(r.hdr[3:]))
	switch {
	case r.hdr[0] != recordAppData || r.hdr[1] != 3 || r.hdr[2] != 3:
		return r.fail(errUnexpectedRecord)
	case n > maxCiphertext:
		return r.fail(errRecordTooLong)
	}
	buf := bufpool.Get(recordHeaderLen + n)
	copy(*buf, r.hdr[:])
	if _, err := io.ReadFull(r.nc, (*buf)[recordHeaderLen:]); err != nil {
		bufpool.Put(buf)
		return err
	}
	content, typ, err := r.in.open((*buf)[recordHeaderLen:recordHeaderLen], *buf)
	switch {
	case err != nil:
	case len(content) > maxPlaintext:
		err = errRecordTooLong
	case typ == recordAppData && len(content) > 0:
		r.buf, r.plain, r.useless = buf, content, 0
		return nil
	case typ == recordAppData:
	case typ == recordAlert && len(content) == 2 && content[1] == alertCloseNotify:
		err = io.EOF
	case typ == recordAlert:
		err = errors.New("tls: the peer sent an alert")
	case typ == RecordHandshake:
		err = r.keyUpdate(content)
	default:
		err = errUnexpectedRecord
	}
	bufpool.Put(buf)
	if r.useless++; err == nil && r.useless > maxUseless {
		err = &recordError{alertUnexpected, "tls: too many records without data"}
	}
	var re *recordError
	if errors.As(err, &re) {
		return r.fail(re)
	}
	return err
}

// A peer may update its keys keyUpdateBurst times at once, and then
// keyUpdateRate times per second (clients do it after millions of records,
// or when told to); past that, the connection is closed with 4005.
const (
	keyUpdateRate  = 1
	keyUpdateBurst = 16
)

// keyUpdate takes a handshake record: the peer's key update, which must be
// alone in it (RFC 8446 section 5.1: no handshake message spans a key
// change). If the peer asks, the answer is sealed under the old key, unless
// an answer is still waiting for the writer: that one answers this request
// too (section 4.6.3), so that a peer that asks while it does not read
// holds one answer at most. The alerts for a bad one are RFC 8446's
// (sections 4.6.3 and 6.2).
func (r *records) keyUpdate(m []byte) error {
	switch {
	case len(m) < 4 || m[0] != handshakeKeyUpdate:
		return &recordError{alertUnexpected, "tls: unexpected handshake message"}
	case m[1] != 0 || m[2] != 0 || m[3] != 1:
		return &recordError{alertDecodeError, "tls: key update of a wrong length"}
	case len(m) != 5:
		return &recordError{alertUnexpected, "tls: key update not alone in its record"}
	case m[4] > 1:
		return &recordError{alertIllegalParam, "tls: key update with an unknown request"}
	}
	if r.updates == nil {
		r.updates = rate.NewLimiter(keyUpdateRate, keyUpdateBurst)
	}
	if !r.updates.Allow() {
		return protocol.Errorf(protocol.CodeRateLimited, "too many TLS key updates")
	}
	if m[4] == 1 {
		r.mu.Lock()
		var err error
		if !r.answered {
			r.sealed = r.out.seal(r.sealed, []byte{handshakeKeyUpdate, 0, 0, 1, 0}, RecordHandshake)
			r.answered = true
			err = r.out.update(r.suite)
		}
		r.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return r.in.update(r.suite)
}

// fail ends the session for the peer's fault: the alert saying why is the
// last record it gets.
func (r *records) fail(e *recordError) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.broken {
		r.sealed = r.out.seal(r.sealed, []byte{2, e.alert}, recordAlert)
		r.broken = true
	}
	return e
}

// Readable reports whether read content waits in the session.
func (r *records) Readable() bool { return len(r.plain) > 0 }

// Write seals p and writes it to the socket at once: for the handshakes
// only (a WebSocket upgrade's answer), before SealWrites.
func (r *records) Write(p []byte) (int, error) {
	bufs, err := r.Seal([][]byte{p}, false)
	if err == nil {
		_, err = bufs.WriteTo(r.nc)
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// SealWrites ends the handshakes: the connection's writer writes from now.
func (r *records) SealWrites() { r.nc.SetWriteDeadline(time.Time{}) }

// Seal encrypts a batch of frames into records of up to 16 KB, small frames
// sharing one, after any record the session wrote by itself. A closing
// connection's last batch ends with a close_notify alert. After a fatal
// alert nothing is sealed.
func (r *records) Seal(batch [][]byte, closing bool) (net.Buffers, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.sealed
	r.sealed, r.answered = nil, false
	if !r.broken {
		size := 0
		for _, f := range batch {
			size += len(f)
		}
		records := (size + maxPlaintext - 1) / maxPlaintext
		out = append(make([]byte, 0, len(out)+size+records*recordOverhead+recordOverhead+2), out...)
		start := -1 // where the record being filled begins
		for _, f := range batch {
			for len(f) > 0 {
				if start < 0 {
					start = len(out)
					out = append(out, recordAppData, 3, 3, 0, 0)
				}
				n := min(len(f), maxPlaintext-(len(out)-start-recordHeaderLen))
				out, f = append(out, f[:n]...), f[n:]
				if len(out)-start-recordHeaderLen == maxPlaintext {
					out, start = r.out.finish(out, start, recordAppData), -1
				}
			}
		}
		if start >= 0 {
			out = r.out.finish(out, start, recordAppData)
		}
		if closing {
			out = r.out.seal(out, []byte{1, alertCloseNotify}, recordAlert)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return net.Buffers{out}, nil
}

// Pending reports whether the session wrote records by itself that wait
// for the writer.
func (r *records) Pending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sealed) > 0
}
