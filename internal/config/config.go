// Package config holds longlink's configuration: the YAML file of the
// contract, its defaults, validation that names the bad key, and the demo app
// whose credentials are generated on first start.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/longlink/longlink/protocol"
)

// Config is the whole configuration. Zero values mean the documented default;
// call Load, or Default then Validate, to get one that is ready to use.
type Config struct {
	// Node is this node's name. Empty means "n1".
	Node string `yaml:"node"`
	// DataDir holds the embedded store and generated credentials.
	// Empty means "./longlink-data".
	DataDir  string   `yaml:"data_dir"`
	Gateway  Gateway  `yaml:"gateway"`
	API      API      `yaml:"api"`
	Store    Store    `yaml:"store"`
	Hooks    Hooks    `yaml:"hooks"`
	Limits   Limits   `yaml:"limits"`
	Cluster  Cluster  `yaml:"cluster"`
	Ops      Ops      `yaml:"ops"`
	TLS      TLS      `yaml:"tls"`
	Dispatch Dispatch `yaml:"dispatch"`
	Apps     []App    `yaml:"apps"`

	// Demo is set for `serve` without a config file (LoadOrDemo): the
	// demo app, and the /demo page. Never read from a file.
	Demo bool `yaml:"-"`
}

// Dispatch shapes /v1/dispatch's answers in a cluster.
type Dispatch struct {
	// MaxEndpoints bounds the nodes an answer lists (each with its
	// endpoints). Zero means 3.
	MaxEndpoints int `yaml:"max_endpoints"`
	// Canary sends a stable share of devices to some nodes, and no other
	// device there.
	Canary Canary `yaml:"canary"`
}

// Canary is a dispatch rule for trying new nodes (a new version) on a few
// devices first.
type Canary struct {
	Nodes   []string `yaml:"nodes"`   // the canary nodes
	Percent float64  `yaml:"percent"` // the share of (app, device) pairs sent there, 0-100
}

// TLS turns on TLS: on the gateway port beside plaintext (told apart by the
// first byte), and on the API and ops listeners instead of plain HTTP.
type TLS struct {
	// CertFile and KeyFile are PEM files; both are read again on SIGHUP.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Required refuses plaintext TCP and ws:// on the gateway.
	Required bool `yaml:"required"`
	// RecordLayer says who seals the records of a TLS 1.3 session once
	// crypto/tls has run its handshake: RecordsLongLink (the gateway
	// itself, from the session's traffic secrets, which crypto/tls hands
	// over through its key log: 7.6 KB less per idle connection), or
	// RecordsCryptoTLS (crypto/tls keeps every session, as TLS 1.2 always
	// is). Empty means RecordsLongLink.
	RecordLayer string `yaml:"record_layer"`
}

// The values of tls.record_layer.
const (
	RecordsLongLink  = "longlink"
	RecordsCryptoTLS = "crypto/tls"
)

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// Ops is the operators' surface: profiles (/debug/pprof) and, later, admin
// endpoints and the dashboard. /metrics and /healthz stay open.
type Ops struct {
	// Listen gives the ops surface a port of its own. Empty means it is
	// served on api.listen.
	Listen string `yaml:"listen"`
	// Token is the Bearer token the ops surface asks for. Empty means the
	// guarded endpoints answer 401 to everyone (serve without --config
	// generates one, kept in the data dir).
	Token string `yaml:"token" secret:"key"`
	// MetricsPublic keeps /metrics on the API port, without a token, where
	// Listen is set (for scrapers that cannot send one). False: with Listen
	// set, /metrics is served there, for the token.
	MetricsPublic bool `yaml:"metrics_public"`
}

// MetricsOnAPI reports whether /metrics is served on the API's port, open:
// without Listen, or with MetricsPublic.
func (o Ops) MetricsOnAPI() bool { return o.Listen == "" || o.MetricsPublic }

