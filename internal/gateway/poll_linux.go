package gateway

import (
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/longlink/longlink/internal/bufpool"
	"github.com/longlink/longlink/internal/golabel"
)

// poller waits for input on idle logged-in connections with one epoll
// instance, so that an idle connection holds no goroutine: a reader is
// with it only while a frame is being served. A plaintext connection is
// registered once, edge-triggered; a TLS one is armed one-shot (its
// session may hold input the poller cannot see) and re-armed after each
// frame. Input hands the connection to a reader, which serves it: one of
// the poller's long-lived readers if one is free (its stack, grown by
// earlier turns, serves this one without growing again: a fresh
// goroutine's grew at every turn, 4 µs of a stored message's CPU), else a
// fresh goroutine (so a turn held up by a slow frame holds no other).
// The poller waits in Go's own netpoller, which sees the epoll instance
// readable when it holds events: a wait is a parked goroutine, not a
// thread blocked in epoll_wait that the scheduler must hand its P away
// from and back to at every wake. Safe for concurrent use.
type poller struct {
	epfd  int
	ep    *os.File // epfd, non-blocking, for the netpoller
	done  chan struct{}
	turns chan *conn // to a free reader; unbuffered

	// mu guards conns, closed and every epoll_ctl: a connection is removed
	// before its socket closes, so its fd number, once reused, is never
	// mistaken, and none is touched once epfd is closed.
	mu     sync.Mutex
	conns  map[int32]*conn // by fd
	closed bool
}

// newPoller returns a running poller, or nil where epoll is not available.
func newPoller(g *Gateway) *poller {
	epfd, ep, err := newEpoll()
	if err != nil {
		g.log.Warn("epoll unavailable: idle connections keep a goroutine", "err", err)
		return nil
	}
	p := &poller{epfd: epfd, ep: ep, done: make(chan struct{}), turns: make(chan *conn), conns: make(map[int32]*conn)}
	golabel.Go("gateway.poller", func() { p.run(g) })
	for range readers {
		go p.read(g)
	}
	return p
}

// newEpoll returns a new epoll instance, and the same as a file that the
// netpoller waits on (it is non-blocking, so os.NewFile registers it).
func newEpoll() (int, *os.File, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return -1, nil, err
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return -1, nil, err
	}
	ep := os.NewFile(uintptr(epfd), "epoll")
	if err := ep.SetReadDeadline(time.Time{}); err != nil { // not in the netpoller
		ep.Close()
		return -1, nil, err
	}
	return epfd, ep, nil
}

// readers is how many long-lived readers a poller keeps: as many as one
// epoll_wait hands out at a busy moment (a reader is free again only once
// the poller yields), so that most turns find one.
const readers = 256

// read serves the turns handed to this reader, until the poller closes.
func (p *poller) read(g *Gateway) {
	connLabel.Set()
	for c := range p.turns {
		g.running.Add(1)
		c.serveReady()
		g.running.Add(-1)
	}
}

// rawOf returns the socket's raw access and descriptor, or nil and -1 when
// nc has none (in-process pipes), in which case the connection reads in a
// goroutine of its own and writes under deadlines.
func rawOf(nc net.Conn) (syscall.RawConn, int32) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, -1
	}
	fd := int32(-1)
	rc.Control(func(f uintptr) { fd = int32(f) })
	return rc, fd
}

// maxIOV is the most buffers one writev takes (Linux's IOV_MAX).
const maxIOV = 1024

// rawCall is one read or write through a RawConn: its arguments, its
// results, and the callbacks that make it, each made once per rawCall (a
// closure made at each call, capturing its results, cost three
// allocations a frame). Pooled.
type rawCall struct {
	bufs    net.Buffers // writev: what is left to write
	buf     []byte      // read: where
	n       int         // read: how much
	blocked bool        // writev: the socket took no more
	err     error

	writev, read func(fd uintptr) bool
}

var rawCalls = sync.Pool{New: func() any {
	r := new(rawCall)
	r.writev, r.read = r.doWritev, r.doRead
	return r
}}

func getRawCall() *rawCall { return rawCalls.Get().(*rawCall) }

// put clears r (it holds no buffer in the pool) and pools it.
func (r *rawCall) put() {
	*r = rawCall{writev: r.writev, read: r.read}
	rawCalls.Put(r)
}

func (r *rawCall) doWritev(fd uintptr) bool {
	for len(r.bufs) > 0 {
		n, e := unix.Writev(int(fd), r.bufs[:min(len(r.bufs), maxIOV)])
		switch {
		case e == unix.EINTR:
			continue
		case e == unix.EAGAIN:
			r.blocked = true
			return true
		case e != nil:
			r.err = e
			return true
		}
		consume(&r.bufs, n)
	}
	return true
}

