package audit

import (
	"fmt"
	"time"
)

// Defaults applied by Config.Validate to zero fields, and the query limits
// (DefaultQueryLimit when a query gives none, at most MaxQueryLimit).
const (
	// DefaultCheckpointInterval is how often a signed checkpoint of the
	// chain head is published while the log grows.
	DefaultCheckpointInterval = time.Minute
	DefaultMaxBatchEvents     = 1000
	DefaultMaxBatchBytes      = 1 << 20
	DefaultMaxBatchWait       = 0
	DefaultMaxAckPending      = 20_000
	DefaultAckWait            = 30 * time.Second
	DefaultRequestTimeout     = time.Minute
	DefaultRetentionCheck     = time.Minute
	DefaultRetentionBatch     = 1000
	DefaultVerifyBatch        = 10_000
	DefaultQueryLimit         = 1000
	MaxQueryLimit             = 10_000
	maxBatchBytesLimit        = 4 << 20
	maxBatchEventsLimit       = 10_000
	maxRetentionBatchLimit    = 10_000
	maxVerifyBatchLimit       = 100_000
	minAckWait                = time.Second
	maxBatchWaitLimit         = time.Second
	minRetentionCheckPeriod   = time.Millisecond
)

// Config tunes a Service. The zero value gives the defaults; Validate fills
// them in. A Config is a plain value, copied by New.
type Config struct {
	// MaxBatchEvents bounds the events appended in one store transaction.
	// Default DefaultMaxBatchEvents, at most 10,000.
	MaxBatchEvents int

	// MaxBatchBytes bounds the payload bytes appended in one transaction,
	// so that a batch stays well inside kv.MaxTxnWriteBytes (records,
	// indexes and base64 included). An event larger than this is committed
	// in a batch of its own: nothing that got a PubAck is refused. Default
	// DefaultMaxBatchBytes, at most 4 MiB.
	MaxBatchBytes int

	// MaxBatchWait is how long the first event of a batch may wait for
	// more before the batch is committed. The default, 0, commits as soon
	// as no event is waiting (group commit): events that arrive while a
	// commit runs form the next batch, so batches grow with the load and a
	// quiet system commits an event within one fsync. Measured on the
	// reference machine, 0 beats 1ms at 5,000 and at 20,000 events/s in
	// both p50 and p99 publish-to-committed latency; a positive value trades
	// latency for fewer, larger commits. At most one second.
	MaxBatchWait time.Duration

	// MaxAckPending is the codi-audit consumer's limit of delivered,
	// unacknowledged events. Default DefaultMaxAckPending; at least
	// MaxBatchEvents.
	MaxAckPending int

	// AckWait is how long JetStream waits for an ack before redelivering.
	// Redeliveries are harmless (they are skipped), so this only bounds
	// recovery after a lost ack. Default DefaultAckWait, at least a second.
	AckWait time.Duration

	// RequestTimeout bounds the work of one query, verify or status
	// request. Default DefaultRequestTimeout.
	RequestTimeout time.Duration

	// VerifyBatch is the number of records verify reads per read
	// transaction, so that verifying a large log never holds one long read.
	// Default DefaultVerifyBatch.
	VerifyBatch int

	// Retention removes old records. The zero value keeps every record.
	Retention Retention

	// Metrics, when set, receives counts and timings (see Metrics).
	Metrics Metrics

	// CheckpointKeyFile is the file of the ed25519 key that signs
	// checkpoints of the chain head (see checkpoint.go), created on first
	// use with its public key in CheckpointKeyFile+".pub". Keep it outside
	// the store: codi2 serve uses audit.key next to audit.db. Empty: no
	// checkpoints.
	CheckpointKeyFile string
	// CheckpointInterval is how often a checkpoint is published while the
	// log grows (one is also published on shutdown). Default
	// DefaultCheckpointInterval.
	CheckpointInterval time.Duration

	// SharedLog says that other writers append to the log in the same
	// store (AppendInTxn: codi2 serve --store pebble, server.Config's
	// InlineAudit). Status then reads the chain's head from the store,
	// so that it counts their records too; otherwise it shows the
	// service's own last commit, without a read.
	SharedLog bool
}

