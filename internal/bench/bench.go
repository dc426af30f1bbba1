package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/longlink/longlink/internal/certs"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// TransportMQTT is the transport of MQTT 3.1.1 devices (the others are the
// Go SDK's: tcp, ws, ws-json).
const TransportMQTT = "mqtt"

// Scenarios are the loads the tool knows.
var Scenarios = []string{"connect", "idle", "unicast", "batch", "group", "broadcast", "storm", "drain"}

// Options configure one run. Every loop of a run is bounded by N, by
// Duration and by timeouts, and it talks only to Gateways and APIs.
type Options struct {
	Scenario    string
	Gateways    []string // host:port; device i uses Gateways[i%len]
	APIs        []string // http://host:port, paired with Gateways
	Transport   string   // tcp, ws, ws-json or mqtt
	App         string
	Secret      string        // to mint device tokens
	APIKey      string        // to push
	N           int           // devices
	ConnectRate float64       // logins/s while connecting; 0: as fast as possible
	Rate        float64       // unicast, batch, group: API calls/s
	Duration    time.Duration // idle: hold; unicast, batch, group: send for
	Size        int           // payload bytes
	Batch       int           // devices per API call (unicast, batch)
	PerWorker   int           // devices per worker process
	Heartbeat   time.Duration // proposed by the devices
	TTL         int           // unicast, batch, broadcast: seconds to store each push for (0: online only)
	// Cluster says the servers are nodes of one cluster: every push goes
	// through the first API, to devices on every node.
	Cluster bool
	// Scatter (with Cluster) sends each unicast or batch call through a
	// node's API picked at random, with its devices drawn evenly from every
	// node: every call crosses the bus, and the API work is spread.
	Scatter bool
	// OpsToken is the nodes' ops token (drain).
	OpsToken string
	// Broker says the gateways are a plain MQTT broker (Debian's mosquitto),
	// for a side-by-side run: the devices (transport mqtt) connect without
	// a token and subscribe to the app's push topic, and a broadcast is
	// published to that topic. Only connect, idle and broadcast; there are
	// no APIs, so no server figures.
	Broker bool
	// TLS makes the devices connect with TLS (the native protocol over
	// TLS, or wss://). CAPEM (PEM) is the CA they and the API calls trust
	// (empty: the system's roots); Insecure trusts any certificate.
	TLS      bool
	CAPEM    []byte
	Insecure bool
	// Yield runs the worker processes (the devices) in Linux's SCHED_IDLE
	// class, so that on a box they share with the server they take only
	// the CPU the server leaves.
	Yield bool
	Self  string // this executable, to start workers
	// Progress, if set, is told every 250ms what the run is doing.
	Progress func(phase string, done, total int64)

	run string // this run's id, set by Run: its devices' and group's namespace
}

// group is the group of this run's devices.
func (o *Options) group() string { return "bench-" + o.run }

// Result is what a run measured. Times are in milliseconds.
type Result struct {
	Scenario       string       `json:"scenario"`
	Transport      string       `json:"transport"`
	Devices        int          `json:"devices"`
	Connected      int          `json:"connected"`
	ConnectErrors  int          `json:"connect_errors"`
	ConnectError   string       `json:"connect_error,omitempty"` // the first, when there were some
	ConnectSeconds float64      `json:"connect_seconds"`
	ConnectRate    float64      `json:"connect_rate"`
	ConnectLatency Percentiles  `json:"connect_latency_ms"`
	Sent           int64        `json:"sent,omitempty"`              // API calls
	SendErrors     int64        `json:"send_errors,omitempty"`       // API calls that failed
	SendError      string       `json:"send_error,omitempty"`        // the first failure's cause
	Expected       int64        `json:"expected,omitempty"`          // deliveries expected
	Others         int64        `json:"other_connections,omitempty"` // broadcast: connections of the app not the run's, reached too
	Delivered      int64        `json:"delivered,omitempty"`         // deliveries seen
	Reach          float64      `json:"reach,omitempty"`             // delivered / expected
	DeliveryRate   float64      `json:"delivery_rate,omitempty"`     // deliveries per second while sending
	Latency        *Percentiles `json:"latency_ms,omitempty"`
	StormSeconds   float64      `json:"storm_seconds,omitempty"` // all back after a storm
	StoredExpected int64        `json:"stored_expected,omitempty"`
	StoredReceived int64        `json:"stored_received,omitempty"`
	DrainSeconds   float64      `json:"drain_seconds,omitempty"`   // drain: until the other nodes hold every device moved
	Moved          int64        `json:"moved,omitempty"`           // drain: connections the drained node had
	PeakLoginRate  float64      `json:"peak_login_rate,omitempty"` // drain: the others' logins per second, at most
	Servers        []Server     `json:"servers,omitempty"`
}

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	N    int64   `json:"n"`
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Percentiles{P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), N: h.TotalCount()}
}

