// Package longlinkjava_test builds longlink's Java SDK (clients/java) and
// runs its JUnit tests, so that `go test ./...` covers it.
package longlinkjava_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
)

// junit is where Debian's junit5 package puts its jars.
const junit = "/usr/share/java"

// TestJava builds the SDK with the JDK's javac at the Java 11 language
// level (warnings are errors) into a jar, builds its tests against that
// jar and JUnit 5, and runs them with JUnit's console launcher; the tests
// start real longlink servers from a binary built here. No build tool and
// no download: the JDK and JUnit are Debian's (.ci/run installs them).
func TestJava(t *testing.T) {
	javac, java := testengine.Need(t, "javac"), testengine.Need(t, "java")
	console := filepath.Join(junit, "junit-platform-console-standalone.jar")
	if _, err := os.Stat(console); err != nil {
		t.Fatalf("JUnit 5 is missing: Debian package junit5 (.ci/run installs it): %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "longlink")
	run(t, "go", "build", "-o", bin, "../../cmd/longlink")
	lib, tests := buildSDK(t, dir), filepath.Join(dir, "tests")
	cp := strings.Join([]string{lib, filepath.Join(junit, "junit-jupiter-api.jar"), filepath.Join(junit, "apiguardian-api.jar"),
		filepath.Join(junit, "opentest4j.jar"), filepath.Join(junit, "junit-platform-commons.jar")}, ":")
	run(t, javac, append([]string{"--release", "11", "-Xlint:all,-serial,-try", "-cp", cp, "-d", tests}, sources(t, "src/test", ".java")...)...)
	start := time.Now()
	cmd := exec.Command(java, "-jar", console, "--class-path", lib+":"+tests, "--select-package", "io.longlink.client",
		"--fail-if-no-tests", "--disable-banner", "--disable-ansi-colors", "--details=tree")
	cmd.Env = append(os.Environ(), "LONGLINK_BIN="+bin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("the Java tests failed: %v\n%s", err, out.String())
	}
	t.Logf("the Java tests passed in %s:\n%s", time.Since(start).Round(time.Millisecond), out.String())
}

// The SDK from Kotlin, as it is: examples/Usage.kt, compiled by Debian's
// kotlinc against the SDK's jar, logs in to a real server and prints what
// it was granted.
func TestKotlin(t *testing.T) {
	kotlinc, kotlin := testengine.Need(t, "kotlinc"), testengine.Need(t, "kotlin")
	ts := testserver.Start(t)
	dir := t.TempDir()
	lib, out := buildSDK(t, dir), filepath.Join(dir, "kotlin")
	run(t, kotlinc, append([]string{"-cp", lib, "-d", out}, sources(t, "examples", ".kt")...)...)
	said, err := exec.Command(kotlin, "-cp", lib+":"+out, "UsageKt", ts.GatewayAddr(), ts.Token("kotlin-device", "")).CombinedOutput()
	if err != nil {
		t.Fatalf("the Kotlin example failed: %v\n%s", err, said)
	}
	for _, want := range []string{"connected as kotlin-device", "apps [demo], heartbeat 30 s", "closed: closed by the client"} {
		if !strings.Contains(string(said), want) {
			t.Errorf("the Kotlin example did not say %q:\n%s", want, said)
		}
	}
}

// buildSDK compiles the SDK at the Java 11 language level, warnings as
// errors, into dir/longlink-client.jar, and returns its path.
func buildSDK(t *testing.T, dir string) string {
	javac, jar := testengine.Need(t, "javac"), testengine.Need(t, "jar")
	classes, lib := filepath.Join(dir, "classes"), filepath.Join(dir, "longlink-client.jar")
	run(t, javac, append([]string{"--release", "11", "-Xlint:all", "-Werror", "-d", classes}, sources(t, "src/main", ".java")...)...)
	run(t, jar, "--create", "--file", lib, "-C", classes, ".")
	return lib
}

// sources lists the files under dir whose names end in ext, and reads
// each, so that go test knows them: a change to one invalidates its cached
// result (javac and kotlinc read them in processes of their own, which go
// test does not see).
func sources(t *testing.T, dir, ext string) []string {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ext) {
			return err
		}
		if _, err := os.ReadFile(path); err != nil {
			return err
		}
		files = append(files, path)
		return nil
	})
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s sources in %s: %v", ext, dir, err)
	}
	return files
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
}
