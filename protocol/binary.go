package protocol

import (
	"encoding/binary"
	"math"
	"strings"
)

// The native binary layout (docs/protocol.md has the full table):
//
//	frame  = length:u32be body
//	body   = op:u8 field*
//	field  = tag:u8 value
//	tag    = number<<1 | wiretype
//	value  = uvarint                  (wiretype 0, integers)
//	       | len:uvarint bytes[len]   (wiretype 1, byte strings)
//
// Unknown field numbers are skipped, so newer peers can add fields.

// LengthSize is the size of the length prefix of a binary frame.
const LengthSize = 4

// MaxFrameLimit is the largest body any configuration may allow. It keeps the
// first byte of every native connection 0x00, which the gateway uses to tell
// the binary protocol from HTTP.
const MaxFrameLimit = 1<<24 - 1

const (
	wireVarint = 0
	wireBytes  = 1
)

// Field numbers of the binary layout.
const (
	fieldRef       = 1
	fieldToken     = 2
	fieldTokens    = 3
	fieldLastSeq   = 4
	fieldHeartbeat = 5
	fieldDevice    = 6
	fieldApps      = 7
	fieldApp       = 8
	fieldID        = 9
	fieldSeq       = 10
	fieldData      = 11
	fieldGroup     = 12
	fieldBiz       = 13
	fieldStatus    = 14
	fieldCode      = 15
	fieldReason    = 16
	fieldLastSeqs  = 17
	fieldEndpoints = 18 // repeated: "<transport> <address or url>"
	fieldNetwork   = 19
	fieldRTTs      = 20 // repeated
	fieldConnectMs = 21
	fieldFailures  = 22
	fieldTransport = 23
	fieldBSeq      = 24
	fieldLastBSeqs = 25 // repeated
	fieldVendor    = 26
)

// AppendBinary appends f, length prefix included, to dst. It does not
// allocate when dst has room.
func AppendBinary(dst []byte, f *Frame) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, byte(f.Op))
	dst = appendBytes(dst, fieldRef, f.Ref)
	dst = appendBytes(dst, fieldToken, f.Token)
	for _, t := range f.Tokens {
		dst = appendField(dst, fieldTokens, t)
	}
	dst = appendVarint(dst, fieldLastSeq, f.LastSeq)
	for _, s := range f.LastSeqs {
		dst = binary.AppendUvarint(append(dst, fieldLastSeqs<<1|wireVarint), s)
	}
	dst = appendVarint(dst, fieldHeartbeat, uint64(f.Heartbeat))
	dst = appendBytes(dst, fieldDevice, f.Device)
	for _, a := range f.Apps {
		dst = appendField(dst, fieldApps, a)
	}
	dst = appendBytes(dst, fieldApp, f.App)
	dst = appendBytes(dst, fieldID, f.ID)
	dst = appendVarint(dst, fieldSeq, f.Seq)
	dst = appendBytes(dst, fieldData, f.Data)
	dst = appendBytes(dst, fieldGroup, f.Group)
	dst = appendBytes(dst, fieldBiz, f.Biz)
	dst = appendVarint(dst, fieldStatus, uint64(f.Status))
	dst = appendVarint(dst, fieldCode, uint64(f.Code))
	dst = appendBytes(dst, fieldReason, f.Reason)
	for _, e := range f.Endpoints {
		dst = appendField(dst, fieldEndpoints, []byte(e.Transport+" "+e.Address+e.URL))
	}
	dst = appendBytes(dst, fieldNetwork, f.Network)
	for _, r := range f.RTTs {
		dst = binary.AppendUvarint(append(dst, fieldRTTs<<1|wireVarint), r)
	}
	dst = appendVarint(dst, fieldConnectMs, f.ConnectMs)
	dst = appendVarint(dst, fieldFailures, f.Failures)
	dst = appendBytes(dst, fieldTransport, f.Transport)
	dst = appendVarint(dst, fieldBSeq, f.BSeq)
	for _, s := range f.LastBSeqs {
		dst = binary.AppendUvarint(append(dst, fieldLastBSeqs<<1|wireVarint), s)
	}
	dst = appendBytes(dst, fieldVendor, f.Vendor)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-LengthSize))
	return dst
}

func appendVarint(dst []byte, field byte, v uint64) []byte {
	if v == 0 {
		return dst
	}
	dst = append(dst, field<<1|wireVarint)
	return binary.AppendUvarint(dst, v)
}

