package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/longlink/longlink/internal/config"
)

func push(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("push", stderr)
	api := fs.String("api", "", "API base URL (default: http:// or, with tls, https:// + the config's api.listen)")
	key := fs.String("key", "", "the app's API key (default: from the config)")
	path := fs.String("config", "", "YAML config `file`; without it: the demo app in ./longlink-data")
	app := fs.String("app", "", "app id (default: the only app, or demo)")
	var devices, users listFlag
	fs.Var(&devices, "device", "device to push to (repeatable)")
	fs.Var(&users, "user", "user to push to (repeatable)")
	group := fs.String("group", "", "group to push to (its connections now)")
	broadcast := fs.Bool("broadcast", false, "push to every connection of the app")
	var anyTags, allTags, notTags tagsFlag
	fs.Var(&anyTags, "tags", "push to the devices with any of these `tags` (comma-separated, repeatable)")
	fs.Var(&allTags, "tags-all", "push to the devices with all of these `tags`")
	fs.Var(&notTags, "tags-not", "leave out the devices with any of these `tags` (with --tags or --tags-all)")
	ttl := fs.Int64("ttl", 0, "seconds to keep the message for offline devices; 0 = online only")
	id := fs.String("id", "", "idempotency key")
	at := fs.String("at", "", "send at this `time` (RFC 3339, e.g. 2026-12-24T18:00:00Z) instead of now")
	collapse := fs.String("collapse", "", "collapse `key`: a stored message replaces an undelivered one with the same key")
	b64 := fs.Bool("base64", false, "DATA is base64: push the bytes it decodes to")
	tf := addTLSFlags(fs)
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(positional) != 1 {
		return errors.New("give the data to push as one argument, or - to read it from stdin")
	}
	data, dataKey, err := pushData(positional[0], *b64)
	if err != nil {
		return err
	}
	var cfg *config.Config
	if *key != "" && *api != "" && *app == "" && *path == "" {
		return errors.New("give --app with --api and --key (or --config, which names the app)")
	}
	if *key == "" || *api == "" || *app == "" || *path != "" {
		if cfg, err = config.LoadOrDemo(*path, false); err != nil {
			return err
		}
		a, err := pickApp(cfg, *app)
		if err != nil {
			return err
		}
		*app = a.ID
		if *key == "" {
			*key = a.APIKey
		}
		if *api == "" {
			*api = "http://" + cfg.API.Listen
			if cfg.TLS.Enabled() {
				*api = "https://" + cfg.API.Listen
			}
		}
	}
	hc := http.DefaultClient
	if strings.HasPrefix(*api, "https://") || tf.given() {
		conf, err := tf.config(cfg)
		if err != nil {
			return err
		}
		hc = &http.Client{Transport: &http.Transport{TLSClientConfig: conf, Proxy: http.ProxyFromEnvironment}}
	}
	body := map[string]any{"app": *app, dataKey: data, "ttl": *ttl}
	if len(devices) > 0 {
		body["devices"] = devices
	}
	if len(users) > 0 {
		body["users"] = users
	}
	if *group != "" {
		body["group"] = *group
	}
	if *broadcast {
		body["broadcast"] = true
	}
	if len(anyTags)+len(allTags)+len(notTags) > 0 {
		body["tags"] = map[string][]string{"any": anyTags, "all": allTags, "not": notTags}
	}
	for k, v := range map[string]string{"id": *id, "at": *at, "collapse": *collapse} {
		if v != "" {
			body[k] = v
		}
	}
	raw, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, strings.TrimRight(*api, "/")+"/v1/push", bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+*key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted { // 202: scheduled
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(answer))
	}
	_, err = stdout.Write(answer)
	return err
}

// tagsFlag is a repeatable flag of comma-separated tags.
type tagsFlag []string

func (l *tagsFlag) String() string { return strings.Join(*l, ",") }
func (l *tagsFlag) Set(v string) error {
	*l = append(*l, strings.Split(v, ",")...)
	return nil
}

// pushData turns the DATA argument into the push's payload and the key it
// goes under: "-" reads stdin (sent as data_base64 unless it is UTF-8
// text), and with b64 the argument is already base64.
func pushData(arg string, b64 bool) (data, key string, err error) {
	switch {
	case arg == "-":
		raw, err := io.ReadAll(stdin)
		if err != nil {
			return "", "", fmt.Errorf("reading stdin: %w", err)
		}
		if utf8.Valid(raw) {
			return string(raw), "data", nil
		}
		return base64.StdEncoding.EncodeToString(raw), "data_base64", nil
	case b64:
		if _, err := base64.StdEncoding.DecodeString(arg); err != nil {
			return "", "", errors.New("--base64: DATA is not standard base64")
		}
		return arg, "data_base64", nil
	}
	return arg, "data", nil
}
