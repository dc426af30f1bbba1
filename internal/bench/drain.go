package bench

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// drain: the first node drains (POST /v1/admin/drain) while stored
// messages flow to its devices through the second node, at o.Rate calls of
// o.Batch devices per second. It measures how long until the other nodes
// hold every device the first one had, the peak login rate that causes on
// them (over one-second windows), and whether every stored message arrived.
func (o *Options) drain(f *fleet, r *Result, p *pusher) error {
	if err := f.reset(); err != nil {
		return err
	}
	// others scrapes the other nodes once: their connections and logins.
	others := func() (conns, logins float64, err error) {
		s := scrapeAll(p.client, o.APIs[1:])
		for i, m := range s.m {
			if s.errs[i] != nil {
				return 0, 0, fmt.Errorf("drain: %s: %w", o.APIs[1+i], s.errs[i])
			}
			conns, logins = conns+m["longlink_connections"], logins+m["longlink_connects_total"]
		}
		return conns, logins, nil
	}
	first, err := scrape(p.client, o.APIs[0])
	if err != nil {
		return fmt.Errorf("drain: %s: %w", o.APIs[0], err)
	}
	moving := first["longlink_connections"]
	held, logins, err := others()
	if err != nil {
		return err
	}
	target := held + moving

	var expected atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // stored messages to the draining node's devices (i % nodes == 0)
		defer wg.Done()
		t := time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
		defer t.Stop()
		nodes := len(o.Gateways)
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			var devices []string // distinct: the API would store once for a device named twice
			for _, k := range rand.Perm(o.N / nodes)[:min(o.Batch, o.N/nodes)] {
				devices = append(devices, deviceID(o.run, k*nodes))
			}
			if _, err := p.post(o.APIs[1], "/v1/push", map[string]any{"app": o.App, "devices": devices,
				"data": string(payload(time.Now(), o.Size)), "ttl": 600}); err == nil {
				expected.Add(int64(len(devices))) // stored for each, online or not
			}
		}
	}()

	start := time.Now()
	if err := p.admin(o.APIs[0], "/v1/admin/drain"); err != nil {
		close(stop)
		wg.Wait()
		return err
	}
	// Sample the others' logins every 250 ms; the peak rate is over the
	// last second's samples.
	type sample struct {
		at     time.Time
		logins float64
	}
	window := []sample{{start, logins}}
	for {
		time.Sleep(250 * time.Millisecond)
		if held, logins, err = others(); err != nil {
			close(stop)
			wg.Wait()
			return err
		}
		s := sample{time.Now(), logins}
		window = append(window, s)
		for len(window) > 2 && s.at.Sub(window[1].at) >= time.Second {
			window = window[1:]
		}
		if d := s.at.Sub(window[0].at).Seconds(); d >= 0.9 {
			r.PeakLoginRate = max(r.PeakLoginRate, (s.logins-window[0].logins)/d)
		}
		if o.Progress != nil {
			o.Progress("moving", int64(held-(target-moving)), int64(moving))
		}
		if held >= target {
			break
		}
		if time.Since(start) > 5*time.Minute {
			close(stop)
			wg.Wait()
			return fmt.Errorf("drain: the other nodes hold %.0f of %.0f connections after 5 minutes", held, target)
		}
	}
	r.DrainSeconds, r.Moved = time.Since(start).Seconds(), int64(moving)
	close(stop)
	wg.Wait()
	r.StoredExpected = expected.Load()
	o.waitFor("stored messages", 30*time.Second, r.StoredExpected, func() int64 { return f.progress().stored })
	rep, err := f.report()
	if err != nil {
		return err
	}
	r.Connected, r.StoredReceived = rep.connected, rep.stored
	lat := percentiles(rep.latency)
	r.Latency = &lat
	return nil
}

// admin POSTs to an admin endpoint with the ops token.
func (p *pusher) admin(api, path string) error {
	req, _ := http.NewRequest(http.MethodPost, api+path, nil)
	req.Header.Set("Authorization", "Bearer "+p.o.OpsToken)
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("%s %s: %s", http.MethodPost, path, resp.Status)
	}
	return nil
}
