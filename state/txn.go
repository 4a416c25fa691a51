package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/strictjson"
	"github.com/codi2/codi2/subjects"
)

// MaxTxnOps bounds the operations of one multi-record command. A constant,
// safe everywhere.
const MaxTxnOps = 64

// maxSummaryBytes bounds a multi-record command's summary event: above it
// the operations' records are left out of it (their own events carry them).
const maxSummaryBytes = 256 << 10

// TxnOp is one operation of a multi-record command: a Command on kind/id.
// It is a plain value, safe to share once no goroutine modifies it.
type TxnOp struct {
	Kind, ID string
	Command
}

// MarshalJSON encodes the operation as the wire's
// {"kind":…,"id":…,"op":…,…}. It only reads o.
func (o TxnOp) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 96+len(o.Kind)+len(o.ID)+32*len(o.Fields))
	b = append(b, `{"kind":`...)
	b = append(appendJSONString(b, o.Kind), `,"id":`...)
	b = append(appendJSONString(b, o.ID), ',')
	if b, ok := appendCommandMembers(b, &o.Command); ok {
		return append(b, '}'), nil
	}
	return o.marshalReflect()
}

// marshalTxn is the payload of a multi-record command of ops,
// {"ops":[…]}: what json.Marshal gives for it, without its second pass
// over each operation's MarshalJSON output (which is compact already).
func marshalTxn(ops []TxnOp) ([]byte, error) {
	b := append(make([]byte, 0, 16+128*len(ops)), `{"ops":[`...)
	for i, o := range ops {
		if i > 0 {
			b = append(b, ',')
		}
		ob, err := o.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("op %d (%s/%s): %w", i+1, o.Kind, o.ID, err)
		}
		b = append(b, ob...)
	}
	return append(b, "]}"...), nil
}

// marshalReflect is MarshalJSON by encoding/json: the path
// appendCommandMembers replaces, taken when a field does not encode.
func (o TxnOp) marshalReflect() ([]byte, error) {
	cmd, err := json.Marshal(o.Command)
	if err != nil {
		return nil, err
	}
	head, err := json.Marshal(struct {
		Kind string `json:"kind"`
		ID   string `json:"id"`
	}{o.Kind, o.ID})
	if err != nil {
		return nil, err
	}
	// {"kind":…,"id":…} + the command's members.
	return append(append(head[:len(head)-1:len(head)-1], ','), cmd[1:]...), nil
}

// txnWire is a multi-record command's payload:
//
//	{"ops": [{"kind": "task", "id": "T-1", "op": "merge", "fields": {…}, "expect_rev": 3, "ttl_ms": 60000, "bind": true}, …]}
type txnWire struct {
	Ops []json.RawMessage `json:"ops"`
}

// txnOpWire is one operation as sent: a command's members plus its record.
type txnOpWire struct {
	Kind      *string         `json:"kind"`
	ID        *string         `json:"id"`
	Op        *string         `json:"op"`
	Fields    json.RawMessage `json:"fields"`
	ExpectRev *int64          `json:"expect_rev"`
	TTLms     *int64          `json:"ttl_ms"`
	Bind      *bool           `json:"bind"`
}

// decodeTxn parses and validates a multi-record command's payload as
// strictly as decodeCommand does a command's; kinds and ids must be valid
// tokens (ids in their one canonical escaping). Its errors become the detail
// of a bad_request rejection.
func decodeTxn(data []byte) ([]opInput, error) {
	parsed, ok := parseTxn(data)
	if !ok {
		return decodeTxnReflect(data)
	}
	ops := make([]opInput, len(parsed))
	for i, p := range parsed {
		valid := "" // a kind found valid already: the one before
		if i > 0 {
			valid = ops[i-1].kind
		}
		in, err := p.wire.input(i, p.fields, valid)
		if err != nil {
			return nil, err
		}
		ops[i] = in
	}
	return ops, nil
}

