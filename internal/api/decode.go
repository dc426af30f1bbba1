package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/longlink/longlink/internal/jsonscan"
)

// maxBodyValues bounds the values in a body's lists and objects, over
// all of them: decoded, each costs a string and a slot, so that a body of
// one-letter ids would take 20 times its size. No call needs more than
// maxTargets ids and a few other keys.
const maxBodyValues = 2 * maxTargets

// decodeBody decodes a JSON body into the struct v points to, strictly:
// the body must be valid UTF-8 (a payload is never silently altered), keys
// must match the documented names exactly (encoding/json alone matches them
// in any case) and appear once, and unknown keys, wrong types and trailing
// data are errors. A body over maxBodyBytes is 413, and so is one of more
// than maxBodyValues values; while it is read and decoded its bytes count
// against limits.api_body_bytes (over it: 503). Every error names the key
// and says what is wrong, in words for a person.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, release, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	defer release()
	if !utf8.Valid(body) {
		return errorf(http.StatusBadRequest, "the body is not valid UTF-8 (send binary data as data_base64)")
	}
	if n := jsonscan.Commas(body); n > maxBodyValues {
		return errorf(http.StatusRequestEntityTooLarge, "the body holds over %d values; a call takes at most %d devices or users", maxBodyValues, maxTargets)
	}
	return strictDecode(body, v)
}

// strictDecode decodes the JSON object in b into the struct v points to,
// with the checks of decodeBody. It copies nothing of b but the values.
func strictDecode(b []byte, v any) error {
	if err := checkKeys(b, reflect.TypeOf(v).Elem(), ""); err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errorf(http.StatusBadRequest, "%s", describeJSONError(err))
	}
	return nil
}

// errBodyBudget is the 503 of a body that would take the process over
// limits.api_body_bytes.
var errBodyBudget = &httpError{status: http.StatusServiceUnavailable,
	msg: "too many request bodies are being read now (limits.api_body_bytes); retry shortly"}

// readBody reads r's body whole, counting the bytes it holds against
// limits.api_body_bytes until release is called. A body that declares its
// length (net/http then gives exactly that many bytes) is read into one
// buffer of that size; another grows geometrically.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (body []byte, release func(), err error) {
	if r.ContentLength > maxBodyBytes {
		return nil, nil, errBodyTooLarge
	}
	var held int64
	release = func() { s.bodies.Add(-held) }
	grow := func(n int) error {
		if s.bodies.Add(int64(n)) > s.cfg.Limits.APIBodyBytes {
			s.bodies.Add(-int64(n))
			return errBodyBudget
		}
		held += int64(n)
		body = slices.Grow(body, n)
		return nil
	}
	fail := func(e error) ([]byte, func(), error) {
		release()
		return nil, nil, e
	}
	if r.ContentLength >= 0 {
		if err := grow(int(r.ContentLength)); err != nil {
			return fail(err)
		}
		if _, err := io.ReadFull(r.Body, body[:r.ContentLength]); err != nil {
			return fail(errBodyUnread)
		}
		return body[:r.ContentLength], release, nil
	}
	src := http.MaxBytesReader(w, r.Body, maxBodyBytes)
	for next := 4096; ; next = max(min(2*cap(body), maxBodyBytes+1)-cap(body), 512) {
		if err := grow(next); err != nil {
			return fail(err)
		}
		for len(body) < cap(body) {
			n, err := src.Read(body[len(body):cap(body)])
			body = body[:len(body)+n]
			var tooBig *http.MaxBytesError
			switch {
			case err == io.EOF:
				return body, release, nil
			case errors.As(err, &tooBig):
				return fail(errBodyTooLarge)
			case err != nil:
				return fail(errBodyUnread)
			}
		}
	}
}

var errBodyUnread = errorf(http.StatusBadRequest, "could not read the request body")

var errBodyTooLarge = errorf(http.StatusRequestEntityTooLarge, "request body over %d bytes", maxBodyBytes)

// jsonKeys returns the fields of struct type t by their JSON names.
func jsonKeys(t reflect.Type) map[string]reflect.Type {
	keys := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			keys[name] = t.Field(i).Type
		}
	}
	return keys
}

// checkKeys checks the keys of a JSON object that decodes into struct type
// t, and of the objects in it that decode into structs: each must be one of
// t's, spelled exactly, and given once. path names the object in errors.
func checkKeys(body []byte, t reflect.Type, path string) error {
	known := jsonKeys(t)
	seen := make(map[string]bool, len(known))
	return jsonscan.ObjectKeys(body, func(k, value []byte) error {
		key := string(k)
		ft, ok := known[key]
		switch {
		case !ok:
			return errorf(http.StatusBadRequest, "unknown key %q (keys are case-sensitive)", path+key)
		case seen[key]:
			return errorf(http.StatusBadRequest, "key %q is given twice", path+key)
		}
		seen[key] = true
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			return checkKeys(value, ft, path+key+".")
		}
		return nil
	})
}

// describeJSONError says what encoding/json found wrong without its Go
// names (struct types, Go kinds).
func describeJSONError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax) && strings.Contains(syntax.Error(), "after top-level value"):
		return "bad JSON: data after the object"
	case errors.As(err, &syntax) && strings.Contains(syntax.Error(), "unexpected end of JSON input"):
		return "the body is empty or cut short: send a JSON object"
	case errors.As(err, &syntax):
		return fmt.Sprintf("bad JSON at byte %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Sprintf("%s: must be %s, not %s", typ.Field, jsonKind(typ.Type), typ.Value)
	case errors.As(err, &typ):
		return fmt.Sprintf("the body must be a JSON object, not %s", typ.Value)
	}
	if key, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return "unknown key " + key
	}
	return "bad JSON: " + strings.TrimPrefix(err.Error(), "json: ")
}

// jsonKind names what a Go type looks like in JSON.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return jsonKind(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list of " + strings.TrimPrefix(jsonKind(t.Elem()), "a ") + "s"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "something else"
}
