package gateway

import (
	"runtime"
	"sync"
	"time"

	"github.com/longlink/longlink/internal/fifo"
	"github.com/longlink/longlink/internal/golabel"
)

// poolWriteTimeout bounds one write made by a pool worker to a connection
// without raw socket access (elsewhere the write does not wait at all). A
// socket that cannot take its frames that fast belongs to a slow reader: the
// rest of its write moves to a goroutine of its own (writeSlow), so that one
// slow device never holds a worker.
const poolWriteTimeout = 5 * time.Millisecond

// writerPool is a fixed set of long-lived goroutines that write connections'
// queued frames. A connection with frames waiting is in the ready FIFO once;
// under load the FIFO grows, so by the time a connection's turn comes more
// frames have queued for it, and they go out in one writev: a busy server
// makes fewer, larger writes. Safe for concurrent use.
type writerPool struct {
	mu      sync.Mutex
	cond    *sync.Cond
	ready   fifo.Queue[*conn] // wait for a worker
	stopped bool
	wg      sync.WaitGroup
}

func newWriterPool() *writerPool {
	p := &writerPool{}
	p.cond = sync.NewCond(&p.mu)
	n := max(4, 2*runtime.GOMAXPROCS(0))
	for range n {
		p.wg.Add(1)
		golabel.Go("gateway.writer", p.work)
	}
	return p
}

// schedule queues c for a worker. The caller owns c's writing flag.
func (p *writerPool) schedule(c *conn) {
	p.mu.Lock()
	p.ready.Push(c)
	p.mu.Unlock()
	p.cond.Signal()
}

func (p *writerPool) work() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		for p.ready.Len() == 0 && !p.stopped {
			p.cond.Wait()
		}
		if p.ready.Len() == 0 {
			p.mu.Unlock()
			return
		}
		c := p.ready.Pop()
		p.mu.Unlock()
		c.flush()
	}
}

// stop ends the workers once the FIFO is empty.
func (p *writerPool) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.cond.Broadcast()
	p.wg.Wait()
}
