package protocol

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// jsonFrame is the JSON shape of a frame, for decoding.
type jsonFrame struct {
	Op         string     `json:"op"`
	Ref        string     `json:"ref"`
	Token      string     `json:"token"`
	Tokens     []string   `json:"tokens"`
	LastSeq    uint64     `json:"last_seq"`
	LastSeqs   []uint64   `json:"last_seqs"`
	Heartbeat  uint32     `json:"heartbeat"`
	Device     string     `json:"device"`
	Apps       []string   `json:"apps"`
	App        string     `json:"app"`
	ID         string     `json:"id"`
	Seq        uint64     `json:"seq"`
	BSeq       uint64     `json:"bseq"`
	LastBSeqs  []uint64   `json:"last_bseqs"`
	Data       *string    `json:"data"`
	DataBase64 *string    `json:"data_base64"`
	Group      string     `json:"group"`
	Biz        string     `json:"biz"`
	Status     uint32     `json:"status"`
	Code       uint16     `json:"code"`
	Reason     string     `json:"reason"`
	Endpoints  []Endpoint `json:"endpoints"`
	Network    string     `json:"network"`
	Transport  string     `json:"transport"`
	RTTs       []uint64   `json:"rtt_ms"`
	ConnectMs  uint64     `json:"connect_ms"`
	Failures   uint64     `json:"connect_failures"`
	Vendor     string     `json:"vendor"`
}

// DecodeJSON decodes one JSON frame into f, which it resets first. Unknown
// keys are ignored so that newer peers can add fields; an unknown op is not.
func DecodeJSON(b []byte, f *Frame) error {
	f.Reset()
	var j jsonFrame
	if err := json.Unmarshal(b, &j); err != nil {
		return Errorf(CodeBadFrame, "bad JSON frame: %v", err)
	}
	op, ok := parseOp(j.Op)
	if !ok {
		return Errorf(CodeBadFrame, "unknown op %q", j.Op)
	}
	*f = Frame{
		Op:        op,
		Ref:       bytesOf(j.Ref),
		Token:     bytesOf(j.Token),
		Tokens:    appendAll(f.Tokens, j.Tokens),
		LastSeq:   j.LastSeq,
		LastSeqs:  append(f.LastSeqs, j.LastSeqs...),
		Heartbeat: j.Heartbeat,
		Device:    bytesOf(j.Device),
		Apps:      appendAll(f.Apps, j.Apps),
		App:       bytesOf(j.App),
		ID:        bytesOf(j.ID),
		Seq:       j.Seq,
		BSeq:      j.BSeq,
		LastBSeqs: append(f.LastBSeqs, j.LastBSeqs...),
		Group:     bytesOf(j.Group),
		Biz:       bytesOf(j.Biz),
		Status:    j.Status,
		Code:      Code(j.Code),
		Reason:    bytesOf(j.Reason),
		Endpoints: j.Endpoints,
		Network:   bytesOf(j.Network),
		Transport: bytesOf(j.Transport),
		RTTs:      append(f.RTTs, j.RTTs...),
		ConnectMs: j.ConnectMs,
		Failures:  j.Failures,
		Vendor:    bytesOf(j.Vendor),
	}
	switch {
	case j.Data != nil && j.DataBase64 != nil:
		return &Error{Code: CodeBadFrame, Reason: "data and data_base64 are exclusive"}
	case j.Data != nil:
		f.Data = []byte(*j.Data)
	case j.DataBase64 != nil:
		d, err := base64.StdEncoding.DecodeString(*j.DataBase64)
		if err != nil {
			return Errorf(CodeBadFrame, "bad data_base64: %v", err)
		}
		f.Data = d
	}
	return nil
}

