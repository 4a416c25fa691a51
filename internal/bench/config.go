package bench

import (
	"fmt"
	"io"
	"time"

	"github.com/codi2/codi2/internal/server"
)

// Defaults applied by Config.Validate to zero fields. They are sized so that
// a default run finishes in well under a minute on a 2-core machine.
const (
	DefaultMessages      = 20_000
	DefaultStateCommands = 2_000
	DefaultStateReads    = 5_000
	DefaultAuditEvents   = 30_000
	DefaultAuditRate     = 10_000
	DefaultQueryLogSize  = 100_000
	DefaultQueries       = 200
	DefaultQueryWindow   = 1_000
	DefaultRestarts      = 3
	DefaultWriters       = 5
	DefaultV1FsyncEvents = 1_000
	DefaultV1Queries     = 5
	DefaultPayloadBytes  = 100
	DefaultOpTimeout     = 10 * time.Second
)

// Limits enforced by Config.Validate.
const (
	// MaxCount bounds every count: each sample costs 8 bytes and the audit
	// measurement keeps a little more per event.
	MaxCount = 10_000_000
	// MaxWriters bounds the concurrency.
	MaxWriters = 256
	// MaxPayloadBytes keeps payloads well under the bus's 1 MiB default.
	MaxPayloadBytes = 64 << 10
)

// Config describes one bench run. The zero value runs the defaults against an
// embedded server in a temporary directory: Validate fills every zero field.
// A Config is a plain value, safe to share once validated.
type Config struct {
	// NATSURL, when set, measures the codi2 already running behind this NATS
	// URL (its state and audit services must answer) instead of starting an
	// embedded one. The restart measurement needs the embedded server and is
	// skipped with a note.
	NATSURL string `json:"nats_url,omitempty"`
	// AllowWrites must be set with NATSURL: the run writes its audit events
	// (AuditEvents + QueryLogSize) into that server's append-only audit log
	// and its state commands into its state, which cannot be undone. All of
	// it is marked as bench traffic (see the package documentation).
	AllowWrites bool `json:"allow_writes,omitempty"`
	// Store is the embedded server's engine (server.Config.Store): empty for
	// its default (bbolt), or server.StorePebble. Only for the embedded
	// server: a server at NATSURL runs on what it was started with.
	Store string `json:"store,omitempty"`
	// DataDir holds the embedded server's files and the v1 logs. Empty: a
	// temporary directory, removed when Run returns. A given directory is
	// left in place; it should be empty.
	DataDir string `json:"data_dir,omitempty"`

	// Messages is the number of one-way messages and of rpc calls, each
	// timed one at a time.
	Messages int `json:"messages"`
	// StateCommands is the number of state commands, spread over Writers
	// agents that each publish one command and wait for it to commit.
	StateCommands int `json:"state_commands"`
	// StateReads is the number of state get requests.
	StateReads int `json:"state_reads"`
	// AuditEvents is the number of audit events published at AuditRate for
	// the write latency under load.
	AuditEvents int `json:"audit_events"`
	// AuditRate is the offered load of that measurement, events per second
	// over all writers, on a fixed schedule that does not wait for acks.
	// The default is about a third of what a 2-core machine ingests at
	// most (the audit ingest row): near the ceiling the latency measures
	// queueing, not writing.
	AuditRate int `json:"audit_rate"`
	// QueryLogSize is the size the audit log is filled to, as fast as the
	// writers can, before the time-range queries. 1,000,000 takes about ten
	// times the default's fill time.
	QueryLogSize int `json:"query_log_size"`
	// Queries is the number of time-range queries.
	Queries int `json:"queries"`
	// QueryWindow is how many events a query's time range spans, and its
	// page limit: a dashboard page.
	QueryWindow int `json:"query_window"`
	// Restarts is how many times the embedded server is stopped and started
	// again on its data for restart-to-ready.
	Restarts int `json:"restarts"`
	// Writers is the concurrency: agents writing state, audit publishers,
	// and v1's concurrent writers. Five is the v1 incident's five sessions.
	Writers int `json:"writers"`
	// V1FsyncEvents is the number of events of v1's lock-and-fsync run.
	V1FsyncEvents int `json:"v1_fsync_events"`
	// V1Queries is the number of v1 time-range queries and of v1 state
	// scans; each parses the whole log.
	V1Queries int `json:"v1_queries"`
	// PayloadBytes pads message and audit payloads, and v1 lines, to about
	// the same size.
	PayloadBytes int `json:"payload_bytes"`
	// OpTimeout bounds each request and each wait for a commit.
	OpTimeout time.Duration `json:"op_timeout_ns"`

	// Progress receives one line per step and periodic updates; nil
	// discards them. Run writes to it from one goroutine at a time.
	Progress io.Writer `json:"-"`
}