// Run runs one scenario and returns what it measured.
func Run(o Options) (*Result, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	o.run = strconv.FormatUint(rand.Uint64()>>24, 36)
	tlsConf, err := certs.ClientConfig(o.CAPEM, o.Insecure)
	if err != nil {
		return nil, fmt.Errorf("bench: CA: %w", err)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, TLSClientConfig: tlsConf}}
	scrapeAPIs := func() scrapes { return scrapeAll(hc, o.APIs) }
	before := scrapeAPIs()
	f, err := startFleet(&o)
	if err != nil {
		return nil, err
	}
	defer f.stop()
	r := &Result{Scenario: o.Scenario, Transport: o.Transport, Devices: o.N}

	if err := o.connect(f, r); err != nil {
		return nil, err
	}
	connected := scrapeAPIs()
	p := &pusher{o: &o, client: hc}
	switch o.Scenario {
	case "idle":
		o.phase("holding", o.Duration, func() int64 { return int64(f.progress().connected) })
		connected = scrapeAPIs() // idle: memory is measured after the hold
	case "unicast", "batch":
		err = o.sendLoad(f, r, p, func(data []byte) (int64, error) { return p.toDevices(data) })
	case "group":
		if err = p.joinGroup(); err == nil {
			err = o.sendLoad(f, r, p, func(data []byte) (int64, error) { return p.toGroup(data) })
		}
	case "broadcast":
		err = o.broadcast(f, r, p)
	case "storm":
		err = o.storm(f, r, p)
	case "drain":
		err = o.drain(f, r, p)
	}
	if err != nil {
		return nil, err
	}
	r.Servers = serverStats(o.APIs, before, connected, scrapeAPIs())
	return r, nil
}

func (o *Options) check() error {
	known := false
	for _, s := range Scenarios {
		known = known || s == o.Scenario
	}
	switch {
	case !known:
		return fmt.Errorf("unknown scenario %q (one of %s)", o.Scenario, strings.Join(Scenarios, ", "))
	case len(o.Gateways) == 0:
		return errors.New("--gateway is required")
	case len(o.APIs) != len(o.Gateways) && o.Scenario != "connect" && !o.Broker:
		return errors.New("give one --api per --gateway")
	case o.N < 1 || o.PerWorker < 1:
		return errors.New("-n and --per-worker must be at least 1")
	case o.Secret == "":
		return errors.New("the app's secret is needed to mint device tokens (--secret or --config)")
	case o.APIKey == "" && o.Scenario != "connect" && o.Scenario != "idle" && !o.Broker:
		return errors.New("the app's API key is needed to push (--key or --config)")
	case o.Rate <= 0 && (o.Scenario == "unicast" || o.Scenario == "batch" || o.Scenario == "group" || o.Scenario == "drain"):
		return errors.New("--rate must be positive")
	case o.Scatter && (!o.Cluster || o.Scenario != "unicast" && o.Scenario != "batch"):
		return errors.New("--scatter spreads the unicast and batch calls of a --cluster run")
	case o.Scenario == "drain" && (!o.Cluster || len(o.APIs) < 2 || o.OpsToken == ""):
		return errors.New("drain needs --cluster, two or more nodes, and the ops token (--ops-token or the config's ops.token)")
	case o.Broker && (o.Transport != TransportMQTT || o.TLS || len(o.APIs) > 0 ||
		o.Scenario != "connect" && o.Scenario != "idle" && o.Scenario != "broadcast"):
		return errors.New("--broker runs connect, idle or broadcast, over --transport mqtt, without --api or TLS")
	case o.Transport == TransportMQTT && o.TLS:
		return errors.New("the load's MQTT devices speak plaintext only")
	}
	return nil
}

