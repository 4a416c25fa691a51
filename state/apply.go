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
	// known marks a record write whose value planning has decoded
	// already: rec is the live record it holds, nil for a tombstone.
	// indexWrite uses it instead of decoding value again.
	known bool
	rec   *Record
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
	// summary marks a multi-record command's summary event, which has no
	// audit record of its own.
	summary bool
}

// outboxEntry is one audit event waiting to be published and acknowledged.
type outboxEntry struct {
	key     []byte
	subject string
	msgID   string
	data    []byte
}

// plan is the result of applying one command against a transaction: the
// writes to make and the outcomes to report. It has no effects of its own:
// a multi-record command's writes are staged as it is planned (so that
// each operation sees the ones before it), and made by applyPlan.
type plan struct {
	writes   []write
	outcomes []outcome
	// own is the index in outcomes of the command's (or operation's) own
	// outcome; the others are expiries and releases it caused.
	own int
	// staged, when set, holds the writes (and their index upkeep) staged
	// already: applyPlan flushes it instead of making writes.
	staged *stagedTxn
	// work is the overlap-check steps planning took (see MaxCheckSteps),
	// which bound a batch like its bytes do.
	work int
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

// discard drops the writes a plan staged: it is not applied.
func (p *plan) discard() {
	if p.staged != nil {
		p.staged.discard()
	}
}

// planCommand decides the outcome of im against the state read through tx.
// watermark is the last sequence applied before im. It only reads (a
// multi-record command stages its writes: plan.staged); the caller makes
// the writes (applyPlan).
// An error is a store failure, never a bad command: bad commands are
// rejected with an outcome.
//
// gen is the stream's generation token (see generation.go), part of every
// audit Nats-Msg-Id.
func planCommand(tx kv.Txn, im *inMsg, watermark uint64, gen string) (plan, error) {
	subj, err := subjects.Parse(im.subject)
	if err == nil && subj.Type != subjects.TypeStateCmd {
		err = fmt.Errorf("%q is not a state command subject", im.subject)
	}
	if err != nil {
		return plan{outcomes: []outcome{rejectSubject(im, gen, err)}}, nil
	}
	if subj.Kind == KindTxn {
		return planTxn(tx, im, subj.ID, subj.Actor, watermark, gen)
	}
	in := opInput{kind: subj.Kind, id: subj.ID, actor: subj.Actor, msgID: commandMsgID(gen, im.seq)}
	cmd, err := decodeCommand(im.data)
	if err != nil {
		return plan{outcomes: []outcome{reject(im, in, rawOp(im.data), ReasonBadRequest, 0, err.Error())}}, nil
	}
	in.cmd = cmd
	return planOp(tx, im, in, watermark, gen)
}

// opInput is one record operation to decide: a command, or one operation of
// a multi-record command (txn names it).
type opInput struct {
	kind, id, actor string
	cmd             command
	// msgID is the Nats-Msg-Id of the operation's audit record.
	msgID string
	txn   string
	// evtSubject and auditSubject, when set, are the subjects of the
	// operation's event and audit record, built already (a multi-record
	// command builds them once for the operations on one kind or
	// record: see opSubjects).
	evtSubject, auditSubject string
	// budget is what is left of the command's MaxCheckSteps; nil for a
	// fresh one.
	budget *int
}

// planOp decides the outcome of the operation in against tx, as planCommand
// does for a whole command.
func planOp(tx kv.ReadTxn, im *inMsg, in opInput, watermark uint64, gen string) (plan, error) {
	var p plan
	kind, id, actor, cmd := in.kind, in.id, in.actor, in.cmd
	rejectWith := func(reason Reason, curRev uint64, detail string) (plan, error) {
		p.own = len(p.outcomes)
		p.outcomes = append(p.outcomes, reject(im, in, cmd.op, reason, curRev, detail))
		return p, nil
	}
	if detail := checkOp(in); detail != "" {
		return rejectWith(ReasonBadRequest, 0, detail)
	}
	key := stateKey(kind, id)
	st, exists, err := getStoredAt(tx, key)
	if errors.Is(err, ErrCorrupt) || errors.Is(err, kv.ErrCorrupt) {
		// The command cannot be decided on a record that is not what was
		// written; other records carry on.
		return rejectWith(ReasonCorrupt, 0, err.Error())
	}
	if err != nil {
		return plan{}, fmt.Errorf("state: read %s/%s: %w", kind, id, err)
	}
	// A lease that ended before this command was stored expires first, so
	// the command sees what an agent would expect at its own time.
	if exists && !st.tombstone && st.ExpiresAt != nil && !st.ExpiresAt.After(im.time) {
		w, o, tomb, err := planExpiry(tx, st.Record, watermark, gen)
		if err != nil {
			return plan{}, err
		}
		p.writes = append(p.writes, w...)
		p.outcomes = append(p.outcomes, o...)
		st = stored{Record: tomb, tombstone: true}
	}
	live := exists && !st.tombstone
	var curRev uint64
	if live {
		curRev = st.Rev
	}
	if cmd.expectRev != nil && *cmd.expectRev != curRev {
		ev := rejectEvent(im, in, cmd.op, ReasonConflict, curRev, "")
		if live {
			// The conflict names who has the record: its holder and lease.
			ev.UpdatedBy, ev.ExpiresAt, ev.Holder = st.UpdatedBy, st.ExpiresAt, st.Record.Holder()
		}
		p.own = len(p.outcomes)
		p.outcomes = append(p.outcomes, rejectOutcome(im, in, ev,
			fmt.Sprintf("expected rev %d, current rev %d", *cmd.expectRev, curRev)))
		return p, nil
	}
	if cmd.op == OpDelete && !live {
		return rejectWith(ReasonConflict, 0, "record does not exist")
	}
	if live && (kind == KindAgent || kind == KindReservation) && !mayWrite(st.Record, actor) {
		return rejectWith(ReasonBadRequest, 0, fmt.Sprintf("%s/%s belongs to %s: only it may change it", kind, id, owner(st.Record)))
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
		rec.BoundTo = binding(cmd.bind, actor, "")
	case OpMerge:
		rec.Fields = make(map[string]json.RawMessage, len(st.Fields)+len(cmd.fields))
		var keep *time.Time
		var bound string
		if live {
			maps.Copy(rec.Fields, st.Fields)
			keep, bound = st.ExpiresAt, st.BoundTo
		}
		for k, v := range cmd.fields {
			if isNull(v) {
				delete(rec.Fields, k)
			} else {
				rec.Fields[k] = v
			}
		}
		rec.ExpiresAt = expiry(im.time, cmd.ttl, keep)
		rec.BoundTo = binding(cmd.bind, actor, bound)
	}
	tombstone := cmd.op == OpDelete
	if cmd.bind != nil && *cmd.bind {
		if h := rec.Holder(); h != "" && h != actor {
			return rejectWith(ReasonBadRequest, 0, fmt.Sprintf("%s/%s is held by %s: only its holder may bind it to a presence", kind, id, h))
		}
	}
	if kind == KindReservation && !tombstone {
		res, pat, err := reservationOf(rec, actor)
		if err != nil {
			return rejectWith(ReasonBadRequest, 0, err.Error())
		}
		budget := in.budget
		if budget == nil {
			b := MaxCheckSteps
			budget = &b
		}
		before := *budget
		ov, err := findOverlap(tx, id, res, pat, im.time, budget)
		p.work += before - *budget
		switch {
		case errors.Is(err, errCheckBudget):
			return rejectWith(ReasonBadRequest, 0, err.Error())
		case errors.Is(err, ErrCorrupt):
			return rejectWith(ReasonCorrupt, 0, err.Error())
		case err != nil:
			return plan{}, fmt.Errorf("state: reservations of %s: %w", res.Project, err)
		}
		if ov != nil {
			ev := rejectEvent(im, in, cmd.op, ReasonConflict, curRev, "")
			ev.UpdatedBy, ev.ExpiresAt, ev.Holder, ev.Overlap = ov.Holder, ov.ExpiresAt, ov.Holder, ov
			ev.Detail = truncate(fmt.Sprintf("%s overlaps %s reserved by %s (both match %s)", res.Pattern, ov.Pattern, ov.Holder, ov.Path), maxDetail)
			p.own = len(p.outcomes)
			p.outcomes = append(p.outcomes, rejectOutcome(im, in, ev, ev.Detail))
			return p, nil
		}
	}
	val, body, err := encodeStoredAt(key, rec, tombstone)
	if err != nil {
		return rejectWith(ReasonBadRequest, 0, "fields: "+err.Error())
	}
	if err := kv.CheckValue(val); err != nil {
		return rejectWith(ReasonBadRequest, 0, fmt.Sprintf("record of %d bytes is above the limit of %d", len(val), kv.MaxValueSize))
	}
	if live && st.ExpiresAt != nil {
		p.writes = append(p.writes, write{key: leaseKey(*st.ExpiresAt, kind, id), clear: true})
	}
	var old, next *Record
	if live {
		old = &st.Record
	}
	if !tombstone {
		next = &rec
	}
	p.writes = append(p.writes, write{key: key, value: val, known: true, rec: next})
	if rec.ExpiresAt != nil && !tombstone {
		p.writes = append(p.writes, write{key: leaseKey(*rec.ExpiresAt, kind, id), value: []byte{}})
	}
	p.writes = append(p.writes, bindWrites(old, next)...)
	// The event carries the record as body encodes it already (see
	// withRecord): it is encoded without it, and body spliced in.
	o := newOpOutcome(im.seq, in, Event{Seq: im.seq, Status: StatusApplied, Rev: rec.Rev, Actor: actor, Op: cmd.op})
	if !tombstone && o.evt != nil {
		o.evt = withRecord(o.evt, body)
	}
	p.own = len(p.outcomes)
	p.outcomes = append(p.outcomes, o)
	if kind == KindAgent && tombstone {
		// The agent signed off: what was bound to its presence goes now.
		w, o, err := planPresenceEnd(tx, id, im.time, im.seq, gen)
		if err != nil {
			return plan{}, err
		}
		p.writes = append(p.writes, w...)
		p.outcomes = append(p.outcomes, o...)
	}
	return p, nil
}

// checkOp returns why the operation in is refused before any record is
// read, or "": the service's own kinds have rules of their own.
func checkOp(in opInput) string {
	switch {
	case in.kind == KindTxn:
		return "kind txn is reserved for multi-record commands (codi.state.cmd.txn.<txid>.<actor>, payload {\"ops\": [...]})"
	case in.kind == KindAgent && in.cmd.op != OpDelete && in.id != in.actor && !strings.HasPrefix(in.actor, serviceActorPrefix):
		return fmt.Sprintf("agent/%s is the presence of %s: only it may write it", in.id, in.id)
	case in.kind == KindAgent && in.cmd.bind != nil && *in.cmd.bind:
		return "a presence record cannot be bound to a presence"
	}
	return ""
}

// mayWrite reports whether actor may change or delete r, a presence or
// reservation record: only its agent, or a codi- actor (an admin).
func mayWrite(r Record, actor string) bool {
	return owner(r) == actor || strings.HasPrefix(actor, serviceActorPrefix)
}

// owner is the agent a presence or reservation record belongs to.
func owner(r Record) string {
	if r.Kind == KindAgent {
		return r.ID
	}
	var h string
	if r.Field(HolderField, &h) != nil || h == "" {
		return r.UpdatedBy
	}
	return h
}

// binding is the BoundTo of a record written by actor with the command's
// bind (nil keeps keep).
func binding(bind *bool, actor, keep string) string {
	switch {
	case bind == nil:
		return keep
	case *bind:
		return actor
	}
	return ""
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
// the expiry's outcome (and, for a presence, the releases of what was bound
// to it) and the tombstone itself. It only reads tx.
func planExpiry(tx kv.ReadTxn, r Record, watermark uint64, gen string) ([]write, []outcome, Record, error) {
	tomb := Record{Kind: r.Kind, ID: r.ID, Rev: r.Rev + 1, UpdatedBy: Actor, UpdatedAt: *r.ExpiresAt, Seq: watermark}
	val, err := encodeStored(tomb, true)
	if err != nil {
		return nil, nil, Record{}, err
	}
	w := []write{
		{key: leaseKey(*r.ExpiresAt, r.Kind, r.ID), clear: true},
		{key: stateKey(r.Kind, r.ID), value: val, known: true},
	}
	w = append(w, bindWrites(&r, nil)...)
	ev := Event{Seq: watermark, Status: StatusApplied, Rev: tomb.Rev, Actor: Actor, Op: OpExpire}
	o := []outcome{newOutcome(watermark, r.Kind, r.ID, ev, expiryMsgID(gen, r.Kind, r.ID, tomb.Rev))}
	if r.Kind == KindAgent {
		rw, ro, err := planPresenceEnd(tx, r.ID, *r.ExpiresAt, watermark, gen)
		if err != nil {
			return nil, nil, Record{}, err
		}
		w, o = append(w, rw...), append(o, ro...)
	}
	return w, o, tomb, nil
}

// reject builds the outcome of the rejected operation in.
func reject(im *inMsg, in opInput, op Op, reason Reason, curRev uint64, detail string) outcome {
	return rejectOutcome(im, in, rejectEvent(im, in, op, reason, curRev, detail), detail)
}

// rejectEvent is the event of a rejected operation.
func rejectEvent(im *inMsg, in opInput, op Op, reason Reason, curRev uint64, detail string) Event {
	ev := Event{Seq: im.seq, Status: StatusRejected, Reason: reason, Actor: in.actor, Op: op, CurrentRev: curRev}
	if reason == ReasonBadRequest || reason == ReasonCorrupt || reason == ReasonAborted {
		ev.Detail = truncate(detail, maxDetail)
	}
	return ev
}

// rejectOutcome is the outcome of the rejection ev of in, with detail for
// the log and the audit record.
func rejectOutcome(im *inMsg, in opInput, ev Event, detail string) outcome {
	o := newOpOutcome(im.seq, in, ev)
	o.detail = truncate(detail, maxDetail)
	o.audit.data = mustJSON(auditRecord{Seq: im.seq, Status: StatusRejected, Kind: in.kind, ID: in.id, Actor: ev.Actor,
		Op: ev.Op, Rev: ev.CurrentRev, Reason: ev.Reason, Detail: o.detail, Txn: in.txn})
	return o
}

// newOpOutcome is the outcome ev of the operation in: an applied
// operation of a multi-record command names it in its audit record.
func newOpOutcome(seq uint64, in opInput, ev Event) outcome {
	var txn string
	if ev.Status == StatusApplied {
		txn = in.txn
	}
	if in.evtSubject == "" || in.auditSubject == "" {
		return newTxnOutcome(seq, in.kind, in.id, ev, in.msgID, txn)
	}
	return outcomeOf(seq, in.kind, in.id, ev, in.msgID, txn, in.evtSubject, in.auditSubject)
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
	return newTxnOutcome(seq, kind, id, ev, msgID, "")
}

// newTxnOutcome is newOutcome with the audit record naming the
// multi-record command txn ("": none).
func newTxnOutcome(seq uint64, kind, id string, ev Event, msgID, txn string) outcome {
	evtSubj, auditSubj := eventSubject(kind, id), auditSubject(kind)
	return outcomeOf(seq, kind, id, ev, msgID, txn, evtSubj, auditSubj)
}

// eventSubject is the subject of kind/id's events,
// codi.state.evt.<kind>.<id>, or "" when kind or id is not a valid token
// (the event is not published).
func eventSubject(kind, id string) string {
	s, _ := subjects.StateEvt(kind, id)
	return s
}

// auditSubject is the subject of the audit records of kind's commands,
// codi.audit.log.codi-state.state.<kind> (without the kind when it is not
// a valid token).
func auditSubject(kind string) string {
	s, err := subjects.AuditLog(Actor, auditCategory, kind)
	if err != nil {
		s, _ = subjects.AuditLog(Actor, auditCategory)
	}
	return s
}

// outcomeOf is newTxnOutcome with the subjects built: evtSubj ("": no
// event) and auditSubj.
func outcomeOf(seq uint64, kind, id string, ev Event, msgID, txn, evtSubj, auditSubj string) outcome {
	o := outcome{seq: seq, status: ev.Status, reason: ev.Reason, actor: ev.Actor, kind: kind, id: id, op: ev.Op}
	if evtSubj != "" {
		o.evtSubject = evtSubj
		o.evt = eventJSON(ev)
	}
	rev := ev.Rev
	if ev.Status == StatusRejected {
		rev = ev.CurrentRev
	}
	o.audit = outboxEntry{
		key:     outboxKey(seq, msgID),
		subject: auditSubj,
		msgID:   msgID,
		data:    auditJSON(&auditRecord{Seq: seq, Status: ev.Status, Kind: kind, ID: id, Actor: ev.Actor, Op: ev.Op, Rev: rev, Reason: ev.Reason, Detail: ev.Detail, Txn: txn}),
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

// withRecord returns evt, the encoding of an Event without Record, Kind,
// ID and Ops, with record (a Record's JSON, as json.Marshal gives it)
// added as its "record" member: byte for byte the encoding of that Event
// with Record set, whose record is the last member, without encoding the
// record a second time.
func withRecord(evt, record []byte) []byte {
	b := make([]byte, 0, len(evt)+len(`,"record":`)+len(record))
	b = append(b, evt[:len(evt)-1]...)
	b = append(append(b, `,"record":`...), record...)
	return append(b, '}')
}

// auditJSON is mustJSON(*r), without boxing r.
func auditJSON(r *auditRecord) []byte {
	return appendAudit(make([]byte, 0, 128+len(r.Kind)+len(r.ID)+len(r.Detail)+len(r.Subject)+len(r.Txn)), r)
}

// eventJSON encodes ev as json.Marshal does, without the pass over the
// result that json.Marshal makes for a json.Marshaler (Event.MarshalJSON
// gives compact, escaped JSON already).
func eventJSON(ev Event) []byte {
	b, err := ev.MarshalJSON()
	if err != nil {
		return mustJSON(ev)
	}
	return b
}

// mustJSON encodes values whose encoding cannot fail (plain structs and
// fields that were decoded from JSON). Should it fail anyway, the error
// becomes the payload rather than a panic in the apply loop. Events,
// audit records and strings, the apply's own, are encoded by hand
// (codec.go), byte for byte as json.Marshal does.
func mustJSON(v any) []byte {
	switch v := v.(type) {
	case auditRecord:
		return auditJSON(&v)
	case Event:
		if b, ok := appendEvent(make([]byte, 0, eventSizeHint(&v)), &v); ok {
			return b
		}
	case string:
		return appendJSONString(make([]byte, 0, len(v)+2), v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	return b
}
