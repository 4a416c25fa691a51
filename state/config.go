package state

import (
	"fmt"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/kv"
)

// Defaults applied by Config.Validate to zero fields. Constants, safe
// everywhere.
const (
	// DefaultConsumer is the durable CODI_STATE consumer of the contract.
	DefaultConsumer = "codi-state"
	// DefaultMaxBatch bounds the commands applied in one store transaction.
	DefaultMaxBatch = 1000
	// DefaultMaxBatchBytes bounds the bytes one batch writes to the store:
	// a fifth of kv.MaxTxnWriteBytes, so a batch stays a short transaction on
	// FoundationDB too.
	DefaultMaxBatchBytes = 2 << 20
	// DefaultMaxExpiryBatch bounds the leases expired in one transaction
	// between command batches, so that a command waits for at most one such
	// slice however many leases end at once.
	DefaultMaxExpiryBatch = 256
	// DefaultLeaseSweepInterval is the longest the apply loop sleeps before it
	// looks at the lease index again.
	DefaultLeaseSweepInterval = time.Second
	// DefaultAckWait is how long JetStream waits for the service's ack before
	// it redelivers a command.
	DefaultAckWait = 30 * time.Second
	// DefaultGetWait is how long a get with min_seq and no wait_ms waits
	// for the watermark before it answers 504: below the request timeouts
	// of common clients (the nats CLI's 5s, nats.go's usual 1-2s), so that
	// they see the 504 rather than time out themselves.
	DefaultGetWait = time.Second
	// DefaultMaxGetWait is the longest wait_ms a get may ask for.
	DefaultMaxGetWait = 30 * time.Second
	// DefaultListLimit is the page size of a list request without a limit.
	DefaultListLimit = 100
	// DefaultMaxListLimit is the largest page a list request gets.
	DefaultMaxListLimit = 1000
	// DefaultShutdownTimeout bounds the final flush when Run stops.
	DefaultShutdownTimeout = 5 * time.Second
	// DefaultOutboxIdleFlush is how long the loop stays idle before it clears
	// audit outbox entries whose publish was acknowledged.
	DefaultOutboxIdleFlush = time.Second
)

// ServiceName is the NATS micro service name of the state service, shown by
// `nats micro ls`. Several instances share its endpoints' queue group.
const ServiceName = "codi-state"

// Version is the version the micro service announces (the wire contract's
// v1).
const Version = "1.0.0"

// Config configures the state service. The zero value is ready to use: New
// calls Validate, which fills every zero field with its default. A Config is
// a plain value; copy it freely.
type Config struct {
	// Stream is the command stream. Default bus.StreamState (CODI_STATE).
	Stream string
	// Metrics, when set, receives counts and timings (see Metrics).
	Metrics Metrics
	// Consumer is the durable pull consumer on Stream. Default
	// DefaultConsumer ("codi-state").
	Consumer string

	// MaxBatch is the largest number of commands applied in one store
	// transaction. Default DefaultMaxBatch.
	MaxBatch int
	// MaxBatchBytes bounds the bytes one transaction writes (records,
	// indexes, outbox). A batch that would exceed it is cut and the rest
	// goes into the next transaction; a single command always fits, since a
	// record is at most kv.MaxValueSize. Default DefaultMaxBatchBytes; at
	// most kv.MaxTxnWriteBytes/2.
	MaxBatchBytes int
	// MaxBatchWait is how long the loop waits for more commands once it
	// holds one, when fewer than MaxBatch are ready. Zero (the default)
	// commits at once whatever is ready: commands that arrive while a batch
	// commits form the next batch (group commit), which gives a lone writer
	// the lowest latency and still fills batches under load.
	MaxBatchWait time.Duration

	// MaxExpiryBatch is the most leases expired in one transaction. The
	// loop expires due leases a slice at a time and applies the commands
	// that are waiting between two slices. Default DefaultMaxExpiryBatch.
	MaxExpiryBatch int

	// LeaseSweepInterval is the longest the loop sleeps without looking at
	// the lease index. Expiry is driven by a timer set to the earliest lease;
	// this bounds that timer so that a wall-clock step is noticed. Default
	// DefaultLeaseSweepInterval.
	LeaseSweepInterval time.Duration
	// AckWait is the consumer's ack wait. Default DefaultAckWait.
	AckWait time.Duration
	// GetWait is how long a get with min_seq but without wait_ms waits
	// before it answers 504. Default DefaultGetWait; at most MaxGetWait.
	GetWait time.Duration
	// MaxGetWait is the longest a get waits whatever its wait_ms; a larger
	// wait_ms is lowered to it. Default DefaultMaxGetWait.
	MaxGetWait time.Duration
	// MaxListLimit is the largest page a list answers; larger limits are
	// lowered to it. Default DefaultMaxListLimit.
	MaxListLimit int
	// ShutdownTimeout bounds the final commit and audit flush after Run's
	// context is done. Default DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// OutboxIdleFlush is how long the loop stays idle before it clears
	// acknowledged audit outbox entries in a transaction of their own
	// (under load they are cleared in the next batch). Default
	// DefaultOutboxIdleFlush.
	OutboxIdleFlush time.Duration
	// AppendAudit, when set, returns the appender that writes each
	// outcome's audit event to the audit log in the transaction tx that
	// applies the command (subject, Nats-Msg-Id, payload, time), instead
	// of keeping it in the outbox and publishing it to CODI_AUDIT for the
	// audit service's own commit: one commit per batch for state and
	// audit. One appender serves a whole batch's transaction and is
	// flushed before it commits. It needs the store the audit service
	// appends to (audit.NewAppender over a shared store). nil (the
	// default) keeps the outbox.
	AppendAudit func(tx kv.Txn) AuditAppender
}

