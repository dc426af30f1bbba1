package server_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/server"
	"github.com/longlink/longlink/internal/testserver"
)

// serveConfigEnv makes the test binary a server: it serves the config file
// it names, prints "ready <gateway> <api>", and runs until it is killed.
const serveConfigEnv = "LONGLINK_TEST_SERVE_CONFIG"

func serveForTest(path string) int {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := server.Start(cfg, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("ready %s %s\n", s.GatewayAddr(), s.APIAddr())
	select {}
}

// child is a server in a process of its own, to be killed for real.
type child struct {
	cmd          *exec.Cmd
	gateway, api string
}

// startChild runs a server process on dataDir with the test apps.
func startChild(t *testing.T, dataDir string) *child {
	t.Helper()
	path := filepath.Join(t.TempDir(), "longlink.yaml")
	yaml := fmt.Sprintf("data_dir: %s\ngateway: {listen: 127.0.0.1:0}\napi: {listen: 127.0.0.1:0}\napps:\n", dataDir)
	for _, a := range []config.App{testserver.Demo, testserver.Other} {
		yaml += fmt.Sprintf("  - {id: %s, secret: %q, api_key: %q}\n", a.ID, a.Secret, a.APIKey)
	}
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveConfigEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 3 || f[0] != "ready" {
		t.Fatalf("server process: %q %v", line, err)
	}
	return &child{cmd: cmd, gateway: f[1], api: f[2]}
}

// kill9 kills the server process at once, as a crash would.
func (c *child) kill9(t *testing.T) {
	if err := c.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	c.cmd.Wait()
}
