package config

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Every key can come from the environment, over the file (and under the
// command line's flags): the key's path in capitals, dots as underscores,
// after LONGLINK_ (gateway.listen: LONGLINK_GATEWAY_LISTEN). NAME_FILE
// instead of NAME reads the value from a file (a container's secrets). A
// list is comma-separated (LONGLINK_DISPATCH_CANARY_NODES=n7,n8), a map is
// k=v pairs (LONGLINK_APPS_DEMO_WEBHOOKS_UPSTREAM=chat=https://…).
//
// Apps: LONGLINK_APPS lists app ids (comma-separated); each one's keys are
// LONGLINK_APPS_<ID>_<KEY>, its id in capitals with '-' as '_'
// (LONGLINK_APPS_DEMO_SECRET, LONGLINK_APPS_DEMO_API_KEY_FILE). They set
// the file's app of that id, or add one. An app of the file that
// LONGLINK_APPS leaves out may still take keys from the environment.

// EnvPrefix begins the name of every environment variable of the config.
const EnvPrefix = "LONGLINK_"

// Env looks up an environment variable: os.LookupEnv, or a test's.
type Env func(name string) (string, bool)

// OSEnv is the process's environment.
var OSEnv Env = os.LookupEnv

// EnvName is the environment variable of a key's dotted path.
func EnvName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(path))
}

// FromEnv returns the value the environment gives the key at path (its
// variable, or its _FILE), and whether it gives one.
func FromEnv(path string) (string, bool, error) { return OSEnv.value(EnvName(path)) }

// value returns the value of the variable name (or the content of the file
// named by name_FILE, less a final newline), and whether one is set.
func (env Env) value(name string) (string, bool, error) {
	if v, ok := env(name); ok {
		return v, true, nil
	}
	file, ok := env(name + "_FILE")
	if !ok {
		return "", false, nil
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", false, fmt.Errorf("%s_FILE: %w", name, err)
	}
	return strings.TrimSuffix(string(raw), "\n"), true, nil
}

// fromEnv sets every key the environment gives, over c's.
func (c *Config) fromEnv(env Env) error {
	err := eachKey(reflect.ValueOf(c).Elem(), "", func(path string, f reflect.Value) error {
		return setFromEnv(env, EnvName(path), f)
	})
	if err != nil {
		return err
	}
	ids, _, err := env.value(EnvPrefix + "APPS")
	if err != nil {
		return wrap(err)
	}
	for id := range strings.SplitSeq(ids, ",") {
		if id = strings.TrimSpace(id); id != "" && !slices.ContainsFunc(c.Apps, func(a App) bool { return a.ID == id }) {
			c.Apps = append(c.Apps, App{ID: id})
		}
	}
	for i := range c.Apps {
		app := reflect.ValueOf(&c.Apps[i]).Elem()
		err := eachKey(app, "apps."+c.Apps[i].ID, func(path string, f reflect.Value) error {
			if path == "apps."+c.Apps[i].ID+".id" {
				return nil
			}
			return setFromEnv(env, EnvName(path), f)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// eachKey calls fn with the dotted path (under prefix) and the field of
// every key of the struct v, into nested structs, but for the apps (a
// list of structs, which has paths of its own).
func eachKey(v reflect.Value, prefix string, fn func(path string, f reflect.Value) error) error {
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		f := v.Field(i)
		var err error
		switch {
		case f.Kind() == reflect.Struct:
			err = eachKey(f, path, fn)
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
		default:
			err = fn(path, f)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// setFromEnv sets f from the variable name, if it is set.
func setFromEnv(env Env, name string, f reflect.Value) error {
	s, ok, err := env.value(name)
	if err != nil || !ok {
		return wrap(err)
	}
	if err := setText(f, s); err != nil {
		return fmt.Errorf("config: %s: %q is not %s", name, s, yamlKind(f.Type().String()))
	}
	return nil
}

// setText sets f from its text: a scalar as in YAML, a list
// comma-separated, a map as k=v pairs, comma-separated.
func setText(f reflect.Value, s string) error {
	switch {
	case f.Type() == reflect.TypeFor[time.Duration]():
		d, err := time.ParseDuration(s)
		f.SetInt(int64(d))
		return err
	case f.Kind() == reflect.String:
		f.SetString(s)
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		f.SetBool(b)
		return err
	case f.CanInt():
		n, err := strconv.ParseInt(s, 10, 64)
		f.SetInt(n)
		return err
	case f.CanFloat():
		x, err := strconv.ParseFloat(s, 64)
		f.SetFloat(x)
		return err
	case f.Kind() == reflect.Slice:
		var list []string
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		f.Set(reflect.ValueOf(list))
	case f.Kind() == reflect.Map:
		m := map[string]string{}
		for pair := range strings.SplitSeq(s, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok {
				return fmt.Errorf("%q is not k=v", pair)
			}
			m[k] = v
		}
		f.Set(reflect.ValueOf(m))
	default:
		return fmt.Errorf("a %s cannot come from the environment", f.Type())
	}
	return nil
}

// wrap says that a non-nil err is the config's.
func wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("config: %w", err)
}
