package server_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8syaml "sigs.k8s.io/yaml"

	"github.com/longlink/longlink/internal/cli"
	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/testengine"
)

// Tests of how longlink is shipped: built, versioned, packaged.

// goEnv is the environment of the go commands the tests run: none of the
// test run's GOFLAGS (-count is not a build flag), and VCS stamping on, as
// Go has it by default (some machines turn it off in go env).
func goEnv(more ...string) []string {
	return append(append(os.Environ(), "GOFLAGS=-buildvcs=true"), more...)
}

// A binary built from a clone (go build, VCS stamping on) says which
// revision it was built from.
func TestVersionOfABuild(t *testing.T) {
	testengine.Long(t, "builds the binary")
	rev, err := exec.Command("git", "-C", "../..", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skip("not in a git clone: nothing to stamp") // a source tarball has no revision
	}
	bin := filepath.Join(t.TempDir(), "longlink")
	build := exec.Command("go", "build", "-o", bin, "./cmd/longlink")
	build.Dir, build.Env = "../..", goEnv()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.Contains(string(out), strings.TrimSpace(string(rev))) {
		t.Fatalf("longlink version says %q (%v); want the revision %s", out, err, rev)
	}
}

// scripts/release cross-builds static binaries with the version and
// revision set, and their checksums (here linux/amd64 and linux/arm64).
func TestRelease(t *testing.T) {
	testengine.Long(t, "cross-builds two binaries")
	dist := t.TempDir()
	cmd := exec.Command("bash", "scripts/release", "v9.8.7-test")
	cmd.Dir = "../.."
	cmd.Env = goEnv("LONGLINK_TARGETS=linux/amd64 linux/arm64", "LONGLINK_DIST="+dist)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/release: %v\n%s", err, out)
	}
	sums, err := os.Open(filepath.Join(dist, "SHA256SUMS-v9.8.7-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer sums.Close()
	machines := map[string]elf.Machine{}
	for sc := bufio.NewScanner(sums); sc.Scan(); {
		sum, name, _ := strings.Cut(sc.Text(), "  ")
		raw, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := sha256.Sum256(raw); hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s: checksum %s in SHA256SUMS, %x in the file", name, sum, got)
		}
		f, err := elf.Open(filepath.Join(dist, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is linked dynamically (it names an interpreter)", name)
			}
		}
		machines[name] = f.Machine
		f.Close()
	}
	if machines["longlink-v9.8.7-test-linux-amd64"] != elf.EM_X86_64 || machines["longlink-v9.8.7-test-linux-arm64"] != elf.EM_AARCH64 {
		t.Fatalf("built %v; want linux/amd64 and linux/arm64 binaries", machines)
	}
	out, err := exec.Command(filepath.Join(dist, "longlink-v9.8.7-test-linux-amd64"), "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "longlink v9.8.7-test (") || strings.Contains(string(out), "unknown revision") {
		t.Fatalf("the released binary's version: %q %v", out, err)
	}
}

// deploy/systemd/longlink.service passes systemd-analyze verify (with the
// binary where the unit expects it: here, this test's), is hardened (an
// exposure of at most 2.0 in systemd-analyze security: --threshold=20 on
// its scale of 100), and waits longer for a stop than a drain takes.
func TestSystemdUnit(t *testing.T) {
	analyze := testengine.Need(t, "systemd-analyze")
	unit, err := os.ReadFile("../../deploy/systemd/longlink.service")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "longlink.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/longlink"), []byte(os.Args[0])), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"verify", path}, {"security", "--offline=yes", "--threshold=20", path}} {
		out, err := exec.Command(analyze, args...).CombinedOutput()
		if err != nil || args[0] == "verify" && len(out) > 0 {
			t.Errorf("systemd-analyze %s: %v\n%s", args[0], err, out)
		}
	}
	m := regexp.MustCompile(`(?m)^TimeoutStopSec=(\d+)$`).FindSubmatch(unit)
	if m == nil {
		t.Fatal("the unit does not say how long a stop may take")
	}
	stop, _ := strconv.Atoi(string(m[1]))
	if drain := config.Default().Gateway.DrainPeriod + 5*time.Second; time.Duration(stop)*time.Second <= drain {
		t.Errorf("TimeoutStopSec=%d: a drain takes up to %v", stop, drain)
	}
	for _, want := range []string{"ExecReload=/bin/kill -HUP $MAINPID", "KillSignal=SIGTERM", "LimitNOFILE=1048576", "DynamicUser=yes",
		"StateDirectory=longlink", "NoNewPrivileges=yes", "ProtectSystem=strict"} {
		if !bytes.Contains(unit, []byte("\n"+want+"\n")) {
			t.Errorf("the unit has no %s", want)
		}
	}
}

