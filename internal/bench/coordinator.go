package bench

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// workerProc is one worker process, as the coordinator sees it.
type workerProc struct {
	cmd   *exec.Cmd
	in    *json.Encoder
	inMu  sync.Mutex
	n     int // devices it runs
	state event
	stMu  sync.Mutex
	// replies carries the events other than progress, in order.
	replies chan event
}

// fleet is the worker processes of one run.
type fleet struct {
	workers []*workerProc
}

// startFleet starts enough workers for o.N devices, each on its share.
func startFleet(o *Options) (*fleet, error) {
	f := &fleet{}
	for from := 0; from < o.N; from += o.PerWorker {
		to := min(from+o.PerWorker, o.N)
		cfg, _ := json.Marshal(workerConfig{Gateways: o.Gateways, Transport: o.Transport, App: o.App,
			Secret: o.Secret, Run: o.run, From: from, To: to, Heartbeat: int(o.Heartbeat / time.Second), Yield: o.Yield, Broker: o.Broker,
			TLS: o.TLS, CAPEM: string(o.CAPEM), Insecure: o.Insecure})
		cmd := exec.Command(o.Self, "bench-worker")
		cmd.Env = append(os.Environ(), WorkerEnv+"="+string(cfg))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			f.stop()
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			f.stop()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			f.stop()
			return nil, fmt.Errorf("bench: start worker: %w", err)
		}
		w := &workerProc{cmd: cmd, in: json.NewEncoder(stdin), n: to - from, replies: make(chan event, 16)}
		go w.read(stdout)
		f.workers = append(f.workers, w)
	}
	return f, nil
}

func (w *workerProc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20) // histogram snapshots are large lines
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if e.Type == "progress" {
			w.stMu.Lock()
			w.state = e
			w.stMu.Unlock()
			continue
		}
		w.replies <- e
	}
	close(w.replies)
}

func (w *workerProc) send(c command) {
	w.inMu.Lock()
	defer w.inMu.Unlock()
	w.in.Encode(c)
}

// ask sends c to every worker and waits, up to timeout, for each one's
// reply of type want.
func (f *fleet) ask(c command, want string, timeout time.Duration) ([]event, error) {
	for _, w := range f.workers {
		w.send(c)
	}
	deadline := time.After(timeout)
	out := make([]event, len(f.workers))
	for i, w := range f.workers {
		e, err := w.await(want, deadline)
		if err != nil {
			return nil, fmt.Errorf("bench: worker %d: %w", i, err)
		}
		out[i] = e
	}
	return out, nil
}

// await returns the worker's next reply of type want, skipping others.
func (w *workerProc) await(want string, deadline <-chan time.Time) (event, error) {
	for {
		select {
		case e, ok := <-w.replies:
			if !ok {
				return event{}, errors.New("exited")
			}
			if e.Type == want {
				return e, nil
			}
		case <-deadline:
			return event{}, fmt.Errorf("no %q in time", want)
		}
	}
}

// reset zeroes the workers' delivery counts and latencies, and returns once
// every worker has.
func (f *fleet) reset() error {
	_, err := f.ask(command{Cmd: "reset"}, "reset", 30*time.Second)
	return err
}

// counts are the workers' counters, summed over the fleet.
type counts struct {
	connected, errors int
	delivered, stored int64
	firstErr          string // the first worker's first login error
}

func (c *counts) add(e event) {
	c.connected += e.Connected
	c.errors += e.Errors
	c.delivered += e.Delivered
	c.stored += e.Stored
	c.firstErr = cmp.Or(c.firstErr, e.Err)
}

// progress sums the workers' latest progress.
func (f *fleet) progress() counts {
	var c counts
	for _, w := range f.workers {
		w.stMu.Lock()
		c.add(w.state)
		w.stMu.Unlock()
	}
	return c
}

// fleetReport is the workers' reports merged.
type fleetReport struct {
	counts
	connect, latency *hdrhistogram.Histogram
}

// report asks every worker for its report and merges them.
func (f *fleet) report() (fleetReport, error) {
	reps, err := f.ask(command{Cmd: "report"}, "report", 30*time.Second)
	if err != nil {
		return fleetReport{}, err
	}
	fr := fleetReport{connect: newHistogram(), latency: newHistogram()}
	for _, r := range reps {
		fr.add(r)
		fr.connect.Merge(hdrhistogram.Import(r.Connect))
		fr.latency.Merge(hdrhistogram.Import(r.Latency))
	}
	return fr, nil
}

// stop ends the workers: politely, then for sure.
func (f *fleet) stop() {
	for _, w := range f.workers {
		w.send(command{Cmd: "quit"})
	}
	done := make(chan struct{})
	go func() {
		for _, w := range f.workers {
			w.cmd.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		for _, w := range f.workers {
			w.cmd.Process.Kill()
		}
	}
}
