package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// env is a test's environment.
func env(vars map[string]string) Env {
	return func(name string) (string, bool) { v, ok := vars[name]; return v, ok }
}

// The environment wins over the file and the defaults, key by key: every
// kind of key, secrets from files, apps added or completed; a bad value
// names its variable.
func TestEnvOverFile(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(secret, []byte("ops-token-from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := goodApps + "gateway: {listen: 127.0.0.1:7000, heartbeat: 40s}\nnode: from-file\n"
	c, err := parse([]byte(file), env(map[string]string{
		"LONGLINK_GATEWAY_LISTEN":              "0.0.0.0:7070",
		"LONGLINK_API_MAX_TTL":                 "2h",
		"LONGLINK_OPS_METRICS_PUBLIC":          "true",
		"LONGLINK_LIMITS_PUSH_PER_SECOND":      "12.5",
		"LONGLINK_STORE_MAILBOX_LIMIT":         "77",
		"LONGLINK_DISPATCH_CANARY_NODES":       "n7, n8",
		"LONGLINK_OPS_TOKEN_FILE":              secret,
		"LONGLINK_APPS":                        "demo,shop-eu",
		"LONGLINK_APPS_DEMO_WEBHOOK_SECRET":    "webhook-secret-0123",
		"LONGLINK_APPS_DEMO_WEBHOOKS_UPSTREAM": "chat=https://b.example/up,pay=https://b.example/pay",
		"LONGLINK_APPS_SHOP_EU_SECRET":         "shop-secret-0123456789",
		"LONGLINK_APPS_SHOP_EU_API_KEY":        "shop-key-0123456789",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Gateway.Listen != "0.0.0.0:7070" || c.Gateway.Heartbeat != 40*time.Second || c.Node != "from-file" ||
		c.API.MaxTTL != 2*time.Hour || !c.Ops.MetricsPublic || c.Limits.PushPerSecond != 12.5 || c.Store.MailboxLimit != 77 ||
		!slices.Equal(c.Dispatch.Canary.Nodes, []string{"n7", "n8"}) || c.Ops.Token != "ops-token-from-a-file" ||
		c.API.Listen != "127.0.0.1:8080" {
		t.Fatalf("env over file: %+v", c)
	}
	if len(c.Apps) != 2 || c.Apps[0].Secret != "0123456789abcdef" || c.Apps[0].WebhookSecret != "webhook-secret-0123" ||
		c.Apps[0].Webhooks.Upstream["pay"] != "https://b.example/pay" || c.Apps[1].ID != "shop-eu" || c.Apps[1].APIKey != "shop-key-0123456789" {
		t.Fatalf("apps: %+v", c.Apps)
	}
	for name, want := range map[string]string{
		"LONGLINK_GATEWAY_HEARTBEAT":   `LONGLINK_GATEWAY_HEARTBEAT: "soon" is not a duration such as 30s or 1h`,
		"LONGLINK_STORE_MAILBOX_LIMIT": `LONGLINK_STORE_MAILBOX_LIMIT: "soon" is not a whole number`,
		"LONGLINK_TLS_REQUIRED":        `LONGLINK_TLS_REQUIRED: "soon" is not true or false`,
	} {
		if _, err := parse([]byte(goodApps), env(map[string]string{name: "soon"})); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=soon: %v, want %q", name, err, want)
		}
	}
	if _, err := parse([]byte(goodApps), env(map[string]string{"LONGLINK_OPS_TOKEN_FILE": "/nonexistent"})); err == nil ||
		!strings.Contains(err.Error(), "LONGLINK_OPS_TOKEN_FILE") {
		t.Errorf("a _FILE that cannot be read: %v", err)
	}
	// The whole config from the environment; its apps checked as a file's.
	if c, err := parse(nil, env(map[string]string{"LONGLINK_APPS": "a1", "LONGLINK_APPS_A1_SECRET": "a1-secret-0123456789",
		"LONGLINK_APPS_A1_API_KEY": "a1-key-0123456789"})); err != nil || c.Apps[0].ID != "a1" {
		t.Fatalf("apps from the environment alone: %+v %v", c, err)
	}
	if _, err := parse(nil, env(map[string]string{"LONGLINK_APPS": "a1", "LONGLINK_APPS_A1_SECRET": "short"})); err == nil ||
		!strings.Contains(err.Error(), "apps[0].secret") {
		t.Errorf("a short secret from the environment: %v", err)
	}
}

// The example has every key of the config, each with its environment
// variable, and parses as it is, to the defaults.
func TestExample(t *testing.T) {
	example := Example()
	c, err := Parse(example)
	if err != nil {
		t.Fatalf("the example does not parse: %v\n%s", err, example)
	}
	want := Default()
	want.Apps = c.Apps
	c.Dispatch.Canary.Nodes = nil // [] in the file
	if !reflect.DeepEqual(c, want) {
		t.Errorf("the example's values are not the defaults:\n%+v\n%+v", c, want)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(example, &root); err != nil {
		t.Fatal(err)
	}
	keys, containers := map[int]string{}, map[int]string{}
	collectKeys(&root, "", keys, containers)
	inExample := map[string]bool{}
	for _, p := range keys {
		inExample[strings.Replace(p, "apps[0]", "apps.demo", 1)] = true
	}
	n := 0
	for _, v := range []reflect.Value{reflect.ValueOf(c).Elem(), reflect.ValueOf(&c.Apps[0]).Elem()} {
		prefix := ""
		if v.Type() == reflect.TypeFor[App]() {
			prefix = "apps.demo"
		}
		eachKey(v, prefix, func(path string, _ reflect.Value) error {
			n++
			if !inExample[path] {
				t.Errorf("the example has no %s", path)
			}
			if path != "apps.demo.id" && !strings.Contains(string(example), "env: "+EnvName(path)+"\n") {
				t.Errorf("the example does not name %s's variable, %s", path, EnvName(path))
			}
			return nil
		})
	}
	if n < 60 {
		t.Fatalf("only %d keys walked", n)
	}
}

// The effective config shows every value but the secrets: app secrets and
// keys, the ops token, the engines' credentials.
func TestPrintMasksSecrets(t *testing.T) {
	c, err := parse([]byte(goodApps+"cluster: {redis: \"redis://:redis-pass@127.0.0.1:6379/0\", nats: \"nats://u:nats-pass@127.0.0.1:4222\"}\n"),
		env(map[string]string{"LONGLINK_OPS_TOKEN": "ops-token-0123456789"}))
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Print()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"0123456789abcdef", "key-0123456789abcdef", "ops-token-0123456789", "redis-pass", "nats-pass"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("the printed config shows %q:\n%s", secret, out)
		}
	}
	for _, shown := range []string{"listen: 127.0.0.1:7070", "id: demo", "secret: (16 bytes, masked)", "redis://masked@127.0.0.1:6379/0", "lease: 10s"} {
		if !strings.Contains(string(out), shown) {
			t.Errorf("the printed config has no %q:\n%s", shown, out)
		}
	}
}