// Cluster makes this node a member of a cluster: its stored messages and
// routes live in Redis, and the nodes talk over NATS. Empty Redis and NATS
// mean a single node on its embedded store.
type Cluster struct {
	// Redis is the shared store and router: one Redis server
	// (redis://[user:password@]host:port/db), or a Redis Cluster's seeds
	// (redis://[user:password@]host:port?addr=host:port&addr=...).
	Redis string `yaml:"redis" secret:"url"`
	// NATS is the bus between nodes: nats://host:port, with its
	// credentials (nats://user:password@host:port, nats://token@host:port)
	// unless NATSCredentials gives them; tls://host:port for TLS.
	NATS string `yaml:"nats" secret:"url"`
	// NATSCredentials is a NATS .creds file (a user JWT and its nkey seed).
	NATSCredentials string `yaml:"nats_credentials"`
	// NATSCA is a PEM file of the CA that signed the NATS server's
	// certificate, for a tls:// bus with a private CA.
	NATSCA string `yaml:"nats_ca"`
	// Lease is how long a node that stops renewing its lease is still
	// routed to. Zero means 10s.
	Lease time.Duration `yaml:"lease"`
	// ReplicasAck makes a stored push answer 200 only once this many
	// replicas of each Redis primary it wrote to have its writes (WAIT);
	// else it answers 503 (retry with the same id). 0: once the primary
	// has them.
	ReplicasAck int `yaml:"replicas_ack"`
	// ReplicasAckTimeout bounds the wait for the replicas. Zero means 1s.
	ReplicasAckTimeout time.Duration `yaml:"replicas_ack_timeout"`
	// DeviceExpiry is how long a device's seq counter and broadcast cursor
	// are kept in Redis after its last login, stored push or ack (and at
	// least as long as its stored messages): a device back after longer
	// starts its seqs over (clients dedupe by id). 0 keeps them for ever.
	DeviceExpiry time.Duration `yaml:"device_expiry"`
}

// Enabled reports whether the node is a cluster member.
func (c Cluster) Enabled() bool { return c.Redis != "" }

// Limits bound what devices and app backends can make the server hold.
type Limits struct {
	// ConnsPerIP bounds the connections open at once from one source IP;
	// over it a new one is closed with 4005. Zero means no bound.
	ConnsPerIP int `yaml:"conns_per_ip"`
	// ConnRatePerIP bounds the new connections per second from one source
	// IP (a token bucket as deep as one second); over it, 4005. Zero means
	// no bound.
	ConnRatePerIP float64 `yaml:"conn_rate_per_ip"`
	// LoginsPerSecond bounds the logins this node accepts per second; over
	// it, 4005. Zero means no bound.
	LoginsPerSecond float64 `yaml:"logins_per_second"`
	// PushPerSecond bounds each app's push API calls per second; over it,
	// 429 with Retry-After. Zero means no bound.
	PushPerSecond float64 `yaml:"push_per_second"`
	// QueueBytes bounds the bytes waiting to be written to one connection
	// (queued, or being written); over it the connection is closed as too
	// slow (4004). Zero means 4194304 (4 MiB).
	QueueBytes int `yaml:"queue_bytes"`
	// QueueBytesTotal bounds those bytes over all connections together:
	// over it, the connections whose sockets take nothing and that hold the
	// most are closed as too slow, while connections that keep up still get
	// theirs. Zero means 268435456 (256 MiB).
	QueueBytesTotal int64 `yaml:"queue_bytes_total"`
	// PushBytes bounds the bytes one stored push may write (data times its
	// target devices); over it, 413. Zero means 33554432 (32 MiB).
	PushBytes int64 `yaml:"push_bytes"`
	// AppPendingBytes bounds the bytes of one app's stored pushes waiting to
	// be made durable at once; over it, 429 with Retry-After. Zero means
	// 67108864 (64 MiB).
	AppPendingBytes int64 `yaml:"app_pending_bytes"`
	// APIBodyBytes bounds the bytes of API request bodies being read and
	// decoded at once, over the whole process; a request that would go over
	// it gets 503 with Retry-After. Zero means 67108864 (64 MiB).
	APIBodyBytes int64 `yaml:"api_body_bytes"`
}

// MaxAPIBodyBytes is the largest API request body (413 above it).
const MaxAPIBodyBytes = 8 << 20

