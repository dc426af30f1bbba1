package cluster

import (
	"github.com/longlink/longlink/internal/api"
	"github.com/longlink/longlink/internal/gateway"
	"github.com/longlink/longlink/protocol"
)

var (
	_ api.Fanout     = (*Node)(nil)
	_ gateway.Router = (*Node)(nil)
)

// toDevices sends one request per node that holds some of devices in app:
// build makes it from the indexes of that node's devices. It fails only
// when the routes cannot be read.
func (n *Node) toDevices(app string, devices []string, build func(idx []int) *request) (int, error) {
	ctx, cancel := n.call()
	defer cancel()
	byNode, err := n.locate(ctx, app, devices)
	if err != nil {
		return 0, err
	}
	reqs := make(map[string]*request, len(byNode))
	for node, idx := range byNode {
		reqs[node] = build(idx)
	}
	return n.each(ctx, reqs), nil
}

// toAll sends req to every live node.
func (n *Node) toAll(req *request) (int, error) {
	ctx, cancel := n.call()
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
func (n *Node) PushDevices(app string, devices []string, m *gateway.Message) (int, error) {
	frame := frameOf(m.Frame())
	return n.toDevices(app, devices, func(idx []int) *request {
		return &request{Op: opDevices, App: app, Devices: pick(devices, idx), Frame: frame}
	})
}

// PushStored implements api.Fanout.
func (n *Node) PushStored(app string, devices []string, seqs []uint64, f protocol.Frame) (int, error) {
	frame := frameOf(&f)
	return n.toDevices(app, devices, func(idx []int) *request {
		s := make([]uint64, len(idx))
		for i, j := range idx {
			s[i] = seqs[j]
		}
		return &request{Op: opStored, App: app, Devices: pick(devices, idx), Seqs: s, Frame: frame}
	})
}

// PushUsers implements api.Fanout: every node pushes to the connections
// of those users it holds.
func (n *Node) PushUsers(app string, users []string, m *gateway.Message) (int, error) {
	return n.toAll(&request{Op: opUsers, App: app, Users: users, Frame: frameOf(m.Frame())})
}

// Broadcast implements api.Fanout: one bus message per node.
func (n *Node) Broadcast(app string, m *gateway.Message) (int, error) {
	return n.toAll(&request{Op: opBroadcast, App: app, Frame: frameOf(m.Frame())})
}

// BroadcastStored implements api.Fanout.
func (n *Node) BroadcastStored(app string, f protocol.Frame) (int, error) {
	return n.toAll(&request{Op: opBroadcastStored, App: app, Frame: frameOf(&f)})
}

// PushGroup implements api.Fanout: group membership lives with the
// connections, so every node pushes to its members.
func (n *Node) PushGroup(app, group string, m *gateway.Message) (int, error) {
	return n.toAll(&request{Op: opGroup, App: app, Group: group, Frame: frameOf(m.Frame())})
}

// JoinGroup implements api.Fanout.
func (n *Node) JoinGroup(app, group string, devices []string, leave bool) (int, error) {
	op := opJoin
	if leave {
		op = opLeave
	}
	return n.toDevices(app, devices, func(idx []int) *request {
		return &request{Op: op, App: app, Group: group, Devices: pick(devices, idx)}
	})
}

// Kick implements api.Fanout.
func (n *Node) Kick(app string, devices []string) (int, error) {
	return n.toDevices(app, devices, func(idx []int) *request {
		return &request{Op: opKick, App: app, Devices: pick(devices, idx)}
	})
}

// Device implements api.Fanout: the live node that holds the device's
// route describes its connection.
func (n *Node) Device(app, device string) (*gateway.DeviceInfo, error) {
	ctx, cancel := n.call()
	defer cancel()
	byNode, err := n.locate(ctx, app, []string{device})
	if err != nil {
		return nil, err
	}
	for node := range byNode { // at most one
		out, err := n.request(ctx, node, &request{Op: opDevice, App: app, Devices: []string{device}})
		return out.Device, err
	}
	return nil, nil
}

// Online implements api.Fanout: the device is online when a live node
// holds its route and has it connected.
func (n *Node) Online(app, device string) (bool, error) {
	cnt, err := n.toDevices(app, []string{device}, func([]int) *request {
		return &request{Op: opOnline, App: app, Devices: []string{device}}
	})
	return cnt > 0, err
}
