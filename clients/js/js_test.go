package longlinkjs_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
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
