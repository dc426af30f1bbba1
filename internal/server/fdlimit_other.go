//go:build !unix

package server

// openFileLimit reports no limit of open files where there is none to read.
func openFileLimit() (int64, bool) { return 0, false }
