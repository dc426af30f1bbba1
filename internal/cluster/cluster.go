// Package cluster makes a node a member of a cluster of longlink nodes: a
// lease and a router in Redis (which node holds each (app, device)), and a
// bus on NATS between the nodes. A Node is the API's Fanout: it hands a
// message to the devices on this node itself, and forwards it over the bus
// to the nodes that hold the others, one bus message per node (never one
// per device).
//
// Redis keys (under the store's prefix, default "ll:"):
//
//	<p>nodes              hash: node -> its lease, JSON: nodeinfo.Info, "until" and "renewed" (unix ms), "incarnation"
//	<p><app>:r:<device>   the device's route in app: "<node> <incarnation> <session>" (router.go)
//
// NATS subjects: "longlink.node.<node>", one per node, carries requests
// for that node (push to these devices, broadcast to this app's
// connections, kick...), each answered with how many connections took it.
package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/rueidis"

	"github.com/longlink/longlink/internal/config"
	"github.com/longlink/longlink/internal/gateway"
	"github.com/longlink/longlink/internal/golabel"
	"github.com/longlink/longlink/internal/logbound"
	"github.com/longlink/longlink/internal/nodeinfo"
	"github.com/longlink/longlink/internal/redisclient"
	"github.com/longlink/longlink/internal/store"
	redisstore "github.com/longlink/longlink/internal/store/redis"
)

// Options configure a Node.
type Options struct {
	Node  string                // this node's name, unique in the cluster
	Self  func() nodeinfo.Info  // this node now, kept in its lease at each renewal
	Stats func() nodeinfo.Stats // this node's figures now, for the other nodes' dashboards
	Redis string                // redis://host:port/db
	NATS  string                // nats://[user:password@|token@]host:port, or tls://
	// NATSCredentials (a .creds file) and NATSCA (a PEM CA for tls://)
	// are cluster.nats_credentials and cluster.nats_ca.
	NATSCredentials, NATSCA string
	Lease                   time.Duration // a node that stops renewing is dropped after this; zero means cluster.lease's default
	Prefix                  string        // Redis key prefix; empty means config.ClusterPrefix
	DeviceExpiry            time.Duration // cluster.device_expiry: a login keeps the device's store keys this long
	// Bindings (the cluster's store) find the devices of a push to users,
	// and move a device logging in to its token's user.
	Bindings Bindings
	// Reports (the cluster's store too) count the acks of stored
	// broadcasts, which the sessions take in their nodes' memory.
	Reports Reports
	// Timeout bounds one call to Redis or one request over the bus. Zero
	// means config.ClusterTimeout.
	Timeout time.Duration
	Logger  *slog.Logger // nil means slog.Default()
	// Fence is called when this node has not renewed its lease for half a
	// lease (cut off from Redis: its devices would receive nothing) while
	// other nodes did, with those nodes (not when Redis is away for every
	// node: then all keep their devices); Unfence when it renews again.
	// Nil: no fencing.
	Fence   func(others []nodeinfo.Info)
	Unfence func()
}

// Bindings are the user bindings of the cluster's store (*redisstore.Store
// has them): the devices of a push to users, and a login's move of its
// device to its token's user (Rebind), when the claim found another.
type Bindings interface {
	UserDevices(ctx context.Context, app string, users []string) ([]string, error)
	Rebind(ctx context.Context, b redisstore.Binding) error
}

// Reports take the acks the sessions of this node vouch for: they count
// them in their delivery reports, and delete the mailbox messages acked
// (*redisstore.Store does).
type Reports interface {
	BroadcastAcked(app string, from, to uint64)
	Acked(app, device string, sent []store.Sent, sweep uint64)
}

// Node is this node's membership of the cluster. Safe for concurrent use.
type Node struct {
	// Static after Open.
	opts        Options
	incarnation string // this run of the node's process, in its lease and routes
	log         *slog.Logger
	warn        *logbound.Logger // the warnings that repeat, per push or device, while an engine is away
	redis       rueidis.Client
	nc          *nats.Conn

	// Set by Serve, before the bus is subscribed.
	gw    *gateway.Gateway
	drain func() // starts draining this node
	sub   *nats.Subscription

	// life is the node's lifetime: Close ends it, and the work it started.
	life      context.Context
	endLife   context.CancelFunc
	wg        sync.WaitGroup
	renewedAt atomic.Int64 // unix ms of the last renewal of this node's lease

	heads      heads         // the apps' broadcast heads, as this node knows them
	generation atomic.Uint64 // of this node's group interests (Joined)
	untold     untold        // replaced sessions whose node was not told yet
	auditDue   atomic.Bool   // the sessions here are to be checked against their routes (audit)
	auditing   atomic.Bool   // an audit runs

	// mu guards the fields below: the live members, as last read.
	mu     sync.Mutex
	cached []lease
	readAt time.Time
}

