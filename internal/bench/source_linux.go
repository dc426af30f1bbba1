package bench

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// loopbackSources is how many source addresses the devices of a worker
// spread over when the gateway is on IPv4 loopback.
const loopbackSources = 250

// sourceDialers returns the dialers devices use against gateway: against an
// IPv4 loopback address, one per source address 127.0.1.1 to 127.0.1.250
// (Linux routes all of 127.0.0.0/8 to the loopback device), each binding its
// address but leaving the port to connect. With one source address the
// kernel hands out ephemeral ports for one destination by walking the ones in
// use, and past about half the range that walk took 44% of this box's CPU in
// a connect run (perf: __inet_hash_connect, __inet_check_established);
// spread over 250 sources each walk is short. Against any other address,
// nil: the system's default source.
func sourceDialers(gateway string) []*net.Dialer {
	host, _, err := net.SplitHostPort(gateway)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() || ip.To4() == nil {
		return nil
	}
	dialers := make([]*net.Dialer, loopbackSources)
	for i := range dialers {
		dialers[i] = &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i))}, Control: bindAddressNoPort}
	}
	return dialers
}

// bindAddressNoPort makes a bind to a source address leave the port to
// connect, which may then reuse a port another destination already uses.
func bindAddressNoPort(_, _ string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	}); cerr != nil {
		return cerr
	}
	return err
}