// decodeTxnReflect is decodeTxn by strictjson and encoding/json: the path
// parseTxn replaces, taken for anything outside its shape (and for every
// malformed payload, whose error it words).
func decodeTxnReflect(data []byte) ([]opInput, error) {
	var w txnWire
	if err := strictjson.Decode(data, &w); err != nil {
		if rawOp(data) != "" {
			return nil, errors.New(`multi-record command: codi.state.cmd.txn.<txid>.<actor> carries {"ops":[…]}, not a command: kind txn holds no records`)
		}
		return nil, fmt.Errorf("multi-record command: %w", err)
	}
	switch {
	case len(w.Ops) == 0:
		return nil, errors.New(`multi-record command: ops is required, an array of 1 to 64 operations`)
	case len(w.Ops) > MaxTxnOps:
		return nil, fmt.Errorf("multi-record command: %d ops, at most %d", len(w.Ops), MaxTxnOps)
	}
	ops := make([]opInput, len(w.Ops))
	for i, raw := range w.Ops {
		var ow txnOpWire
		if err := strictjson.Decode(raw, &ow); err != nil {
			return nil, fmt.Errorf("op %d: %w", i+1, err)
		}
		in, err := ow.input(i, nil, "")
		if err != nil {
			return nil, err
		}
		ops[i] = in
	}
	return ops, nil
}

// input validates ow, operation i (from 0) of a multi-record command.
// fields, when not nil, is ow.Fields decoded already (see
// commandWire.validate). A kind equal to valid (not "") is not checked
// again.
func (ow txnOpWire) input(i int, fields map[string]json.RawMessage, valid string) (opInput, error) {
	if ow.Kind == nil || ow.ID == nil {
		return opInput{}, fmt.Errorf("op %d: kind and id are required", i+1)
	}
	if valid == "" || *ow.Kind != valid {
		if err := subjects.ValidKind(*ow.Kind); err != nil {
			return opInput{}, fmt.Errorf("op %d: %w", i+1, err)
		}
	}
	if *ow.Kind == KindTxn {
		return opInput{}, fmt.Errorf("op %d: kind txn is reserved for multi-record commands themselves", i+1)
	}
	if err := subjects.ValidToken(*ow.ID); err != nil {
		return opInput{}, fmt.Errorf("op %d: id: %w", i+1, err)
	}
	cmd, err := commandWire{Op: ow.Op, Fields: ow.Fields, ExpectRev: ow.ExpectRev, TTLms: ow.TTLms, Bind: ow.Bind}.validate(fields)
	if err != nil {
		return opInput{}, fmt.Errorf("op %d: %w", i+1, err)
	}
	return opInput{kind: *ow.Kind, id: *ow.ID, cmd: cmd}, nil
}

// txnMsgID is the audit Nats-Msg-Id of operation i (from 0) of the
// multi-record command at seq.
func txnMsgID(gen string, seq uint64, i int) string {
	return opMsgID(commandMsgID(gen, seq), i)
}

// opMsgID is txnMsgID of the command whose own id is msgID
// (commandMsgID), built once for all its operations.
func opMsgID(msgID string, i int) string {
	return msgID + "-" + strconv.Itoa(i+1)
}

// planTxn decides the multi-record command im (codi.state.cmd.txn.<txid>.
// <actor>): its operations are planned in order, each seeing the writes of
// the ones before it, which are made in tx as it goes. When one is rejected
// the writes are taken back and every operation is rejected: that one with
// its own reason, the others with ReasonAborted. Each operation has its own
// event and audit record; the summary event (Op OpTxn, with the operations'
// events in Ops) goes to codi.state.evt.txn.<txid>.
func planTxn(tx kv.Txn, im *inMsg, txid, actor string, watermark uint64, gen string) (plan, error) {
	return planStaged(newStagedTxn(tx), im, txid, actor, watermark, gen)
}

