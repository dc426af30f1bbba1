// Package testengine starts the real programs tests run beside longlink:
// redis-server and nats-server, each on a free loopback port with its files
// in the test's temporary directory, stopped when the test ends; and it
// finds the others (Node.js, Chromium's tests, mosquitto, openssl).
//
// `go test -short` runs what needs nothing but Go, in under a minute: a test
// that needs a program, or takes seconds, skips under -short, saying how to
// run it. Without -short it runs, and a missing program fails it (with the
// same hint), so CI proves every test.
package testengine

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
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

// LoopbackPair returns the two ends of a TCP connection over loopback,
// closed when the test ends.
func LoopbackPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if client, err = net.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if server, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// Engine is a running engine process.
type Engine struct {
	Addr   string // host:port
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has exited
	args   []string
	t      testing.TB
}

// Programs not installed with Go, with the package that brings each
// (Debian's; .ci/run installs them all).
var packages = map[string]string{
	"redis-server":    "Debian package redis-server",
	"redis-cli":       "Debian package redis-tools, which redis-server brings",
	"nats-server":     "Debian package nats-server",
	"node":            "Node.js 20+: Debian packages nodejs and npm",
	"chromium":        "Debian package chromium",
	"mosquitto":       "Debian package mosquitto",
	"mosquitto_sub":   "Debian package mosquitto-clients",
	"mosquitto_pub":   "Debian package mosquitto-clients",
	"openssl":         "Debian package openssl",
	"systemd-analyze": "Debian package systemd",
	"podman":          "Debian package podman",
	"javac":           "Debian package openjdk-17-jdk-headless",
	"java":            "Debian package openjdk-17-jdk-headless",
	"jar":             "Debian package openjdk-17-jdk-headless",
	"kotlinc":         "Debian package kotlin",
	"kotlin":          "Debian package kotlin",
}

// Need returns the path of program name, which the test runs. Under -short
// the test is skipped (it needs more than Go); without -short a missing
// program fails it. Either way the message says how to install it.
func Need(t testing.TB, name string) string {
	t.Helper()
	hint := fmt.Sprintf("needs %s (%s; .ci/run installs it)", name, packages[name])
	if testing.Short() {
		t.Skip(hint + ": skipped under -short")
	}
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s: %v", hint, err)
	}
	return path
}

// Long skips a test that takes seconds under -short, saying why.
func Long(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip("takes seconds (" + why + "): skipped under -short")
	}
}

// start runs name with the arguments args gives for a port (found by
// port), until the test ends, and returns once it accepts connections. One
// that exits before it listens, or does not listen within 10s (another
// test's process took its port meanwhile), is started again on another
// port, up to 5 times.
func start(t testing.TB, name string, port func(testing.TB) int, args func(port int) []string) *Engine {
	t.Helper()
	bin := Need(t, name)
	var err error
	for range 5 {
		p := port(t)
		e := &Engine{Addr: fmt.Sprint("127.0.0.1:", p), args: append([]string{bin}, args(p)...), t: t}
		if err = e.launch(); err == nil {
			t.Cleanup(e.Stop)
			return e
		}
		e.Stop()
	}
	t.Fatal(err)
	return nil
}

// Start starts the engine again, after Stop, on the same address and
// files, and waits until it accepts connections.
func (e *Engine) Start() {
	e.t.Helper()
	if err := e.launch(); err != nil {
		e.Stop()
		e.t.Fatal(err)
	}
}