// Hooks configures the calls to app backends: upstream data and status events.
type Hooks struct {
	// UpstreamWorkers is how many long-lived workers make upstream calls,
	// over persistent connections. Zero means 64.
	UpstreamWorkers int `yaml:"upstream_workers"`
	// UpstreamQueue bounds the upstream calls waiting for a worker; above it
	// devices get 4010 at once. Zero means 4096.
	UpstreamQueue int `yaml:"upstream_queue"`
	// UpstreamTimeout bounds one upstream call. Zero means 5s.
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
	// UpstreamRate and UpstreamBurst limit each connection's up frames
	// (a token bucket: per second, and at once); above it, 4005.
	// Zero means 20 and 40.
	UpstreamRate  float64 `yaml:"upstream_rate"`
	UpstreamBurst int     `yaml:"upstream_burst"`
	// StatusBatch is the most events in one status call. Zero means 100.
	StatusBatch int `yaml:"status_batch"`
	// StatusLinger is how long events wait for a fuller batch. Zero means 200ms.
	StatusLinger time.Duration `yaml:"status_linger"`
	// StatusBuffer bounds the events kept per app while its backend does not
	// answer; when full the oldest are dropped and counted. Zero means 100000.
	StatusBuffer int `yaml:"status_buffer"`
	// StatusTimeout bounds one status call. Zero means 5s.
	StatusTimeout time.Duration `yaml:"status_timeout"`
}

// Store configures the embedded store of stored messages (in data_dir/store).
type Store struct {
	// MailboxLimit bounds each device's mailbox per app; when full, the
	// oldest message is dropped (longlink_mailbox_dropped_total). Zero means 1000.
	MailboxLimit int `yaml:"mailbox_limit"`
	// SweepInterval is how often expired messages and keys are deleted.
	// Zero means 30s.
	SweepInterval time.Duration `yaml:"sweep_interval"`
}

// Gateway configures the device-facing port.
type Gateway struct {
	// Listen is the one port for native TCP and WebSocket (/ws).
	// Empty means "127.0.0.1:7070"; port 0 picks a free port.
	Listen string `yaml:"listen"`
	// Advertise is the host:port that /v1/dispatch gives devices.
	// Empty means the address the listener is bound to.
	Advertise string `yaml:"advertise"`
	// LoginTimeout is how long a new connection may take to log in.
	// Zero means 10s.
	LoginTimeout time.Duration `yaml:"login_timeout"`
	// Heartbeat is granted when a client proposes none. Zero means 30s.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// HeartbeatMin and HeartbeatMax clamp what clients propose.
	// Zero means 5s and 300s.
	HeartbeatMin time.Duration `yaml:"heartbeat_min"`
	HeartbeatMax time.Duration `yaml:"heartbeat_max"`
	// MaxFrameBytes is the largest frame body a client may send.
	// Zero means 65536.
	MaxFrameBytes int `yaml:"max_frame_bytes"`
	// MaxLoginBytes is the largest message a connection may send before its
	// login is accepted (the login frame, an MQTT CONNECT), when below
	// MaxFrameBytes; over it, 4006. Zero means 16384.
	MaxLoginBytes int `yaml:"max_login_bytes"`
	// SendQueue is how many frames may wait for one connection before it is
	// closed as too slow (4004). Zero means 1024.
	SendQueue int `yaml:"send_queue"`
	// WriteTimeout bounds one write to a device; a device that cannot take
	// its frames in time is closed as too slow. Zero means 10s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxGroups bounds the groups one connection may be in. Zero means 4096.
	MaxGroups int `yaml:"max_groups"`
	// DrainPeriod is how long a drain (SIGTERM, POST /v1/admin/drain)
	// spreads the moves of the node's devices over. Zero means 10s.
	DrainPeriod time.Duration `yaml:"drain_period"`
}

// API configures the HTTP port for backends.
type API struct {
	// Listen is the push API's address. Empty means "127.0.0.1:8080".
	Listen string `yaml:"listen"`
	// MaxDataBytes is the largest push payload (413 above it).
	// Zero means 16384.
	MaxDataBytes int `yaml:"max_data_bytes"`
	// MaxTTL is the longest a stored message may be kept. Zero means 720h.
	MaxTTL time.Duration `yaml:"max_ttl"`
	// ReadHeaderTimeout bounds the time to receive a request's headers,
	// ReadTimeout the whole request with its body, IdleTimeout how long a
	// keep-alive connection waits for its next request; past them the
	// connection is closed. Zero means 5s, 30s and 120s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
}

