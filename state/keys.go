package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/codi2/codi2/internal/kv"
)

// Key layout (kv.Tuple, so the bytes are the same on bbolt and FoundationDB):
//
//	("state", kind, id)                  -> tag byte + CRC-32C (4 bytes) + record JSON (live or tombstone)
//	("lease", expires_unix_nano, kind, id) -> empty; one per record with a lease
//	("outbox", seq, msg_id)              -> Tuple{subject, msg_id, audit JSON}
//	("meta", "applied", stream)          -> last applied stream sequence, 8 bytes big endian
//
// Every index entry is written in the same transaction as the record it
// points to. Tombstones keep the last revision of a deleted or expired
// record so that revisions keep growing when it is created again.
const (
	prefixState  = "state"
	prefixLease  = "lease"
	prefixOutbox = "outbox"
	prefixMeta   = "meta"
)

// Tags of a stored record value. The checksummed tags carry a CRC-32C
// (Castagnoli, big endian) of the key followed by the JSON, so that a
// flipped byte in the value, or a value found under another key, is caught
// when it is read. Values written before the checksum (tags 1 and 2) are
// read without one; every write uses the checksummed tags.
const (
	tagLive         byte = 1
	tagTombstone    byte = 2
	tagLiveSum      byte = 3
	tagTombstoneSum byte = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sealStored is the stored value of the record JSON body under key.
func sealStored(key []byte, tombstone bool, body []byte) []byte {
	tag := tagLiveSum
	if tombstone {
		tag = tagTombstoneSum
	}
	v := make([]byte, 5, 5+len(body))
	v[0] = tag
	binary.BigEndian.PutUint32(v[1:], recordSum(key, body))
	return append(v, body...)
}

func recordSum(key, body []byte) uint32 {
	return crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, body)
}

// openStored checks the stored value v of key and returns its record JSON
// and whether it is live (not a tombstone). A value that is too short, has
// an unknown tag or fails its checksum is an error matching ErrCorrupt that
// names the record.
func openStored(key, v []byte) (body []byte, live bool, err error) {
	if len(v) > 0 {
		switch v[0] {
		case tagLive, tagTombstone:
			if len(v) >= 2 {
				return v[1:], v[0] == tagLive, nil
			}
		case tagLiveSum, tagTombstoneSum:
			if len(v) >= 6 {
				body = v[5:]
				if binary.BigEndian.Uint32(v[1:]) != recordSum(key, body) {
					return nil, false, fmt.Errorf("%w: record %s: checksum mismatch", ErrCorrupt, recordName(key))
				}
				return body, v[0] == tagLiveSum, nil
			}
		}
	}
	return nil, false, fmt.Errorf("%w: record %s: bad value (%d bytes)", ErrCorrupt, recordName(key), len(v))
}

// recordName is kind/id of a record key, for errors.
func recordName(key []byte) string {
	t, err := kv.Unpack(key)
	if err != nil || len(t) != 3 {
		return fmt.Sprintf("%q", key)
	}
	return fmt.Sprintf("%v/%v", t[1], t[2])
}

// The keys a command writes are packed element by element, as the index
// keys are (index.go): the bytes kv.Tuple.Pack gives, without boxing.

func stateKey(kind, id string) []byte {
	b := make([]byte, 0, len(prefixState)+len(kind)+len(id)+6)
	b = kv.AppendString(b, prefixState)
	b = kv.AppendString(b, kind)
	return kv.AppendString(b, id)
}

func leaseKey(expires time.Time, kind, id string) []byte {
	b := make([]byte, 0, len(prefixLease)+len(kind)+len(id)+16)
	b = kv.AppendString(b, prefixLease)
	b = kv.AppendInt(b, expires.UnixNano())
	b = kv.AppendString(b, kind)
	return kv.AppendString(b, id)
}

func outboxKey(seq uint64, msgID string) []byte {
	b := make([]byte, 0, len(prefixOutbox)+len(msgID)+16)
	b = kv.AppendString(b, prefixOutbox)
	b = kv.AppendInt(b, int64(seq))
	return kv.AppendString(b, msgID)
}

func appliedKey(stream string) []byte { return kv.Tuple{prefixMeta, "applied", stream}.Pack() }

// stored is a record as kept in the store: the record and whether it is a
// tombstone.
type stored struct {
	Record
	tombstone bool
}

func encodeStored(r Record, tombstone bool) ([]byte, error) {
	v, _, err := encodeStoredBody(r, tombstone)
	return v, err
}