// appendBytes appends a byte-string field when it is not empty.
func appendBytes(dst []byte, field byte, b []byte) []byte {
	if len(b) == 0 {
		return dst
	}
	return appendField(dst, field, b)
}

// appendField appends a byte-string field even when empty (repeated fields).
func appendField(dst []byte, field byte, b []byte) []byte {
	dst = append(dst, field<<1|wireBytes)
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// BodyLength reads the length prefix of a binary frame and checks it against
// max (the configured frame limit).
func BodyLength(prefix [LengthSize]byte, max int) (int, error) {
	n := binary.BigEndian.Uint32(prefix[:])
	if n == 0 {
		return 0, &Error{Code: CodeBadFrame, Reason: "empty frame"}
	}
	if int64(n) > int64(max) {
		return 0, Errorf(CodeFrameTooLarge, "frame of %d bytes exceeds the limit of %d", n, max)
	}
	return int(n), nil
}

// DecodeBinary decodes a frame body (the bytes after the length prefix) into
// f, which it resets first. f's byte slices alias body. It does not allocate
// once f's repeated fields have grown to the sizes seen.
func DecodeBinary(body []byte, f *Frame) error {
	f.Reset()
	if len(body) == 0 {
		return &Error{Code: CodeBadFrame, Reason: "empty frame"}
	}
	f.Op = Op(body[0])
	if !f.Op.Valid() {
		return Errorf(CodeBadFrame, "unknown op %d", body[0])
	}
	b := body[1:]
	for len(b) > 0 {
		tag := b[0]
		b = b[1:]
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return Errorf(CodeBadFrame, "bad varint in field %d", tag>>1)
		}
		b = b[n:]
		if tag&1 == wireVarint {
			if err := f.setVarint(tag>>1, v); err != nil {
				return err
			}
			continue
		}
		if v > uint64(len(b)) {
			return Errorf(CodeBadFrame, "field %d runs past the end of the frame", tag>>1)
		}
		var val []byte // a zero-length value is absent, as when encoding
		if v > 0 {
			val = b[:v:v]
		}
		f.setBytes(tag>>1, val)
		b = b[v:]
	}
	return nil
}

func (f *Frame) setVarint(field byte, v uint64) error {
	switch field {
	case fieldLastSeq:
		f.LastSeq = v
	case fieldLastSeqs:
		f.LastSeqs = append(f.LastSeqs, v)
	case fieldRTTs:
		f.RTTs = append(f.RTTs, v)
	case fieldConnectMs:
		f.ConnectMs = v
	case fieldFailures:
		f.Failures = v
	case fieldSeq:
		f.Seq = v
	case fieldBSeq:
		f.BSeq = v
	case fieldLastBSeqs:
		f.LastBSeqs = append(f.LastBSeqs, v)
	case fieldHeartbeat, fieldStatus:
		if v > math.MaxUint32 {
			return Errorf(CodeBadFrame, "field %d out of range", field)
		}
		if field == fieldHeartbeat {
			f.Heartbeat = uint32(v)
		} else {
			f.Status = uint32(v)
		}
	case fieldCode:
		if v > math.MaxUint16 {
			return Errorf(CodeBadFrame, "code %d out of range", v)
		}
		f.Code = Code(v)
	}
	return nil
}

func (f *Frame) setBytes(field byte, v []byte) {
	switch field {
	case fieldRef:
		f.Ref = v
	case fieldToken:
		f.Token = v
	case fieldTokens:
		f.Tokens = append(f.Tokens, v)
	case fieldDevice:
		f.Device = v
	case fieldApps:
		f.Apps = append(f.Apps, v)
	case fieldApp:
		f.App = v
	case fieldID:
		f.ID = v
	case fieldData:
		f.Data = v
	case fieldGroup:
		f.Group = v
	case fieldBiz:
		f.Biz = v
	case fieldReason:
		f.Reason = v
	case fieldNetwork:
		f.Network = v
	case fieldTransport:
		f.Transport = v
	case fieldVendor:
		f.Vendor = v
	case fieldEndpoints:
		transport, target, _ := strings.Cut(string(v), " ")
		e := Endpoint{Transport: transport, Address: target}
		if strings.HasPrefix(target, "ws://") || strings.HasPrefix(target, "wss://") {
			e = Endpoint{Transport: transport, URL: target}
		}
		f.Endpoints = append(f.Endpoints, e)
	}
}