// App is one tenant.
type App struct {
	ID       string   `yaml:"id"`
	Secret   string   `yaml:"secret" secret:"key"`  // HS256 key for device tokens
	APIKey   string   `yaml:"api_key" secret:"key"` // Bearer key for the push API
	Webhooks Webhooks `yaml:"webhooks"`
	// WebhookSecret signs every webhook call (see hooks.Sign). Empty means
	// the app's secret.
	WebhookSecret string `yaml:"webhook_secret" secret:"key"`
	// PushBridge is the app's OS push channels (FCM, APNs, HMS), for
	// stored messages a device does not ack in time.
	PushBridge PushBridge `yaml:"push_bridge"`
}

// WebhookKey is the secret the app's webhook calls are signed with.
func (a App) WebhookKey() string {
	if a.WebhookSecret != "" {
		return a.WebhookSecret
	}
	return a.Secret
}

// Webhooks are the app backend's URLs.
type Webhooks struct {
	Upstream map[string]string `yaml:"upstream"` // biz -> URL
	Status   string            `yaml:"status"`
}

// PushBridge is an app's OS push channels (docs/push-bridge.md): the
// vendors' credentials, and the escalation its stored pushes get when they
// do not say. A vendor is used when its first key is set.
type PushBridge struct {
	// FCM: Firebase Cloud Messaging (Android), HTTP v1.
	FCM FCMVendor `yaml:"fcm"`
	// APNs: Apple's push service, with a token-based (.p8) key.
	APNs APNsVendor `yaml:"apns"`
	// HMS: Huawei Push Kit.
	HMS HMSVendor `yaml:"hms"`
	// Xiaomi: Mi Push.
	Xiaomi XiaomiVendor `yaml:"xiaomi"`
	// Escalate is the escalation of the app's stored pushes to devices,
	// users or tags that give none themselves (after 0: none).
	Escalate Escalation `yaml:"escalate"`
	// Quiet is the app's quiet hours: escalations (not socket deliveries)
	// wait for the window to end, unless the push's priority is high.
	Quiet Quiet `yaml:"quiet"`
}

// Quiet is a daily window, from From to To (HH:MM or HH:MM:SS; a window
// that ends before it starts runs past midnight) in the time zone TZ (an
// IANA name; "": UTC). Both empty: no window.
type Quiet struct {
	From string `yaml:"from" json:"from"`
	To   string `yaml:"to" json:"to"`
	TZ   string `yaml:"tz" json:"tz,omitempty"`
}

// FCMVendor is an app's FCM credentials.
type FCMVendor struct {
	// ServiceAccountFile is the Firebase service account's JSON key file.
	ServiceAccountFile string `yaml:"service_account_file"`
	// URL is FCM's base URL ("": https://fcm.googleapis.com).
	URL string `yaml:"url"`
}

// APNsVendor is an app's APNs credentials.
type APNsVendor struct {
	// KeyFile is the .p8 key file (AuthKey_<key id>.p8).
	KeyFile string `yaml:"key_file"`
	// KeyID is the key's id, TeamID the team's, Topic the app's bundle id.
	KeyID  string `yaml:"key_id"`
	TeamID string `yaml:"team_id"`
	Topic  string `yaml:"topic"`
	// URL is APNs's base URL ("": https://api.push.apple.com; the
	// sandbox: https://api.sandbox.push.apple.com).
	URL string `yaml:"url"`
}

// HMSVendor is an app's Huawei Push Kit credentials.
type HMSVendor struct {
	// AppID and AppSecret are the app's credentials in AppGallery Connect.
	AppID     string `yaml:"app_id"`
	AppSecret string `yaml:"app_secret" secret:"key"`
	// URL is Push Kit's base URL ("": https://push-api.cloud.huawei.com),
	// TokenURL its OAuth endpoint ("":
	// https://oauth-login.cloud.huawei.com/oauth2/v3/token).
	URL      string `yaml:"url"`
	TokenURL string `yaml:"token_url"`
}

// XiaomiVendor is an app's Mi Push credentials.
type XiaomiVendor struct {
	// AppSecret is the app's AppSecret at Xiaomi's developer site,
	// Package its Android package name.
	AppSecret string `yaml:"app_secret" secret:"key"`
	Package   string `yaml:"package"`
	// ChannelID is the notification channel the app registered with
	// Xiaomi ("": none).
	ChannelID string `yaml:"channel_id"`
	// URL is Mi Push's base URL ("": https://api.xmpush.xiaomi.com, for
	// mainland China; elsewhere a regional host such as
	// https://sgp-api.xmpush.global.xiaomi.com).
	URL string `yaml:"url"`
}