// AuditAppender appends audit records inside one store transaction
// (audit.Appender): Append for each outcome, in order, then Flush before
// the transaction commits. It belongs to that transaction.
type AuditAppender interface {
	Append(subject, msgID string, data []byte, t time.Time) error
	Flush() error
}

// Validate fills defaults into zero fields and reports a configuration that
// cannot work with an error wrapping ErrConfig. It writes to c, so it must
// not run concurrently with other uses of the same Config; calling it again
// is harmless.
func (c *Config) Validate() error {
	if c.Stream == "" {
		c.Stream = bus.StreamState
	}
	if c.Consumer == "" {
		c.Consumer = DefaultConsumer
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.MaxExpiryBatch == 0 {
		c.MaxExpiryBatch = DefaultMaxExpiryBatch
	}
	if c.LeaseSweepInterval == 0 {
		c.LeaseSweepInterval = DefaultLeaseSweepInterval
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxGetWait == 0 {
		c.MaxGetWait = DefaultMaxGetWait
	}
	if c.GetWait == 0 {
		c.GetWait = min(DefaultGetWait, c.MaxGetWait)
	}
	if c.MaxListLimit == 0 {
		c.MaxListLimit = DefaultMaxListLimit
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.OutboxIdleFlush == 0 {
		c.OutboxIdleFlush = DefaultOutboxIdleFlush
	}
	switch {
	case c.MaxBatch < 1 || c.MaxBatch > 100_000:
		return fmt.Errorf("%w: max batch %d outside 1..100000", ErrConfig, c.MaxBatch)
	case c.MaxBatchBytes < 4*kv.MaxValueSize || c.MaxBatchBytes > kv.MaxTxnWriteBytes/2:
		return fmt.Errorf("%w: max batch bytes %d outside %d..%d", ErrConfig, c.MaxBatchBytes, 4*kv.MaxValueSize, kv.MaxTxnWriteBytes/2)
	case c.MaxExpiryBatch < 1 || c.MaxExpiryBatch > 100_000:
		return fmt.Errorf("%w: max expiry batch %d outside 1..100000", ErrConfig, c.MaxExpiryBatch)
	case c.MaxBatchWait < 0 || c.MaxBatchWait > time.Second:
		return fmt.Errorf("%w: max batch wait %v outside 0..1s", ErrConfig, c.MaxBatchWait)
	case c.LeaseSweepInterval < time.Millisecond:
		return fmt.Errorf("%w: lease sweep interval %v below 1ms", ErrConfig, c.LeaseSweepInterval)
	case c.AckWait < time.Second:
		return fmt.Errorf("%w: ack wait %v below 1s", ErrConfig, c.AckWait)
	case c.MaxGetWait < 0 || c.GetWait < 0 || c.ShutdownTimeout < 0 || c.OutboxIdleFlush < 0:
		return fmt.Errorf("%w: durations must be positive", ErrConfig)
	case c.GetWait > c.MaxGetWait:
		return fmt.Errorf("%w: get wait %v above max get wait %v", ErrConfig, c.GetWait, c.MaxGetWait)
	case c.MaxListLimit < 1:
		return fmt.Errorf("%w: max list limit %d below 1", ErrConfig, c.MaxListLimit)
	}
	return nil
}