// planStaged is planTxn through u, the staged transaction its plan
// flushes.
func planStaged(u *stagedTxn, im *inMsg, txid, actor string, watermark uint64, gen string) (plan, error) {
	p := plan{staged: u}
	ops, err := decodeTxn(im.data)
	if err != nil {
		in := opInput{kind: KindTxn, id: txid, actor: actor, msgID: commandMsgID(gen, im.seq), txn: txid}
		p.outcomes = []outcome{reject(im, in, OpTxn, ReasonBadRequest, 0, err.Error())}
		return p, nil
	}
	// An operation stages its record, its index list and about four
	// entries.
	u.reserve(8 * len(ops))
	budget := MaxCheckSteps
	msgID := commandMsgID(gen, im.seq)
	for i := range ops {
		ops[i].actor, ops[i].msgID, ops[i].txn, ops[i].budget = actor, opMsgID(msgID, i), txid, &budget
		opSubjects(ops[:i+1])
	}
	own := make([]int, len(ops))
	// Room for an operation's write and outcome each, and the summary:
	// more when leases expire or presences release records.
	p.writes = make([]write, 0, len(ops))
	p.outcomes = make([]outcome, 0, len(ops)+1)
	for i, in := range ops {
		op, err := planOp(u, im, in, watermark, gen)
		if err != nil {
			return plan{}, err
		}
		p.work += op.work
		if failed := op.outcomes[op.own]; failed.status == StatusRejected {
			p.discard()
			p.outcomes = abortTxn(im, ops, i, failed)
			p.outcomes = append(p.outcomes, txnSummary(im, txid, actor, StatusRejected, p.outcomes))
			return p, nil
		}
		if err := applyWrites(u, op.writes); err != nil {
			return plan{}, err
		}
		p.writes = append(p.writes, op.writes...)
		own[i] = len(p.outcomes) + op.own
		p.outcomes = append(p.outcomes, op.outcomes...)
	}
	mine := p.outcomes // the operations' own, unless others came between
	if len(p.outcomes) != len(ops) {
		mine = make([]outcome, len(own))
		for i, j := range own {
			mine[i] = p.outcomes[j]
		}
	}
	p.outcomes = append(p.outcomes, txnSummary(im, txid, actor, StatusApplied, mine))
	return p, nil
}

// opSubjects builds the subjects of the last of ops, an operation of a
// multi-record command, taking those of the one before it when it is on
// the same kind or record: operations come in runs on one kind, and often
// two or more on one record (the subjects are validated again each time
// they are built).
func opSubjects(ops []opInput) {
	in := &ops[len(ops)-1]
	if n := len(ops); n > 1 && ops[n-2].kind == in.kind {
		prev := ops[n-2]
		in.auditSubject = prev.auditSubject
		if prev.id == in.id {
			in.evtSubject = prev.evtSubject
			return
		}
	} else {
		in.auditSubject = auditSubject(in.kind)
	}
	in.evtSubject = eventSubject(in.kind, in.id)
}

// abortTxn is the outcomes of a multi-record command whose operation i was
// rejected with failed: that rejection, and ReasonAborted for the others.
func abortTxn(im *inMsg, ops []opInput, i int, failed outcome) []outcome {
	out := make([]outcome, len(ops))
	for j, in := range ops {
		if j == i {
			out[j] = failed
			continue
		}
		detail := fmt.Sprintf("op %d of %d (%s/%s) was rejected: %s", i+1, len(ops), ops[i].kind, ops[i].id, failed.reason)
		out[j] = reject(im, in, in.cmd.op, ReasonAborted, 0, detail)
	}
	return out
}

// txnSummary is the outcome carrying the summary event of a multi-record
// command: status, and the events of its operations (ops, in order). It
// has no audit record of its own (the operations have theirs).
func txnSummary(im *inMsg, txid, actor string, status Status, ops []outcome) outcome {
	if status == StatusApplied {
		if data := appliedSummary(im.seq, actor, ops); data != nil {
			subj, _ := subjects.StateEvt(KindTxn, txid)
			return outcome{seq: im.seq, status: status, actor: actor, kind: KindTxn, id: txid, op: OpTxn,
				evtSubject: subj, evt: data, summary: true}
		}
	}
	return txnSummaryDecoded(im, txid, actor, status, ops)
}

