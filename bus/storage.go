package bus

import (
	"fmt"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Recovery from a full disk.
const (
	// recoverFree is the free space the disk must have again before the
	// embedded server's JetStream is reloaded after a stream failed a
	// write: room for a few of the largest messages and the index files.
	recoverFree = 4 * DefaultMaxPayload
	// recoverPoll is how often the free space is looked at while a stream
	// cannot write.
	recoverPoll = 200 * time.Millisecond
)

// writeErrRE matches nats-server's log line for a stream whose file store
// failed a write (filestore.go setWriteErr: "Filestore [<stream>] Critical
// write error: <error>"). From then on that store refuses every write until
// it is loaded again.
var writeErrRE = regexp.MustCompile(`^Filestore \[([^\]\s]+)\] Critical write error: (.*)$`)

// storageFaults records the streams whose file store failed a write, as the
// embedded server logs them. Safe for concurrent use.
type storageFaults struct {
	mu     sync.Mutex
	faults map[string]string // stream -> error
	notify chan struct{}     // gets a value when a fault is recorded
}

func newStorageFaults() *storageFaults {
	return &storageFaults{faults: map[string]string{}, notify: make(chan struct{}, 1)}
}

// observe looks at one error line of the server's log.
func (f *storageFaults) observe(msg string) {
	if m := writeErrRE.FindStringSubmatch(msg); m != nil {
		f.set(m[1], m[2])
	}
}

// set records that stream cannot write because of err, unless it already
// is recorded.
func (f *storageFaults) set(stream, err string) {
	f.mu.Lock()
	if _, ok := f.faults[stream]; !ok {
		f.faults[stream] = err
	}
	f.mu.Unlock()
	select {
	case f.notify <- struct{}{}:
	default:
	}
}

func (f *storageFaults) any() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.faults) > 0
}

func (f *storageFaults) clear() {
	f.mu.Lock()
	f.faults = map[string]string{}
	f.mu.Unlock()
}

// problems describes each fault in a sentence, sorted by stream.
func (f *storageFaults) problems() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for stream, err := range f.faults {
		out = append(out, fmt.Sprintf("stream %s cannot write (%s); it is reloaded once the disk has %s free",
			stream, err, FormatBytes(recoverFree)))
	}
	sort.Strings(out)
	return out
}

// watchStorage runs while the embedded server does, until quit is closed.
// nats-server keeps a stream whose files failed a write (a full disk)
// unwritable until its files are loaded again; so once a fault is recorded
// it waits for the disk to have recoverFree bytes free and reloads
// JetStream: every stream and consumer is recovered from its files, clients
// see JetStream unavailable for that moment, and the services' consumers
// resume (what they had not acked is redelivered, and skipped up to their
// watermarks).
func (b *Bus) watchStorage(quit <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	poll := time.NewTicker(recoverPoll)
	defer poll.Stop()
	for {
		select {
		case <-quit:
			return
		case <-b.faults.notify:
		case <-poll.C:
		}
		if !b.faults.any() {
			continue
		}
		d, err := MeasureDisk(b.cfg.DataDir)
		if err != nil || d.Free < recoverFree {
			continue
		}
		problems := b.faults.problems()
		b.faults.clear()
		if err := b.reloadJetStream(); err != nil {
			b.log.Error().Err(err).Strs("problems", problems).Msg("reload JetStream after a failed write")
			for _, name := range []string{StreamMsg, StreamState, StreamAudit} {
				b.faults.set(name, err.Error())
			}
			continue
		}
		b.log.Warn().Strs("problems", problems).Str("free", FormatBytes(d.Free)).
			Msg("the disk has room again: JetStream reloaded, the streams write again")
	}
}

// reloadJetStream shuts the embedded server's JetStream down and enables it
// again with the options it started with (as nats-server's own
// restartJetStream does on a configuration reload).
func (b *Bus) reloadJetStream() error {
	if err := b.srv.ShutdownJetStream(); err != nil {
		return fmt.Errorf("bus: shut JetStream down: %w", err)
	}
	o := b.opts
	if err := b.srv.EnableJetStream(&server.JetStreamConfig{
		StoreDir:     o.StoreDir,
		SyncInterval: o.SyncInterval,
		SyncAlways:   o.SyncAlways,
		MaxMemory:    o.JetStreamMaxMemory,
		MaxStore:     o.JetStreamMaxStore,
		Strict:       !o.NoJetStreamStrict,
	}); err != nil {
		return fmt.Errorf("bus: enable JetStream: %w", err)
	}
	return nil
}