// The container image (deploy/container) is built with podman from
// nothing but this tree; containers cannot run on the test machines, so
// its filesystem is exported and its binary run from it: serve, in the
// image's /data, answers /healthz, and the image's health command says so.
func TestContainerImage(t *testing.T) {
	podman := testengine.Need(t, "podman")
	tag := fmt.Sprintf("localhost/longlink-test:%d", time.Now().UnixNano())
	build := exec.Command("bash", "deploy/container/build", tag)
	build.Dir, build.Env = "../..", goEnv()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("deploy/container/build: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command(podman, "rmi", "-f", tag).Run() })
	raw, err := exec.Command(podman, "image", "inspect", tag).Output()
	if err != nil {
		t.Fatal(err)
	}
	var images []struct {
		Config struct {
			User, WorkingDir, StopSignal string
			ExposedPorts, Volumes        map[string]any
			Env, Cmd                     []string
		}
		Healthcheck struct{ Test []string }
	}
	if err := json.Unmarshal(raw, &images); err != nil || len(images) != 1 {
		t.Fatalf("podman image inspect: %v %s", err, raw)
	}
	image := images[0]
	if cfg := image.Config; cfg.User != "65532:65532" || cfg.WorkingDir != "/data" || cfg.StopSignal != "SIGTERM" || cfg.Volumes["/data"] == nil ||
		cfg.ExposedPorts["7070/tcp"] == nil || cfg.ExposedPorts["8080/tcp"] == nil || !slices.Contains(image.Healthcheck.Test, "health") ||
		!slices.Contains(cfg.Env, "LONGLINK_DATA_DIR=/data") || !slices.Equal(cfg.Cmd, []string{"serve"}) {
		t.Fatalf("the image's config: %s", raw)
	}

	id, err := exec.Command(podman, "create", tag).Output()
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Command(podman, "rm", strings.TrimSpace(string(id))).Run()
	root := t.TempDir()
	export := exec.Command(podman, "export", strings.TrimSpace(string(id)))
	untar := exec.Command("tar", "-x", "-C", root)
	if untar.Stdin, err = export.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(export.Run(), untar.Wait()); err != nil {
		t.Fatalf("podman export: %v", err)
	}
	for _, f := range []string{"etc/passwd", "etc/ssl/certs/ca-certificates.crt", "data"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("the image has no /%s", f)
		}
	}
	// The image's environment, its /data where the export put it, and
	// free loopback ports by flag (which win over the environment).
	bin, data := filepath.Join(root, "usr/local/bin/longlink"), filepath.Join(root, "data")
	serve := exec.Command(bin, "serve", "--gateway-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0")
	serve.Dir, serve.Env = data, append(images[0].Config.Env, "LONGLINK_DATA_DIR="+data)
	out, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { serve.Process.Kill(); serve.Wait() }()
	var api string
	for sc := bufio.NewScanner(out); api == "" && sc.Scan(); {
		if m := regexp.MustCompile(`api\s+https?://(\S+)`).FindStringSubmatch(sc.Text()); m != nil {
			api = m[1]
		}
	}
	go io.Copy(io.Discard, out)
	if !strings.HasPrefix(api, "127.0.0.1:") || strings.HasSuffix(api, ":8080") {
		t.Errorf("serve listens on %s: the flag did not win over LONGLINK_API_LISTEN", api)
	}
	health, err := exec.Command(bin, "health", "--url", "http://"+api+"/healthz").CombinedOutput()
	if err != nil || !strings.Contains(string(health), `"status":"ok"`) {
		t.Fatalf("longlink health from the image: %v %s", err, health)
	}
	if entries, err := os.ReadDir(data); err != nil || len(entries) == 0 {
		t.Errorf("serve kept no data in the image's /data: %v", err)
	}
}

