//go:build unix

package gateway

import (
	"net"
	"syscall"
)

// readWaiter returns the connection's raw form, used to wait for input
// without reading it, or nil when nc has none (in-process pipes).
func readWaiter(nc net.Conn) syscall.RawConn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// waitReadable blocks, honouring the read deadline, until the socket has
// input, an EOF or an error, without consuming anything. It keeps the stack
// of an idle connection shallow: see serveLive.
func (c *conn) waitReadable() error {
	if c.raw == nil {
		return nil
	}
	var peek [1]byte
	return c.raw.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN
	})
}