// Retention says which records the service removes from the start of the
// log. A record goes when it is older than MaxAge or when more than MaxCount
// records are kept; each run of removals is itself recorded as an event
// (source codi-audit, category retention).
type Retention struct {
	// MaxAge removes records whose time is older than this. Zero keeps
	// records of any age.
	MaxAge time.Duration
	// MaxCount keeps at most this many records, counting the retention
	// event that reports the removal. Zero keeps any number.
	MaxCount uint64
	// CheckInterval is how often retention looks for records to remove.
	// Default DefaultRetentionCheck.
	CheckInterval time.Duration
	// Batch is the number of records removed per store transaction, so
	// that removing a million records never writes one huge transaction.
	// Default DefaultRetentionBatch, at most 10,000.
	Batch int
}

// enabled reports whether retention removes anything.
func (r Retention) enabled() bool { return r.MaxAge > 0 || r.MaxCount > 0 }

// Validate fills defaults into zero fields and reports an invalid
// configuration with an error wrapping ErrConfig.
func (c *Config) Validate() error {
	if c.MaxBatchEvents == 0 {
		c.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = max(DefaultMaxAckPending, c.MaxBatchEvents)
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.VerifyBatch == 0 {
		c.VerifyBatch = DefaultVerifyBatch
	}
	if c.Retention.CheckInterval == 0 {
		c.Retention.CheckInterval = DefaultRetentionCheck
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.Retention.Batch == 0 {
		c.Retention.Batch = DefaultRetentionBatch
	}
	switch {
	case c.MaxBatchEvents < 1 || c.MaxBatchEvents > maxBatchEventsLimit:
		return fmt.Errorf("%w: MaxBatchEvents %d outside 1..%d", ErrConfig, c.MaxBatchEvents, maxBatchEventsLimit)
	case c.MaxBatchBytes < 1 || c.MaxBatchBytes > maxBatchBytesLimit:
		return fmt.Errorf("%w: MaxBatchBytes %d outside 1..%d", ErrConfig, c.MaxBatchBytes, maxBatchBytesLimit)
	case c.MaxBatchWait < 0 || c.MaxBatchWait > maxBatchWaitLimit:
		return fmt.Errorf("%w: MaxBatchWait %v outside 0..%v", ErrConfig, c.MaxBatchWait, maxBatchWaitLimit)
	case c.MaxAckPending < c.MaxBatchEvents:
		return fmt.Errorf("%w: MaxAckPending %d below MaxBatchEvents %d", ErrConfig, c.MaxAckPending, c.MaxBatchEvents)
	case c.AckWait < minAckWait:
		return fmt.Errorf("%w: AckWait %v below %v", ErrConfig, c.AckWait, minAckWait)
	case c.RequestTimeout < 0:
		return fmt.Errorf("%w: negative RequestTimeout %v", ErrConfig, c.RequestTimeout)
	case c.VerifyBatch < 1 || c.VerifyBatch > maxVerifyBatchLimit:
		return fmt.Errorf("%w: VerifyBatch %d outside 1..%d", ErrConfig, c.VerifyBatch, maxVerifyBatchLimit)
	case c.CheckpointInterval < 0:
		return fmt.Errorf("%w: negative CheckpointInterval %v", ErrConfig, c.CheckpointInterval)
	case c.Retention.MaxAge < 0:
		return fmt.Errorf("%w: negative Retention.MaxAge %v", ErrConfig, c.Retention.MaxAge)
	case c.Retention.CheckInterval < minRetentionCheckPeriod:
		return fmt.Errorf("%w: Retention.CheckInterval %v below %v", ErrConfig, c.Retention.CheckInterval, minRetentionCheckPeriod)
	case c.Retention.Batch < 1 || c.Retention.Batch > maxRetentionBatchLimit:
		return fmt.Errorf("%w: Retention.Batch %d outside 1..%d", ErrConfig, c.Retention.Batch, maxRetentionBatchLimit)
	}
	return nil
}
