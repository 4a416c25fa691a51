package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go/jetstream"
)

// auditCategory is the audit category of every command's and expiry's
// audit event.
const auditCategory = "state"

// LostCategory is the audit category of the event recording CODI_STATE
// sequences that were missing from the stream when the service reached
// them (subject codi.audit.log.codi-state.lost, payload Lost).
const LostCategory = "lost"

// Lost is the payload of a LostCategory audit event: commands with a PubAck
// (FirstSeq through LastSeq of Stream) that were purged, deleted or expired
// from the stream before the service applied them. The watermark moves past
// them only in the transaction that stores this event.
//
// Reason is empty for commands found missing from the stream, and
// LostRecreated when the stream itself was deleted under the service:
// then LastSeq is the last sequence the service knew the old stream had
// (it may have held more), and Count may be 0 (nothing was pending).
type Lost struct {
	Stream   string `json:"stream"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Count    uint64 `json:"count"`
	Reason   string `json:"reason,omitempty"`
}

// LostRecreated is the Reason of a Lost event for a deleted stream.
const LostRecreated = "stream recreated"

// maxDetail bounds the detail string of a rejection.
const maxDetail = 512

// inMsg is one delivered command and the metadata the loop needs of it.
type inMsg struct {
	msg     jetstream.Msg
	seq     uint64    // CODI_STATE stream sequence
	cseq    uint64    // consumer (delivery) sequence
	time    time.Time // when JetStream stored it, UTC
	subject string
	data    []byte
}

// write is one store mutation planned by a command.
type write struct {
	key, value []byte
	clear      bool
}

func (w write) size() int { return len(w.key) + len(w.value) }

// outcome is what one command or expiry produced: an event for
// codi.state.evt.<kind>.<id> (when evtSubject is set) and an audit record
// (always), already encoded.
type outcome struct {
	seq        uint64
	evtSubject string
	evt        []byte
	audit      outboxEntry
	// For logging only.
	status     Status
	reason     Reason
	detail     string
	actor      string
	kind, id   string
	op         Op
	rawSubject string // a command subject that did not parse
}

// outboxEntry is one audit event waiting to be published and acknowledged.
type outboxEntry struct {
	key     []byte
	subject string
	msgID   string
	data    []byte
}

// plan is the result of applying one command against a transaction: the
// writes to make and the outcomes to report. It has no effects of its own.
type plan struct {
	writes   []write
	outcomes []outcome
}

func (p *plan) size() int {
	n := 0
	for _, w := range p.writes {
		n += w.size()
	}
	for _, o := range p.outcomes {
		n += len(o.audit.key) + len(o.audit.data) + len(o.audit.subject) + len(o.audit.msgID) + 8
	}
	return n
}

// planCommand decides the outcome of im against the state read through tx.
// watermark is the last sequence applied before im. It only reads; the
// caller makes the writes. An error is a store failure, never a bad command:
// bad commands are rejected with an outcome.
//
// gen is the stream's generation token (see generation.go), part of every
// audit Nats-Msg-Id.
func planCommand(tx kv.ReadTxn, im *inMsg, watermark uint64, gen string) (plan, error) {
	var p plan
	subj, err := subjects.Parse(im.subject)
	if err == nil && subj.Type != subjects.TypeStateCmd {
		err = fmt.Errorf("%q is not a state command subject", im.subject)
	}
	if err != nil {
		p.outcomes = append(p.outcomes, rejectSubject(im, gen, err))
		return p, nil
	}
	kind, id, actor := subj.Kind, subj.ID, subj.Actor
	cmd, err := decodeCommand(im.data)
	if err != nil {
		p.outcomes = append(p.outcomes, reject(im, gen, kind, id, actor, rawOp(im.data), ReasonBadRequest, 0, err.Error()))
		return p, nil
	}
	st, exists, err := getStored(tx, kind, id)
	if errors.Is(err, ErrCorrupt) || errors.Is(err, kv.ErrCorrupt) {
		// The command cannot be decided on a record that is not what was
		// written; other records carry on.
		p.outcomes = append(p.outcomes, reject(im, gen, kind, id, actor, cmd.op, ReasonCorrupt, 0, err.Error()))
		return p, nil
	}
	if err != nil {
		return plan{}, fmt.Errorf("state: read %s/%s: %w", kind, id, err)
	}
	// A lease that ended before this command was stored expires first, so
	// the command sees what an agent would expect at its own time.
	if exists && !st.tombstone && st.ExpiresAt != nil && !st.ExpiresAt.After(im.time) {
		w, o, tomb, err := planExpiry(st.Record, watermark, gen)
		if err != nil {
			return plan{}, err
		}
		p.writes = append(p.writes, w...)
		p.outcomes = append(p.outcomes, o)
		st = stored{Record: tomb, tombstone: true}
	}
	live := exists && !st.tombstone
	var curRev uint64
	if live {
		curRev = st.Rev
	}
	if cmd.expectRev != nil && *cmd.expectRev != curRev {
		ev := rejectEvent(im, actor, cmd.op, ReasonConflict, curRev, "")
		if live {
			// The conflict names who has the record: its holder and lease.
			ev.UpdatedBy, ev.ExpiresAt, ev.Holder = st.UpdatedBy, st.ExpiresAt, st.Record.Holder()
		}
		p.outcomes = append(p.outcomes, rejectOutcome(im, gen, kind, id, ev,
			fmt.Sprintf("expected rev %d, current rev %d", *cmd.expectRev, curRev)))
		return p, nil
	}
	if cmd.op == OpDelete && !live {
		p.outcomes = append(p.outcomes, reject(im, gen, kind, id, actor, cmd.op, ReasonConflict, 0, "record does not exist"))
		return p, nil
	}

	rec := Record{Kind: kind, ID: id, Rev: st.Rev + 1, UpdatedBy: actor, UpdatedAt: im.time, Seq: im.seq}
	switch cmd.op {
	case OpPut:
		rec.Fields = make(map[string]json.RawMessage, len(cmd.fields))
		for k, v := range cmd.fields {
			if !isNull(v) {
				rec.Fields[k] = v
			}
		}
		rec.ExpiresAt = expiry(im.time, cmd.ttl, nil)
	case OpMerge:
		rec.Fields = make(map[string]json.RawMessage, len(st.Fields)+len(cmd.fields))
		var keep *time.Time
		if live {
			maps.Copy(rec.Fields, st.Fields)
			keep = st.ExpiresAt
		}
		for k, v := range cmd.fields {
			if isNull(v) {
				delete(rec.Fields, k)
			} else {
				rec.Fields[k] = v
			}
		}
		rec.ExpiresAt = expiry(im.time, cmd.ttl, keep)
	}
	tombstone := cmd.op == OpDelete
	val, err := encodeStored(rec, tombstone)
	if err != nil {
		p.outcomes = append(p.outcomes, reject(im, gen, kind, id, actor, cmd.op, ReasonBadRequest, 0, "fields: "+err.Error()))
		return p, nil
	}
	if err := kv.CheckValue(val); err != nil {
		p.outcomes = append(p.outcomes, reject(im, gen, kind, id, actor, cmd.op, ReasonBadRequest, 0,
			fmt.Sprintf("record of %d bytes is above the limit of %d", len(val), kv.MaxValueSize)))
		return p, nil
	}
	if live && st.ExpiresAt != nil {
		p.writes = append(p.writes, write{key: leaseKey(*st.ExpiresAt, kind, id), clear: true})
	}
	p.writes = append(p.writes, write{key: stateKey(kind, id), value: val})
	if rec.ExpiresAt != nil && !tombstone {
		p.writes = append(p.writes, write{key: leaseKey(*rec.ExpiresAt, kind, id), value: []byte{}})
	}
	ev := Event{Seq: im.seq, Status: StatusApplied, Rev: rec.Rev, Actor: actor, Op: cmd.op}
	if !tombstone {
		ev.Record = &rec
	}
	p.outcomes = append(p.outcomes, newOutcome(im.seq, kind, id, ev, commandMsgID(gen, im.seq)))
	return p, nil
}

// expiry returns the expiry of a record written at t by a command with ttl:
// nil ttl keeps keep, 0 removes the lease, a positive ttl sets t+ttl.
func expiry(t time.Time, ttl *time.Duration, keep *time.Time) *time.Time {
	switch {
	case ttl == nil:
		return keep
	case *ttl == 0:
		return nil
	}
	e := t.Add(*ttl).UTC()
	return &e
}

// planExpiry turns the live, leased record r into its tombstone: the writes,
// the expiry's outcome and the tombstone itself.
func planExpiry(r Record, watermark uint64, gen string) ([]write, outcome, Record, error) {
	tomb := Record{Kind: r.Kind, ID: r.ID, Rev: r.Rev + 1, UpdatedBy: Actor, UpdatedAt: *r.ExpiresAt, Seq: watermark}
	val, err := encodeStored(tomb, true)
	if err != nil {
		return nil, outcome{}, Record{}, err
	}
	w := []write{
		{key: leaseKey(*r.ExpiresAt, r.Kind, r.ID), clear: true},
		{key: stateKey(r.Kind, r.ID), value: val},
	}
	ev := Event{Seq: watermark, Status: StatusApplied, Rev: tomb.Rev, Actor: Actor, Op: OpExpire}
	return w, newOutcome(watermark, r.Kind, r.ID, ev, expiryMsgID(gen, r.Kind, r.ID, tomb.Rev)), tomb, nil
}

// reject builds the outcome of a rejected command. kind and id may be empty
// (or invalid) when the subject did not parse: then there is no event, only
// the audit record.
func reject(im *inMsg, gen, kind, id, actor string, op Op, reason Reason, curRev uint64, detail string) outcome {
	return rejectOutcome(im, gen, kind, id, rejectEvent(im, actor, op, reason, curRev, detail), detail)
}

// rejectEvent is the event of a rejected command.
func rejectEvent(im *inMsg, actor string, op Op, reason Reason, curRev uint64, detail string) Event {
	ev := Event{Seq: im.seq, Status: StatusRejected, Reason: reason, Actor: actor, Op: op, CurrentRev: curRev}
	if reason == ReasonBadRequest || reason == ReasonCorrupt {
		ev.Detail = truncate(detail, maxDetail)
	}
	return ev
}

// rejectOutcome is the outcome of the rejection ev, with detail for the
// log and the audit record.
func rejectOutcome(im *inMsg, gen, kind, id string, ev Event, detail string) outcome {
	o := newOutcome(im.seq, kind, id, ev, commandMsgID(gen, im.seq))
	o.detail = truncate(detail, maxDetail)
	o.audit.data = mustJSON(auditRecord{Seq: im.seq, Status: StatusRejected, Kind: kind, ID: id, Actor: ev.Actor,
		Op: ev.Op, Rev: ev.CurrentRev, Reason: ev.Reason, Detail: o.detail})
	return o
}

// lostOutcome is the outcome recording stream seqs first..last of stream
// missing: an audit record only.
func lostOutcome(stream, gen string, first, last uint64, reason string) outcome {
	subj, _ := subjects.AuditLog(Actor, LostCategory)
	id := lostMsgID(gen, first, last)
	return outcome{
		seq:    first,
		status: StatusLost,
		audit: outboxEntry{
			key:     outboxKey(first, id),
			subject: subj,
			msgID:   id,
			data:    mustJSON(Lost{Stream: stream, FirstSeq: first, LastSeq: last, Count: last + 1 - first, Reason: reason}),
		},
	}
}

// newOutcome encodes ev for kind/id and its audit record under msgID.
func newOutcome(seq uint64, kind, id string, ev Event, msgID string) outcome {
	o := outcome{seq: seq, status: ev.Status, reason: ev.Reason, actor: ev.Actor, kind: kind, id: id, op: ev.Op}
	if s, err := subjects.StateEvt(kind, id); err == nil {
		o.evtSubject = s
		o.evt = mustJSON(ev)
	}
	auditSubj, err := subjects.AuditLog(Actor, auditCategory, kind)
	if err != nil {
		auditSubj, _ = subjects.AuditLog(Actor, auditCategory)
	}
	rev := ev.Rev
	if ev.Status == StatusRejected {
		rev = ev.CurrentRev
	}
	o.audit = outboxEntry{
		key:     outboxKey(seq, msgID),
		subject: auditSubj,
		msgID:   msgID,
		data: mustJSON(auditRecord{Seq: seq, Status: ev.Status, Kind: kind, ID: id, Actor: ev.Actor, Op: ev.Op,
			Rev: rev, Reason: ev.Reason, Detail: ev.Detail}),
	}
	return o
}

// rejectSubject builds the outcome of a command whose subject does not
// parse: a bad_request event on codi.state.evt.bad_request carrying the raw
// subject, and its audit record. The kind, id and actor are those tokens of
// the subject that are valid where they stand (the actor is the last
// token), so that the operator sees who sent it; the detail says what is
// wrong and, for an id split by '.', how to escape it.
func rejectSubject(im *inMsg, gen string, perr error) outcome {
	kind, id, actor := salvage(im.subject)
	detail := "subject: " + perr.Error()
	if hint := subjects.Hint(im.subject); hint != "" {
		detail += "; " + hint
	}
	detail = truncate(detail, maxDetail)
	ev := Event{Seq: im.seq, Status: StatusRejected, Reason: ReasonBadRequest, Actor: actor, Op: rawOp(im.data),
		Detail: detail, Subject: truncate(im.subject, maxDetail)}
	o := newOutcome(im.seq, kind, id, ev, commandMsgID(gen, im.seq))
	o.evtSubject, o.evt = subjects.StateBadRequest, mustJSON(ev)
	o.detail, o.rawSubject = detail, im.subject
	o.audit.data = mustJSON(auditRecord{Seq: im.seq, Status: StatusRejected, Kind: kind, ID: id, Actor: actor,
		Op: ev.Op, Reason: ReasonBadRequest, Detail: detail, Subject: ev.Subject})
	return o
}

// salvage returns the tokens of a command subject that did not parse which
// are still valid in their place: the kind (token 3), the id (token 4, when
// the subject has the command's six tokens) and the actor (the last token).
func salvage(subject string) (kind, id, actor string) {
	toks := strings.Split(subject, ".")
	if len(toks) < 5 || toks[0] != "codi" || toks[1] != "state" || toks[2] != "cmd" {
		return "", "", ""
	}
	if subjects.ValidKind(toks[3]) == nil {
		kind = toks[3]
	}
	if len(toks) == 6 && kind != "" && subjects.ValidToken(toks[4]) == nil {
		id = toks[4]
	}
	if last := toks[len(toks)-1]; len(toks) >= 6 && subjects.ValidAgent(last) == nil {
		actor = last
	}
	return kind, id, actor
}

// rawOp returns the op of a payload that failed validation, if it has one,
// for the rejection event.
func rawOp(data []byte) Op {
	var w struct {
		Op string `json:"op"`
	}
	if json.Unmarshal(data, &w) != nil {
		return ""
	}
	return Op(truncate(w.Op, 64))
}

// mustJSON encodes values whose encoding cannot fail (plain structs and
// fields that were decoded from JSON). Should it fail anyway, the error
// becomes the payload rather than a panic in the apply loop.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	return b
}
