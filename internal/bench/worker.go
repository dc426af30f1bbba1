package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/client"
	"github.com/longlink/longlink/internal/auth"
	"github.com/longlink/longlink/internal/certs"
)

// dialConcurrency bounds the logins a worker has in flight.
const dialConcurrency = 512

// worker runs one process's share of the devices.
type worker struct {
	cfg workerConfig

	outMu sync.Mutex
	out   *json.Encoder

	connected atomic.Int64
	errors    atomic.Int64
	firstErr  atomic.Pointer[string] // the first login error
	delivered atomic.Int64
	stored    atomic.Int64
	connect   *latencies
	latency   *latencies

	tls     *tls.Config     // nil: plaintext
	tokens  []string        // by device index - From, minted before any login
	dialers [][]*net.Dialer // by gateway: the source addresses devices spread over (nil: default)

	mu      sync.Mutex
	clients []io.Closer // SDK clients or MQTT devices, by device index - From; nil while not connected
}

// Worker runs a worker process: its devices come from the environment
// (WorkerEnv), its commands from in, and its events go to out.
func Worker(in io.Reader, out io.Writer) error {
	var cfg workerConfig
	if err := json.Unmarshal([]byte(os.Getenv(WorkerEnv)), &cfg); err != nil {
		return fmt.Errorf("bench worker: %s: %w", WorkerEnv, err)
	}
	if cfg.Yield {
		if err := yieldCPU(); err != nil {
			return err
		}
	}
	w := &worker{cfg: cfg, out: json.NewEncoder(out), connect: newLatencies(), latency: newLatencies(),
		clients: make([]io.Closer, cfg.To-cfg.From)}
	if cfg.TLS {
		var err error
		if w.tls, err = certs.ClientConfig([]byte(cfg.CAPEM), cfg.Insecure); err != nil {
			return fmt.Errorf("bench worker: CA: %w", err)
		}
	}
	// Tokens are the app backend's work, not the login's: mint them first.
	for n := cfg.From; n < cfg.To; n++ {
		token, err := auth.Mint(cfg.App, cfg.Secret, deviceID(cfg.Run, n), "", 24*time.Hour)
		if err != nil {
			return fmt.Errorf("bench worker: %w", err)
		}
		w.tokens = append(w.tokens, token)
	}
	for _, gw := range cfg.Gateways {
		w.dialers = append(w.dialers, sourceDialers(gw))
	}
	stop := make(chan struct{})
	defer close(stop)
	go w.reportProgress(stop)
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		var cmd command
		if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
			return fmt.Errorf("bench worker: bad command: %w", err)
		}
		switch cmd.Cmd {
		case "connect":
			took := w.dialAll(cmd.Rate)
			w.send(event{Type: "connected", Connected: int(w.connected.Load()), Errors: int(w.errors.Load()), Took: took.Seconds()})
		case "reset":
			w.delivered.Store(0)
			w.stored.Store(0)
			w.latency.snapshot(true)
			w.send(event{Type: "reset"})
		case "report":
			w.send(event{Type: "report", Connected: int(w.connected.Load()), Errors: int(w.errors.Load()), Err: w.firstError(),
				Delivered: w.delivered.Load(), Stored: w.stored.Load(),
				Connect: w.connect.snapshot(false), Latency: w.latency.snapshot(false)})
		case "drop":
			w.closeAll()
			w.send(event{Type: "dropped"})
		case "reconnect":
			took := w.dialAll(0)
			w.send(event{Type: "back", Connected: int(w.connected.Load()), Errors: int(w.errors.Load()), Took: took.Seconds()})
		case "quit":
			w.closeAll()
			return nil
		}
	}
	w.closeAll()
	return sc.Err()
}

func (w *worker) send(e event) {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	w.out.Encode(e)
}

func (w *worker) reportProgress(stop <-chan struct{}) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			w.send(event{Type: "progress", Connected: int(w.connected.Load()), Errors: int(w.errors.Load()),
				Delivered: w.delivered.Load(), Stored: w.stored.Load()})
		}
	}
}

// dialAll logs every device that is not connected in, at rate per second
// (0: all at once, bounded by dialConcurrency), and returns how long it took.
func (w *worker) dialAll(rate float64) time.Duration {
	start := time.Now()
	sem := make(chan struct{}, dialConcurrency)
	var wg sync.WaitGroup
	for i := range w.clients {
		if rate > 0 {
			if wait := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); wait > 0 {
				time.Sleep(wait)
			}
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			w.dial(i)
		}()
	}
	wg.Wait()
	return time.Since(start)
}

func (w *worker) dial(i int) {
	w.mu.Lock()
	connected := w.clients[i] != nil
	w.mu.Unlock()
	if connected {
		return
	}
	n := w.cfg.From + i
	gw := w.cfg.Gateways[n%len(w.cfg.Gateways)]
	var dialer *net.Dialer
	if sources := w.dialers[n%len(w.cfg.Gateways)]; sources != nil {
		dialer = sources[n%len(sources)]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	var c io.Closer
	var err error
	heartbeat := time.Duration(w.cfg.Heartbeat) * time.Second
	switch tr := client.Transport(w.cfg.Transport); {
	case tr == TransportMQTT && w.cfg.Broker: // a plain broker: no token; the push topic is subscribed to
		c, err = dialMQTT(ctx, dialer, gw, deviceID(w.cfg.Run, n), "", "", pushTopic(w.cfg.App), heartbeat,
			func(data []byte, qos byte) { w.received(n, data, qos > 0) })
	case tr == TransportMQTT: // keep alive 2× the heartbeat: the gateway grants half of it
		c, err = dialMQTT(ctx, dialer, gw, deviceID(w.cfg.Run, n), w.cfg.App, w.tokens[i], "", 2*heartbeat,
			func(data []byte, qos byte) { w.received(n, data, qos > 0) })
	default:
		addr := gw
		switch {
		case tr != client.TCP && w.tls != nil:
			addr = "wss://" + gw + "/ws"
		case tr != client.TCP:
			addr = "ws://" + gw + "/ws"
		}
		c, err = client.Dial(ctx, client.Config{Addr: addr, Transport: tr, TLS: w.tls, Token: w.tokens[i],
			Dialer: dialer, Heartbeat: heartbeat, MinBackoff: time.Second,
			OnPush: func(p client.Push) { w.received(n, p.Data, p.Seq > 0 || p.BSeq > 0) }})
	}
	if err != nil {
		w.errors.Add(1)
		msg := err.Error()
		w.firstErr.CompareAndSwap(nil, &msg)
		return
	}
	w.connect.record(n, time.Since(start))
	w.mu.Lock()
	w.clients[i] = c
	w.mu.Unlock()
	w.connected.Add(1)
}

// firstError is the first login error, or "".
func (w *worker) firstError() string {
	if e := w.firstErr.Load(); e != nil {
		return *e
	}
	return ""
}

// received counts a push that device n received (stored: with a seq or
// bseq, or at MQTT QoS 1) and records its latency.
func (w *worker) received(n int, data []byte, stored bool) {
	if sent, ok := sentAt(data); ok {
		w.latency.record(n, time.Since(sent))
	}
	w.delivered.Add(1)
	if stored {
		w.stored.Add(1)
	}
}

// closeAll closes every client, concurrently.
func (w *worker) closeAll() {
	w.mu.Lock()
	clients := w.clients
	w.clients = make([]io.Closer, len(clients))
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range clients {
		if c != nil {
			wg.Add(1)
			go func() { defer wg.Done(); c.Close() }()
		}
	}
	wg.Wait()
	w.connected.Store(0)
}
