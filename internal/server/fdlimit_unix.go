//go:build unix

package server

import "syscall"

// openFileLimit returns the process's limit of open files (RLIMIT_NOFILE,
// which the Go runtime raises to its hard limit at start).
func openFileLimit() (int64, bool) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<40 {
		return 0, false
	}
	return int64(lim.Cur), true
}
