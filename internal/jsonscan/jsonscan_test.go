package jsonscan

import (
	"strings"
	"testing"
)

// ObjectKeys reports the top-level keys only, whatever the values hold.
func TestObjectKeys(t *testing.T) {
	for body, want := range map[string]string{
		`{"app":"demo","devices":["a","b}"],"data":"x\"y{","ttl":3}`: "app devices data ttl",
		` { "a" : {"inner":1,"x":[{"y":2}]} , "b":true,"c":null } `:  "a b c",
		`{"\u0061pp":"x"}`: "app",
		`{}`:               "",
		`[1,2]`:            "",
		`{"a":1,"b"`:       "a b",
	} {
		var got []string
		ObjectKeys([]byte(body), func(k, _ []byte) error { got = append(got, string(k)); return nil })
		if strings.Join(got, " ") != want {
			t.Errorf("%s: keys %q, want %q", body, got, want)
		}
	}
}

// ObjectKeys hands each key's value; Commas counts outside strings only.
func TestValuesAndCommas(t *testing.T) {
	var values []string
	ObjectKeys([]byte(`{"a": [1, 2], "b":{"c":"x,y"} ,"d":null}`), func(_, v []byte) error { values = append(values, string(v)); return nil })
	if strings.Join(values, "|") != `[1, 2]|{"c":"x,y"}|null` {
		t.Fatalf("values %q", values)
	}
	if n := Commas([]byte(`{"a":["x,","y"],"b":"\",",c":1}`)); n != 3 {
		t.Fatalf("%d commas outside strings, want 3", n)
	}
}