// Escalation is when and how an unacked stored message goes to a device's
// OS push channels.
type Escalation struct {
	// After is how long a device has to ack before the message is sent
	// through its OS channels (0: not escalated).
	After time.Duration `yaml:"after"`
	// Title and Body are the notification's text.
	Title string `yaml:"title"`
	Body  string `yaml:"body"`
}

// Default returns the configuration used without a file: every default, and
// no apps (serve adds the demo app; see DemoApp).
func Default() *Config {
	c := defaults
	return &c
}

// Load reads and validates a YAML file, under the environment's keys
// (env.go). Unknown keys are errors.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(raw, OSEnv)
}

// Parse decodes and validates a YAML document, alone (Load adds the
// environment).
func Parse(raw []byte) (*Config, error) { return parse(raw, nil) }

// parse decodes raw, sets the keys env gives (if not nil) over it, fills
// in the defaults and validates.
func parse(raw []byte, env Env) (*Config, error) {
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config: %s", nameKeys(raw, err))
	}
	if env != nil {
		if err := c.fromEnv(env); err != nil {
			return nil, err
		}
	}
	c.setDefaults()
	if len(c.Apps) == 0 {
		return nil, errors.New("config: apps: at least one app is required (in the file, or " + EnvPrefix + "APPS)")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

var (
	unknownFieldRe = regexp.MustCompile(`^line (\d+): field \S+ not found in type \S+$`)
	badValueRe     = regexp.MustCompile("^line (\\d+): cannot unmarshal !!\\w+ `(.*)` into (\\S+)$")
	badNodeRe      = regexp.MustCompile(`^line (\d+): cannot unmarshal !!(map|seq) into (\S+)$`)
)

// plainYAMLError says a yaml.v3 message without Go's type names.
func plainYAMLError(m string) string {
	if g := unknownFieldRe.FindStringSubmatch(m); g != nil {
		return "line " + g[1] + ": unknown key"
	}
	if g := badNodeRe.FindStringSubmatch(m); g != nil {
		given := map[string]string{"map": "a mapping of keys", "seq": "a list"}[g[2]]
		return fmt.Sprintf("line %s: is %s, not %s", g[1], given, yamlKind(g[3]))
	}
	if g := badValueRe.FindStringSubmatch(m); g != nil {
		return fmt.Sprintf("line %s: %q is not %s", g[1], g[2], yamlKind(g[3]))
	}
	return m
}

// yamlKind says what a Go type looks like in YAML.
func yamlKind(goType string) string {
	if want := map[string]string{"time.Duration": "a duration such as 30s or 1h", "string": "a string",
		"bool": "true or false", "float64": "a number"}[goType]; want != "" {
		return want
	}
	switch {
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	}
	return "a mapping of keys"
}

// nameKeys rewrites yaml's "line N: ..." errors as "key.path (line N): ...",
// so that every decoding error names its key.
func nameKeys(raw []byte, err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err.Error()
	}
	var root yaml.Node
	if yaml.Unmarshal(raw, &root) != nil {
		return err.Error()
	}
	keys, containers := map[int]string{}, map[int]string{}
	collectKeys(&root, "", keys, containers)
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		at := keys
		if badNodeRe.MatchString(m) { // about a mapping or a list, not its first key
			at = containers
		}
		m = plainYAMLError(m)
		msgs[i] = m
		var line int
		if _, scanErr := fmt.Sscanf(m, "line %d:", &line); scanErr == nil && at[line] != "" {
			_, rest, _ := strings.Cut(m, ": ")
			msgs[i] = at[line] + " (line " + strconv.Itoa(line) + "): " + rest
		}
	}
	return strings.Join(msgs, "; ")
}

// collectKeys maps the line of every key and value to its dotted path, and
// the line where a mapping or a list value starts (its first key's line)
// to the path of the value itself, in containers.
func collectKeys(n *yaml.Node, path string, keys, containers map[int]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			collectKeys(c, path, keys, containers)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			keys[k.Line], keys[v.Line] = p, p
			if v.Kind == yaml.MappingNode || v.Kind == yaml.SequenceNode {
				containers[v.Line] = p
			}
			collectKeys(v, p, keys, containers)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			collectKeys(c, fmt.Sprintf("%s[%d]", path, i), keys, containers)
		}
	}
}