// encodeStoredBody is encodeStored that also returns the record's JSON
// (body, without Fields for a tombstone): what json.Marshal(r) gives, for
// an event to carry without encoding r again.
func encodeStoredBody(r Record, tombstone bool) (v, body []byte, err error) {
	return encodeStoredAt(stateKey(r.Kind, r.ID), r, tombstone)
}

// encodeStoredAt is encodeStoredBody with key, r's state key, built
// already.
func encodeStoredAt(key []byte, r Record, tombstone bool) (v, body []byte, err error) {
	if tombstone {
		r.Fields = nil
	}
	if v, ok := appendRecord(make([]byte, 5, 5+recordSizeHint(&r)), &r); ok {
		// The value is sealed in place: body is its tail.
		body = v[5:len(v):len(v)]
		v[0] = tagLiveSum
		if tombstone {
			v[0] = tagTombstoneSum
		}
		binary.BigEndian.PutUint32(v[1:], recordSum(key, body))
		return v, body, nil
	}
	body, err = json.Marshal(r)
	if err != nil {
		return nil, nil, err
	}
	return sealStored(key, tombstone, body), body, nil
}

// getStored reads the record at kind/id. ok is false when there is neither a
// record nor a tombstone.
//
// Through a stagedTxn, a live record an operation before staged is taken
// as planning built it, not decoded again.
func getStored(tx kv.ReadTxn, kind, id string) (st stored, ok bool, err error) {
	return getStoredAt(tx, stateKey(kind, id))
}

// getStoredAt is getStored of key, the record's state key.
func getStoredAt(tx kv.ReadTxn, key []byte) (st stored, ok bool, err error) {
	if u, staged := tx.(*stagedTxn); staged {
		if r := u.record(key); r != nil {
			return stored{Record: *r}, true, nil
		}
	}
	v, err := tx.Get(key)
	if errors.Is(err, kv.ErrNotFound) {
		return stored{}, false, nil
	}
	if err != nil {
		return stored{}, false, err
	}
	st, err = decodeStored(key, v)
	return st, err == nil, err
}

func decodeStored(key, v []byte) (stored, error) {
	body, live, err := openStored(key, v)
	if err != nil {
		return stored{}, err
	}
	var st stored
	if r, ok := parseRecord(body); ok {
		st.Record = r
	} else if err := json.Unmarshal(body, &st.Record); err != nil {
		return stored{}, fmt.Errorf("%w: record %s: %v", ErrCorrupt, recordName(key), err)
	}
	st.tombstone = !live
	return st, nil
}

func getApplied(tx kv.ReadTxn, stream string) (uint64, error) {
	seq, _, err := getAppliedAt(tx, stream)
	return seq, err
}

// getAppliedAt returns the applied watermark: the last applied sequence of
// stream (8 bytes, big endian) and the time JetStream stored that command
// (8 more bytes, Unix nanoseconds), zero when the store predates it.
func getAppliedAt(tx kv.ReadTxn, stream string) (uint64, time.Time, error) {
	v, err := tx.Get(appliedKey(stream))
	if errors.Is(err, kv.ErrNotFound) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, err
	}
	if len(v) != 8 && len(v) != 16 {
		return 0, time.Time{}, fmt.Errorf("state: corrupt applied sequence (%d bytes)", len(v))
	}
	var at time.Time
	if len(v) == 16 {
		at = time.Unix(0, int64(binary.BigEndian.Uint64(v[8:])))
	}
	return binary.BigEndian.Uint64(v), at, nil
}

// encodeApplied is the value getAppliedAt reads; a zero at (not known)
// leaves the time out.
func encodeApplied(seq uint64, at time.Time) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), seq)
	if at.IsZero() {
		return b
	}
	return binary.BigEndian.AppendUint64(b, uint64(at.UnixNano()))
}

// firstLease returns the expiry time of the earliest lease, or the zero time.
func firstLease(tx kv.ReadTxn) (time.Time, error) {
	begin, end := kv.Tuple{prefixLease}.Range()
	kvs, err := tx.GetRange(begin, end, kv.RangeOptions{Limit: 1})
	if err != nil || len(kvs) == 0 {
		return time.Time{}, err
	}
	t, err := kv.Unpack(kvs[0].Key)
	if err != nil || len(t) != 4 {
		return time.Time{}, fmt.Errorf("state: corrupt lease key: %v", err)
	}
	ns, _ := t[1].(int64)
	return time.Unix(0, ns).UTC(), nil
}