// appliedSummary is the summary event of an applied multi-record command
// whose operations' events are ops[i].evt: the operations' events are
// spliced in as they were encoded, each with its kind and id added, which
// is byte for byte what encoding the Event with its Ops gives (an
// operation's event has no kind, id or ops of its own, and those are its
// last members), without decoding them again. It returns nil when it
// cannot (an operation without an event) or when the summary is above
// maxSummaryBytes: then txnSummaryDecoded builds it.
func appliedSummary(seq uint64, actor string, ops []outcome) []byte {
	head := mustJSON(Event{Seq: seq, Status: StatusApplied, Actor: actor, Op: OpTxn})
	n := len(head) + len(`,"ops":[]`)
	for _, o := range ops {
		if len(o.evt) < 2 || o.evt[len(o.evt)-1] != '}' {
			return nil
		}
		n += len(o.evt) + len(`,"kind":"","id":"",`) + len(o.kind) + len(o.id)
	}
	if n > maxSummaryBytes+len(ops)*16 { // room for escapes; checked exactly below
		return nil
	}
	b := make([]byte, 0, n)
	b = append(b, head[:len(head)-1]...)
	b = append(b, `,"ops":[`...)
	for i, o := range ops {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, o.evt[:len(o.evt)-1]...)
		if o.kind != "" {
			b = append(append(b, `,"kind":`...), mustJSON(o.kind)...)
		}
		if o.id != "" {
			b = append(append(b, `,"id":`...), mustJSON(o.id)...)
		}
		b = append(b, '}')
	}
	b = append(b, "]}"...)
	if len(b) > maxSummaryBytes {
		return nil
	}
	return b
}

// txnSummaryDecoded is txnSummary by decoding the operations' events and
// encoding the summary Event: for a rejected command, and for a summary
// too large to carry the operations' records.
func txnSummaryDecoded(im *inMsg, txid, actor string, status Status, ops []outcome) outcome {
	ev := Event{Seq: im.seq, Status: status, Actor: actor, Op: OpTxn, Ops: make([]Event, len(ops))}
	for i, o := range ops {
		var opEv Event
		_ = json.Unmarshal(o.evt, &opEv)
		opEv.Kind, opEv.ID = o.kind, o.id
		ev.Ops[i] = opEv
	}
	if status == StatusRejected {
		for _, op := range ev.Ops {
			if op.Reason != ReasonAborted {
				ev.Reason, ev.Detail = op.Reason, op.Detail
			}
		}
	}
	data := mustJSON(ev)
	if len(data) > maxSummaryBytes {
		for i := range ev.Ops {
			ev.Ops[i].Record = nil
		}
		data = mustJSON(ev)
	}
	subj, _ := subjects.StateEvt(KindTxn, txid)
	return outcome{seq: im.seq, status: status, reason: ev.Reason, detail: ev.Detail, actor: actor, kind: KindTxn, id: txid, op: OpTxn,
		evtSubject: subj, evt: data, summary: true}
}

// write makes p's writes in tx: flushes what it staged, or makes p.writes.
func (p *plan) write(tx kv.Txn) error {
	if p.staged != nil {
		return p.staged.flush()
	}
	return applyWrites(tx, p.writes)
}

// applyWrites makes ws in tx. Staged (tx a *stagedTxn), a record write
// keeps the record planning built beside its value, for the operations
// after it to read (getStored), and, unless the layer is plain, leaves
// its index upkeep to the batch layer's flush (stagedTxn.settleIndex):
// a record written several times in a batch has it done once.
func applyWrites(tx kv.Txn, ws []write) error {
	u, _ := tx.(*stagedTxn)
	for _, w := range ws {
		if u != nil && !u.plain && (w.known || isRecordKey(w.key)) {
			sw := stagedWrite{value: w.value, clear: w.clear, rec: w.rec}
			if !w.known && !w.clear {
				sw.value = append([]byte{}, w.value...)
			}
			if err := u.setRecord(w.key, sw); err != nil {
				return err
			}
			continue
		}
		if err := indexWrite(tx, w); err != nil { // the list indexes (index.go)
			return err
		}
		var err error
		switch {
		case w.clear:
			err = tx.Clear(w.key)
		case u != nil && w.known && w.rec != nil:
			err = u.setOwned(w.key, stagedWrite{value: w.value, rec: w.rec})
		default:
			err = tx.Set(w.key, w.value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