// defaults is every default of the configuration, in this one place:
// Default returns a copy, and a file's zero values are filled from it (a
// key left out, or given as 0, means its default). Packages take what they
// are given, or config.Default's values.
var defaults = Config{
	Node:    "n1",
	DataDir: "./longlink-data",
	Gateway: Gateway{Listen: "127.0.0.1:7070", LoginTimeout: 10 * time.Second, Heartbeat: 30 * time.Second,
		HeartbeatMin: 5 * time.Second, HeartbeatMax: 300 * time.Second, WriteTimeout: 10 * time.Second,
		DrainPeriod: 10 * time.Second, MaxFrameBytes: 65536, MaxLoginBytes: 16384, SendQueue: 1024, MaxGroups: 4096},
	API: API{Listen: "127.0.0.1:8080", MaxDataBytes: 16384, MaxTTL: 720 * time.Hour,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second},
	Store:    Store{MailboxLimit: 1000, SweepInterval: 30 * time.Second},
	Dispatch: Dispatch{MaxEndpoints: 3},
	Hooks: Hooks{UpstreamWorkers: 64, UpstreamQueue: 4096, UpstreamTimeout: 5 * time.Second, UpstreamRate: 20,
		UpstreamBurst: 40, StatusBatch: 100, StatusLinger: 200 * time.Millisecond, StatusBuffer: 100000,
		StatusTimeout: 5 * time.Second},
	Cluster: Cluster{Lease: 10 * time.Second, ReplicasAckTimeout: time.Second, DeviceExpiry: 90 * 24 * time.Hour},
	TLS:     TLS{RecordLayer: RecordsLongLink},
	Limits: Limits{QueueBytes: 4 << 20, QueueBytesTotal: 256 << 20, PushBytes: 32 << 20, AppPendingBytes: 64 << 20,
		APIBodyBytes: 64 << 20},
}

// The cluster's settings that are not in the file: the prefix of its keys
// in Redis (the store's and the membership's: they must agree), and the
// bound of one call to Redis or NATS.
const (
	ClusterPrefix  = "ll:"
	ClusterTimeout = 5 * time.Second
)

// setDefaults fills c's zero values from defaults.
func (c *Config) setDefaults() { fillZeros(reflect.ValueOf(c).Elem(), reflect.ValueOf(defaults)) }

// fillZeros sets each zero field of the struct v to d's, into nested
// structs.
func fillZeros(v, d reflect.Value) {
	for i := range v.NumField() {
		switch f := v.Field(i); {
		case f.Kind() == reflect.Struct:
			fillZeros(f, d.Field(i))
		case f.IsZero():
			f.Set(d.Field(i))
		}
	}
}

var (
	nodeRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	appRe  = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
)

// Validate checks every key and names the first bad one, section by
// section.
func (c *Config) Validate() error {
	if !nodeRe.MatchString(c.Node) {
		return bad("node", "%q must be 1-64 letters, digits, '_' or '-'", c.Node)
	}
	for _, check := range []func() error{c.Gateway.validate, c.validateAPI, c.Store.validate, c.Ops.validate,
		c.TLS.validate, c.Dispatch.validate, c.Cluster.validate, c.validateLimits, c.Hooks.validate, c.validateApps} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// bad is the error of a bad key.
func bad(key, format string, args ...any) error {
	return fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...))
}

// hostPort checks that a key's address is host:port.
func hostPort(key, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return bad(key, "%q is not host:port", addr)
	}
	return nil
}

func (g Gateway) validate() error {
	if err := hostPort("gateway.listen", g.Listen); err != nil {
		return err
	}
	if g.Advertise != "" {
		if err := hostPort("gateway.advertise", g.Advertise); err != nil {
			return err
		}
	}
	switch {
	case g.LoginTimeout < 0:
		return bad("gateway.login_timeout", "must be positive")
	case g.HeartbeatMin < time.Second:
		return bad("gateway.heartbeat_min", "must be at least 1s")
	case g.HeartbeatMax < g.HeartbeatMin:
		return bad("gateway.heartbeat_max", "must not be below heartbeat_min (%v)", g.HeartbeatMin)
	case g.Heartbeat < g.HeartbeatMin || g.Heartbeat > g.HeartbeatMax:
		return bad("gateway.heartbeat", "must lie between heartbeat_min and heartbeat_max")
	case g.WriteTimeout < 0:
		return bad("gateway.write_timeout", "must be positive")
	case g.MaxFrameBytes < 1024 || g.MaxFrameBytes > protocol.MaxFrameLimit:
		return bad("gateway.max_frame_bytes", "must lie between 1024 and %d", protocol.MaxFrameLimit)
	case g.MaxLoginBytes < 1024:
		return bad("gateway.max_login_bytes", "must be at least 1024")
	case g.SendQueue < 1:
		return bad("gateway.send_queue", "must be at least 1")
	case g.MaxGroups < 1:
		return bad("gateway.max_groups", "must be at least 1")
	case g.DrainPeriod < 100*time.Millisecond:
		return bad("gateway.drain_period", "must be at least 100ms")
	}
	return nil
}

