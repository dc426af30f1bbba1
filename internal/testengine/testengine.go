// Package testengine starts the real engines a cluster runs on, for tests:
// redis-server and nats-server, each on a free loopback port with its files
// in the test's temporary directory, stopped when the test ends.
package testengine

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Engine is a running engine process.
type Engine struct {
	Addr string // host:port
	cmd  *exec.Cmd
	args []string
	t    testing.TB
}

// start runs name with args, listening on addr, until the test ends; it
// returns once addr accepts connections.
func start(t testing.TB, addr, name string, args ...string) *Engine {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (Debian package %s; .ci/run installs it)", name, name)
	}
	e := &Engine{Addr: addr, args: append([]string{path}, args...), t: t}
	e.Start()
	t.Cleanup(e.Stop)
	return e
}

// Start starts the engine (again, after Stop, on the same address and
// files) and waits until it accepts connections.
func (e *Engine) Start() {
	e.t.Helper()
	e.cmd = exec.Command(e.args[0], e.args[1:]...)
	if err := e.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", e.Addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("%s did not listen on %s within 10s", e.args[0], e.Addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop kills the engine (SIGKILL: a crash) and waits for it.
func (e *Engine) Stop() {
	if e.cmd != nil && e.cmd.Process != nil {
		e.cmd.Process.Kill()
		e.cmd.Wait()
		e.cmd = nil
	}
}

// Redis starts a redis-server with its AOF on and fsynced at every write
// (the settings a cluster needs), its files in a temporary directory;
// settings are more "--name value" arguments, which come last and win.
func Redis(t testing.TB, settings ...string) *Engine {
	port := FreePort(t)
	args := []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", t.TempDir(),
		"--appendonly", "yes", "--appendfsync", "always", "--save", ""}
	return start(t, fmt.Sprintf("127.0.0.1:%d", port), "redis-server", append(args, settings...)...)
}

// URL is the engine's redis:// URL.
func (e *Engine) URL() string { return "redis://" + e.Addr + "/0" }

// NATS starts a nats-server (core NATS: no JetStream).
func NATS(t testing.TB) *Engine {
	port := FreePort(t)
	return start(t, fmt.Sprintf("127.0.0.1:%d", port), "nats-server", "-a", "127.0.0.1", "-p", strconv.Itoa(port))
}

// NATSURL is the engine's nats:// URL.
func (e *Engine) NATSURL() string { return "nats://" + e.Addr }
