package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"
)

// decodeBody decodes a JSON body into the struct v points to, strictly:
// the body must be valid UTF-8 (a payload is never silently altered), keys
// must match the documented names exactly (encoding/json alone matches them
// in any case) and appear once, and unknown keys, wrong types and trailing
// data are errors. A body over maxBodyBytes is 413. Every error names the
// key and says what is wrong, in words for a person.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, "request body over %d bytes", maxBodyBytes)
		}
		return errorf(http.StatusBadRequest, "could not read the request body")
	}
	if !utf8.Valid(body) {
		return errorf(http.StatusBadRequest, "the body is not valid UTF-8 (send binary data as data_base64)")
	}
	if err := checkKeys(body, jsonKeys(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "%s", describeJSONError(err))
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "bad JSON: data after the object")
	}
	return nil
}

// jsonKeys returns the JSON names of the fields of the struct v points to.
func jsonKeys(v any) map[string]bool {
	t := reflect.TypeOf(v).Elem()
	keys := make(map[string]bool, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			keys[name] = true
		}
	}
	return keys
}

// checkKeys checks a JSON object's top-level keys: each must be one of
// known, spelled exactly, and given once.
func checkKeys(body []byte, known map[string]bool) error {
	seen := make(map[string]bool, len(known))
	return objectKeys(body, func(key string) error {
		switch {
		case !known[key]:
			return errorf(http.StatusBadRequest, "unknown key %q (keys are case-sensitive)", key)
		case seen[key]:
			return errorf(http.StatusBadRequest, "key %q is given twice", key)
		}
		seen[key] = true
		return nil
	})
}

// objectKeys calls fn with each key of the top-level JSON object in b, in
// order, and returns the first error fn returns. It is a scan, not a
// parse (one pass, values skipped by their brackets and quotes): where b is
// not a well-formed object it stops quietly, and the decoder that follows
// says what is wrong.
func objectKeys(b []byte, fn func(key string) error) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil
	}
	for i = skipSpace(b, i+1); i < len(b) && b[i] == '"'; i = skipSpace(b, i+1) {
		end := stringEnd(b, i)
		if end < 0 {
			return nil
		}
		key := string(b[i+1 : end-1])
		if strings.IndexByte(key, '\\') >= 0 && json.Unmarshal(b[i:end], &key) != nil {
			return nil
		}
		if err := fn(key); err != nil {
			return err
		}
		if i = skipSpace(b, end); i >= len(b) || b[i] != ':' {
			return nil
		}
		if i = skipValue(b, i+1); i < 0 {
			return nil
		}
		if i = skipSpace(b, i); i >= len(b) || b[i] != ',' {
			return nil
		}
	}
	return nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the string that starts at b[i] (a
// quote), or -1 if it does not end.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipValue returns the index after the value that starts at or after
// b[i], or -1 if it does not end.
func skipValue(b []byte, i int) int {
	i = skipSpace(b, i)
	depth := 0
	for ; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			if i = stringEnd(b, i); i < 0 {
				return -1
			}
			i--
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth == 0 { // the end of the object: an empty value
				return i
			}
			depth--
		case depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return i
		}
		if depth == 0 && (b[i] == '"' || b[i] == '}' || b[i] == ']') {
			return i + 1
		}
	}
	return -1
}

// describeJSONError says what encoding/json found wrong without its Go
// names (struct types, Go kinds).
func describeJSONError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("bad JSON at byte %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Sprintf("%s: must be %s, not %s", typ.Field, jsonKind(typ.Type), typ.Value)
	case errors.As(err, &typ):
		return fmt.Sprintf("the body must be a JSON object, not %s", typ.Value)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the body is empty or cut short: send a JSON object"
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
