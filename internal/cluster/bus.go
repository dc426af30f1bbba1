package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/longlink/longlink/internal/gateway"
	"github.com/longlink/longlink/internal/nodeinfo"
	"github.com/longlink/longlink/protocol"
)

// op is what the node a bus request goes to does with its connections.
type op string

// The ops of a bus request.
const (
	opDevices         op = "devices"          // push Frame to Devices
	opBroadcast       op = "broadcast"        // push Frame to every connection of App
	opGroup           op = "group"            // push Frame to the connections in Group (reply.Gone: none here)
	opStored          op = "stored"           // push the stored Frame to Devices, with Seqs
	opBroadcastStored op = "broadcast_stored" // push the stored broadcast Frame (with its BSeq) to every connection of App
	opJoin            op = "join"             // Devices join Group
	opLeave           op = "leave"            // Devices leave Group
	opKick            op = "kick"             // end Devices' sessions in App with 4008
	opReplace         op = "replace"          // end Devices' sessions in App older than Sessions with 4003
	opOnline          op = "online"           // which of Devices are online in App (reply.Online)
	opDevice          op = "device"           // describe Devices[0]'s connection in App (reply.Device)
	opStats           op = "stats"            // this node's figures (reply.Stats)
	opDrain           op = "drain"            // start draining this node (reply.Node: as it is then)
	opRenewed         op = "renewed"          // how long ago this node renewed its lease, in ms (reply.N)
)

// request is one bus message to a node; its answer is a reply.
type request struct {
	Op      op       `json:"op"`
	App     string   `json:"app"`
	Devices []string `json:"devices,omitempty"`
	Group   string   `json:"group,omitempty"`
	Seqs    []uint64 `json:"seqs,omitempty"`
	// Sessions are, for opReplace, the numbers of the newer sessions of
	// Devices: a session here at least as new is kept.
	Sessions []uint64 `json:"sessions,omitempty"`
	Frame    []byte   `json:"frame,omitempty"` // a native binary frame, length prefix included
	// Deadline (unix ms) is when the caller gives up: a node that gets the
	// request later (it or the bus was stalled) drops it, so that what a
	// caller was told was not handed over is not handed over late.
	Deadline int64 `json:"deadline,omitempty"`
}

// encode stamps req with ctx's deadline and encodes it.
func encode(ctx context.Context, req *request) []byte {
	if d, ok := ctx.Deadline(); ok {
		req.Deadline = d.UnixMilli()
	}
	b, _ := json.Marshal(req) // strings, numbers and bytes: it cannot fail
	return b
}

type reply struct {
	N      int                 `json:"n"`
	Online []string            `json:"online,omitempty"` // opOnline
	Device *gateway.DeviceInfo `json:"device,omitempty"` // opDevice
	Stats  *nodeinfo.Stats     `json:"stats,omitempty"`  // opStats
	Node   *nodeinfo.Info      `json:"node,omitempty"`   // opDrain
	Gone   bool                `json:"gone,omitempty"`   // opGroup: the group has no member on this node
	// Cursors are, for opReplace, the broadcast cursors of the sessions
	// ended (or ending) here, by device: one left out was not known here.
	Cursors map[string]uint64 `json:"cursors,omitempty"`
	Error   string            `json:"error,omitempty"`
}

// frameOf encodes f for a request.
func frameOf(f *protocol.Frame) []byte { return protocol.AppendBinary(nil, f) }

// serveRequest runs a request from another node on this node's gateway and
// sends back the answer.
func (n *Node) serveRequest(msg *nats.Msg) {
	var req request
	out, err := reply{}, json.Unmarshal(msg.Data, &req)
	switch {
	case err != nil:
		err = fmt.Errorf("bad request: %w", err)
	case req.Deadline != 0 && time.Now().UnixMilli() > req.Deadline:
		n.warn.Warn("cluster: a request came after its caller gave up: dropped", "op", req.Op, "app", req.App,
			"late", time.Since(time.UnixMilli(req.Deadline)))
		return
	default:
		out, err = n.answer(&req)
	}
	if err != nil {
		out.Error = err.Error()
	}
	b, _ := json.Marshal(out)
	msg.Respond(b)
}

