//go:build !unix

package gateway

import (
	"net"
	"syscall"
)

func readWaiter(net.Conn) syscall.RawConn { return nil }

// waitReadable does not wait where raw sockets are not available; the reader
// then blocks in its read instead.
func (c *conn) waitReadable() error { return nil }
