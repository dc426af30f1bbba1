package cli

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/longlink/longlink/internal/testserver"
	"github.com/longlink/longlink/internal/testwait"
)

// mainArgsEnv makes the test binary run Main with these arguments
// (separated by newlines), in a process of its own.
const mainArgsEnv = "LONGLINK_TEST_MAIN_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(mainArgsEnv); args != "" {
		os.Exit(Main(strings.Split(args, "\n"), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// demoServe runs `longlink serve` with args in dir, as a process of its own;
// it returns the banner once it has its last line to paste (a push), or
// the exit status and output of a serve that stopped.
func demoServe(t *testing.T, dir string, args ...string) (banner string, exit error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), mainArgsEnv+"="+strings.Join(append([]string{"serve"}, args...), "\n"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var b strings.Builder
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), " push --device d1 ") || strings.Contains(sc.Text(), "curl -s") {
			return b.String(), nil
		}
	}
	err = cmd.Wait() // stderr is whole once it returns
	return b.String() + stderr.String(), err
}

// The demo node on other ports than 7070 and 8080: the commands run beside
// it (push, listen, demo-credentials) find it there. A first start that
// fails (its port taken) has not shown the credentials, so the next start
// shows them.
func TestDemoOnOtherPorts(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	out, exit := demoServe(t, dir, "--gateway-listen", "127.0.0.1:0", "--api-listen", busy.Addr().String())
	if exit == nil || !strings.Contains(out, "api.listen") {
		t.Fatalf("serve on a taken port: %v\n%s", exit, out)
	}
	busy.Close()
	banner, exit := demoServe(t, dir, "--gateway-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0")
	if exit != nil || !strings.Contains(banner, "credentials generated now") || !strings.Contains(banner, "api key") {
		t.Fatalf("the first start that served did not show the credentials: %v\n%s", exit, banner)
	}
	gateway := regexp.MustCompile(`gateway\s+tcp://(\S+)`).FindStringSubmatch(banner)[1]
	api := regexp.MustCompile(`api\s+http://(\S+)`).FindStringSubmatch(banner)[1]

	t.Chdir(dir)
	var lout, lerr testserver.SyncBuffer
	go Main([]string{"listen", "--device", "d1"}, &lout, &lerr)
	testwait.Eventually(t, "listen to connect", func() bool { return strings.Contains(lerr.String(), "connected as d1") })
	var pout, perr bytes.Buffer
	if code := Main([]string{"push", "--device", "d1", "hello there"}, &pout, &perr); code != 0 {
		t.Fatalf("push: %d %s %s", code, pout.String(), perr.String())
	}
	testwait.Eventually(t, "the push on the listener", func() bool { return strings.Contains(lout.String(), "hello there") })
	var cout, cerr bytes.Buffer
	if code := Main([]string{"demo-credentials"}, &cout, &cerr); code != 0 ||
		!strings.Contains(cout.String(), "--addr "+gateway) || !strings.Contains(cout.String(), "http://"+api+"/v1/push") {
		t.Fatalf("demo-credentials: %d\n%s%s", code, cout.String(), cerr.String())
	}
	raw, err := os.ReadFile("longlink-data/demo-app.json")
	if err != nil || !strings.Contains(string(raw), `"api_key"`) || strings.Contains(string(raw), "APIKey") {
		t.Fatalf("demo-app.json, in the config's names: %s %v", raw, err)
	}
}