// answer runs req on this node: how many connections it reached, or for
// opDevice the device's connection, opOnline which devices are online,
// opStats the node's figures, opDrain the node as it starts draining.
func (n *Node) answer(req *request) (reply, error) {
	switch req.Op {
	case opRenewed:
		return reply{N: int(n.sinceRenewed().Milliseconds())}, nil
	case opStats:
		st := n.opts.Stats()
		return reply{Stats: &st}, nil
	case opDrain:
		n.log.Info("drain requested by another node")
		n.drain()
		self := n.opts.Self()
		return reply{Node: &self}, nil
	case opDevice:
		if len(req.Devices) != 1 {
			return reply{}, fmt.Errorf("device: name one device")
		}
		return reply{Device: n.gw.Device(req.App, req.Devices[0])}, nil
	case opOnline:
		online := n.gw.OnlineOf(req.App, req.Devices)
		out := reply{N: len(online)}
		for d := range online {
			out.Online = append(out.Online, d)
		}
		return out, nil
	}
	return n.local(req)
}

// local runs req on this node's gateway: how many connections it reached
// (and for opGroup whether the group has no member here).
func (n *Node) local(req *request) (reply, error) {
	g := n.gw
	var f protocol.Frame
	if len(req.Frame) > 0 {
		if len(req.Frame) < protocol.LengthSize {
			return reply{}, fmt.Errorf("bad frame")
		}
		if err := protocol.DecodeBinary(req.Frame[protocol.LengthSize:], &f); err != nil {
			return reply{}, err
		}
	}
	m := gateway.NewMessage(&f)
	var out reply
	switch req.Op {
	case opDevices:
		out.N = g.PushDevices(req.App, req.Devices, m)
	case opBroadcast:
		out.N = g.Broadcast(req.App, m)
	case opGroup:
		var members bool
		out.N, members = g.PushGroup(req.App, req.Group, m)
		out.Gone = !members
	case opStored:
		if len(req.Seqs) != len(req.Devices) {
			return reply{}, fmt.Errorf("seqs do not match devices")
		}
		out.N = g.PushStored(req.App, req.Devices, req.Seqs, f)
	case opBroadcastStored:
		n.announced(req.App, f.BSeq)
		out.N = g.BroadcastStored(req.App, m)
	case opJoin:
		out.N = g.Join(req.App, req.Group, req.Devices)
	case opLeave:
		out.N = g.Leave(req.App, req.Group, req.Devices)
	case opKick:
		out.N = g.Kick(req.App, req.Devices)
	case opReplace:
		out.N, out.Cursors = g.Replace(req.App, req.Devices, req.Sessions)
	default:
		return reply{}, fmt.Errorf("unknown op %q", req.Op)
	}
	return out, nil
}

// request runs req on node: here when it is this node, else over the bus.
func (n *Node) request(ctx context.Context, node string, req *request) (reply, error) {
	if node == n.opts.Node {
		return n.answer(req)
	}
	return n.send(ctx, node, encode(ctx, req))
}

// send sends an encoded request to another node and returns its answer.
func (n *Node) send(ctx context.Context, node string, b []byte) (reply, error) {
	var out reply
	msg, err := n.nc.RequestWithContext(ctx, n.subject(node), b)
	if err != nil {
		return out, fmt.Errorf("cluster: node %s: %w", node, err)
	}
	if err := json.Unmarshal(msg.Data, &out); err != nil {
		return out, fmt.Errorf("cluster: node %s: %w", node, err)
	}
	if out.Error != "" {
		return out, fmt.Errorf("cluster: node %s: %s", node, out.Error)
	}
	return out, nil
}

// each runs a request on every node of reqs at once, and returns the sum
// of their answers. A node that does not answer is counted as reaching
// none (see replies): the push reached the others.
func (n *Node) each(ctx context.Context, reqs map[string]*request) int {
	total := 0
	for _, out := range n.replies(ctx, reqs) {
		total += out.N
	}
	return total
}

// replies runs a request on every node of reqs at once, and returns the
// answers of those that answered; the others are logged. A request for
// several nodes is encoded once.
func (n *Node) replies(ctx context.Context, reqs map[string]*request) map[string]reply {
	var wg sync.WaitGroup
	var mu sync.Mutex
	answers := make(map[string]reply, len(reqs))
	encoded := make(map[*request][]byte)
	for node, req := range reqs {
		if node == n.opts.Node || encoded[req] != nil {
			continue
		}
		encoded[req] = encode(ctx, req)
	}
	for node, req := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out reply
			var err error
			if node == n.opts.Node {
				out, err = n.answer(req)
			} else {
				out, err = n.send(ctx, node, encoded[req])
			}
			if err != nil {
				n.warn.Warn("cluster: a node did not answer", "node", node, "op", req.Op, "err", err)
				return
			}
			mu.Lock()
			answers[node] = out
			mu.Unlock()
		}()
	}
	wg.Wait()
	return answers
}
