package cluster

import (
	"context"

	"github.com/longlink/longlink/internal/gateway"
	"github.com/longlink/longlink/protocol"
)

// A Node is the API's Fanout (api.Fanout) of a cluster: each method finds
// which nodes hold the devices it names, or goes to every live node, and
// sends them one bus request each. The caller's context bounds it, and
// cluster.timeout within it.

var _ gateway.Router = (*Node)(nil)

// toDevices sends one request per node that may hold some of devices in
// app (see locate): build makes it from the indexes of that node's
// devices. It fails only when the routes or the live nodes cannot be read.
func (n *Node) toDevices(ctx context.Context, app string, devices, routes []string, build func(idx []int) *request) (int, error) {
	ctx, cancel := n.call(ctx)
	defer cancel()
	byNode, err := n.locate(ctx, app, devices, routes)
	if err != nil {
		return 0, err
	}
	return n.each(ctx, requests(byNode, len(devices), build)), nil
}

// requests makes a request per node of byNode (as locate gives it, for n
// devices) with build. The nodes given every device share one request, so
// that it is encoded once.
func requests(byNode map[string][]int, n int, build func(idx []int) *request) map[string]*request {
	reqs := make(map[string]*request, len(byNode))
	var all *request
	for node, idx := range byNode {
		if len(idx) < n {
			reqs[node] = build(idx)
			continue
		}
		if all == nil {
			all = build(idx)
		}
		reqs[node] = all
	}
	return reqs
}

// toAll sends req to every live node.
func (n *Node) toAll(ctx context.Context, req *request) (int, error) {
	ctx, cancel := n.call(ctx)
	defer cancel()
	nodes, err := n.live(ctx)
	if err != nil {
		return 0, err
	}
	reqs := make(map[string]*request, len(nodes))
	for _, node := range nodes {
		reqs[node] = req
	}
	return n.each(ctx, reqs), nil
}

func pick(all []string, idx []int) []string {
	out := make([]string, len(idx))
	for i, j := range idx {
		out[i] = all[j]
	}
	return out
}

// PushDevices implements api.Fanout.
func (n *Node) PushDevices(ctx context.Context, app string, devices []string, f protocol.Frame) (int, error) {
	frame := frameOf(&f)
	return n.toDevices(ctx, app, devices, nil, func(idx []int) *request {
		return &request{Op: opDevices, App: app, Devices: pick(devices, idx), Frame: frame}
	})
}

// PushStored implements api.Fanout.
func (n *Node) PushStored(ctx context.Context, app string, devices []string, seqs []uint64, routes []string, f protocol.Frame) (int, error) {
	frame := frameOf(&f)
	return n.toDevices(ctx, app, devices, routes, func(idx []int) *request {
		s := make([]uint64, len(idx))
		for i, j := range idx {
			s[i] = seqs[j]
		}
		return &request{Op: opStored, App: app, Devices: pick(devices, idx), Seqs: s, Frame: frame}
	})
}

// PushUsers implements api.Fanout: the devices bound to the users (their
// bindings in the store, written at each login) are pushed to as devices
// are: one request per node that holds some of them, none to the others.
func (n *Node) PushUsers(ctx context.Context, app string, users []string, f protocol.Frame) (int, error) {
	devices, err := n.opts.Bindings.UserDevices(ctx, app, users)
	if err != nil {
		return 0, err
	}
	return n.PushDevices(ctx, app, devices, f)
}

// Broadcast implements api.Fanout: one bus message per node.
func (n *Node) Broadcast(ctx context.Context, app string, f protocol.Frame) (int, error) {
	return n.toAll(ctx, &request{Op: opBroadcast, App: app, Frame: frameOf(&f)})
}

// BroadcastStored implements api.Fanout.
func (n *Node) BroadcastStored(ctx context.Context, app string, f protocol.Frame) (int, error) {
	return n.toAll(ctx, &request{Op: opBroadcastStored, App: app, Frame: frameOf(&f)})
}

// Join implements api.Fanout.
func (n *Node) Join(ctx context.Context, app, group string, devices []string) (int, error) {
	return n.toEach(ctx, opJoin, app, group, devices)
}

// Leave implements api.Fanout.
func (n *Node) Leave(ctx context.Context, app, group string, devices []string) (int, error) {
	return n.toEach(ctx, opLeave, app, group, devices)
}

// Kick implements api.Fanout.
func (n *Node) Kick(ctx context.Context, app string, devices []string) (int, error) {
	return n.toEach(ctx, opKick, app, "", devices)
}

// toEach sends op (with group, if any) to the nodes of devices, each for
// its own.
func (n *Node) toEach(ctx context.Context, o op, app, group string, devices []string) (int, error) {
	return n.toDevices(ctx, app, devices, nil, func(idx []int) *request {
		return &request{Op: o, App: app, Group: group, Devices: pick(devices, idx)}
	})
}

// Device implements api.Fanout: the live node that holds the device's
// route describes its connection.
func (n *Node) Device(ctx context.Context, app, device string) (*gateway.DeviceInfo, error) {
	ctx, cancel := n.call(ctx)
	defer cancel()
	byNode, err := n.locate(ctx, app, []string{device}, nil)
	if err != nil {
		return nil, err
	}
	for node := range byNode { // at most one
		out, err := n.request(ctx, node, &request{Op: opDevice, App: app, Devices: []string{device}})
		return out.Device, err
	}
	return nil, nil
}

// Online implements api.Fanout: a device is online when a live node has
// it connected. Each node that may hold some of the devices (see locate)
// is asked once.
func (n *Node) Online(ctx context.Context, app string, devices []string) (map[string]bool, error) {
	ctx, cancel := n.call(ctx)
	defer cancel()
	byNode, err := n.locate(ctx, app, devices, nil)
	if err != nil {
		return nil, err
	}
	reqs := requests(byNode, len(devices), func(idx []int) *request {
		return &request{Op: opOnline, App: app, Devices: pick(devices, idx)}
	})
	online := make(map[string]bool)
	for _, out := range n.replies(ctx, reqs) {
		for _, d := range out.Online {
			online[d] = true
		}
	}
	return online, nil
}
