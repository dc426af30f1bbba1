// Package jsonscan scans JSON text without decoding it, for the strict
// checks that encoding/json does not make (it matches object keys in any
// letter case and lets the last of a repeated key win): the keys of API
// bodies and of token claims must be spelled exactly and given once.
package jsonscan

import (
	"bytes"
	"encoding/json"
)

// ObjectKeys calls fn with each key of the top-level JSON object in b
// (unescaped; it aliases b unless it had escapes) and its value, in order,
// and returns the first error fn returns. It is a scan, not a parse (one
// pass, values skipped by their brackets and quotes): where b is not a
// well-formed object it stops quietly, and the decoder that follows says
// what is wrong. It allocates nothing for keys without escapes.
func ObjectKeys(b []byte, fn func(key, value []byte) error) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil
	}
	for i = skipSpace(b, i+1); i < len(b) && b[i] == '"'; i = skipSpace(b, i+1) {
		end := stringEnd(b, i)
		if end < 0 {
			return nil
		}
		key := b[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var unescaped string
			if json.Unmarshal(b[i:end], &unescaped) != nil {
				return nil
			}
			key = []byte(unescaped)
		}
		if i = skipSpace(b, end); i >= len(b) || b[i] != ':' {
			return fn(key, nil)
		}
		start := skipSpace(b, i+1)
		if i = skipValue(b, i+1); i < 0 {
			return fn(key, nil)
		}
		if err := fn(key, b[start:i]); err != nil {
			return err
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

// Commas counts the commas outside strings in b: one less than the values
// in its lists and objects, over all of them.
func Commas(b []byte) int {
	n := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			if i = stringEnd(b, i); i < 0 {
				return n
			}
			i--
		case ',':
			n++
		}
	}
	return n
}