func (c *Config) validateAPI() error {
	a, maxData := c.API, c.Gateway.MaxFrameBytes-512
	if err := hostPort("api.listen", a.Listen); err != nil {
		return err
	}
	switch {
	case a.MaxDataBytes < 1 || a.MaxDataBytes > maxData:
		return bad("api.max_data_bytes", "must lie between 1 and gateway.max_frame_bytes-512 (%d)", maxData)
	case a.MaxTTL < time.Second:
		return bad("api.max_ttl", "must be at least 1s")
	case a.ReadHeaderTimeout < 0:
		return bad("api.read_header_timeout", "must be positive")
	case a.ReadTimeout < 0:
		return bad("api.read_timeout", "must be positive")
	case a.IdleTimeout < 0:
		return bad("api.idle_timeout", "must be positive")
	}
	return nil
}

func (st Store) validate() error {
	switch {
	case st.MailboxLimit < 1:
		return bad("store.mailbox_limit", "must be at least 1")
	case st.SweepInterval < 10*time.Millisecond:
		return bad("store.sweep_interval", "must be at least 10ms")
	}
	return nil
}

func (o Ops) validate() error {
	if o.Listen != "" {
		if err := hostPort("ops.listen", o.Listen); err != nil {
			return err
		}
	}
	if o.Token != "" && len(o.Token) < 16 {
		return bad("ops.token", "must be at least 16 bytes")
	}
	return nil
}

func (t TLS) validate() error {
	switch {
	case t.RecordLayer != "" && t.RecordLayer != RecordsLongLink && t.RecordLayer != RecordsCryptoTLS:
		return bad("tls.record_layer", "must be "+RecordsLongLink+" or "+RecordsCryptoTLS)
	case t.CertFile == "" && t.KeyFile == "" && !t.Required:
		return nil
	case t.CertFile == "":
		return bad("tls.cert_file", "is required with tls.key_file or tls.required")
	case t.KeyFile == "":
		return bad("tls.key_file", "is required with tls.cert_file")
	}
	return nil
}

func (d Dispatch) validate() error {
	cn := d.Canary
	switch {
	case d.MaxEndpoints < 1:
		return bad("dispatch.max_endpoints", "must be at least 1")
	case cn.Percent < 0 || cn.Percent > 100:
		return bad("dispatch.canary.percent", "must lie between 0 and 100")
	case cn.Percent > 0 && len(cn.Nodes) == 0:
		return bad("dispatch.canary.nodes", "must name the canary nodes when percent is set")
	}
	for i, n := range cn.Nodes {
		if !nodeRe.MatchString(n) {
			return bad(fmt.Sprintf("dispatch.canary.nodes[%d]", i), "%q is not a node name", n)
		}
	}
	return nil
}

func (c Cluster) validate() error {
	// The URLs are not quoted back: they may hold passwords.
	switch {
	case c.Redis == "" && c.NATS == "" && c.NATSCredentials == "" && c.NATSCA == "":
		return nil
	case !strings.HasPrefix(c.Redis, "redis://") && !strings.HasPrefix(c.Redis, "rediss://"):
		return bad("cluster.redis", "is not a redis:// URL (a cluster needs both redis and nats)")
	case !strings.HasPrefix(c.NATS, "nats://") && !strings.HasPrefix(c.NATS, "tls://"):
		return bad("cluster.nats", "is not a nats:// or tls:// URL (a cluster needs both redis and nats)")
	case c.Lease < time.Second:
		return bad("cluster.lease", "must be at least 1s")
	case c.DeviceExpiry < 0:
		return bad("cluster.device_expiry", "must not be negative")
	case c.ReplicasAck < 0:
		return bad("cluster.replicas_ack", "must not be negative")
	case c.ReplicasAck > 0 && c.ReplicasAckTimeout < time.Millisecond:
		return bad("cluster.replicas_ack_timeout", "must be at least 1ms when replicas_ack is set")
	}
	return nil
}