// Validate fills defaults into zero fields and reports, wrapping ErrConfig,
// the first field out of range.
func (c *Config) Validate() error {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Messages, DefaultMessages)
	def(&c.StateCommands, DefaultStateCommands)
	def(&c.StateReads, DefaultStateReads)
	def(&c.AuditEvents, DefaultAuditEvents)
	def(&c.AuditRate, DefaultAuditRate)
	def(&c.QueryLogSize, DefaultQueryLogSize)
	def(&c.Queries, DefaultQueries)
	def(&c.QueryWindow, DefaultQueryWindow)
	def(&c.Restarts, DefaultRestarts)
	def(&c.Writers, DefaultWriters)
	def(&c.V1FsyncEvents, DefaultV1FsyncEvents)
	def(&c.V1Queries, DefaultV1Queries)
	def(&c.PayloadBytes, DefaultPayloadBytes)
	if c.OpTimeout == 0 {
		c.OpTimeout = DefaultOpTimeout
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	counts := []struct {
		name string
		v    int
	}{
		{"Messages", c.Messages}, {"StateCommands", c.StateCommands}, {"StateReads", c.StateReads},
		{"AuditEvents", c.AuditEvents}, {"AuditRate", c.AuditRate}, {"QueryLogSize", c.QueryLogSize},
		{"Queries", c.Queries}, {"QueryWindow", c.QueryWindow}, {"Restarts", c.Restarts},
		{"V1FsyncEvents", c.V1FsyncEvents}, {"V1Queries", c.V1Queries},
	}
	for _, n := range counts {
		if n.v < 1 || n.v > MaxCount {
			return fmt.Errorf("%w: %s=%d, want 1..%d", ErrConfig, n.name, n.v, MaxCount)
		}
	}
	switch {
	case c.Writers < 1 || c.Writers > MaxWriters:
		return fmt.Errorf("%w: Writers=%d, want 1..%d", ErrConfig, c.Writers, MaxWriters)
	case c.PayloadBytes < 1 || c.PayloadBytes > MaxPayloadBytes:
		return fmt.Errorf("%w: PayloadBytes=%d, want 1..%d", ErrConfig, c.PayloadBytes, MaxPayloadBytes)
	case c.OpTimeout < 0:
		return fmt.Errorf("%w: OpTimeout=%v is negative", ErrConfig, c.OpTimeout)
	case c.QueryWindow > 10_000:
		// The audit service caps a page; a larger window would measure
		// several requests as one.
		return fmt.Errorf("%w: QueryWindow=%d, want 1..10000", ErrConfig, c.QueryWindow)
	case c.StateCommands < c.Writers:
		return fmt.Errorf("%w: StateCommands=%d below Writers=%d", ErrConfig, c.StateCommands, c.Writers)
	case c.Store != "" && c.Store != server.StoreBolt && c.Store != server.StorePebble:
		return fmt.Errorf("%w: Store=%q, want %s or %s", ErrConfig, c.Store, server.StoreBolt, server.StorePebble)
	case c.Store != "" && c.NATSURL != "":
		return fmt.Errorf("%w: Store=%s applies to the embedded server only; the server at %s runs on the store it was started with", ErrConfig, c.Store, c.NATSURL)
	case c.NATSURL != "" && !c.AllowWrites:
		return fmt.Errorf("%w: a run against %s writes %d audit events into its append-only audit log and %d state commands into its state, for good; pass --allow-writes to measure that server anyway (everything is marked as bench traffic: agents, audit source and Nats-Msg-Ids start with bench-, state records are of kind %s)",
			ErrConfig, c.NATSURL, c.AuditEvents+c.QueryLogSize, c.StateCommands, stateKind)
	}
	return nil
}
