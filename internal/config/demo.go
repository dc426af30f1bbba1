package config

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// DemoAppID is the app that `longlink serve` runs without a config file.
const DemoAppID = "demo"

const demoFile = "demo-app.json"

// demoKeys is demo-app.json: the demo app under the config's key names,
// and the addresses the demo node last served on (so that the commands run
// beside it reach it where `serve --gateway-listen/--api-listen` put it).
type demoKeys struct {
	ID      string `json:"id"`
	Secret  string `json:"secret"`
	APIKey  string `json:"api_key"`
	Gateway string `json:"gateway,omitempty"`
	API     string `json:"api,omitempty"`
	// The API key as files written before the config's names were used
	// hold it.
	OldAPIKey string `json:"APIKey,omitempty"`
}

func readDemoKeys(dataDir string, create bool) (demoKeys, error) {
	raw, err := readOrCreate(filepath.Join(dataDir, demoFile), create, func() []byte {
		raw, _ := json.MarshalIndent(demoKeys{ID: DemoAppID, Secret: randomKey(), APIKey: randomKey()}, "", "  ")
		return raw
	})
	if err != nil {
		return demoKeys{}, fmt.Errorf("demo app: %w", err)
	}
	var k demoKeys
	if err := json.Unmarshal(raw, &k); err != nil {
		return demoKeys{}, fmt.Errorf("demo app: %s: %w", demoFile, err)
	}
	k.APIKey = cmp.Or(k.APIKey, k.OldAPIKey)
	k.OldAPIKey = ""
	return k, nil
}

// DemoApp returns the demo app whose secret and API key live in dataDir, so
// that serve, token, listen and push agree without a config file. With create
// (serve) they are generated and saved (mode 0600) on first use; without it a
// missing file is an error, so that a command run elsewhere does not invent
// credentials the server does not know.
func DemoApp(dataDir string, create bool) (App, error) {
	k, err := readDemoKeys(dataDir, create)
	if err != nil {
		return App{}, err
	}
	return App{ID: k.ID, Secret: k.Secret, APIKey: k.APIKey}, nil
}

// SaveDemoAddresses records in dataDir where the demo node serves now: its
// gateway's and API's host:port.
func SaveDemoAddresses(dataDir, gateway, api string) error {
	k, err := readDemoKeys(dataDir, false)
	if err != nil {
		return err
	}
	k.Gateway, k.API = gateway, api
	raw, _ := json.MarshalIndent(k, "", "  ")
	return os.WriteFile(filepath.Join(dataDir, demoFile), raw, 0o600)
}

// ForgetDemoApp removes the demo app's credentials and ops token from
// dataDir: a first start that failed before it could show them.
func ForgetDemoApp(dataDir string) {
	os.Remove(filepath.Join(dataDir, demoFile))
	os.Remove(filepath.Join(dataDir, opsTokenFile))
}

const opsTokenFile = "ops-token"

// DemoOpsToken returns the ops token that serve without a config uses,
// kept in dataDir (generated there with create, like DemoApp's keys).
func DemoOpsToken(dataDir string, create bool) (string, error) {
	raw, err := readOrCreate(filepath.Join(dataDir, opsTokenFile), create, func() []byte { return []byte(randomKey()) })
	if err != nil {
		return "", fmt.Errorf("ops token: %w", err)
	}
	return string(raw), nil
}

// readOrCreate returns the contents of path; a missing file is written
// first (mode 0600, its directory 0700) with what fresh returns when create
// is set, and is an error otherwise, so that a command run elsewhere does
// not invent credentials the server does not know.
func readOrCreate(path string, create bool, fresh func() []byte) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err == nil {
		return raw, nil
	}
	if !errors.Is(err, fs.ErrNotExist) || !create {
		return nil, fmt.Errorf("%w (start `longlink serve` here first, or pass --config)", err)
	}
	raw = fresh()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return nil, err
	}
	return raw, nil
}

// DemoDataDir is the demo node's data dir: LONGLINK_DATA_DIR's, or the
// default.
func DemoDataDir() string {
	if dir, ok, _ := FromEnv("data_dir"); ok && dir != "" {
		return dir
	}
	return defaults.DataDir
}

// HasDemoApp reports whether dataDir holds the demo app's credentials.
func HasDemoApp(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, demoFile))
	return err == nil
}

func randomKey() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// LoadOrDemo loads path when it is set, or the config the environment gives
// when it names apps (LONGLINK_APPS); otherwise it returns the defaults,
// under the environment's keys, with the demo app from the data dir (see
// DemoApp for create). Without create (a command run beside the demo
// node), the listen addresses are where the demo node last served.
func LoadOrDemo(path string, create bool) (*Config, error) {
	if path != "" {
		return Load(path)
	}
	if _, apps, err := OSEnv.value(EnvPrefix + "APPS"); apps || err != nil { // the whole config from the environment
		return parse(nil, OSEnv)
	}
	c := Default()
	if err := c.fromEnv(OSEnv); err != nil {
		return nil, err
	}
	c.setDefaults()
	k, err := readDemoKeys(c.DataDir, create)
	if err != nil {
		return nil, err
	}
	c.Apps = []App{{ID: k.ID, Secret: k.Secret, APIKey: k.APIKey}}
	if !create {
		c.Gateway.Listen, c.API.Listen = cmp.Or(k.Gateway, c.Gateway.Listen), cmp.Or(k.API, c.API.Listen)
	}
	c.Demo = true
	if c.Ops.Token == "" {
		if c.Ops.Token, err = DemoOpsToken(c.DataDir, create); err != nil && create {
			return nil, err
		}
	}
	return c, c.Validate()
}
