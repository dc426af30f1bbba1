package api

import (
	"context"

	"github.com/longlink/longlink/internal/gateway"
	"github.com/longlink/longlink/protocol"
)

// Fanout hands frames to connected devices, and answers how many took
// them. In one process it is the gateway (Local); a cluster puts a router
// and a bus behind the same methods (cluster.Node), which fail when they
// cannot tell where devices are. Every method takes the caller's context:
// a caller that gives up (an API client gone, a deadline passed) cancels
// the fanout. A frame handed over is the callee's: it must not change.
type Fanout interface {
	PushDevices(ctx context.Context, app string, devices []string, f protocol.Frame) (int, error)
	PushUsers(ctx context.Context, app string, users []string, f protocol.Frame) (int, error)
	PushGroup(ctx context.Context, app, group string, f protocol.Frame) (int, error)
	Broadcast(ctx context.Context, app string, f protocol.Frame) (int, error)
	// PushStored hands the stored message f to devices, each with its own
	// seq (seqs[i] for devices[i]); routes, if not nil, are where the
	// devices were as their append read it (store.Appended.Routes).
	PushStored(ctx context.Context, app string, devices []string, seqs []uint64, routes []string, f protocol.Frame) (int, error)
	// BroadcastStored hands the stored broadcast f (with its BSeq) to
	// every connection of app.
	BroadcastStored(ctx context.Context, app string, f protocol.Frame) (int, error)
	Join(ctx context.Context, app, group string, devices []string) (int, error)
	Leave(ctx context.Context, app, group string, devices []string) (int, error)
	Kick(ctx context.Context, app string, devices []string) (int, error)
	// Online returns which of devices are online in app.
	Online(ctx context.Context, app string, devices []string) (map[string]bool, error)
	// Device describes device's connection in app; nil when it has none.
	Device(ctx context.Context, app, device string) (*gateway.DeviceInfo, error)
}

// Local is the Fanout of a single node: its gateway. It never fails, and
// its work is in memory and never waits, so it has no use for a context.
func Local(g *gateway.Gateway) Fanout { return local{g} }

type local struct{ g *gateway.Gateway }

func (l local) PushDevices(_ context.Context, app string, devices []string, f protocol.Frame) (int, error) {
	return l.g.PushDevices(app, devices, gateway.NewMessage(&f)), nil
}
func (l local) PushUsers(_ context.Context, app string, users []string, f protocol.Frame) (int, error) {
	return l.g.PushUsers(app, users, gateway.NewMessage(&f)), nil
}
func (l local) PushGroup(_ context.Context, app, group string, f protocol.Frame) (int, error) {
	n, _ := l.g.PushGroup(app, group, gateway.NewMessage(&f))
	return n, nil
}
func (l local) Broadcast(_ context.Context, app string, f protocol.Frame) (int, error) {
	return l.g.Broadcast(app, gateway.NewMessage(&f)), nil
}
func (l local) PushStored(_ context.Context, app string, devices []string, seqs []uint64, _ []string, f protocol.Frame) (int, error) {
	return l.g.PushStored(app, devices, seqs, f), nil
}
func (l local) BroadcastStored(_ context.Context, app string, f protocol.Frame) (int, error) {
	return l.g.BroadcastStored(app, gateway.NewMessage(&f)), nil
}
func (l local) Join(_ context.Context, app, group string, devices []string) (int, error) {
	return l.g.Join(app, group, devices), nil
}
func (l local) Leave(_ context.Context, app, group string, devices []string) (int, error) {
	return l.g.Leave(app, group, devices), nil
}
func (l local) Kick(_ context.Context, app string, devices []string) (int, error) {
	return l.g.Kick(app, devices), nil
}
func (l local) Online(_ context.Context, app string, devices []string) (map[string]bool, error) {
	return l.g.OnlineOf(app, devices), nil
}
func (l local) Device(_ context.Context, app, device string) (*gateway.DeviceInfo, error) {
	return l.g.Device(app, device), nil
}
