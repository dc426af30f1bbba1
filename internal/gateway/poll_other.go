//go:build !linux

package gateway

import "net"

// poller is Linux-only (epoll); elsewhere idle connections keep a reader
// goroutine blocked in Read.
type poller struct{}

func newPoller(*Gateway) *poller { return nil }
func fdOf(net.Conn) int32        { return -1 }
func (*poller) arm(*conn) bool   { return false }
func (*poller) forget(*conn)     {}
func (*poller) close()           {}
