package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go/jetstream"
)

// The contract's stream names.
const (
	StreamMsg   = "CODI_MSG"
	StreamState = "CODI_STATE"
	StreamAudit = "CODI_AUDIT"
)

// StreamConfigs returns the configuration of the three contract streams for
// cfg (which must have been validated): file storage, limits retention with
// the configured age and size, the duplicate window for Nats-Msg-Id, and a
// per-message size of cfg.MaxPayload.
func StreamConfigs(cfg Config) []jetstream.StreamConfig {
	mk := func(name, desc, subject string, maxAge time.Duration) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    []string{subject},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      maxAge,
			MaxBytes:    cfg.StreamMaxBytes,
			MaxMsgSize:  cfg.MaxPayload,
			Duplicates:  cfg.DuplicateWindow,
			Replicas:    cfg.Replicas,
		}
	}
	return []jetstream.StreamConfig{
		mk(StreamMsg, "codi2 agent messages", subjects.MsgWildcard, cfg.MsgMaxAge),
		mk(StreamState, "codi2 state commands", subjects.StateCmdWildcard, cfg.StateMaxAge),
		mk(StreamAudit, "codi2 audit events", subjects.AuditLogWildcard, cfg.AuditMaxAge),
	}
}

// EnsureStreams creates the contract streams or updates them to the
// configuration of cfg. It is idempotent and safe to run on every start.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	for _, sc := range StreamConfigs(cfg) {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("bus: stream %s: %w", sc.Name, err)
		}
	}
	return nil
}
