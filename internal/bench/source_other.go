//go:build !linux

package bench

import "net"

// sourceDialers is nil off Linux: devices use the system's default source
// address (other systems do not route all of 127.0.0.0/8 to loopback).
func sourceDialers(string) []*net.Dialer { return nil }