// phase waits for d while reporting progress.
func (o *Options) phase(name string, d time.Duration, done func() int64) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if o.Progress != nil {
			o.Progress(name, done(), int64(o.N))
		}
		time.Sleep(min(250*time.Millisecond, time.Until(end)))
	}
}

// waitFor polls cond every 50ms until it holds or timeout passes.
func (o *Options) waitFor(name string, timeout time.Duration, total int64, done func() int64) bool {
	end := time.Now().Add(timeout)
	for {
		n := done()
		if o.Progress != nil {
			o.Progress(name, n, total)
		}
		if n >= total || time.Now().After(end) {
			return n >= total
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// connect logs every device in at o.ConnectRate (0: as fast as possible).
func (o *Options) connect(f *fleet, r *Result) error {
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := f.ask(command{Cmd: "connect", Rate: o.ConnectRate / float64(len(f.workers))}, "connected", 30*time.Minute)
		done <- err
	}()
	for {
		select {
		case err := <-done:
			if err != nil {
				return err
			}
			r.ConnectSeconds = time.Since(start).Seconds()
			rep, err := f.report()
			if err != nil {
				return err
			}
			r.Connected, r.ConnectErrors, r.ConnectError = rep.connected, rep.errors, rep.firstErr
			if rep.connected == 0 {
				return fmt.Errorf("none of the %d devices could log in (%d errors; the first: %s): check the gateway addresses, the transport and the app's secret",
					o.N, rep.errors, rep.firstErr)
			}
			r.ConnectRate = float64(rep.connected) / r.ConnectSeconds
			r.ConnectLatency = percentiles(rep.connect)
			return nil
		case <-time.After(250 * time.Millisecond):
			if o.Progress != nil {
				c := f.progress()
				o.Progress("connecting", int64(c.connected+c.errors), int64(o.N))
			}
		}
	}
}

// sendLoad sends at o.Rate messages per second for o.Duration, with send,
// then waits for the deliveries and reports reach and latency.
func (o *Options) sendLoad(f *fleet, r *Result, p *pusher, send func([]byte) (int64, error)) error {
	if err := f.reset(); err != nil {
		return err
	}
	var expected, calls, failed atomic.Int64
	var firstErr atomic.Pointer[string]
	interval := time.Duration(float64(time.Second) / o.Rate)
	jobs := make(chan struct{}, 1024)
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				n, err := send(payload(time.Now(), o.Size))
				calls.Add(1)
				if err != nil {
					failed.Add(1)
					msg := err.Error()
					firstErr.CompareAndSwap(nil, &msg)
					continue
				}
				expected.Add(n)
			}
		}()
	}
	start := time.Now()
	end := start.Add(o.Duration)
	lastProgress := start
	for next := start; next.Before(end); next = next.Add(interval) {
		if wait := time.Until(next); wait > 0 {
			time.Sleep(wait)
		}
		select {
		case jobs <- struct{}{}:
		default: // the senders cannot keep up: count it as a failed send
			failed.Add(1)
		}
		if o.Progress != nil && time.Since(lastProgress) >= 250*time.Millisecond {
			lastProgress = time.Now()
			o.Progress("sending", f.progress().delivered, expected.Load())
		}
	}
	close(jobs)
	wg.Wait()
	sendSeconds := time.Since(start).Seconds()
	r.Sent, r.SendErrors, r.Expected = calls.Load(), failed.Load(), expected.Load()
	if e := firstErr.Load(); e != nil {
		r.SendError = *e
		if r.SendErrors == r.Sent {
			return fmt.Errorf("every one of the %d API calls failed; the first: %s", r.Sent, *e)
		}
	}
	if err := o.awaitDeliveries(f, r); err != nil {
		return err
	}
	r.DeliveryRate = float64(r.Delivered) / sendSeconds
	return nil
}