// manifest is one document of deploy/kubernetes.
type manifest struct {
	Kind string
	raw  []byte
}

// readManifests splits a file of deploy/kubernetes into its documents.
func readManifests(t *testing.T, name string) []manifest {
	raw, err := os.ReadFile(filepath.Join("../../deploy/kubernetes", name))
	if err != nil {
		t.Fatal(err)
	}
	var out []manifest
	for doc := range strings.SplitSeq(string(raw), "\n---\n") {
		var head struct{ Kind string }
		if err := k8syaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, manifest{Kind: head.Kind, raw: []byte(doc)})
	}
	return out
}

// The Kubernetes manifests decode, strictly (no field the Kubernetes API
// does not have, every value of its type), into the API's own types; the
// nodes' environment is a config longlink takes; the pods drain before
// they stop, within their grace period; the Services, the
// PodDisruptionBudget and the ServiceMonitor select the pods and their
// ports by the names the pods give them.
func TestKubernetesManifests(t *testing.T) {
	var (
		sts      appsv1.StatefulSet
		secret   corev1.Secret
		services []corev1.Service
		pdb      policyv1.PodDisruptionBudget
	)
	for _, m := range readManifests(t, "longlink.yaml") {
		var obj any
		switch m.Kind {
		case "StatefulSet":
			obj = &sts
		case "Secret":
			obj = &secret
		case "Service":
			services = append(services, corev1.Service{})
			obj = &services[len(services)-1]
		case "PodDisruptionBudget":
			obj = &pdb
		default:
			t.Fatalf("an unexpected kind %q", m.Kind)
		}
		if err := k8syaml.UnmarshalStrict(m.raw, obj); err != nil {
			t.Fatalf("%s: %v", m.Kind, err)
		}
	}
	pod := sts.Spec.Template
	labels := pod.Labels
	if len(pod.Spec.Containers) != 1 || len(services) != 3 || !selects(sts.Spec.Selector.MatchLabels, labels) ||
		!selects(pdb.Spec.Selector.MatchLabels, labels) || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Fatalf("the manifests do not hang together: %d containers, %d services, selectors %v %v for %v",
			len(pod.Spec.Containers), len(services), sts.Spec.Selector.MatchLabels, pdb.Spec.Selector.MatchLabels, labels)
	}
	c := pod.Spec.Containers[0]
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[p.Name] = true
	}
	for _, s := range services {
		for _, p := range s.Spec.Ports {
			if !selects(s.Spec.Selector, labels) || !ports[p.TargetPort.String()] {
				t.Errorf("Service %s: port %s does not reach the pods", s.Name, p.TargetPort.String())
			}
		}
	}
	if pre := c.Lifecycle.PreStop; pre == nil || pre.Exec == nil || !slices.Equal(pre.Exec.Command, []string{"/usr/local/bin/longlink", "drain", "--wait"}) {
		t.Errorf("the pods do not drain before they stop: %+v", c.Lifecycle)
	}
	if c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/healthz" || pod.Spec.SecurityContext.RunAsNonRoot == nil ||
		!*pod.Spec.SecurityContext.RunAsNonRoot {
		t.Errorf("readiness %+v, security %+v", c.ReadinessProbe, pod.Spec.SecurityContext)
	}

	// The pod's environment, as Kubernetes would give it to longlink-0:
	// longlink config takes it, and the grace period outlasts its drain.
	known := map[string]bool{"LONGLINK_APPS": true} // every key's variable, as the example names them
	for _, m := range regexp.MustCompile(`env: (LONGLINK_\w+)`).FindAllStringSubmatch(string(config.Example()), -1) {
		known[m[1]] = true
	}
	values := map[string]string{}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "LONGLINK_") && !known[e.Name] {
			t.Errorf("the pods set %s, which is no key's variable", e.Name)
		}
		v := e.Value
		switch {
		case e.ValueFrom == nil:
		case e.ValueFrom.FieldRef != nil:
			v = map[string]string{"metadata.name": "longlink-0", "status.podIP": "10.1.2.3"}[e.ValueFrom.FieldRef.FieldPath]
		case e.ValueFrom.SecretKeyRef != nil:
			v = secret.StringData[e.ValueFrom.SecretKeyRef.Key]
		}
		values[e.Name] = regexp.MustCompile(`\$\((\w+)\)`).ReplaceAllStringFunc(v, func(ref string) string { return values[ref[2:len(ref)-1]] })
		if strings.HasPrefix(e.Name, "LONGLINK_") {
			t.Setenv(e.Name, values[e.Name])
		}
	}
	var out bytes.Buffer
	if code := cli.Main([]string{"config"}, &out, &out); code != 0 {
		t.Fatalf("longlink config with the pods' environment: exit %d\n%s", code, out.String())
	}
	for _, want := range []string{"node: longlink-0", "advertise: 10.1.2.3:7070", "drain_period: 10s", "id: demo", "nats: nats://masked@nats:4222"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the pods' config has no %q:\n%s", want, out.String())
		}
	}
	if grace := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second; grace <= 10*time.Second+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v: a drain takes up to 15 s", grace)
	}

	monitors := readManifests(t, "servicemonitor.yaml")
	var sm struct {
		APIVersion string
		Kind       string
		Metadata   metav1.ObjectMeta
		Spec       struct {
			Selector  metav1.LabelSelector
			Endpoints []struct{ Port, Path, Interval string }
		}
	}
	if len(monitors) != 1 || k8syaml.UnmarshalStrict(monitors[0].raw, &sm) != nil || sm.APIVersion != "monitoring.coreos.com/v1" ||
		len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "api" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Fatalf("the ServiceMonitor: %+v", sm)
	}
	for _, s := range services {
		if selects(sm.Spec.Selector.MatchLabels, s.Labels) && s.Name != "longlink-api" {
			t.Errorf("the ServiceMonitor selects Service %s too", s.Name)
		}
	}
}

