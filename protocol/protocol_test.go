package protocol

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func b(s string) []byte { return []byte(s) }

var sampleFrames = []*Frame{
	{Op: OpLogin, Ref: b("r1"), Token: b("eyJ.x.y"), LastSeq: 42, Heartbeat: 30},
	{Op: OpLogin, Tokens: [][]byte{b("t1"), b("t2")}},
	{Op: OpLogin, Tokens: [][]byte{b("t1"), b("t2"), b("t3")}, LastSeqs: []uint64{0, 1 << 40, 7}},
	{Op: OpLogin, Tokens: [][]byte{b("t1"), b("t2")}, LastSeqs: []uint64{3, 0}, LastBSeqs: []uint64{0, 9}},
	{Op: OpPush, App: b("demo"), ID: b("b-1"), BSeq: 12, Data: b("to all")},
	{Op: OpAck, App: b("demo"), BSeq: 1 << 33},
	{Op: OpWelcome, Device: b("d1"), Apps: [][]byte{b("demo"), b("chat")}, Heartbeat: 25},
	{Op: OpPush, App: b("demo"), ID: b("m-1"), Seq: 7, Data: b("hello \"world\"\n")},
	{Op: OpPush, App: b("demo"), ID: b("m-2"), Data: []byte{0xff, 0x00, 0xfe}},
	{Op: OpAck, Seq: 1 << 40},
	{Op: OpAck, App: b("chat"), Seq: 3},
	{Op: OpError, App: b("chat"), Code: CodeReplaced, Reason: b("replaced by a newer connection")},
	{Op: OpPing},
	{Op: OpPong},
	{Op: OpJoin, Ref: b("j"), App: b("demo"), Group: b("room-1")},
	{Op: OpLeave, App: b("demo"), Group: b("room-1")},
	{Op: OpOK, Ref: b("j")},
	{Op: OpUp, Ref: b("u"), App: b("demo"), Biz: b("chat"), Data: b("{\"x\":1}")},
	{Op: OpUpReply, Ref: b("u"), Status: 200, Data: b("ok")},
	{Op: OpError, Code: CodeAuthFailed, Reason: b("token expired")},
	{Op: OpStats, Network: b("wifi"), Transport: b("ws"), RTTs: []uint64{0, 12, 250}, ConnectMs: 85, Failures: 2},
	{Op: OpRecall, App: b("demo"), ID: b("m-1")},
	{Op: OpVendorToken, Ref: b("v"), App: b("demo"), Vendor: b("fcm"), Token: b("fcm-token-1")},
	{Op: OpRedirect, Endpoints: []Endpoint{{Transport: "tcp", Address: "10.0.0.2:7070"},
		{Transport: "wss", URL: "wss://n2.example:7070/ws"}}},
}

// normalize makes decoded frames comparable to the samples: empty repeated
// fields decode as empty slices with capacity, samples have nil.
func normalize(f *Frame) Frame {
	c := *f
	if len(c.Tokens) == 0 {
		c.Tokens = nil
	}
	if len(c.Apps) == 0 {
		c.Apps = nil
	}
	if len(c.LastSeqs) == 0 {
		c.LastSeqs = nil
	}
	if len(c.LastBSeqs) == 0 {
		c.LastBSeqs = nil
	}
	if len(c.RTTs) == 0 {
		c.RTTs = nil
	}
	return c
}