// awaitDeliveries waits (up to 30s) until the r.Expected pushes arrived,
// then fills in what was delivered: count, reach and latency.
func (o *Options) awaitDeliveries(f *fleet, r *Result) error {
	o.waitFor("delivering", 30*time.Second, r.Expected, func() int64 { return f.progress().delivered })
	rep, err := f.report()
	if err != nil {
		return err
	}
	r.Delivered = rep.delivered
	if r.Expected > 0 {
		r.Reach = float64(rep.delivered) / float64(r.Expected)
	}
	lat := percentiles(rep.latency)
	r.Latency = &lat
	return nil
}

// broadcast sends one broadcast and waits until it reached every device of
// the run. A broadcast reaches every connection of the app: those that are
// not the run's are not waited for, and the run says how many there were.
func (o *Options) broadcast(f *fleet, r *Result, p *pusher) error {
	if err := f.reset(); err != nil {
		return err
	}
	var n int64
	var err error
	if o.Broker {
		n, err = int64(r.Connected), publishMQTT(o.Gateways[0], pushTopic(o.App), payload(time.Now(), o.Size))
	} else {
		n, err = p.broadcast(payload(time.Now(), o.Size))
	}
	if err != nil {
		return err
	}
	r.Sent, r.Expected = 1, int64(r.Connected)
	r.Others = max(n-r.Expected, 0)
	return o.awaitDeliveries(f, r)
}

// storm: every device disconnects; each gets a stored message while away;
// all reconnect at once. It measures the time until all are back and
// whether every stored message arrived.
func (o *Options) storm(f *fleet, r *Result, p *pusher) error {
	if _, err := f.ask(command{Cmd: "drop"}, "dropped", 5*time.Minute); err != nil {
		return err
	}
	if err := f.reset(); err != nil {
		return err
	}
	n, err := p.storeForAll(payload(time.Now(), o.Size))
	if err != nil {
		return err
	}
	r.StoredExpected = n
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := f.ask(command{Cmd: "reconnect"}, "back", 10*time.Minute)
		done <- err
	}()
	o.waitFor("reconnecting", 10*time.Minute, int64(o.N), func() int64 { c := f.progress(); return int64(c.connected + c.errors) })
	if err := <-done; err != nil {
		return err
	}
	r.StormSeconds = time.Since(start).Seconds()
	o.waitFor("stored messages", 30*time.Second, n, func() int64 { return f.progress().stored })
	rep, err := f.report()
	if err != nil {
		return err
	}
	r.Connected, r.Delivered, r.StoredReceived = rep.connected, rep.delivered, rep.stored
	lat := percentiles(rep.latency)
	r.Latency = &lat
	return nil
}

// pusher calls the push API.
type pusher struct {
	o      *Options
	client *http.Client
}

func (p *pusher) post(api, path string, body any) (map[string]any, error) {
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, api+path, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+p.o.APIKey)
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(answer, &out)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(answer))
	}
	return out, nil
}

// toDevices pushes data to o.Batch random devices (all on one server, so
// that one call reaches them; in a cluster, on any node, through the first
// API, or with Scatter evenly over the nodes, through any) and returns how
// many were online.
func (p *pusher) toDevices(data []byte) (int64, error) {
	server, devices := p.choose()
	out, err := p.post(p.o.APIs[server], "/v1/push", map[string]any{"app": p.o.App, "devices": devices,
		"data": string(data), "ttl": p.o.TTL})
	if err != nil {
		return 0, err
	}
	n, _ := out["online"].(float64)
	return int64(n), nil
}

