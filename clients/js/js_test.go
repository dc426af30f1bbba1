package longlinkjs_test

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	// The server the JS tests run is built from this module: importing it
	// makes a change to it invalidate go test's cached result.
	_ "github.com/longlink/longlink/internal/server"
	"github.com/longlink/longlink/internal/testengine"
)

// TestJS runs the SDK's Node.js tests and the browser tests (Playwright in
// headless Chromium), each file against real longlink servers it starts
// from a binary built here. Their packages come from `npm ci --prefix
// clients/js` (.ci/run does it).
func TestJS(t *testing.T) {
	testengine.Need(t, "node")
	testengine.Need(t, "chromium")
	if _, err := os.Stat("node_modules/playwright-core"); err != nil {
		t.Fatalf("the JS test packages are missing: run `npm ci --prefix clients/js` (%v)", err)
	}
	bin := filepath.Join(t.TempDir(), "longlink")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/longlink")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	readSources(t)
	files, err := filepath.Glob("tests/*.test.mjs")
	if err != nil || len(files) == 0 {
		t.Fatalf("no JS tests found: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".test.mjs"), func(t *testing.T) {
			start := time.Now()
			// A test that hangs fails after 2 minutes, named, instead of the
			// whole run timing out with nothing said.
			cmd := exec.Command("node", "--experimental-websocket", "--test", "--test-timeout=120000", file)
			cmd.Env = append(os.Environ(), "LONGLINK_BIN="+bin, "LONGLINK_ARTIFACTS="+artifacts(t))
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("node --test %s: %v\n%s", file, err, out.String())
			}
			t.Logf("%s passed in %s", file, time.Since(start).Round(time.Millisecond))
		})
	}
}

// artifacts is where browser tests write screenshots: $LONGLINK_ARTIFACTS,
// else a directory of the test's own.
func artifacts(t *testing.T) string {
	if dir := os.Getenv("LONGLINK_ARTIFACTS"); dir != "" {
		return dir
	}
	return t.TempDir()
}

// readSources reads every file of the SDK and its tests, so that go test
// knows them: a change to one invalidates its cached result (node reads
// them, which go test does not see).
func readSources(t *testing.T) {
	for _, dir := range []string{"src", "tests"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			_, err = os.ReadFile(path)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// The package installs as an app would take it: packed (npm pack, with the
// licence), installed from the tarball into a new project, imported by
// name; its version is the repository's (VERSION).
func TestPackage(t *testing.T) {
	testengine.Need(t, "node")
	dist, app := t.TempDir(), t.TempDir()
	pack := exec.Command("npm", "pack", "--pack-destination", dist, "--json")
	out, err := pack.Output()
	if err != nil {
		t.Fatalf("npm pack: %v\n%s", err, out)
	}
	var packed []struct {
		Filename string
		Version  string
		Files    []struct{ Path string }
	}
	if err := json.Unmarshal(out, &packed); err != nil || len(packed) != 1 {
		t.Fatalf("npm pack said %s (%v)", out, err)
	}
	version, err := os.ReadFile("../../VERSION")
	if err != nil {
		t.Fatal(err)
	}
	if packed[0].Version != strings.TrimSpace(string(version)) {
		t.Errorf("the package's version %s is not VERSION's %s", packed[0].Version, version)
	}
	var files []string
	for _, f := range packed[0].Files {
		files = append(files, f.Path)
	}
	for _, want := range []string{"LICENSE", "package.json", "src/longlink.js", "src/longlink.d.ts"} {
		if !slices.Contains(files, want) {
			t.Errorf("the package has no %s: %v", want, files)
		}
	}
	if err := os.WriteFile(filepath.Join(app, "package.json"), []byte(`{"name": "an-app", "private": true, "type": "module"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	install := exec.Command("npm", "install", "--offline", "--no-audit", "--no-fund", filepath.Join(dist, packed[0].Filename))
	install.Dir = app
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm install of the tarball: %v\n%s", err, out)
	}
	use := exec.Command("node", "--input-type=module", "-e",
		`import { Client, Code } from "longlink"; console.log(typeof Client, Code.REPLACED)`)
	use.Dir = app
	if out, err := use.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "function 4003" {
		t.Fatalf("import from the installed package: %v %s", err, out)
	}
}
