package config

import (
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

// DemoApp returns the demo app whose secret and API key live in dataDir, so
// that serve, token, listen and push agree without a config file. With create
// (serve) they are generated and saved (mode 0600) on first use; without it a
// missing file is an error, so that a command run elsewhere does not invent
// credentials the server does not know.
func DemoApp(dataDir string, create bool) (App, error) {
	raw, err := readOrCreate(filepath.Join(dataDir, demoFile), create, func() []byte {
		raw, _ := json.Marshal(App{ID: DemoAppID, Secret: randomKey(), APIKey: randomKey()})
		return raw
	})
	if err != nil {
		return App{}, fmt.Errorf("demo app: %w", err)
	}
	var app App
	if err := json.Unmarshal(raw, &app); err != nil {
		return App{}, fmt.Errorf("demo app: %s: %w", demoFile, err)
	}
	return app, nil
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

// LoadOrDemo loads path when it is set; otherwise it returns the defaults
// with the demo app from the default data dir (see DemoApp for create).
func LoadOrDemo(path string, create bool) (*Config, error) {
	if path != "" {
		return Load(path)
	}
	c := Default()
	app, err := DemoApp(c.DataDir, create)
	if err != nil {
		return nil, err
	}
	c.Apps = []App{app}
	c.Demo = true
	if c.Ops.Token, err = DemoOpsToken(c.DataDir, create); err != nil && create {
		return nil, err
	}
	return c, c.Validate()
}