// choose picks a unicast or batch call's server and devices. Device i is
// on server i % servers: a server's devices are server, server+servers, ….
func (p *pusher) choose() (server int, devices []string) {
	servers := len(p.o.Gateways)
	server = rand.IntN(servers)
	switch {
	case p.o.Scatter: // through a node at random, to devices on each node
		for s := range servers {
			devices = p.draw(devices, s, servers, p.o.Batch/servers+min(1, max(0, p.o.Batch%servers-s)))
		}
	case p.o.Cluster:
		server, devices = 0, p.draw(nil, 0, 1, p.o.Batch)
	default:
		devices = p.draw(nil, server, servers, p.o.Batch)
	}
	return server, devices
}

// draw appends to devices up to n distinct devices at random among first,
// first+step, first+2*step, ….
func (p *pusher) draw(devices []string, first, step, n int) []string {
	among := (p.o.N - first + step - 1) / step
	seen := make(map[int]bool, n)
	for len(seen) < min(n, among) {
		i := first + rand.IntN(among)*step
		if !seen[i] {
			seen[i] = true
			devices = append(devices, deviceID(p.o.run, i))
		}
	}
	return devices
}

// inChunks calls fn for each server's devices, up to 10,000 (the API's
// limit) at a time.
func (p *pusher) inChunks(fn func(api string, devices []string) error) error {
	for s, api := range p.o.APIs {
		var devices []string
		for i := s; i < p.o.N; i += len(p.o.APIs) {
			devices = append(devices, deviceID(p.o.run, i))
		}
		for len(devices) > 0 {
			chunk := devices[:min(10000, len(devices))]
			devices = devices[len(chunk):]
			if err := fn(api, chunk); err != nil {
				return err
			}
		}
	}
	return nil
}

// joinGroup puts every device in the bench group.
func (p *pusher) joinGroup() error {
	return p.inChunks(func(api string, devices []string) error {
		_, err := p.post(api, "/v1/groups/join", map[string]any{"app": p.o.App, "group": p.o.group(), "devices": devices})
		if err != nil {
			return fmt.Errorf("join group: %w", err)
		}
		return nil
	})
}

func (p *pusher) toGroup(data []byte) (int64, error) { return p.everyServer("group", data) }

func (p *pusher) broadcast(data []byte) (int64, error) { return p.everyServer("broadcast", data) }

// everyServer pushes data to the group (online only) or broadcast target
// (stored with TTL, if set) of every server, and returns how many
// connections took it.
func (p *pusher) everyServer(target string, data []byte) (int64, error) {
	var total int64
	apis := p.o.APIs
	if p.o.Cluster { // the first node hands it to every node
		apis = apis[:1]
	}
	for _, api := range apis {
		body := map[string]any{"app": p.o.App, "data": string(data)}
		if target == "group" {
			body["group"] = p.o.group()
		} else {
			body["broadcast"], body["ttl"] = true, p.o.TTL
		}
		out, err := p.post(api, "/v1/push", body)
		if err != nil {
			return total, err
		}
		n, _ := out["online"].(float64)
		total += int64(n)
	}
	return total, nil
}

// storeForAll pushes one stored message to every device and returns how
// many devices it was stored for.
func (p *pusher) storeForAll(data []byte) (int64, error) {
	var total int64
	err := p.inChunks(func(api string, devices []string) error {
		out, err := p.post(api, "/v1/push", map[string]any{"app": p.o.App, "devices": devices, "data": string(data), "ttl": 600})
		if err != nil {
			return fmt.Errorf("stored push: %w", err)
		}
		on, _ := out["online"].(float64)
		off, _ := out["offline"].(float64)
		total += int64(on + off)
		return nil
	})
	return total, err
}
