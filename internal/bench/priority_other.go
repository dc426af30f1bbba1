//go:build !linux

package bench

// yieldCPU is Linux's (SCHED_IDLE); elsewhere the load keeps its priority.
func yieldCPU() error { return nil }
