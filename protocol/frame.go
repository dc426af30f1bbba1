// Package protocol defines longlink's device protocol: the ops, the close and
// error codes, and the two encodings of a frame, the native binary layout
// (docs/protocol.md documents every byte) and the JSON form used by the
// longlink.json WebSocket subprotocol.
//
// Decoded frames alias the buffer they were decoded from: a Frame is valid
// until that buffer is reused, and callers copy what they keep.
package protocol

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Op names what a frame asks for or tells.
type Op uint8

// The ops, with their wire numbers. c = client to server, s = server to client.
const (
	OpLogin    Op = 1  // c: authenticate; must be the first frame
	OpWelcome  Op = 2  // s: login accepted
	OpPush     Op = 3  // s: a message for the device
	OpAck      Op = 4  // c: cumulative ack of stored messages
	OpPing     Op = 5  // c: heartbeat
	OpPong     Op = 6  // s: heartbeat answer
	OpJoin     Op = 7  // c: join a group
	OpLeave    Op = 8  // c: leave a group
	OpOK       Op = 9  // s: the op with this ref succeeded
	OpUp       Op = 10 // c: data for the app's backend
	OpUpReply  Op = 11 // s: the backend's answer to an up
	OpError    Op = 12 // s: an error, fatal or not
	OpRefresh  Op = 13 // c: a new token for one app of the connection
	OpRedirect Op = 14 // s: reconnect to one of these endpoints (the node is draining)
	OpStats    Op = 15 // c: what the client measured (no reply)
	OpRecall   Op = 16 // s: the app recalled the message with this id
	// OpVendorToken (c) registers the device's OS push token of a vendor
	// (FCM, APNs, HMS...) in its app; an empty Token removes it.
	OpVendorToken Op = 17
)

var opNames = [...]string{
	OpLogin: "login", OpWelcome: "welcome", OpPush: "push", OpAck: "ack",
	OpPing: "ping", OpPong: "pong", OpJoin: "join", OpLeave: "leave", OpOK: "ok",
	OpUp: "up", OpUpReply: "up_reply", OpError: "error", OpRefresh: "refresh",
	OpRedirect: "redirect", OpStats: "stats", OpRecall: "recall", OpVendorToken: "vendor_token",
}