// membersMaxAge is how long a read of the live members serves pushes: a
// push does not read them from Redis again within it.
const membersMaxAge = time.Second

// Open connects to Redis and NATS; Serve then takes the lease.
func Open(o Options) (*Node, error) {
	o.Lease = cmp.Or(o.Lease, config.Default().Cluster.Lease)
	o.Prefix = cmp.Or(o.Prefix, config.ClusterPrefix)
	o.Timeout = cmp.Or(o.Timeout, config.ClusterTimeout)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	rc, err := redisclient.New(o.Redis, o.Timeout)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	// No reconnect buffer: a request made while NATS is away fails at once
	// (its devices count as not reached; stored messages wait for them),
	// rather than being delivered long after its caller gave up.
	natsOpts, err := busOptions(o)
	if err != nil {
		rc.Close()
		return nil, err
	}
	n := &Node{opts: o, incarnation: strconv.FormatInt(time.Now().UnixNano(), 36), log: o.Logger,
		warn: logbound.New(o.Logger, logbound.Interval), redis: rc}
	n.life, n.endLife = context.WithCancel(context.Background())
	// Back on the bus, a node checks its sessions: one replaced meanwhile
	// elsewhere could not be told.
	natsOpts = append(natsOpts, nats.ReconnectHandler(func(*nats.Conn) { n.auditDue.Store(true) }))
	if n.nc, err = nats.Connect(o.NATS, natsOpts...); err != nil {
		rc.Close()
		return nil, fmt.Errorf("cluster: nats: %w", err)
	}
	return n, nil
}

// busOptions are the options of the connection to NATS: credentials and
// a CA where given, and a warning when the bus has no credentials at all.
func busOptions(o Options) ([]nats.Option, error) {
	opts := []nats.Option{nats.Name("longlink " + o.Node), nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond), nats.Timeout(o.Timeout), nats.ReconnectBufSize(-1)}
	for _, f := range []struct{ key, file string }{{"cluster.nats_credentials", o.NATSCredentials}, {"cluster.nats_ca", o.NATSCA}} {
		if f.file == "" {
			continue
		}
		if _, err := os.Stat(f.file); err != nil {
			return nil, fmt.Errorf("%s: %w", f.key, err)
		}
	}
	if o.NATSCredentials != "" {
		opts = append(opts, nats.UserCredentials(o.NATSCredentials))
	}
	if o.NATSCA != "" {
		opts = append(opts, nats.RootCAs(o.NATSCA))
	}
	if o.NATSCredentials == "" && !urlsHaveUser(o.NATS) {
		o.Logger.Warn("cluster: the bus (cluster.nats) has no credentials: any client of that NATS server can push " +
			"to every app's devices, kick them and drain nodes; start nats-server with --user and --pass (or a token, " +
			"or accounts) and give them in the URL or in cluster.nats_credentials (docs/cluster.md)")
	}
	return opts, nil
}

// urlsHaveUser reports whether every URL of a comma-separated list names
// a user or a token.
func urlsHaveUser(list string) bool {
	for u := range strings.SplitSeq(list, ",") {
		parsed, err := url.Parse(strings.TrimSpace(u))
		if err != nil || parsed.User == nil {
			return false
		}
	}
	return true
}

