package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/codi2/codi2/internal/kv"
)

// prefixBind keys the index of records bound to a presence:
//
//	("bind", agent, kind, id) -> empty; one per live record with BoundTo agent
//
// written and cleared in the transaction that writes the record, so that
// the end of agent/<agent> finds everything it must release with one range
// read.
const prefixBind = "bind"

func bindKey(agent, kind, id string) []byte { return kv.Tuple{prefixBind, agent, kind, id}.Pack() }

// bindWrites are the index writes of a record going from old (nil when it
// was not live) to rec (nil when it is no longer live).
func bindWrites(old, rec *Record) []write {
	var w []write
	was, is := "", ""
	if old != nil {
		was = old.BoundTo
	}
	if rec != nil {
		is = rec.BoundTo
	}
	if was == is {
		return nil
	}
	if was != "" {
		w = append(w, write{key: bindKey(was, old.Kind, old.ID), clear: true})
	}
	if is != "" {
		w = append(w, write{key: bindKey(is, rec.Kind, rec.ID), value: []byte{}})
	}
	return w
}

// releaseMsgID is the audit Nats-Msg-Id of the release of kind/id at rev
// when the presence it was bound to ended.
func releaseMsgID(gen, kind, id string, rev uint64) string {
	if gen == "" {
		return fmt.Sprintf("state-release-%s.%s.%d", kind, id, rev)
	}
	return fmt.Sprintf("state-release-%s-%s.%s.%d", gen, kind, id, rev)
}

// planPresenceEnd plans the release of every record bound to agent's
// presence, which ended at at: seq is the event's sequence (the command
// that ended it, or the watermark for an expiry). A reservation is removed;
// any other record keeps its fields except HolderField, and loses its lease
// and binding. Each release is an OpRelease event and audit record by
// Actor. It only reads tx; a record that cannot be read (corrupt) keeps
// its binding index entry dropped and is left as it is.
func planPresenceEnd(tx kv.ReadTxn, agent string, at time.Time, seq uint64, gen string) ([]write, []outcome, error) {
	begin, end := kv.Tuple{prefixBind, agent}.Range()
	kvs, err := tx.GetRange(begin, end, kv.RangeOptions{})
	if err != nil {
		return nil, nil, err
	}
	var (
		writes   []write
		outcomes []outcome
	)
	for _, p := range kvs {
		writes = append(writes, write{key: p.Key, clear: true})
		t, err := kv.Unpack(p.Key)
		if err != nil || len(t) != 4 {
			return nil, nil, fmt.Errorf("state: corrupt binding key: %v", err)
		}
		kind, _ := t[2].(string)
		id, _ := t[3].(string)
		st, ok, err := getStored(tx, kind, id)
		if errors.Is(err, ErrCorrupt) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if !ok || st.tombstone || st.BoundTo != agent {
			continue
		}
		rel := Record{Kind: kind, ID: id, Rev: st.Rev + 1, UpdatedBy: Actor, UpdatedAt: at.UTC(), Seq: seq}
		tombstone := kind == KindReservation
		if !tombstone {
			rel.Fields = maps.Clone(st.Fields)
			if rel.Fields == nil {
				rel.Fields = map[string]json.RawMessage{}
			}
			delete(rel.Fields, HolderField)
		}
		val, err := encodeStored(rel, tombstone)
		if err != nil {
			return nil, nil, err
		}
		if st.ExpiresAt != nil {
			writes = append(writes, write{key: leaseKey(*st.ExpiresAt, kind, id), clear: true})
		}
		writes = append(writes, write{key: stateKey(kind, id), value: val})
		ev := Event{Seq: seq, Status: StatusApplied, Rev: rel.Rev, Actor: Actor, Op: OpRelease}
		if !tombstone {
			ev.Record = &rel
		}
		outcomes = append(outcomes, newOutcome(seq, kind, id, ev, releaseMsgID(gen, kind, id, rel.Rev)))
	}
	return writes, outcomes, nil
}
