package bus

import (
	"context"
	"errors"
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
	mk := func(name, desc, subject string, maxAge time.Duration, maxBytes int64) jetstream.StreamConfig {
		if maxBytes == 0 {
			maxBytes = DefaultStreamMaxBytes
		}
		return jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    []string{subject},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      maxAge,
			MaxBytes:    maxBytes,
			MaxMsgSize:  cfg.MaxPayload,
			Duplicates:  cfg.DuplicateWindow,
			Replicas:    cfg.Replicas,
		}
	}
	return []jetstream.StreamConfig{
		mk(StreamMsg, "codi2 agent messages", subjects.MsgWildcard, cfg.MsgMaxAge, cfg.MsgMaxBytes),
		mk(StreamState, "codi2 state commands", subjects.StateCmdWildcard, cfg.StateMaxAge, cfg.StateMaxBytes),
		mk(StreamAudit, "codi2 audit events", subjects.AuditLogWildcard, cfg.AuditMaxAge, cfg.AuditMaxBytes),
	}
}

// EnsureStreams creates the contract streams or updates them to the
// configuration of cfg. It is idempotent and safe to run on every start. A
// refusal for lack of storage wraps ErrDiskLimits and names the numbers.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	for _, sc := range StreamConfigs(cfg) {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("bus: stream %s: %w", sc.Name, explainStorage(ctx, js, sc, err))
		}
	}
	return nil
}

// ResumeAfter returns the sequence a service that keeps its own watermark
// of applied stream sequences goes on after. applied is that watermark and
// at when JetStream stored the message applied there (zero when not
// known). It is applied unless the stream handed its sequence numbers out
// again (it was recreated, or lost an unsynced tail in a power loss): then
// the stream ends below applied, or holds a message at applied stored after
// at, and moved is true. The service then goes on after the last message
// stored at or before at (LastStoredBy): the newer ones are new, not
// redeliveries. With at unknown only a stream that ends below applied is
// noticed, and every message it holds is taken as applied.
func ResumeAfter(ctx context.Context, stream jetstream.Stream, applied uint64, at time.Time) (seq uint64, moved bool, err error) {
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("bus: stream %s: %w", stream.CachedInfo().Config.Name, err)
	}
	st := info.State
	moved = st.LastSeq < applied
	if !moved && !at.IsZero() {
		if moved, err = StoredAfter(ctx, stream, applied, at); err != nil {
			return 0, false, err
		}
	}
	switch {
	case !moved:
		return applied, false, nil
	case at.IsZero():
		return st.LastSeq, true, nil
	}
	seq, err = LastStoredBy(ctx, stream, st.FirstSeq, st.LastSeq, at)
	return seq, err == nil, err
}

// LastStoredBy returns the last sequence in first..last of stream whose
// message JetStream stored at or before t, or first-1 when there is none
// (first 0 counts as 1). A sequence without a message (deleted) takes the
// time of the next message. It reads about log2(last-first) messages; it
// assumes stored times do not decrease along the stream, which holds unless
// the server's clock steps back.
//
// A service that keeps its own watermark of applied stream sequences uses
// it when the stream's sequence went back below that watermark (the stream
// was recreated, or lost an unsynced tail in a power loss): messages stored
// after the last one it applied are new, the others it has.
func LastStoredBy(ctx context.Context, stream jetstream.Stream, first, last uint64, t time.Time) (uint64, error) {
	lo, hi := max(first, 1), last
	keep := lo - 1
	for lo <= hi {
		mid := lo + (hi-lo)/2
		at, found, err := storedFrom(ctx, stream, mid, hi)
		if err != nil {
			return 0, err
		}
		if found && !at.After(t) {
			keep, lo = mid, mid+1
		} else {
			hi = mid - 1
		}
	}
	return keep, nil
}

// storedFrom returns the stored time of the first message at or after seq
// and at or before hi; found is false when there is none.
func storedFrom(ctx context.Context, stream jetstream.Stream, seq, hi uint64) (at time.Time, found bool, err error) {
	for ; seq <= hi; seq++ {
		msg, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return time.Time{}, false, fmt.Errorf("bus: stream %s message %d: %w", stream.CachedInfo().Config.Name, seq, err)
		}
		return msg.Time, true, nil
	}
	return time.Time{}, false, nil
}

// StoredAfter reports whether stream holds a message at seq that JetStream
// stored after t. A service that applied seq, and recorded when the message
// it applied was stored, uses it at start to notice that seq was handed out
// again to another message (the stream was recreated, or lost its tail)
// even when the stream has grown back past its watermark.
func StoredAfter(ctx context.Context, stream jetstream.Stream, seq uint64, t time.Time) (bool, error) {
	if seq == 0 {
		return false, nil
	}
	at, found, err := storedFrom(ctx, stream, seq, seq)
	return found && at.After(t), err
}

// RecreateStream returns the stream cfg names, creating it with cfg when it
// does not exist: a service whose stream was deleted under it (`nats stream
// rm`) passes the configuration it last saw (its stream's CachedInfo) and
// carries on with an empty stream of the same configuration. created is
// true when this call created it; when another caller created it first,
// that stream is returned. Safe for concurrent use.
//
// A missing stream is created RecreateSettle after it was found missing:
// the embedded server removes a deleted stream's files in the background,
// and a stream of the same name created within milliseconds of the delete
// had its block files removed under it (every later write failed with
// "critical write error" until a restart).
func RecreateStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (s jetstream.Stream, created bool, err error) {
	s, err = js.Stream(ctx, cfg.Name)
	if err == nil || !errors.Is(err, jetstream.ErrStreamNotFound) {
		return s, false, wrapStream(cfg.Name, err)
	}
	settle := time.NewTimer(RecreateSettle)
	defer settle.Stop()
	select {
	case <-ctx.Done():
		return nil, false, wrapStream(cfg.Name, ctx.Err())
	case <-settle.C:
	}
	s, err = js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		s, err = js.Stream(ctx, cfg.Name)
		return s, false, wrapStream(cfg.Name, err)
	}
	return s, err == nil, wrapStream(cfg.Name, err)
}

// RecreateSettle is how long RecreateStream waits between finding a stream
// missing and creating it again.
const RecreateSettle = time.Second

func wrapStream(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("bus: stream %s: %w", name, err)
}

// LostTail reports sequences a service that applied stream up to applied
// will never be handed: the stream's last sequence is past applied, but it
// holds no message after applied on filter (purged, or deleted by
// sequence, while the service was behind). A consumer delivers nothing
// then, so the loss shows only here. first..last is the range; ok is false
// when nothing is lost (or a message follows, whose delivery shows the
// gap). Safe for concurrent use.
func LostTail(ctx context.Context, stream jetstream.Stream, applied uint64, filter string) (first, last uint64, ok bool, err error) {
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, 0, false, wrapStream(stream.CachedInfo().Config.Name, err)
	}
	if info.State.LastSeq <= applied {
		return 0, 0, false, nil
	}
	_, err = stream.GetMsg(ctx, applied+1, jetstream.WithGetMsgSubject(filter))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return applied + 1, info.State.LastSeq, true, nil
	case err != nil:
		return 0, 0, false, wrapStream(info.Config.Name, err)
	}
	return 0, 0, false, nil
}