// Serve subscribes to this node's bus subject, delivering to gw (and
// another node's request to drain this one to drain), takes this node's
// lease and keeps renewing it.
func (n *Node) Serve(gw *gateway.Gateway, drain func()) error {
	n.gw, n.drain = gw, drain
	sub, err := n.nc.Subscribe(n.subject(n.opts.Node), n.serveRequest)
	if err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	// The NATS server has the subscription before the lease says this node
	// is there: a request made as soon as another node sees the lease finds
	// it (it answered "no responders" before).
	if err := n.nc.FlushTimeout(n.opts.Timeout); err != nil {
		sub.Unsubscribe()
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	if err := n.renew(); err != nil {
		sub.Unsubscribe()
		return fmt.Errorf("cluster: lease: %w", err)
	}
	n.sub = sub
	n.wg.Add(1)
	golabel.Go("cluster.lease", n.keepLease)
	return nil
}

// Close gives up the lease and disconnects.
func (n *Node) Close() error {
	n.endLife()
	n.wg.Wait()
	ctx, cancel := n.call(context.Background())
	defer cancel()
	err := n.redis.Do(ctx, n.redis.B().Hdel().Key(n.opts.Prefix+"nodes").Field(n.opts.Node).Build()).Error()
	n.closeClients()
	return err
}

func (n *Node) closeClients() {
	n.nc.Close()
	n.redis.Close()
}

// call bounds a call to the engines by cluster.timeout, within ctx.
func (n *Node) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, n.opts.Timeout)
}

func (n *Node) subject(node string) string { return "longlink.node." + node }

// Renew moves this node's lease a full lease ahead now, with what Self
// says (as the node does by itself every second).
func (n *Node) Renew() error { return n.renew() }

// renew moves this node's lease a full lease ahead.
func (n *Node) renew() error {
	ctx, cancel := n.call(context.Background())
	defer cancel()
	now := time.Now()
	v, err := json.Marshal(lease{Info: n.opts.Self(), Until: now.Add(n.opts.Lease).UnixMilli(), Renewed: now.UnixMilli(),
		Incarnation: n.incarnation})
	if err != nil {
		return err
	}
	if err := n.redis.Do(ctx, n.redis.B().Hset().Key(n.opts.Prefix+"nodes").FieldValue().FieldValue(n.opts.Node, string(v)).Build()).Error(); err != nil {
		return err
	}
	n.renewedAt.Store(now.UnixMilli())
	return nil
}

// keepLease renews the lease every second (at least three times per lease)
// until Close. After a renewal it asks again the nodes not told yet that a
// session was replaced, and checks this node's sessions against their
// routes when due (audit).
func (n *Node) keepLease() {
	defer n.wg.Done()
	t := time.NewTicker(min(n.opts.Lease/3, time.Second)) // also keeps the connections it says fresh for dispatch
	defer t.Stop()
	fenced := false
	for {
		select {
		case <-n.life.Done():
			return
		case <-t.C:
		}
		// After a gap (this node was stalled, or Redis away) its lease may
		// have lapsed, and the nodes that took its devices meanwhile did
		// not tell it.
		gap := n.sinceRenewed() >= n.opts.Lease/2
		if err := n.renew(); err != nil {
			n.warn.Warn("cluster: lease not renewed", "err", err)
			if !fenced && n.sinceRenewed() >= n.opts.Lease/2 && n.opts.Fence != nil {
				// Only if another node can serve the devices: when Redis is
				// away for every node, they all keep their connections.
				if serving := n.servingOthers(); len(serving) > 0 {
					fenced = true
					n.opts.Fence(serving)
				}
			}
			continue
		}
		if fenced {
			fenced = false
			n.opts.Unfence()
		}
		n.tellUntold()
		n.checkHeads()
		if gap || n.auditDue.Load() {
			n.startAudit()
		}
	}
}

// sinceRenewed is how long ago this node last renewed its lease.
func (n *Node) sinceRenewed() time.Duration { return time.Since(time.UnixMilli(n.renewedAt.Load())) }

// servingOthers asks the other nodes (as the members were last read), over
// the bus, how long ago they renewed their leases, and returns those that
// did within half a lease: the nodes that can serve devices now.
func (n *Node) servingOthers() []nodeinfo.Info {
	n.mu.Lock()
	reqs, infos := map[string]*request{}, map[string]nodeinfo.Info{}
	req := &request{Op: opRenewed}
	for _, m := range n.cached {
		if m.Node != n.opts.Node {
			reqs[m.Node], infos[m.Node] = req, m.Info
		}
	}
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), peerWait)
	defer cancel()
	var out []nodeinfo.Info
	for node, r := range n.replies(ctx, reqs) {
		if time.Duration(r.N)*time.Millisecond < n.opts.Lease/2 {
			out = append(out, infos[node])
		}
	}
	return out
}

