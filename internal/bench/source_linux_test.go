package bench

import (
	"net"
	"testing"
)

// TestSourceDialers: against IPv4 loopback, devices come from 250 source
// addresses of their own; against other addresses, from the default source.
func TestSourceDialers(t *testing.T) {
	for _, gw := range []string{"[::1]:7070", "192.0.2.1:7070", "localhost:7070", "nonsense"} {
		if d := sourceDialers(gw); d != nil {
			t.Errorf("sourceDialers(%q) = %d dialers, want nil", gw, len(d))
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialers := sourceDialers(ln.Addr().String())
	if len(dialers) != loopbackSources {
		t.Fatalf("got %d dialers, want %d", len(dialers), loopbackSources)
	}
	seen := map[string]bool{}
	for i, d := range dialers {
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("dialer %d: %v", i, err)
		}
		defer c.Close()
		local := c.LocalAddr().(*net.TCPAddr)
		if !local.IP.IsLoopback() || local.IP.Equal(net.IPv4(127, 0, 0, 1)) || seen[local.IP.String()] {
			t.Fatalf("dialer %d connects from %v: want a loopback address of its own", i, local.IP)
		}
		seen[local.IP.String()] = true
	}
}
