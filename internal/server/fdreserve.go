package server

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// fdReserve keeps the last of the process's open files for the gateway: the
// API's (and ops') listeners stop accepting while the sockets open come
// within a tenth of the limit of open files (RLIMIT_NOFILE), so that
// requests held open by slow or idle clients cannot take the descriptors
// devices need, while the gateway goes on accepting until the limit itself.
// The count is the gateway's sockets and the HTTP connections, over what
// the process had open at start (its store's files, its listeners).
type fdReserve struct {
	// Static after construction.
	limit   int64        // the HTTP listeners accept while the count is below it
	base    int64        // descriptors open at start
	devices func() int64 // the gateway's sockets

	http atomic.Int64 // HTTP connections open, over the listeners
}

// newFDReserve returns the reserve for a process whose gateway holds
// devices() sockets.
func newFDReserve(devices func() int64) *fdReserve {
	r := &fdReserve{limit: 1 << 62, devices: devices}
	if n, ok := openFileLimit(); ok {
		r.limit = n - max(n/10, 16)
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		r.base = int64(len(fds))
	}
	return r
}

func (r *fdReserve) full() bool { return r.base+r.devices()+r.http.Load() >= r.limit }

// listener returns ln, accepting only while the reserve is not reached.
func (r *fdReserve) listener(ln net.Listener) net.Listener {
	return &reservingListener{Listener: ln, r: r, closed: make(chan struct{})}
}

type reservingListener struct {
	net.Listener
	r      *fdReserve
	once   sync.Once
	closed chan struct{}
}

// Accept waits while the reserve is reached: new connections wait in the
// kernel's backlog meanwhile.
func (l *reservingListener) Accept() (net.Conn, error) {
	for l.r.full() {
		select {
		case <-l.closed:
			return nil, net.ErrClosed
		case <-time.After(20 * time.Millisecond):
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.r.http.Add(1)
	return &reservedConn{Conn: c, r: l.r}, nil
}

func (l *reservingListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// reservedConn is an HTTP connection counted by its fdReserve.
type reservedConn struct {
	net.Conn
	r    *fdReserve
	once sync.Once
}

func (c *reservedConn) Close() error {
	c.once.Do(func() { c.r.http.Add(-1) })
	return c.Conn.Close()
}