// launch starts the process and waits until it accepts connections; it
// fails if the process exits first, or does not listen within 10s.
func (e *Engine) launch() error {
	var out bytes.Buffer
	cmd := exec.Command(e.args[0], e.args[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	e.cmd, e.exited = cmd, exited
	_, port, _ := net.SplitHostPort(e.Addr)
	deadline := time.After(10 * time.Second)
	for {
		if listens(cmd.Process.Pid, port) {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited before it listened on %s: %s", e.args[0], e.Addr, bytes.TrimSpace(out.Bytes()))
		case <-deadline:
			return fmt.Errorf("%s did not listen on %s within 10s", e.args[0], e.Addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// listens reports whether process pid listens on 127.0.0.1:port (its own
// socket, from /proc: another process that took the port does not count).
func listens(pid int, port string) bool {
	p, err := strconv.Atoi(port)
	if err != nil {
		return false
	}
	table, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	local := fmt.Sprintf("0100007F:%04X", p)
	for line := range strings.SplitSeq(string(table), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || f[1] != local || f[3] != "0A" { // 0A: LISTEN
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprint("/proc/", pid, "/fd"))
		for _, fd := range fds {
			if target, _ := os.Readlink(fmt.Sprint("/proc/", pid, "/fd/", fd.Name())); target == "socket:["+f[9]+"]" {
				return true
			}
		}
	}
	return false
}

// Signal sends sig to the engine (SIGSTOP and SIGCONT: a stall).
func (e *Engine) Signal(sig os.Signal) {
	e.t.Helper()
	if err := e.cmd.Process.Signal(sig); err != nil {
		e.t.Fatal(err)
	}
}

// Pid is the engine's process id.
func (e *Engine) Pid() int { return e.cmd.Process.Pid }

// Stop kills the engine (SIGKILL: a crash) and waits for it.
func (e *Engine) Stop() {
	if e.cmd != nil {
		e.cmd.Process.Kill()
		<-e.exited
		e.cmd = nil
	}
}

// Redis starts a redis-server with its AOF on and fsynced at every write
// (the settings a cluster needs), its files in a temporary directory;
// settings are more "--name value" arguments, which come last and win.
func Redis(t testing.TB, settings ...string) *Engine {
	return redisOn(t, FreePort, settings...)
}

// redisOn is Redis on a port that port finds.
func redisOn(t testing.TB, port func(testing.TB) int, settings ...string) *Engine {
	return start(t, "redis-server", port, func(p int) []string {
		return append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(p), "--dir", t.TempDir(),
			"--appendonly", "yes", "--appendfsync", "always", "--save", ""}, settings...)
	})
}

// URL is the engine's redis:// URL.
func (e *Engine) URL() string { return "redis://" + e.Addr + "/0" }

// RedisCluster is a Redis Cluster of real redis-server processes on
// loopback, made as docs/cluster.md makes one: each node started with
// --cluster-enabled yes, then redis-cli --cluster create.
type RedisCluster struct {
	Nodes []*Engine // as started; which are primaries changes with failovers
}

// NewRedisCluster starts a Redis Cluster of 3 primaries, each with a
// replica (their AOFs fsynced at every write, as Redis's), and returns
// once every node says the cluster is ok and every replica is linked to its
// primary; settings go to every node.
func NewRedisCluster(t testing.TB, settings ...string) *RedisCluster {
	t.Helper()
	cli := Need(t, "redis-cli")
	c := &RedisCluster{}
	var addrs []string
	for range 6 {
		e := redisOn(t, ClusterPort, append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000"}, settings...)...)
		c.Nodes, addrs = append(c.Nodes, e), append(addrs, e.Addr)
	}
	create := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "1", "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, e := range c.Nodes {
		host, port, _ := net.SplitHostPort(e.Addr)
		for {
			out, _ := exec.Command(cli, "-h", host, "-p", port, "cluster", "info").Output()
			repl, _ := exec.Command(cli, "-h", host, "-p", port, "info", "replication").Output()
			if strings.Contains(string(out), "cluster_state:ok") &&
				(strings.Contains(string(repl), "role:master") || strings.Contains(string(repl), "master_link_status:up")) {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("the Redis Cluster is not ok within 30s: %s says %s%s", e.Addr, out, repl)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return c
}

// ClusterPort returns a port for a Redis Cluster node: free a moment ago,
// and so is its cluster bus port (the port + 10000, which must be a port:
// an ephemeral port above 55535 has none, and the node would not start).
func ClusterPort(t testing.TB) int {
	t.Helper()
	for range 1000 {
		port := FreePort(t)
		if port+10000 > 65535 {
			continue
		}
		if ln, err := net.Listen("tcp", fmt.Sprint("127.0.0.1:", port+10000)); err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port with a free cluster bus port")
	return 0
}

// Roles returns the cluster's live primaries and replicas, as each node
// says now (ROLE).
func (c *RedisCluster) Roles(t testing.TB) (primaries, replicas []*Engine) {
	t.Helper()
	cli := Need(t, "redis-cli")
	for _, e := range c.Nodes {
		host, port, _ := net.SplitHostPort(e.Addr)
		out, err := exec.Command(cli, "-h", host, "-p", port, "role").Output()
		switch role, _, _ := strings.Cut(string(out), "\n"); {
		case err != nil || e.cmd == nil:
		case role == "master":
			primaries = append(primaries, e)
		case role == "slave":
			replicas = append(replicas, e)
		}
	}
	return primaries, replicas
}

// Reshard moves n slots from one primary to another, keys and all, as an
// operator would (redis-cli --cluster reshard), and returns once they are
// moved.
func (c *RedisCluster) Reshard(t testing.TB, n int) {
	t.Helper()
	cli := Need(t, "redis-cli")
	primaries, _ := c.Roles(t)
	if len(primaries) < 2 {
		t.Fatalf("%d primaries: nothing to reshard between", len(primaries))
	}
	id := func(e *Engine) string {
		host, port, _ := net.SplitHostPort(e.Addr)
		out, err := exec.Command(cli, "-h", host, "-p", port, "cluster", "myid").Output()
		if err != nil {
			t.Fatalf("cluster myid of %s: %v", e.Addr, err)
		}
		return strings.TrimSpace(string(out))
	}
	out, err := exec.Command(cli, "--cluster", "reshard", primaries[0].Addr, "--cluster-from", id(primaries[0]),
		"--cluster-to", id(primaries[1]), "--cluster-slots", strconv.Itoa(n), "--cluster-yes").CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster reshard: %v\n%s", err, out)
	}
}

// URL is the cluster's redis:// URL: its first node, and the others as
// further seeds (addr=).
func (c *RedisCluster) URL() string {
	u := "redis://" + c.Nodes[0].Addr
	for i, e := range c.Nodes[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + e.Addr
	}
	return u
}

// NATS starts a nats-server (core NATS: no JetStream); settings are more
// of its flags (--user and --pass, say).
func NATS(t testing.TB, settings ...string) *Engine {
	return start(t, "nats-server", FreePort, func(p int) []string {
		return append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(p)}, settings...)
	})
}

// NATSURL is the engine's nats:// URL.
func (e *Engine) NATSURL() string { return "nats://" + e.Addr }
