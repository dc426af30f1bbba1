package server_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
)

// TestNodeClient proves the JSON protocol works for others: a Node.js device
// using the `ws` package logs in, pings, and receives a push. It uses the
// packages .ci/run installs, and writes nothing into the source tree.
func TestNodeClient(t *testing.T) {
	node := testengine.Need(t, "node")
	dir, _ := filepath.Abs("testdata/node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ws")); err != nil {
		t.Fatalf("the Node test's packages are missing: run `npm ci --prefix internal/server/testdata/node` (.ci/run does): %v", err)
	}
	ts := testserver.Start(t)
	cmd := exec.Command(node, filepath.Join(dir, "client.mjs"))
	cmd.Env = append(os.Environ(), "LONGLINK_WS_URL="+ts.Addr(client.WebSocketJSON), "LONGLINK_TOKEN="+ts.Token("node-1", ""))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l := <-lines:
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("node client said nothing for 10s")
		}
		return ""
	}
	if l := next(); l != "welcome node-1 demo 30 l1" {
		t.Fatalf("node client: %q", l)
	}
	if l := next(); l != "pong p1" {
		t.Fatalf("node client: %q", l)
	}
	out := ts.Push(map[string]any{"devices": []string{"node-1"}, "data": "hello from go"})
	if l, want := next(), "push demo "+out["id"].(string)+" hello from go"; l != want {
		t.Fatalf("node client: %q, want %q", l, want)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("node client exited with %v", err)
	}
	if !strings.Contains(ts.Metrics(), `longlink_disconnects_total{reason="closed"} 1`) {
		t.Error("the client's clean close was not counted")
	}
}
