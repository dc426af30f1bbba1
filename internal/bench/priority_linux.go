package bench

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// yieldCPU moves every thread of this process to the SCHED_IDLE class, so
// that the load runs only on CPU the server leaves: on a box shared by both,
// a server thread that has to wait behind the load stretches the server's
// stop-the-world pauses and its latencies. Threads and processes started
// later inherit the class. A thread started while this runs may be missed,
// so it repeats until a pass finds nothing to move.
func yieldCPU() error {
	for pass := 0; pass < 10; pass++ {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("bench: yield the CPU: %w", err)
		}
		moved := 0
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			attr, err := unix.SchedGetAttr(tid, 0)
			if errors.Is(err, unix.ESRCH) {
				continue // the thread has ended
			} else if err != nil {
				return fmt.Errorf("bench: yield the CPU: thread %d: %w", tid, err)
			}
			if attr.Policy == unix.SCHED_IDLE {
				continue
			}
			if err := unix.SchedSetAttr(tid, &unix.SchedAttr{Policy: unix.SCHED_IDLE}, 0); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("bench: yield the CPU: thread %d: %w", tid, err)
			}
			moved++
		}
		if moved == 0 {
			return nil
		}
	}
	return errors.New("bench: yield the CPU: threads kept starting")
}
