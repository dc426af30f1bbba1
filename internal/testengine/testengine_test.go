package testengine

import (
	"net"
	"testing"
)

// An engine whose port was taken between the moment it was found free and
// its start (by another test's process) exits at once; it is started
// again on another port.
func TestStartAgainOnAnotherPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	tries := 0
	port := func(t testing.TB) int {
		tries++
		if tries == 1 {
			return taken.Addr().(*net.TCPAddr).Port
		}
		return FreePort(t)
	}
	e := redisOn(t, port)
	if tries != 2 || e.Addr == taken.Addr().String() {
		t.Fatalf("started on %s after %d tries", e.Addr, tries)
	}
}