func TestBinaryRoundTrip(t *testing.T) {
	var got Frame
	for _, want := range sampleFrames {
		enc := AppendBinary(nil, want)
		n, err := BodyLength([LengthSize]byte(enc[:LengthSize]), 1<<16)
		if err != nil || n != len(enc)-LengthSize {
			t.Fatalf("%v: length %d, %v; want %d", want.Op, n, err, len(enc)-LengthSize)
		}
		if err := DecodeBinary(enc[LengthSize:], &got); err != nil {
			t.Fatalf("%v: decode: %v", want.Op, err)
		}
		if g := normalize(&got); !reflect.DeepEqual(g, *want) {
			t.Errorf("%v: got %+v, want %+v", want.Op, g, *want)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	var got Frame
	for _, want := range sampleFrames {
		enc := AppendJSON(nil, want)
		if !json.Valid(enc) {
			t.Fatalf("%v: invalid JSON %s", want.Op, enc)
		}
		if err := DecodeJSON(enc, &got); err != nil {
			t.Fatalf("%v: decode %s: %v", want.Op, enc, err)
		}
		if g := normalize(&got); !reflect.DeepEqual(g, *want) {
			t.Errorf("%v: got %+v, want %+v (wire %s)", want.Op, g, *want, enc)
		}
	}
}

func TestJSONWireShape(t *testing.T) {
	tests := []struct {
		f    *Frame
		want string
	}{
		{&Frame{Op: OpPush, App: b("demo"), ID: b("m1"), Seq: 7, Data: b("hello")},
			`{"op":"push","app":"demo","id":"m1","seq":7,"data":"hello"}`},
		{&Frame{Op: OpPush, App: b("demo"), ID: b("m1"), Data: []byte{0xff}},
			`{"op":"push","app":"demo","id":"m1","data_base64":"/w=="}`},
		{&Frame{Op: OpWelcome, Device: b("d1"), Apps: [][]byte{b("demo")}, Heartbeat: 30},
			`{"op":"welcome","heartbeat":30,"device":"d1","apps":["demo"]}`},
		{&Frame{Op: OpError, Code: 4001, Reason: b("bad \x01")},
			`{"op":"error","code":4001,"reason":"bad \u0001"}`},
		{&Frame{Op: OpUpReply, Status: 204},
			`{"op":"up_reply","data":"","status":204}`},
		{&Frame{Op: OpRedirect, Endpoints: []Endpoint{{Transport: "tcp", Address: "h:1"}, {Transport: "ws", URL: "ws://h:1/ws"}}},
			`{"op":"redirect","endpoints":[{"transport":"tcp","address":"h:1"},{"transport":"ws","url":"ws://h:1/ws"}]}`},
	}
	for _, tt := range tests {
		if got := string(AppendJSON(nil, tt.f)); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	frame := func(body ...byte) []byte { return body }
	binaryCases := map[string][]byte{
		"empty":           frame(),
		"unknown op":      frame(99),
		"op zero":         frame(0),
		"truncated field": frame(byte(OpPush), fieldData<<1|wireBytes, 10, 'a'),
		"bad varint":      frame(byte(OpAck), fieldSeq<<1|wireVarint, 0x80),
		"code too large":  frame(byte(OpError), fieldCode<<1|wireVarint, 0xff, 0xff, 0x7f),
	}
	var f Frame
	for name, body := range binaryCases {
		assertCode(t, "binary "+name, DecodeBinary(body, &f), CodeBadFrame)
	}
	jsonCases := map[string]string{
		"not json":      `{"op":`,
		"unknown op":    `{"op":"fly"}`,
		"no op":         `{"token":"x"}`,
		"wrong type":    `{"op":"ack","seq":"7"}`,
		"both data":     `{"op":"up","data":"a","data_base64":"YQ=="}`,
		"bad base64":    `{"op":"up","data_base64":"!!"}`,
		"array not obj": `[1,2]`,
	}
	for name, in := range jsonCases {
		assertCode(t, "json "+name, DecodeJSON([]byte(in), &f), CodeBadFrame)
	}
}

func TestBodyLength(t *testing.T) {
	if _, err := BodyLength([4]byte{0, 0, 0, 0}, 100); err == nil {
		t.Error("zero length accepted")
	}
	_, err := BodyLength([4]byte{0, 0, 1, 0}, 100)
	assertCode(t, "too large", err, CodeFrameTooLarge)
	if n, err := BodyLength([4]byte{0, 0, 0, 100}, 100); n != 100 || err != nil {
		t.Errorf("limit itself: %d, %v", n, err)
	}
}

func TestUnknownFieldsSkipped(t *testing.T) {
	body := []byte{byte(OpAck), 100<<1 | wireBytes, 2, 'x', 'y', 101<<1 | wireVarint, 5, fieldSeq<<1 | wireVarint, 9}
	var f Frame
	if err := DecodeBinary(body, &f); err != nil || f.Seq != 9 {
		t.Fatalf("got seq %d, err %v; want 9, nil", f.Seq, err)
	}
	if err := DecodeJSON([]byte(`{"op":"ack","seq":9,"future":{"a":1}}`), &f); err != nil || f.Seq != 9 {
		t.Fatalf("json: got seq %d, err %v", f.Seq, err)
	}
}

func assertCode(t *testing.T, name string, err error, code Code) {
	t.Helper()
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != code {
		t.Errorf("%s: got %v, want code %d", name, err, code)
	}
}

func FuzzDecodeBinary(f *testing.F) {
	for _, s := range sampleFrames {
		f.Add(AppendBinary(nil, s)[LengthSize:])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var fr Frame
		if err := DecodeBinary(body, &fr); err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Code != CodeBadFrame {
				t.Fatalf("error without a protocol code: %v", err)
			}
			return
		}
		// What decodes must re-encode to a frame that decodes to the same thing.
		again := AppendBinary(nil, &fr)
		var fr2 Frame
		if err := DecodeBinary(again[LengthSize:], &fr2); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(normalize(&fr), normalize(&fr2)) {
			t.Fatalf("round trip changed the frame: %+v vs %+v", fr, fr2)
		}
	})
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range sampleFrames {
		f.Add(AppendJSON(nil, s))
	}
	f.Add([]byte(`{"op":"login","token":"x","last_seq":18446744073709551615}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var fr Frame
		if err := DecodeJSON(in, &fr); err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Code != CodeBadFrame {
				t.Fatalf("error without a protocol code: %v", err)
			}
			return
		}
		out := AppendJSON(nil, &fr)
		if !json.Valid(out) {
			t.Fatalf("encoded invalid JSON: %s", out)
		}
		var fr2 Frame
		if err := DecodeJSON(out, &fr2); err != nil {
			t.Fatalf("re-decode %s: %v", out, err)
		}
		if fr.Op != fr2.Op || fr.Seq != fr2.Seq || !bytes.Equal(fr.App, fr2.App) {
			t.Fatalf("round trip changed the frame: %+v vs %+v", fr, fr2)
		}
	})
}

var benchPush = &Frame{Op: OpPush, App: b("demo"), ID: b("n1-0123456789abcdef"), Seq: 123456,
	Data: bytes.Repeat([]byte("x"), 256)}

func BenchmarkAppendBinary(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 512)
	for b.Loop() {
		buf = AppendBinary(buf[:0], benchPush)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodeBinary(b *testing.B) {
	b.ReportAllocs()
	enc := AppendBinary(nil, benchPush)[LengthSize:]
	var f Frame
	for b.Loop() {
		if err := DecodeBinary(enc, &f); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(enc)))
}

func BenchmarkAppendJSON(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 512)
	for b.Loop() {
		buf = AppendJSON(buf[:0], benchPush)
	}
	b.SetBytes(int64(len(buf)))
}

// TestDocumentedBytes keeps the example in docs/protocol.md true.
func TestDocumentedBytes(t *testing.T) {
	push := &Frame{Op: OpPush, App: b("demo"), ID: b("m1"), Seq: 7, Data: b("hi")}
	want := "00000011" + "03" + "110464656d6f" + "13026d31" + "1407" + "17026869"
	if got := hex.EncodeToString(AppendBinary(nil, push)); got != want {
		t.Errorf("push encodes as %s, docs say %s", got, want)
	}
	if got := hex.EncodeToString(AppendBinary(nil, &Frame{Op: OpPing})); got != "0000000105" {
		t.Errorf("ping encodes as %s, docs say 0000000105", got)
	}
}

// Each close code's label, as the metrics of closed connections and
// refused logins say it.
func TestCodeLabels(t *testing.T) {
	want := map[Code]string{0: "closed", CodeBadFrame: "bad_frame", CodeAuthFailed: "auth_failed",
		CodeLoginTimeout: "login_timeout", CodeReplaced: "replaced", CodeTooSlow: "too_slow",
		CodeRateLimited: "rate_limited", CodeFrameTooLarge: "frame_too_large", CodeHeartbeatTimeout: "timeout",
		CodeKicked: "kicked", CodeGoingAway: "shutdown", CodeUpstreamUnavailable: "error",
		CodeTokenExpired: "token_expired", CodeNotAllowed: "error", CodeDraining: "draining",
		1000: "error", 3999: "error", 4014: "error", 65535: "error"}
	for code, label := range want {
		if got := code.Label(); got != label {
			t.Errorf("Code(%d).Label() = %q, want %q", code, got, label)
		}
	}
}
