package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/cli"
	"github.com/longlink/longlink/internal/testengine"
	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
)

// TestClusterDocs runs docs/cluster.md as it is written: its n1.yaml, made
// into n2.yaml as the page says (with this test's ports and engines), a
// device on n2, `longlink push --config n1.yaml`, and the admin API with
// the page's ops token.
func TestClusterDocs(t *testing.T) {
	page, err := os.ReadFile("../../docs/cluster.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)`n1.yaml`:\n\n```yaml\n(.*?)```").FindSubmatch(page)
	if m == nil {
		t.Fatal("docs/cluster.md has no n1.yaml")
	}
	n1 := string(m[1])
	token := regexp.MustCompile(`token: "([^"]+)"`).FindStringSubmatch(n1)
	secret := regexp.MustCompile(`secret: "([^"]+)"`).FindStringSubmatch(n1)
	if token == nil || secret == nil {
		t.Fatalf("n1.yaml has no ops token or app secret:\n%s", n1)
	}
	engines := regexp.MustCompile(`--requirepass '([^']+)'(?s:.*)nats-server .*--user (\S+) --pass '([^']+)'`).FindSubmatch(page)
	if engines == nil {
		t.Fatal("docs/cluster.md does not start redis-server and nats-server with passwords")
	}
	redis := testengine.Redis(t, "--requirepass", string(engines[1]))
	nats := testengine.NATS(t, "--user", string(engines[2]), "--pass", string(engines[3]))
	dir := t.TempDir()
	configs := make([]string, 2)
	nodes := make([]*child, 2)
	for i := range nodes {
		name := fmt.Sprint("n", i+1)
		yaml := strings.NewReplacer("n1", name, "127.0.0.1:7071", fmt.Sprint("127.0.0.1:", testengine.FreePort(t)),
			"127.0.0.1:8081", fmt.Sprint("127.0.0.1:", testengine.FreePort(t)),
			"127.0.0.1:6379", redis.Addr, "127.0.0.1:4222", nats.Addr).Replace(n1)
		yaml = strings.Replace(yaml, "./"+name+"-data", filepath.Join(dir, name), 1)
		configs[i] = filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(configs[i], []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		nodes[i] = startChildYAML(t, nil, yaml)
	}
	tok, err := auth.Mint("demo", secret[1], "d1", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan client.Push, 1)
	d1, err := client.Dial(context.Background(), client.Config{Addr: nodes[1].gateway, Token: tok, OnPush: func(p client.Push) { got <- p }})
	if err != nil {
		t.Fatal(err)
	}
	defer d1.Close()
	var out, errOut bytes.Buffer
	if code := cli.Main([]string{"push", "--config", configs[0], "--device", "d1", "through n1"}, &out, &errOut); code != 0 {
		t.Fatalf("longlink push --config n1.yaml: %d %s %s", code, out.String(), errOut.String())
	}
	select {
	case p := <-got:
		if string(p.Data) != "through n1" {
			t.Fatalf("the device on n2 got %q", p.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the device on n2 got nothing")
	}
	for _, path := range []string{"/v1/admin/nodes", "/dashboard"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+nodes[0].api+path, nil)
		req.Header.Set("Authorization", "Bearer "+token[1])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s with the page's ops token: %d", path, resp.StatusCode)
		}
	}
}

// TestRedisClusterDocs runs docs/cluster.md's Redis Cluster as it is
// written (on free ports, in a temporary directory), and a node on it given
// the page's cluster.redis: a stored push reaches a device.
func TestRedisClusterDocs(t *testing.T) {
	testengine.Need(t, "redis-cli")
	page, err := os.ReadFile("../../docs/cluster.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## On a Redis Cluster.*?```sh\n(.*?)```.*?```yaml\n(.*?)```").FindSubmatch(page)
	if m == nil {
		t.Fatal("docs/cluster.md starts no Redis Cluster")
	}
	ports := map[string]string{}
	port := regexp.MustCompile(`\b700[0-5]\b`)
	mapPorts := func(s string) string {
		return port.ReplaceAllStringFunc(s, func(p string) string {
			if ports[p] == "" {
				ports[p] = fmt.Sprint(testengine.ClusterPort(t))
			}
			return ports[p]
		})
	}
	script := strings.ReplaceAll(mapPorts(string(m[1])), "/tmp/ll-rc", t.TempDir())
	out, err := os.Create(filepath.Join(t.TempDir(), "out")) // not a pipe: the servers left running keep it open
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command("bash", "-e", "-c", script)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the redis-servers it leaves running, killed at the end
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	if err := cmd.Wait(); err != nil {
		said, _ := os.ReadFile(out.Name())
		t.Fatalf("the page's commands: %v\n%s", err, said)
	}
	redisURL := regexp.MustCompile(`redis: "([^"]+)"`).FindStringSubmatch(mapPorts(string(m[2])))
	if redisURL == nil {
		t.Fatalf("no cluster.redis in the page's config:\n%s", m[2])
	}
	nats := testengine.NATS(t)
	nodes := testserver.StartClusterOn(t, urlOf(redisURL[1]), nats, 2)
	d := connect(t, nodes[1], client.TCP, nodes[1].Token("d1", ""))
	testwait.Eventually(t, "the stored push handed over", func() bool {
		return nodes[0].Push(stored([]string{"d1"}, "on the cluster"))["online"] == 1.0
	})
	d.expect(t, "on the cluster")
}

// urlOf is a Redis given by its URL.
type urlOf string

func (u urlOf) URL() string { return string(u) }

// TestArchitectureMap keeps docs/architecture.md true: every `file:function`
// it names is a function (or method) declared in that file.
func TestArchitectureMap(t *testing.T) {
	page, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	refs := regexp.MustCompile("`((?:internal|client|protocol)/[\\w/]+\\.go):(\\w+)`").FindAllStringSubmatch(string(page), -1)
	if len(refs) < 40 {
		t.Fatalf("docs/architecture.md names %d functions by file: the map is gone", len(refs))
	}
	declared := map[string]map[string]bool{}
	for _, ref := range refs {
		file, name := ref[1], ref[2]
		if declared[file] == nil {
			f, err := parser.ParseFile(token.NewFileSet(), "../../"+file, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Errorf("%s: %v", file, err)
				continue
			}
			declared[file] = map[string]bool{}
			for _, d := range f.Decls {
				if fd, ok := d.(*ast.FuncDecl); ok {
					declared[file][fd.Name.Name] = true
				}
			}
		}
		if !declared[file][name] {
			t.Errorf("docs/architecture.md names %s:%s, which %s does not declare", file, name, file)
		}
	}
	checkImportsTable(t, string(page))
}

// checkImportsTable checks the package table's last column: for a row of
// one package, the packages of ours it imports (protocol left out, and
// what a subpackage imports, said in brackets, too).
func checkImportsTable(t *testing.T, page string) {
	rows := regexp.MustCompile("(?m)^\\| `internal/(\\w+)` \\|.*\\| ([^|]*) \\|$").FindAllStringSubmatch(page, -1)
	if len(rows) < 10 {
		t.Fatalf("docs/architecture.md's package table has %d rows of one package", len(rows))
	}
	for _, row := range rows {
		pkg, column := row[1], regexp.MustCompile(`\([^)]*\)`).ReplaceAllString(row[2], "")
		listed := map[string]bool{}
		for _, name := range regexp.MustCompile(`[a-z/]+`).FindAllString(column, -1) {
			listed[name] = true
		}
		imported := map[string]bool{}
		files, _ := filepath.Glob(filepath.Join("..", pkg, "*.go"))
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				path := strings.Trim(imp.Path.Value, `"`)
				if name, ok := strings.CutPrefix(path, "github.com/longlink/longlink/"); ok && name != "protocol" {
					imported[strings.TrimPrefix(name, "internal/")] = true
				}
			}
		}
		for name := range imported {
			if !listed[name] {
				t.Errorf("internal/%s imports %s; docs/architecture.md's table does not say so", pkg, name)
			}
		}
		for name := range listed {
			if !imported[name] {
				t.Errorf("docs/architecture.md's table says internal/%s imports %s; it does not", pkg, name)
			}
		}
	}
}