// doRead reads once, never waiting (EAGAIN instead).
func (r *rawCall) doRead(fd uintptr) bool {
	for {
		if r.n, r.err = unix.Read(int(fd), r.buf); r.err != unix.EINTR {
			return true
		}
	}
}

// writeNonBlocking writes bufs with writev until all is written or the
// socket takes no more (blocked), never waiting for it.
func writeNonBlocking(rc syscall.RawConn, bufs *net.Buffers) (blocked bool, err error) {
	r := getRawCall()
	defer r.put()
	r.bufs = *bufs
	werr := rc.Write(r.writev)
	*bufs, blocked, err = r.bufs, r.blocked, r.err
	if err == nil {
		err = werr
	}
	return blocked, err
}

// consume drops the first n written bytes from bufs.
func consume(bufs *net.Buffers, n int) {
	for n > 0 && len(*bufs) > 0 {
		if n < len((*bufs)[0]) {
			(*bufs)[0] = (*bufs)[0][n:]
			return
		}
		n -= len((*bufs)[0])
		*bufs = (*bufs)[1:]
	}
}

// arm waits for c's next input: edge-triggered for good if c.edge, else
// one-shot. It reports false when c was forgotten (its socket is closing),
// and the caller then ends c.
func (p *poller) arm(c *conn) bool {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: c.fd}
	if c.edge {
		ev.Events = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.forgotten || p.closed {
		return false
	}
	op := unix.EPOLL_CTL_MOD
	if p.conns[c.fd] != c {
		op = unix.EPOLL_CTL_ADD
	}
	if unix.EpollCtl(p.epfd, op, int(c.fd), &ev) != nil {
		return false
	}
	p.conns[c.fd] = c
	return true
}

// forget removes c from the epoll set for good. It must run before c's
// socket is closed.
func (p *poller) forget(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.forgotten = true
	if p.conns[c.fd] == c && !p.closed {
		delete(p.conns, c.fd)
		unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(c.fd), nil)
	}
}

// run hands out the epoll set's events until the poller closes. It takes
// them without waiting (epoll_wait with no timeout), and waits in the
// netpoller only when there were none: epfd is readable while events
// wait, and anything that comes after an empty epoll_wait wakes the
// netpoller.
func (p *poller) run(g *Gateway) {
	defer close(p.done)
	wait, _ := p.ep.SyscallConn() // fails only for a nil *os.File
	events := make([]unix.EpollEvent, 256)
	var n int
	var err error
	take := func(fd uintptr) bool {
		for {
			if n, err = unix.EpollWait(int(fd), events, 0); err != unix.EINTR {
				return n > 0 || err != nil
			}
		}
	}
	for {
		if wait.Read(take) != nil {
			return // closed
		}
		if err != nil {
			g.log.Error("epoll", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for _, ev := range events[:n] {
			p.mu.Lock()
			c := p.conns[ev.Fd]
			p.mu.Unlock()
			if c != nil && ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				c.hangup.Store(true)
			}
			if c != nil && c.wake() {
				select {
				case p.turns <- c:
				default: // every reader busy
					g.track(c.serveReady)
				}
			}
		}
		// Let the readers just handed turns run before the next
		// epoll_wait (on a busy node it finds more at once): with few Ps
		// they would still hold them, and the next events would find no
		// reader free and start goroutines, whose stacks grow as they serve.
		runtime.Gosched()
	}
}

// wake takes the poller's news of input for c, and reports whether a turn
// is to serve it: c was idle. A turn running (edge-triggered: input came
// after it read) is told to read again.
func (c *conn) wake() bool {
	for {
		switch s := c.reader.Load(); {
		case s == readerIdle && c.reader.CompareAndSwap(readerIdle, readerBusy):
			return true
		case s == readerBusy && c.reader.CompareAndSwap(readerBusy, readerAgain):
			return false
		case s == readerDone || s == readerAgain:
			return false
		}
	}
}

func (p *poller) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ep.Close() // ends run's wait; epfd is closed once it has returned
	<-p.done
	close(p.turns)
}

// probe reads into ahead what waits in the socket, without waiting, and
// reports whether there was any; an error (io.EOF: the peer closed) ends
// the connection.
func (c *conn) probe() (bool, error) {
	buf := bufpool.Get(readAhead)
	r := getRawCall()
	r.buf = *buf
	rerr := c.raw.Read(r.read)
	n, err := r.n, r.err
	r.put()
	if rerr != nil {
		err = rerr
	}
	switch {
	case err == unix.EAGAIN:
		bufpool.Put(buf)
		c.drained = true
		return false, nil
	case err == nil && n == 0:
		err = io.EOF
	}
	if err != nil {
		bufpool.Put(buf)
		return false, err
	}
	c.aheadBuf, c.ahead, c.drained = buf, (*buf)[:n], n < readAhead
	return true, nil
}
