// Package cluster makes a node a member of a cluster of longlink nodes: a
// lease and a router in Redis (which node holds each (app, device)), and a
// bus on NATS between the nodes. A Node is the API's Fanout: it hands a
// message to the devices on this node itself, and forwards it over the bus
// to the nodes that hold the others, one bus message per node (never one
// per device).
//
// Redis keys (under the store's prefix, default "ll:"):
//
//	<p>nodes              hash: node -> "<unix ms its lease ends> <tcp> <ws>"
//	<p><app>:r:<device>   the node holding the device's session in app
//
// NATS subjects: "longlink.node.<node>", one per node, carries requests
// for that node (push to these devices, broadcast to this app's
// connections, kick...), each answered with how many connections took it.
package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/rueidis"

	"github.com/longlink/longlink/internal/api"
	"github.com/longlink/longlink/internal/gateway"
)

// Options configure a Node.
type Options struct {
	Node   string        // this node's name, unique in the cluster
	TCP    string        // host:port devices reach this node's gateway at
	WS     string        // its ws:// URL
	Redis  string        // redis://host:port/db
	NATS   string        // nats://host:port
	Lease  time.Duration // a node that stops renewing is dropped after this; zero means 10s
	Prefix string        // Redis key prefix; empty means "ll:"
	// Timeout bounds one call to Redis or one request over the bus. Zero
	// means 5s.
	Timeout time.Duration
	Logger  *slog.Logger // nil means slog.Default()
}

// Node is this node's membership of the cluster. Safe for concurrent use.
type Node struct {
	// Static after Open.
	opts  Options
	log   *slog.Logger
	redis rueidis.Client
	nc    *nats.Conn

	// Set by Serve, before the bus is subscribed.
	gw  *gateway.Gateway
	sub *nats.Subscription

	stop chan struct{}
	wg   sync.WaitGroup

	// mu guards the fields below: the live members, as last read.
	mu     sync.Mutex
	cached []member
	readAt time.Time
}

// membersMaxAge is how long a read of the live members serves pushes: a
// push does not read them from Redis again within it.
const membersMaxAge = time.Second

// Open connects to Redis and NATS and takes this node's lease.
func Open(o Options) (*Node, error) {
	if o.Lease == 0 {
		o.Lease = 10 * time.Second
	}
	if o.Prefix == "" {
		o.Prefix = "ll:"
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	co, err := rueidis.ParseURL(o.Redis)
	if err != nil {
		return nil, fmt.Errorf("cluster: redis URL: %w", err)
	}
	co.DisableCache = true
	rc, err := rueidis.NewClient(co)
	if err != nil {
		return nil, fmt.Errorf("cluster: redis: %w", err)
	}
	// No reconnect buffer: a request made while NATS is away fails at once
	// (its devices count as not reached; stored messages wait for them),
	// rather than being delivered long after its caller gave up.
	nc, err := nats.Connect(o.NATS, nats.Name("longlink "+o.Node), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.Timeout(o.Timeout), nats.ReconnectBufSize(-1))
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("cluster: nats: %w", err)
	}
	n := &Node{opts: o, log: o.Logger, redis: rc, nc: nc, stop: make(chan struct{})}
	if err := n.renew(); err != nil {
		n.closeClients()
		return nil, fmt.Errorf("cluster: lease: %w", err)
	}
	return n, nil
}

// Serve subscribes to this node's bus subject, delivering to gw, and
// starts renewing the lease.
func (n *Node) Serve(gw *gateway.Gateway) error {
	n.gw = gw
	sub, err := n.nc.Subscribe(n.subject(n.opts.Node), n.serveRequest)
	if err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	n.sub = sub
	n.wg.Add(1)
	go n.keepLease()
	return nil
}

// Close gives up the lease and disconnects.
func (n *Node) Close() error {
	close(n.stop)
	n.wg.Wait()
	ctx, cancel := n.call()
	defer cancel()
	err := n.redis.Do(ctx, n.redis.B().Hdel().Key(n.opts.Prefix+"nodes").Field(n.opts.Node).Build()).Error()
	n.closeClients()
	return err
}

func (n *Node) closeClients() {
	n.nc.Close()
	n.redis.Close()
}

func (n *Node) call() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), n.opts.Timeout)
}

func (n *Node) subject(node string) string { return "longlink.node." + node }

// renew moves this node's lease a full lease ahead.
func (n *Node) renew() error {
	ctx, cancel := n.call()
	defer cancel()
	until := strconv.FormatInt(time.Now().Add(n.opts.Lease).UnixMilli(), 10)
	v := until + " " + n.opts.TCP + " " + n.opts.WS
	return n.redis.Do(ctx, n.redis.B().Hset().Key(n.opts.Prefix+"nodes").FieldValue().FieldValue(n.opts.Node, v).Build()).Error()
}

// keepLease renews the lease three times per lease until Close.
func (n *Node) keepLease() {
	defer n.wg.Done()
	t := time.NewTicker(n.opts.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			if err := n.renew(); err != nil {
				n.log.Warn("cluster: lease not renewed", "err", err)
			}
		}
	}
}

// member is a live node and where devices reach it.
type member struct{ name, tcp, ws string }

// members returns the nodes whose lease runs, this one included, as read
// at most membersMaxAge ago.
func (n *Node) members(ctx context.Context) ([]member, error) {
	n.mu.Lock()
	cached, fresh := n.cached, time.Since(n.readAt) < membersMaxAge
	n.mu.Unlock()
	if fresh {
		return cached, nil
	}
	ms, err := n.readMembers(ctx)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.cached, n.readAt = ms, time.Now()
	n.mu.Unlock()
	return ms, nil
}

// readMembers reads the nodes whose lease runs from Redis.
func (n *Node) readMembers(ctx context.Context) ([]member, error) {
	leases, err := n.redis.Do(ctx, n.redis.B().Hgetall().Key(n.opts.Prefix+"nodes").Build()).AsStrMap()
	if err != nil {
		return nil, fmt.Errorf("cluster: nodes: %w", err)
	}
	now := time.Now().UnixMilli()
	var out []member
	for node, v := range leases {
		f := strings.Fields(v)
		if len(f) != 3 {
			continue
		}
		if ms, err := strconv.ParseInt(f[0], 10, 64); err == nil && ms > now {
			out = append(out, member{name: node, tcp: f[1], ws: f[2]})
		}
	}
	return out, nil
}

// live returns the names of the nodes whose lease runs.
func (n *Node) live(ctx context.Context) ([]string, error) {
	ms, err := n.members(ctx)
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.name
	}
	return names, err
}

// Peers returns where devices reach the other live nodes, for
// /v1/dispatch.
func (n *Node) Peers(ctx context.Context) ([]api.Endpoints, error) {
	ms, err := n.members(ctx)
	if err != nil {
		return nil, err
	}
	var out []api.Endpoints
	for _, m := range ms {
		if m.name != n.opts.Node {
			out = append(out, api.Endpoints{TCP: m.tcp, WS: m.ws})
		}
	}
	return out, nil
}