// The go directive is no higher than the code needs: the highest go line
// of the modules it requires. App developers who take the Go SDK (client/,
// in this module) are held to it, and the README says it.
func TestGoDirective(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Main}} {{.GoVersion}}", "all").Output()
	if err != nil {
		t.Fatalf("go list -m all: %v", err)
	}
	var main, needed string
	for line := range strings.Lines(string(out)) {
		isMain, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch {
		case isMain == "true":
			main = v
		case v != "" && gover(v) > gover(needed):
			needed = v
		}
	}
	if main != needed {
		t.Errorf("go.mod says go %s; the modules it requires need %s: say that", main, needed)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "`go "+main+"`") {
		t.Errorf("the README does not say go.mod's `go %s`", main)
	}
}

// gover orders Go versions (1.26.0 > 1.25 > 1.9) as a comparable string.
func gover(v string) string {
	var out strings.Builder
	for part := range strings.SplitSeq(v, ".") {
		fmt.Fprintf(&out, "%04s.", part)
	}
	return out.String()
}

// The licence is Apache-2.0: the LICENSE file at the root, every npm
// package's metadata (and its lockfile's), and the README say so.
func TestLicense(t *testing.T) {
	text, err := os.ReadFile("../../LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\s*Apache License\s+Version 2\.0, January 2004`).Match(text) {
		t.Errorf("LICENSE is not the Apache License 2.0: it begins %q", text[:min(80, len(text))])
	}
	for _, dir := range []string{"../../clients/js", "testdata/node"} {
		for _, file := range []string{"package.json", "package-lock.json"} {
			raw, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil {
				t.Fatal(err)
			}
			var meta struct {
				License  string
				Packages map[string]struct{ License string }
			}
			if err := json.Unmarshal(raw, &meta); err != nil {
				t.Fatalf("%s/%s: %v", dir, file, err)
			}
			if file == "package-lock.json" {
				meta.License = meta.Packages[""].License
			}
			if meta.License != "Apache-2.0" {
				t.Errorf("%s/%s names the licence %q, not Apache-2.0", dir, file, meta.License)
			}
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "[Apache License 2.0](LICENSE)") {
		t.Error("the README does not name the licence")
	}
}
