package redis

import (
	"bytes"
	"errors"
	"strconv"
	"time"

	"github.com/longlink/longlink/internal/store"
)

// rest encodes what a mailbox or log member holds after its seq:
// "<expires ms>:<id length>:<id><data>".
func rest(m store.Message) string {
	b := strconv.AppendInt(nil, m.Expires.UnixMilli(), 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(len(m.ID)), 10)
	b = append(b, ':')
	b = append(b, m.ID...)
	return string(append(b, m.Data...))
}

var errCorrupt = errors.New("store: corrupt mailbox entry")

// answered is the error of a call that failed with err, or answered n
// values where it should have answered want.
func answered(err error, n, want int) error {
	if err == nil && n != want {
		return errCorrupt
	}
	return err
}

// parseMember decodes "<seq>:<rest>" into the message of app it holds.
func parseMember(app string, member []byte) (store.Stored, error) {
	field := func() (int64, bool) {
		i := bytes.IndexByte(member, ':')
		if i < 0 {
			return 0, false
		}
		v, err := strconv.ParseInt(string(member[:i]), 10, 64)
		member = member[i+1:]
		return v, err == nil && v >= 0
	}
	seq, ok1 := field()
	expires, ok2 := field()
	idLen, ok3 := field()
	if !ok1 || !ok2 || !ok3 || idLen > int64(len(member)) {
		return store.Stored{}, errCorrupt
	}
	return store.Stored{Seq: uint64(seq), Message: store.Message{App: app, ID: string(member[:idLen]),
		Data: bytes.Clone(member[idLen:]), Expires: time.UnixMilli(expires)}}, nil
}

// Unexpired appends to out the messages of app that mailbox or log members
// (as ZRANGEBYSCORE answers them) hold, leaving out those expired at now,
// and returns the last member's seq (0 for none). A node's login reads the
// first members of a mailbox with the device's route.
func Unexpired(out []store.Stored, app string, members []string, now time.Time) ([]store.Stored, uint64, error) {
	var last uint64
	for _, member := range members {
		m, err := parseMember(app, []byte(member))
		if err != nil {
			return nil, 0, err
		}
		last = m.Seq
		if m.Expires.After(now) {
			out = append(out, m)
		}
	}
	return out, last, nil
}
