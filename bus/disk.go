package bus

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go/jetstream"
)

// Bounds of a stream limit derived from the disk.
const (
	// minDerivedMaxBytes is the smallest derived limit: a few messages of
	// the largest size.
	minDerivedMaxBytes = 4 * DefaultMaxPayload
	// diskShare is the divisor of the room a stream's derived limit gets:
	// three streams take at most 3/8 of it, leaving the rest to the stores
	// (state.db, audit.db), which grow beside them.
	diskShare = 8
)

// Disk is what the disk holding the embedded server's data offers the
// streams, in bytes.
type Disk struct {
	// Dir is the directory measured (DataDir/jetstream).
	Dir string
	// Total is the filesystem's size.
	Total int64
	// Free is what an unprivileged writer can still use.
	Free int64
	// InStreams is what each contract stream's files already take, by
	// stream name.
	InStreams map[string]int64
}

// Room is what the streams can ever hold on this disk: the free space plus
// what they already use.
func (d Disk) Room() int64 {
	room := d.Free
	for _, n := range d.InStreams {
		room += n
	}
	return room
}

// MeasureDisk measures the filesystem holding dir/jetstream and the files
// of the contract streams in it (nats-server's layout: the global account's
// streams under jetstream/$G/streams/<name>).
func MeasureDisk(dataDir string) (Disk, error) {
	dir := filepath.Join(dataDir, "jetstream")
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return Disk{}, fmt.Errorf("bus: disk of %s: %w", dir, err)
	}
	d := Disk{
		Dir:       dir,
		Total:     int64(st.Blocks) * st.Bsize,
		Free:      int64(st.Bavail) * st.Bsize,
		InStreams: make(map[string]int64, 3),
	}
	for _, name := range []string{StreamMsg, StreamState, StreamAudit} {
		d.InStreams[name] = dirBytes(filepath.Join(dir, "$G", "streams", name))
	}
	return d, nil
}

// dirBytes sums the sizes of the files under dir (0 when it is missing).
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		if info, err := e.Info(); err == nil {
			n += info.Size()
		}
		return nil
	})
	return n
}

// DiskLimits fills the zero stream limits of cfg from the disk and checks
// the given ones, for the embedded server:
//
//   - a derived limit is an eighth of the filesystem's size, but at most a
//     quarter of the room (free space plus what the streams hold), at least
//     4 MiB, at most DefaultStreamMaxBytes, and never below what its stream
//     already holds, so no start discards stored messages and any disk that
//     holds the data starts;
//   - a given limit below what its stream holds, or given limits that add up
//     (with the derived ones) to more than the room, fail with ErrDiskLimits
//     naming the numbers.
func DiskLimits(cfg *Config, d Disk) error {
	room := d.Room()
	derived := min(max(min(d.Total/diskShare, room/4), minDerivedMaxBytes), DefaultStreamMaxBytes)
	limits := []struct {
		name, flag string
		v          *int64
	}{
		{StreamMsg, "msg-max-bytes", &cfg.MsgMaxBytes},
		{StreamState, "state-max-bytes", &cfg.StateMaxBytes},
		{StreamAudit, "audit-stream-max-bytes", &cfg.AuditMaxBytes},
	}
	var sum int64
	var given bool
	var parts []string
	for _, l := range limits {
		held := d.InStreams[l.name]
		switch {
		case *l.v == 0:
			*l.v = max(derived, held)
		case *l.v < held:
			return fmt.Errorf("%w: %s holds %s on disk, more than its limit %s (--%s): the oldest messages would be discarded; raise the limit",
				ErrDiskLimits, l.name, FormatBytes(held), FormatBytes(*l.v), l.flag)
		default:
			given = true
		}
		sum += *l.v
		parts = append(parts, fmt.Sprintf("%s %s", l.name, FormatBytes(*l.v)))
	}
	if given && sum > room {
		return fmt.Errorf("%w: the stream limits add up to %s (%s) but the disk at %s has room for %s (%s free of %s, %s already in the streams); lower --msg-max-bytes, --state-max-bytes or --audit-stream-max-bytes",
			ErrDiskLimits, FormatBytes(sum), strings.Join(parts, ", "), d.Dir, FormatBytes(room), FormatBytes(d.Free), FormatBytes(d.Total), FormatBytes(room-d.Free))
	}
	return nil
}

// embeddedMaxStore is the embedded server's JetStream store limit. The
// streams' limits are checked against the disk by DiskLimits, which knows
// what they already hold; nats-server's own check reserves every stream's
// limit against 75% of the free space (refusing a small disk that holds the
// data) and counts the limits recovered from disk before an update can
// lower them. So its check is set out of the way.
const embeddedMaxStore = 1 << 50

// explainStorage adds the numbers to JetStream's "insufficient storage
// resources available" refusal of stream sc: what was asked for, and what
// the account may reserve and has reserved.
func explainStorage(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig, err error) error {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != jsErrStorageResourcesExceeded {
		return err
	}
	ai, aerr := js.AccountInfo(ctx)
	if aerr != nil {
		return fmt.Errorf("%w: %v: a limit of %s was asked for", ErrDiskLimits, err, FormatBytes(sc.MaxBytes))
	}
	limit := "no account limit"
	if ai.Limits.MaxStore >= 0 {
		limit = "the account may reserve " + FormatBytes(ai.Limits.MaxStore)
	}
	return fmt.Errorf("%w: %v: a limit of %s was asked for %s; %s and has reserved %s (%s in use); lower its limit flag",
		ErrDiskLimits, err, FormatBytes(sc.MaxBytes), sc.Name, limit, FormatBytes(int64(ai.ReservedStore)), FormatBytes(int64(ai.Store)))
}

// jsErrStorageResourcesExceeded is JetStream's error code for "insufficient
// storage resources available" (nats-server JSStorageResourcesExceededErr).
const jsErrStorageResourcesExceeded jetstream.ErrorCode = 10047

// FormatBytes writes n in the largest binary unit that keeps it at or above
// one, with up to two decimals: 512 B, 4 MiB, 9.31 GiB.
func FormatBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	s := strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
	return s + " " + units[i]
}