func (c *Config) validateLimits() error {
	l, maxFrame := c.Limits, c.Gateway.MaxFrameBytes
	switch {
	case l.ConnsPerIP < 0:
		return bad("limits.conns_per_ip", "must not be negative")
	case l.ConnRatePerIP < 0:
		return bad("limits.conn_rate_per_ip", "must not be negative")
	case l.LoginsPerSecond < 0:
		return bad("limits.logins_per_second", "must not be negative")
	case l.PushPerSecond < 0:
		return bad("limits.push_per_second", "must not be negative")
	case l.QueueBytes < maxFrame:
		return bad("limits.queue_bytes", "must be at least gateway.max_frame_bytes (%d)", maxFrame)
	case l.QueueBytesTotal < int64(maxFrame):
		return bad("limits.queue_bytes_total", "must be at least gateway.max_frame_bytes (%d)", maxFrame)
	case l.PushBytes < int64(c.API.MaxDataBytes):
		return bad("limits.push_bytes", "must be at least api.max_data_bytes (%d)", c.API.MaxDataBytes)
	case l.AppPendingBytes < l.PushBytes:
		return bad("limits.app_pending_bytes", "must be at least limits.push_bytes (%d)", l.PushBytes)
	case l.APIBodyBytes < MaxAPIBodyBytes:
		return bad("limits.api_body_bytes", "must be at least %d (the largest request body)", MaxAPIBodyBytes)
	}
	return nil
}

func (h Hooks) validate() error {
	switch {
	case h.UpstreamWorkers < 1:
		return bad("hooks.upstream_workers", "must be at least 1")
	case h.UpstreamQueue < 1:
		return bad("hooks.upstream_queue", "must be at least 1")
	case h.UpstreamTimeout <= 0:
		return bad("hooks.upstream_timeout", "must be positive")
	case h.UpstreamRate <= 0:
		return bad("hooks.upstream_rate", "must be positive")
	case h.UpstreamBurst < 1:
		return bad("hooks.upstream_burst", "must be at least 1")
	case h.StatusBatch < 1:
		return bad("hooks.status_batch", "must be at least 1")
	case h.StatusLinger <= 0:
		return bad("hooks.status_linger", "must be positive")
	case h.StatusBuffer < h.StatusBatch:
		return bad("hooks.status_buffer", "must be at least hooks.status_batch")
	case h.StatusTimeout <= 0:
		return bad("hooks.status_timeout", "must be positive")
	}
	return nil
}

func (c *Config) validateApps() error {
	ids, keys := map[string]bool{}, map[string]bool{}
	for i, a := range c.Apps {
		key := fmt.Sprintf("apps[%d]", i)
		switch {
		case !appRe.MatchString(a.ID):
			return bad(key+".id", "%q must match [a-z0-9_-]{1,64}", a.ID)
		case ids[a.ID]:
			return bad(key+".id", "%q is used by another app", a.ID)
		case len(a.Secret) < 16:
			return bad(key+".secret", "must be at least 16 bytes")
		case len(a.APIKey) < 16:
			return bad(key+".api_key", "must be at least 16 bytes")
		case a.WebhookSecret != "" && len(a.WebhookSecret) < 16:
			return bad(key+".webhook_secret", "must be at least 16 bytes (or left out: the app's secret)")
		case keys[a.APIKey]:
			return bad(key+".api_key", "is used by another app")
		}
		ids[a.ID], keys[a.APIKey] = true, true
		for biz, u := range a.Webhooks.Upstream {
			if err := checkURL(u); err != nil {
				return bad(fmt.Sprintf("%s.webhooks.upstream.%s", key, biz), "%v", err)
			}
		}
		if a.Webhooks.Status != "" {
			if err := checkURL(a.Webhooks.Status); err != nil {
				return bad(key+".webhooks.status", "%v", err)
			}
		}
		if err := a.PushBridge.validate(key); err != nil {
			return err
		}
	}
	return nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}