// String returns the op's JSON name.
func (o Op) String() string {
	if o.Valid() {
		return opNames[o]
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// Valid reports whether o is a known op.
func (o Op) Valid() bool { return o >= OpLogin && int(o) < len(opNames) }

func parseOp(s string) (Op, bool) {
	for i, name := range opNames {
		if name != "" && name == s {
			return Op(i), true
		}
	}
	return 0, false
}

// Code is an error code carried by an error frame and, when the server closes
// a connection, by the WebSocket close frame.
type Code uint16

// The codes of the contract, plus CodeHeartbeatTimeout (a longlink extension).
const (
	CodeBadFrame            Code = 4000
	CodeAuthFailed          Code = 4001
	CodeLoginTimeout        Code = 4002
	CodeReplaced            Code = 4003
	CodeTooSlow             Code = 4004
	CodeRateLimited         Code = 4005
	CodeFrameTooLarge       Code = 4006
	CodeHeartbeatTimeout    Code = 4007
	CodeKicked              Code = 4008
	CodeGoingAway           Code = 4009
	CodeUpstreamUnavailable Code = 4010
	CodeTokenExpired        Code = 4011
	CodeNotAllowed          Code = 4012
	CodeDraining            Code = 4013
)

// labels are the codes' short names; a code with none is labelled
// "error".
var labels = map[Code]string{
	CodeBadFrame:         "bad_frame",
	CodeAuthFailed:       "auth_failed",
	CodeLoginTimeout:     "login_timeout",
	CodeReplaced:         "replaced",
	CodeTooSlow:          "too_slow",
	CodeRateLimited:      "rate_limited",
	CodeFrameTooLarge:    "frame_too_large",
	CodeHeartbeatTimeout: "timeout",
	CodeKicked:           "kicked",
	CodeGoingAway:        "shutdown",
	CodeTokenExpired:     "token_expired",
	CodeDraining:         "draining",
}

// Label is the code's short name, as the metrics of closed connections
// say it: "closed" for 0 (the peer went away), "error" for a code with
// none of its own.
func (c Code) Label() string {
	if c == 0 {
		return "closed"
	}
	if l, ok := labels[c]; ok {
		return l
	}
	return "error"
}

// Error is a protocol-visible failure: it travels as an error frame.
type Error struct {
	Code   Code
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Reason) }

// Errorf returns an *Error with a formatted reason.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// Frame is one protocol message. Which fields matter depends on Op; a zero
// field is absent on the wire. Byte-slice fields alias the decoded buffer.
type Frame struct {
	Op        Op
	Ref       []byte   // any client op; echoed on the reply
	Token     []byte   // login
	Tokens    [][]byte // login into several apps
	LastSeq   uint64   // login: highest stored seq processed (one app)
	LastSeqs  []uint64 // login with Tokens: LastSeq per token, in their order
	Heartbeat uint32   // login (proposed), welcome (granted); seconds
	Device    []byte   // welcome
	Apps      [][]byte // welcome
	App       []byte   // push, join, leave, up
	ID        []byte   // push: message id
	Seq       uint64   // push (stored messages only), ack
	// BSeq is a stored broadcast's place in its app's broadcast log: on a
	// push (instead of Seq), and on an ack (cumulative over the log).
	BSeq uint64
	// LastBSeqs, at login, say where each token's app's broadcast log
	// resumes (one per token, in their order). Sending them, zeros
	// included, asks for stored broadcasts by BSeq: without them, each is
	// copied into the device's mailbox and sent with a Seq, as in v1.
	LastBSeqs []uint64
	Data      []byte     // push, up, up_reply
	Group     []byte     // join, leave
	Biz       []byte     // up
	Status    uint32     // up_reply: the webhook's HTTP status
	Code      Code       // error
	Reason    []byte     // error
	Endpoints []Endpoint // redirect
	Vendor    []byte     // vendor_token: "fcm", "apns", "hms"...

	// stats: what the client measured since its last stats.
	Network   []byte   // "wifi", "cellular" or "unknown", as the app reports it
	Transport []byte   // the transport measured
	RTTs      []uint64 // ping round trips, ms
	ConnectMs uint64   // its last connect and login, ms
	Failures  uint64   // connects that failed
}

// Endpoint is a place a device can connect to, as /v1/dispatch and the
// redirect op name it: {"transport":"tcp"|"tls","address":"host:port"} or
// {"transport":"ws"|"wss","url":"ws://host:port/ws"}.
type Endpoint struct {
	Transport string `json:"transport"`
	Address   string `json:"address,omitempty"`
	URL       string `json:"url,omitempty"`
}

// Reset clears f for reuse, keeping the capacity of its repeated fields so
// that decoding into a reused Frame does not allocate.
func (f *Frame) Reset() {
	tokens, apps, seqs, bseqs, rtts := f.Tokens[:0], f.Apps[:0], f.LastSeqs[:0], f.LastBSeqs[:0], f.RTTs[:0]
	*f = Frame{Tokens: tokens, Apps: apps, LastSeqs: seqs, LastBSeqs: bseqs, RTTs: rtts}
}

// ErrorFrame returns the frame that reports e to a client.
func ErrorFrame(e *Error) *Frame {
	return &Frame{Op: OpError, Code: e.Code, Reason: []byte(e.Reason)}
}

// MaxTags bounds the tags of one device in one app.
const MaxTags = 100

// ValidTag reports whether t is a valid tag: 1-64 bytes of a-z, A-Z, 0-9,
// '_', '.', ':' and '-'.
func ValidTag(t string) bool {
	if len(t) == 0 || len(t) > 64 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// Vendors are the OS push channels a device may register a token of
// (op vendor_token, POST /v1/devices/vendor).
var Vendors = []string{"fcm", "apns", "hms", "honor", "xiaomi", "oppo", "vivo"}

// MaxVendorToken is the longest OS push token taken, in bytes.
const MaxVendorToken = 4096

// CheckVendorToken says what is wrong with an OS push token of vendor
// (empty: the vendor's token is removed), or returns nil.
func CheckVendorToken(vendor, token string) error {
	if !slices.Contains(Vendors, vendor) {
		return fmt.Errorf("vendor must be one of %s", strings.Join(Vendors, ", "))
	}
	if len(token) > MaxVendorToken || (token != "" && !printable(token)) {
		return fmt.Errorf("token must be up to %d printable ASCII bytes, no spaces", MaxVendorToken)
	}
	return nil
}

// ValidName reports whether s is a valid device id, user id or group name:
// 1-128 printable ASCII bytes, no spaces.
func ValidName(s string) bool {
	return len(s) > 0 && len(s) <= 128 && printable(s)
}

// printable reports whether s is printable ASCII with no spaces.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
