package state

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/codi2/codi2/internal/kv"
)

// Stream generations. The audit records of the state service carry
// Nats-Msg-Ids derived from the command's CODI_STATE sequence, and the
// audit log dedupes them: should CODI_STATE hand its sequence numbers out
// again (deleted and recreated, or its unsynced tail lost in a power loss),
// ids built from the sequence alone would repeat and the log would drop the
// new commands' records as duplicates. So every id also names the stream's
// generation, a token kept in the store under ("meta", "generation",
// stream):
//
//   - the stream's creation time in Unix nanoseconds (decimal), set when
//     the service starts on a store that has applied nothing, and whenever
//     it rebases onto a stream created at another time;
//   - that token followed by ".<n>" (n = 1, 2, ...) when it rebases onto the
//     same stream, which lost its tail.
//
// A store that applied commands before generations were kept has none:
// its ids stay `state-<seq>` (and `state-expire-<kind>.<id>.<rev>`), the
// ids its outbox and the audit log already hold, until its first rebase.

func generationKey(stream string) []byte {
	return kv.Tuple{prefixMeta, "generation", stream}.Pack()
}

// getGeneration returns the stored generation token of stream; ok is false
// when none is stored.
func getGeneration(tx kv.ReadTxn, stream string) (gen string, ok bool, err error) {
	v, err := tx.Get(generationKey(stream))
	if errors.Is(err, kv.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return string(v), true, nil
}

// nextGeneration is the token of a generation that follows cur on a stream
// created at created.
func nextGeneration(cur string, created time.Time) string {
	base := strconv.FormatInt(created.UnixNano(), 10)
	if cur == base {
		return base + ".1"
	}
	if rest, ok := strings.CutPrefix(cur, base+"."); ok {
		if n, err := strconv.ParseUint(rest, 10, 32); err == nil {
			return base + "." + strconv.FormatUint(n+1, 10)
		}
	}
	return base
}

// commandMsgID is the Nats-Msg-Id of the audit record of the command at
// seq: state-<gen>-<seq>, or state-<seq> in a store without a generation.
func commandMsgID(gen string, seq uint64) string {
	if gen == "" {
		return "state-" + strconv.FormatUint(seq, 10)
	}
	return "state-" + gen + "-" + strconv.FormatUint(seq, 10)
}

// expiryMsgID is the Nats-Msg-Id of the audit record of the expiry that
// made revision rev of kind/id: kinds and ids hold no '.', so it is unique
// per expiry within a store.
func expiryMsgID(gen, kind, id string, rev uint64) string {
	if gen == "" {
		return fmt.Sprintf("state-expire-%s.%s.%d", kind, id, rev)
	}
	return fmt.Sprintf("state-expire-%s-%s.%s.%d", gen, kind, id, rev)
}

// lostMsgID is the Nats-Msg-Id of the audit record of stream seqs
// first..last found missing from the stream.
func lostMsgID(gen string, first, last uint64) string {
	if gen == "" {
		return fmt.Sprintf("state-lost-%d-%d", first, last)
	}
	return fmt.Sprintf("state-lost-%s-%d-%d", gen, first, last)
}
