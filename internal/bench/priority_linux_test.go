package bench

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// yieldCheckEnv makes the test binary check yieldCPU in a process of its own
// (the class would otherwise stay on the test process).
const yieldCheckEnv = "LONGLINK_TEST_YIELD"

func init() {
	if os.Getenv(yieldCheckEnv) != "" {
		fmt.Println(checkYield())
		os.Exit(0)
	}
}

// checkYield yields, then reports every thread of this process and a child
// started afterwards that is not in SCHED_IDLE.
func checkYield() string {
	if err := yieldCPU(); err != nil {
		return err.Error()
	}
	child := exec.Command("sleep", "10")
	if err := child.Start(); err != nil {
		return err.Error()
	}
	defer child.Process.Kill()
	ids := []int{child.Process.Pid}
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, t := range tasks {
		tid, _ := strconv.Atoi(t.Name())
		ids = append(ids, tid)
	}
	var bad []string
	for _, id := range ids {
		if attr, err := unix.SchedGetAttr(id, 0); err == nil && attr.Policy != unix.SCHED_IDLE {
			bad = append(bad, fmt.Sprintf("%d in class %d", id, attr.Policy))
		}
	}
	if len(bad) > 0 {
		return "not idle: " + strings.Join(bad, ", ")
	}
	return "ok"
}

// TestYieldCPU: after yieldCPU every thread of the process, and a process it
// starts afterwards, run in SCHED_IDLE.
func TestYieldCPU(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), yieldCheckEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("yield check: %v: %s", err, out)
	}
}
