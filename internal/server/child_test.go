package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/longlink/longlink/internal/cli"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testserver"
)

// serveConfigEnv makes the test binary `longlink serve --config <file>`,
// signals and all.
const serveConfigEnv = "LONGLINK_TEST_SERVE_CONFIG"

// serveNofileEnv, if set, is the child's limit of open files.
const serveNofileEnv = "LONGLINK_TEST_SERVE_NOFILE"

func serveForTest(path string) int {
	return cli.Main([]string{"serve", "--config", path}, os.Stdout, os.Stderr)
}

// child is a server in a process of its own, to be killed or signalled.
type child struct {
	cmd          *exec.Cmd
	config       string // its config file
	gateway, api string
}

// childGateway and childAPI are a child's gateway and API config unless
// its test gives others.
const (
	childGateway = "gateway: {listen: 127.0.0.1:0}"
	childAPI     = "api: {listen: 127.0.0.1:0}"
)

// childConfig is the YAML of a child server on dataDir serving apps.
func childConfig(dataDir string, apps ...config.App) string {
	yaml := fmt.Sprintf("data_dir: %s\n%s\n%s\napps:\n", dataDir, childGateway, childAPI)
	for _, a := range apps {
		yaml += fmt.Sprintf("  - {id: %s, secret: %q, api_key: %q}\n", a.ID, a.Secret, a.APIKey)
	}
	return yaml
}

// startChild runs a server process on dataDir with the test apps; extra
// is more YAML for its config (node, cluster); a "gateway:" or "api:" line
// replaces the default one.
func startChild(t *testing.T, dataDir string, extra ...string) *child {
	t.Helper()
	return startChildEnv(t, nil, dataDir, extra...)
}

// startChildEnv is startChild with more environment variables for the
// child (serveNofileEnv).
func startChildEnv(t *testing.T, env []string, dataDir string, extra ...string) *child {
	t.Helper()
	yaml := childConfig(dataDir, testserver.Demo, testserver.Other)
	for _, e := range extra {
		if strings.HasPrefix(e, "gateway:") {
			yaml = strings.Replace(yaml, childGateway, e, 1)
			continue
		}
		if strings.HasPrefix(e, "api:") {
			yaml = strings.Replace(yaml, childAPI, e, 1)
			continue
		}
		yaml += e + "\n"
	}
	return startChildYAML(t, env, yaml)
}

// startChildYAML runs a server process with the config yaml, as it is.
func startChildYAML(t testing.TB, env []string, yaml string) *child {
	t.Helper()
	path := filepath.Join(t.TempDir(), "longlink.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), serveConfigEnv+"="+path), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c := &child{cmd: cmd, config: path}
	// The banner of `longlink serve` says where everything is.
	sc := bufio.NewScanner(out)
	for (c.gateway == "" || c.api == "") && sc.Scan() {
		if m := regexp.MustCompile(`gateway\s+tcp://(\S+)`).FindStringSubmatch(sc.Text()); m != nil {
			c.gateway = m[1]
		}
		if m := regexp.MustCompile(`api\s+https?://(\S+)`).FindStringSubmatch(sc.Text()); m != nil {
			c.api = m[1]
		}
	}
	if c.gateway == "" || c.api == "" {
		t.Fatalf("server process printed no addresses: %v", sc.Err())
	}
	go io.Copy(io.Discard, out)
	return c
}

// metrics returns the child's /metrics page.
func (c *child) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + c.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// kill9 kills the server process at once, as a crash would.
// signal sends sig to the child (SIGSTOP: a stall, until SIGCONT; a
// stalled child is resumed when the test ends, to be stopped).
func (c *child) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	if sig == syscall.SIGSTOP {
		t.Cleanup(func() { c.cmd.Process.Signal(syscall.SIGCONT) })
	}
}

func (c *child) kill9(t *testing.T) {
	if err := c.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	c.cmd.Wait()
}
