package config

import (
	"bytes"
	_ "embed"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// The config as YAML: what a node runs with (`longlink config`, its secrets
// masked), and a complete example (`longlink config --example`), both made
// from the types the loader decodes into, with the defaults it fills in
// and, for the example, each key's doc comment, read from this package's
// own source: they cannot drift from what the loader takes.

//go:embed config.go
var source []byte

// fieldDocs are the doc comments of the config's fields, by
// "Type.Field", read once from source.
var fieldDocs = sync.OnceValue(func() map[string]string {
	docs := map[string]string{}
	f, err := parser.ParseFile(token.NewFileSet(), "config.go", source, parser.ParseComments)
	if err != nil {
		panic("config: its own source does not parse: " + err.Error()) // embedded at build time: a build error
	}
	ast.Inspect(f, func(n ast.Node) bool {
		spec, ok := n.(*ast.TypeSpec)
		if !ok {
			return true
		}
		if st, ok := spec.Type.(*ast.StructType); ok {
			for _, field := range st.Fields.List {
				doc := strings.TrimSpace(field.Doc.Text() + field.Comment.Text())
				for _, name := range field.Names {
					if doc != "" {
						docs[spec.Name.Name+"."+name.Name] = doc
					}
				}
			}
		}
		return false
	})
	return docs
})

// Print is c as YAML, every key with its value, the secrets masked: app
// secrets and keys, the ops token, and the credentials in engine URLs.
func (c *Config) Print() ([]byte, error) {
	return encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{mapping(reflect.ValueOf(c).Elem(), "", false)}})
}

// encode writes a YAML document, indented by two spaces.
func encode(doc *yaml.Node) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// Example is a complete config file: every key with its default, what it
// is for, and its environment variable; one app with placeholder
// credentials. It parses as it is.
func Example() []byte {
	c := Default()
	c.Apps = []App{{ID: "demo", Secret: "change-me-to-32-random-bytes-0001", APIKey: "change-me-to-32-random-bytes-0002",
		Webhooks: Webhooks{Upstream: map[string]string{"chat": "https://backend.example.com/longlink/up"},
			Status: "https://backend.example.com/longlink/status"}}}
	doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{mapping(reflect.ValueOf(c).Elem(), "", true)},
		HeadComment: "longlink's configuration (longlink config --example): every key, with its default.\n" +
			"A key left out, or given as 0 or \"\", takes its default. Each can come from the\n" +
			"environment instead, over the file: the variable named with it (NAME_FILE reads\n" +
			"the value from a file; a list is comma-separated, a map k=v pairs). Command-line\n" +
			"flags (serve --gateway-listen, --api-listen) win over both."}
	out, err := encode(doc)
	if err != nil {
		panic("config: the example does not encode: " + err.Error()) // made of strings and lists only
	}
	return out
}

// mapping is the struct v (at path) as a YAML mapping; example adds each
// key's doc and environment variable, and leaves the secrets as they are.
func mapping(v reflect.Value, path string, example bool) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode}
	for i := range v.NumField() {
		field := v.Type().Field(i)
		name, _, _ := strings.Cut(field.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		p := name
		if path != "" {
			p = path + "." + name
		}
		key := &yaml.Node{Kind: yaml.ScalarNode, Value: name}
		f := v.Field(i)
		if example {
			comment := fieldDocs()[v.Type().Name()+"."+field.Name]
			switch section := f.Kind() == reflect.Struct || f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct; {
			case v.Type() == reflect.TypeFor[App]() && field.Name == "ID":
				comment = "env: " + EnvPrefix + "APPS lists the ids (comma-separated); each app's keys follow it"
			case !section:
				comment = strings.TrimSpace(comment + "\nenv: " + EnvName(p))
			}
			key.HeadComment = comment
		}
		m.Content = append(m.Content, key, value(f, p, field.Tag.Get("secret"), example))
	}
	return m
}

// value is the field f (a key at path) as a YAML node; secret ("key" or
// "url") says how to mask it unless example.
func value(f reflect.Value, path, secret string, example bool) *yaml.Node {
	scalar := func(s string) *yaml.Node {
		n := &yaml.Node{Kind: yaml.ScalarNode, Value: s}
		if s == "" {
			n.Style = yaml.DoubleQuotedStyle
		}
		return n
	}
	switch {
	case f.Kind() == reflect.Struct:
		return mapping(f, path, example)
	case f.Type() == reflect.TypeFor[time.Duration]():
		return scalar(time.Duration(f.Int()).String())
	case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct: // the apps
		list := &yaml.Node{Kind: yaml.SequenceNode}
		for i := range f.Len() {
			list.Content = append(list.Content, mapping(f.Index(i), path+"."+f.Index(i).FieldByName("ID").String(), example))
		}
		return list
	case f.Kind() == reflect.Slice:
		list := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for i := range f.Len() {
			list.Content = append(list.Content, scalar(f.Index(i).String()))
		}
		return list
	case f.Kind() == reflect.Map:
		m := &yaml.Node{Kind: yaml.MappingNode}
		keys := f.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			m.Content = append(m.Content, scalar(k.String()), scalar(f.MapIndex(k).String()))
		}
		return m
	case f.Kind() == reflect.String && !example && f.String() != "" && secret == "key":
		return scalar(fmt.Sprintf("(%d bytes, masked)", f.Len()))
	case f.Kind() == reflect.String && !example && secret == "url":
		return scalar(maskURLs(f.String()))
	case f.Kind() == reflect.String:
		return scalar(f.String())
	case f.Kind() == reflect.Bool:
		return scalar(strconv.FormatBool(f.Bool()))
	case f.CanFloat():
		return scalar(strconv.FormatFloat(f.Float(), 'g', -1, 64))
	default:
		return scalar(strconv.FormatInt(f.Int(), 10))
	}
}

// maskURLs masks the credentials of a comma-separated list of URLs.
func maskURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, s := range parts {
		if u, err := url.Parse(strings.TrimSpace(s)); err == nil && u.User != nil {
			u.User = url.User("masked")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