// lease is a node's entry in <p>nodes.
type lease struct {
	nodeinfo.Info
	Until       int64  `json:"until"`                 // unix ms: the node is dropped after it
	Renewed     int64  `json:"renewed"`               // unix ms: when the node last renewed it
	Incarnation string `json:"incarnation,omitempty"` // the run of the node's process (its routes name it)
}

// dispatchFresh is how recently a node must have renewed its lease to be
// given to devices (by /v1/dispatch, and as a drain's redirect): a node
// renews every second, so one silent for longer is likely dead, though its
// lease still runs (pushes are still routed to it until then).
const dispatchFresh = 3 * time.Second

// members returns the nodes whose lease runs, this one included, as read
// at most membersMaxAge ago.
func (n *Node) members(ctx context.Context) ([]lease, error) {
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
func (n *Node) readMembers(ctx context.Context) ([]lease, error) {
	leases, err := n.redis.Do(ctx, n.redis.B().Hgetall().Key(n.opts.Prefix+"nodes").Build()).AsStrMap()
	if err != nil {
		return nil, fmt.Errorf("cluster: nodes: %w", err)
	}
	now := time.Now().UnixMilli()
	var out []lease
	for node, v := range leases {
		var l lease
		if err := json.Unmarshal([]byte(v), &l); err != nil {
			n.warn.Warn("cluster: a lease not understood", "node", node, "err", err)
			continue
		}
		if l.Until > now {
			l.Node = node
			out = append(out, l)
		}
	}
	return out, nil
}

// live returns the names of the nodes whose lease runs.
func (n *Node) live(ctx context.Context) ([]string, error) {
	ms, err := n.members(ctx)
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Node
	}
	return names, err
}

// statsTimeout bounds the wait for other nodes' figures: a dashboard reads
// them every few seconds, and a node that died is left out until its lease
// ends.
const statsTimeout = 2 * time.Second

// Stats gives every live node's figures: this node's first, then the
// others' in name order, each read over the bus. A node that does not
// answer within statsTimeout is left out (and logged).
func (n *Node) Stats(ctx context.Context) ([]nodeinfo.Stats, error) {
	peers, err := n.Peers(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, min(statsTimeout, n.opts.Timeout))
	defer cancel()
	req, reqs := &request{Op: opStats}, make(map[string]*request, len(peers))
	for _, p := range peers {
		reqs[p.Node] = req
	}
	var others []nodeinfo.Stats
	for _, r := range n.replies(ctx, reqs) {
		if r.Stats != nil {
			others = append(others, *r.Stats)
		}
	}
	slices.SortFunc(others, func(a, b nodeinfo.Stats) int { return cmp.Compare(a.Node, b.Node) })
	return append([]nodeinfo.Stats{n.opts.Stats()}, others...), nil
}

// Drain asks node to drain, over the bus, and returns it as it is then;
// nodeinfo.ErrNoNode when no live node has that name.
func (n *Node) Drain(ctx context.Context, node string) (nodeinfo.Info, error) {
	live, err := n.live(ctx)
	if err != nil {
		return nodeinfo.Info{}, err
	}
	if !slices.Contains(live, node) {
		return nodeinfo.Info{}, nodeinfo.ErrNoNode
	}
	out, err := n.request(ctx, node, &request{Op: opDrain})
	if err != nil || out.Node == nil {
		return nodeinfo.Info{}, errors.Join(err, fmt.Errorf("cluster: node %s did not say it drains", node))
	}
	return *out.Node, nil
}

// Peers describes the other nodes that renewed their lease within
// dispatchFresh (as their leases last said), for /v1/dispatch, a drain's
// redirects, /v1/admin/nodes and the dashboard's figures.
func (n *Node) Peers(ctx context.Context) ([]nodeinfo.Info, error) {
	ms, err := n.members(ctx)
	if err != nil {
		return nil, err
	}
	since := time.Now().Add(-dispatchFresh).UnixMilli()
	var out []nodeinfo.Info
	for _, m := range ms {
		if m.Node != n.opts.Node && (m.Renewed >= since || m.Renewed == 0) { // 0: a node of an older version
			out = append(out, m.Info)
		}
	}
	return out, nil
}
