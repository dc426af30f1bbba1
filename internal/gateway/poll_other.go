//go:build !linux

package gateway

import (
	"net"
	"syscall"
)

// poller is Linux-only (epoll); elsewhere idle connections keep a reader
// goroutine blocked in Read.
type poller struct{}

func newPoller(*Gateway) *poller              { return nil }
func rawOf(net.Conn) (syscall.RawConn, int32) { return nil, -1 }
func (*poller) arm(*conn) bool                { return false }
func (*poller) forget(*conn)                  {}
func (*poller) close()                        {}

// probe is never called off Linux: no connection is edge-triggered.
func (*conn) probe() (bool, error) { return false, nil }

// writeNonBlocking is never called off Linux: rawOf gives no raw access, so
// writes go under deadlines.
func writeNonBlocking(syscall.RawConn, *net.Buffers) (bool, error) { return false, nil }