func bytesOf(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

func appendAll(dst [][]byte, ss []string) [][]byte {
	for _, s := range ss {
		dst = append(dst, []byte(s))
	}
	return dst
}

// AppendJSON appends f as one JSON object to dst. Absent (zero) fields are
// left out. Data goes out as "data" when it is valid UTF-8, else as
// "data_base64". It does not allocate when dst has room.
func AppendJSON(dst []byte, f *Frame) []byte {
	dst = append(dst, `{"op":"`...)
	dst = append(dst, f.Op.String()...)
	dst = append(dst, '"')
	dst = appendJSONField(dst, "ref", f.Ref)
	dst = appendJSONField(dst, "token", f.Token)
	dst = appendJSONArray(dst, "tokens", f.Tokens, appendJSONString)
	dst = appendJSONUint(dst, "last_seq", f.LastSeq)
	dst = appendJSONArray(dst, "last_seqs", f.LastSeqs, appendJSONNumber)
	dst = appendJSONUint(dst, "heartbeat", uint64(f.Heartbeat))
	dst = appendJSONField(dst, "device", f.Device)
	dst = appendJSONArray(dst, "apps", f.Apps, appendJSONString)
	dst = appendJSONField(dst, "app", f.App)
	dst = appendJSONField(dst, "id", f.ID)
	dst = appendJSONUint(dst, "seq", f.Seq)
	dst = appendJSONUint(dst, "bseq", f.BSeq)
	if len(f.Data) > 0 || f.Op == OpUpReply {
		if utf8.Valid(f.Data) {
			dst = append(dst, `,"data":`...)
			dst = appendJSONString(dst, f.Data)
		} else {
			dst = append(dst, `,"data_base64":"`...)
			dst = base64.StdEncoding.AppendEncode(dst, f.Data)
			dst = append(dst, '"')
		}
	}
	dst = appendJSONField(dst, "group", f.Group)
	dst = appendJSONField(dst, "biz", f.Biz)
	dst = appendJSONUint(dst, "status", uint64(f.Status))
	dst = appendJSONUint(dst, "code", uint64(f.Code))
	dst = appendJSONField(dst, "reason", f.Reason)
	dst = appendJSONField(dst, "network", f.Network)
	dst = appendJSONField(dst, "transport", f.Transport)
	dst = appendJSONArray(dst, "rtt_ms", f.RTTs, appendJSONNumber)
	dst = appendJSONUint(dst, "connect_ms", f.ConnectMs)
	dst = appendJSONUint(dst, "connect_failures", f.Failures)
	dst = appendJSONArray(dst, "endpoints", f.Endpoints, appendJSONEndpoint)
	dst = appendJSONArray(dst, "last_bseqs", f.LastBSeqs, appendJSONNumber)
	dst = appendJSONField(dst, "vendor", f.Vendor)
	return append(dst, '}')
}

// appendJSONArray appends key and the list vs, each element appended by
// elem, when vs is not empty.
func appendJSONArray[T any](dst []byte, key string, vs []T, elem func([]byte, T) []byte) []byte {
	if len(vs) == 0 {
		return dst
	}
	dst = append(appendJSONKey(dst, key), '[')
	for i, v := range vs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = elem(dst, v)
	}
	return append(dst, ']')
}

func appendJSONNumber(dst []byte, v uint64) []byte { return strconv.AppendUint(dst, v, 10) }

func appendJSONEndpoint(dst []byte, e Endpoint) []byte {
	dst = append(dst, `{"transport":`...)
	dst = appendJSONString(dst, []byte(e.Transport))
	if e.Address != "" {
		dst = append(dst, `,"address":`...)
		dst = appendJSONString(dst, []byte(e.Address))
	}
	if e.URL != "" {
		dst = append(dst, `,"url":`...)
		dst = appendJSONString(dst, []byte(e.URL))
	}
	return append(dst, '}')
}

func appendJSONKey(dst []byte, key string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	return append(dst, '"', ':')
}

func appendJSONField(dst []byte, key string, v []byte) []byte {
	if len(v) == 0 {
		return dst
	}
	return appendJSONString(appendJSONKey(dst, key), v)
}

func appendJSONUint(dst []byte, key string, v uint64) []byte {
	if v == 0 {
		return dst
	}
	return strconv.AppendUint(appendJSONKey(dst, key), v, 10)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaping what JSON requires and
// replacing invalid UTF-8 with U+FFFD, as encoding/json does.
func appendJSONString(dst []byte, s []byte) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