// selects reports whether every label of selector is in labels.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// An app's module takes the Go SDK by go get from a clone, with no replace
// directive: git is told that the module's repository is the clone
// (url.<clone>.insteadOf), and GOPRIVATE keeps go from asking the proxy
// and the checksum database for it, as docs/deploy.md says.
func TestGoGetFromAClone(t *testing.T) {
	testengine.Long(t, "builds an app against the SDK")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	rev, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skip("not in a git clone") // a source tarball: nothing to go get
	}
	app, home := t.TempDir(), t.TempDir()
	gitconfig := filepath.Join(home, "gitconfig")
	if err := os.WriteFile(gitconfig, fmt.Appendf(nil, "[url \"%s\"]\n\tinsteadOf = https://github.com/longlink/longlink\n", root), 0o644); err != nil {
		t.Fatal(err)
	}
	main := `package main

import (
	"fmt"

	"github.com/longlink/longlink/client"
)

func main() { fmt.Println(client.Config{Addr: "127.0.0.1:7070"}.Addr) }
`
	for name, text := range map[string]string{"go.mod": "module example.com/app\n\ngo 1.26.0\n", "main.go": main} {
		if err := os.WriteFile(filepath.Join(app, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := goEnv("GIT_CONFIG_GLOBAL="+gitconfig, "GOPRIVATE=github.com/longlink/longlink", "GOFLAGS=-mod=mod")
	for _, args := range [][]string{{"get", "github.com/longlink/longlink@" + strings.TrimSpace(string(rev))}, {"mod", "tidy"}, {"run", "."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir, cmd.Env = app, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if args[0] == "run" && strings.TrimSpace(string(out)) != "127.0.0.1:7070" {
			t.Fatalf("the app printed %q", out)
		}
	}
	if mod, _ := os.ReadFile(filepath.Join(app, "go.mod")); strings.Contains(string(mod), "replace") {
		t.Fatalf("go.mod has a replace:\n%s", mod)
	}
}
