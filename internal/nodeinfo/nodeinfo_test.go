package nodeinfo

import (
	"encoding/json"
	"testing"
	"time"
)

// What a node keeps in its lease and sends over the bus is this format,
// and only this package changes it: nodes of two versions read each
// other's leases during a rolling upgrade.
func TestStoredFormat(t *testing.T) {
	info := Info{Node: "n1", State: Draining, Connections: 3, Gateway: "10.0.0.1:7070", API: "https://10.0.0.1:8080",
		StartedAt: time.Date(2026, 12, 6, 15, 0, 0, 0, time.UTC), Plain: true, TLS: true}
	raw, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"node":"n1","state":"draining","connections":3,"gateway":"10.0.0.1:7070","api":"https://10.0.0.1:8080",` +
		`"started_at":"2026-12-06T15:00:00Z","plain":true,"tls":true}`
	if string(raw) != want {
		t.Fatalf("a node's info is stored as\n%s\nwant\n%s", raw, want)
	}
	var back Info
	if err := json.Unmarshal(raw, &back); err != nil || back != info {
		t.Fatalf("read back as %+v (%v)", back, err)
	}
}
