package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/codi2/codi2/internal/strictjson"
)

// Op is a command's operation, as in the "op" field of a command and of an
// event. It is a plain string value, safe to share between goroutines.
type Op string

// The operations of the contract. OpExpire appears only in events and audit
// records: the service expires a lease on its own.
const (
	// OpPut replaces all fields of a record, creating it if needed.
	OpPut Op = "put"
	// OpMerge sets the given fields and removes those given as null; on a
	// missing record it creates it.
	OpMerge Op = "merge"
	// OpDelete removes a record.
	OpDelete Op = "delete"
	// OpExpire is a lease expiry made by the service (actor "codi-state").
	OpExpire Op = "expire"
	// OpRelease is a release made by the service (actor "codi-state") of a
	// record bound to an agent's presence when that presence ended (see
	// Command.Bind): a reservation is removed, any other record keeps its
	// fields but loses HolderField, its lease and its binding.
	OpRelease Op = "release"
	// OpTxn is the op of a multi-record command's summary event on
	// codi.state.evt.txn.<txid> (see TxnOp).
	OpTxn Op = "txn"
)

// Status is an event's outcome; a plain value, safe to share.
type Status string

// Event statuses.
const (
	StatusApplied  Status = "applied"
	StatusRejected Status = "rejected"
	// StatusLost marks commands missing from the stream; it appears in
	// the audit log only (see Lost), never in an event.
	StatusLost Status = "lost"
)

// Reason says why a command was rejected; a plain value, safe to share.
type Reason string

// Rejection reasons of the contract.
const (
	// ReasonConflict: expect_rev did not match the record's revision, or a
	// delete found no record. The event's current_rev is the expect_rev that
	// would have matched (0 when the record does not exist).
	ReasonConflict Reason = "conflict"
	// ReasonBadRequest: the command was malformed; the event's detail says how.
	ReasonBadRequest Reason = "bad_request"
	// ReasonCorrupt: the stored record the command applies to failed its
	// checksum or does not decode; the event's detail names it. Every
	// command on that record is rejected so, and the store is left as it
	// is for an operator to look at.
	ReasonCorrupt Reason = "corrupt"
	// ReasonAborted: this operation of a multi-record command was valid,
	// but another operation of the same command was rejected, so none was
	// applied; the detail names the operation that was.
	ReasonAborted Reason = "aborted"
)

// Actor is the actor of changes the service makes on its own (expiries),
// and the source token of its audit events. A constant, safe everywhere.
const Actor = "codi-state"

// maxTTL bounds ttl_ms, so that an expiry time always fits the lease index.
const maxTTL = 100 * 365 * 24 * time.Hour

// Record is one state record, as answered by get and list and carried by
// applied events. Kind and ID are subject tokens as on the wire (IDs stay
// escaped). A Record is a plain value, safe to share once no goroutine
// modifies it.
type Record struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
	// Rev starts at 1 and grows by one per applied change of this kind/id,
	// across deletes, expiries and re-creation: a fencing token.
	Rev uint64 `json:"rev"`
	// Fields are the record's fields, each as its exact (compacted) JSON.
	Fields map[string]json.RawMessage `json:"fields"`
	// UpdatedBy is the actor of the command that made this revision.
	UpdatedBy string `json:"updated_by"`
	// UpdatedAt is when JetStream stored that command, so replays give the
	// same value.
	UpdatedAt time.Time `json:"updated_at"`
	// ExpiresAt is when the record's lease ends; nil for no lease.
	ExpiresAt *time.Time `json:"expires_at"`
	// Seq is the CODI_STATE sequence of the command that made this revision.
	Seq uint64 `json:"seq"`
	// BoundTo is the agent whose presence (the record agent/<BoundTo>) this
	// record is bound to: when that presence ends, the service releases
	// the record (OpRelease). Empty when unbound.
	BoundTo string `json:"bound_to,omitempty"`
}

// Field decodes the field name into dst. It fails with ErrNotFound when the
// record has no such field. It only reads r, so concurrent calls are safe.
func (r Record) Field(name string, dst any) error {
	raw, ok := r.Fields[name]
	if !ok {
		return fmt.Errorf("%w: field %q", ErrNotFound, name)
	}
	return json.Unmarshal(raw, dst)
}

// Event is the outcome of one command (or expiry), published on
// codi.state.evt.<kind>.<id> after commit. It is a plain value, safe to
// share once no goroutine modifies it.
type Event struct {
	// Seq is the CODI_STATE sequence of the command. For an expiry it is the
	// watermark when the expiry was committed: the last command applied
	// before it.
	Seq    uint64 `json:"seq"`
	Status Status `json:"status"`
	// Rev is the record's new revision (applied events only).
	Rev   uint64 `json:"rev,omitempty"`
	Actor string `json:"actor"`
	Op    Op     `json:"op"`
	// Record is the new record of an applied put or merge; nil for a delete
	// or an expiry.
	Record *Record `json:"record,omitempty"`
	// Reason, CurrentRev and Detail describe a rejection.
	Reason     Reason `json:"reason,omitempty"`
	CurrentRev uint64 `json:"current_rev,omitempty"`
	Detail     string `json:"detail,omitempty"`
	// Subject is the raw subject of a command whose subject did not parse
	// (its event goes to codi.state.evt.bad_request); empty otherwise.
	Subject string `json:"subject,omitempty"`
	// UpdatedBy, ExpiresAt and Holder name who has the record a conflict
	// met (when it exists): its last writer, its lease's end, and its
	// holder (Record.Holder: the holder field, or the last writer of a
	// leased record; empty without a lease).
	UpdatedBy string     `json:"updated_by,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Holder    string     `json:"holder,omitempty"`
	// Overlap is, for a reservation refused as a conflict, the live
	// reservation of another agent it overlaps.
	Overlap *Overlap `json:"overlap,omitempty"`
	// Kind and ID name the record of one operation inside a multi-record
	// command's summary event (Ops); empty elsewhere (the subject says).
	Kind string `json:"kind,omitempty"`
	ID   string `json:"id,omitempty"`
	// Ops are the events of a multi-record command's operations, in
	// order, in its summary event (Op OpTxn); Record is left out of them
	// when the summary would be larger than maxSummaryBytes.
	Ops []Event `json:"ops,omitempty"`
}

// MarshalJSON writes the event in the contract's shape: an applied event has
// rev and record, a rejected one has reason and, for a conflict, current_rev
// (also when it is 0). It only reads e; safe for concurrent use.
func (e Event) MarshalJSON() ([]byte, error) {
	if b, ok := appendEvent(make([]byte, 0, eventSizeHint(&e)), &e); ok {
		return b, nil
	}
	return e.marshalReflect()
}

// eventSizeHint is about the size of e's JSON, for a buffer to encode it
// into.
func eventSizeHint(e *Event) int {
	n := 128 + len(e.Actor) + len(e.Detail) + len(e.Subject) + len(e.Kind) + len(e.ID)
	if e.Record != nil {
		n += recordSizeHint(e.Record)
	}
	return n
}

// marshalReflect is MarshalJSON by encoding/json: the path appendEvent
// replaces, taken when it cannot encode e.
func (e Event) marshalReflect() ([]byte, error) {
	if e.Status == StatusRejected {
		type rejected struct {
			Seq        uint64     `json:"seq"`
			Status     Status     `json:"status"`
			Reason     Reason     `json:"reason"`
			Actor      string     `json:"actor"`
			Op         Op         `json:"op"`
			CurrentRev *uint64    `json:"current_rev,omitempty"`
			Detail     string     `json:"detail,omitempty"`
			Subject    string     `json:"subject,omitempty"`
			UpdatedBy  string     `json:"updated_by,omitempty"`
			ExpiresAt  *time.Time `json:"expires_at,omitempty"`
			Holder     string     `json:"holder,omitempty"`
			Overlap    *Overlap   `json:"overlap,omitempty"`
			Kind       string     `json:"kind,omitempty"`
			ID         string     `json:"id,omitempty"`
			Ops        []Event    `json:"ops,omitempty"`
		}
		r := rejected{Seq: e.Seq, Status: e.Status, Reason: e.Reason, Actor: e.Actor, Op: e.Op, Detail: e.Detail, Subject: e.Subject,
			UpdatedBy: e.UpdatedBy, ExpiresAt: e.ExpiresAt, Holder: e.Holder, Overlap: e.Overlap, Kind: e.Kind, ID: e.ID, Ops: e.Ops}
		if e.Reason == ReasonConflict {
			r.CurrentRev = &e.CurrentRev
		}
		return json.Marshal(r)
	}
	type applied struct {
		Seq    uint64  `json:"seq"`
		Status Status  `json:"status"`
		Rev    uint64  `json:"rev,omitempty"`
		Actor  string  `json:"actor"`
		Op     Op      `json:"op"`
		Record *Record `json:"record,omitempty"`
		Kind   string  `json:"kind,omitempty"`
		ID     string  `json:"id,omitempty"`
		Ops    []Event `json:"ops,omitempty"`
	}
	return json.Marshal(applied{Seq: e.Seq, Status: e.Status, Rev: e.Rev, Actor: e.Actor, Op: e.Op, Record: e.Record,
		Kind: e.Kind, ID: e.ID, Ops: e.Ops})
}

// Command is a state change command as an agent sends it; Client.Apply
// encodes it as the contract's JSON. It is a plain value, safe to share
// once no goroutine modifies it.
type Command struct {
	Op Op
	// Fields are the fields to put or merge; each value is encoded with
	// encoding/json. In a merge a nil value removes the field.
	Fields map[string]any
	// ExpectRev, when set, applies the command only if the record's
	// revision equals *ExpectRev; 0 means "only if it does not exist". Use
	// Expect to set it.
	ExpectRev *uint64
	// TTL, when positive, makes the record expire that long after the
	// command is stored unless refreshed. Sent as whole milliseconds.
	TTL time.Duration
	// NoLease removes the record's lease (ttl_ms 0); TTL must be 0.
	NoLease bool
	// Bind, when set, binds the record to the sending agent's presence
	// (true) or unbinds it (false); nil keeps a merged record's binding
	// (a put without it is unbound). See Record.BoundTo. Use Bound or
	// Unbound to set it.
	Bind *bool
}

// Bound and Unbound return new pointers for Command.Bind. Safe for
// concurrent use.
func Bound() *bool   { b := true; return &b }
func Unbound() *bool { return new(bool) }

// Expect returns a pointer to a new copy of rev, for Command.ExpectRev.
// Safe for concurrent use.
func Expect(rev uint64) *uint64 { return &rev }

// MarshalJSON encodes the command as the contract's payload. It only reads
// c; safe for concurrent use as long as nobody modifies c.Fields meanwhile.
func (c Command) MarshalJSON() ([]byte, error) {
	if b, ok := appendCommandMembers(append(make([]byte, 0, 64+32*len(c.Fields)), '{'), &c); ok {
		return append(b, '}'), nil
	}
	return c.marshalReflect()
}

// marshalReflect is MarshalJSON by encoding/json: the path
// appendCommandMembers replaces, taken when a field does not encode (its
// error is this one's).
func (c Command) marshalReflect() ([]byte, error) {
	type wire struct {
		Op        Op      `json:"op"`
		Fields    any     `json:"fields,omitempty"` // a non-nil interface: {} is kept
		ExpectRev *uint64 `json:"expect_rev,omitempty"`
		TTLms     *int64  `json:"ttl_ms,omitempty"`
		Bind      *bool   `json:"bind,omitempty"`
	}
	w := wire{Op: c.Op, ExpectRev: c.ExpectRev, Bind: c.Bind}
	switch {
	case c.Fields != nil:
		w.Fields = c.Fields
	case c.Op == OpPut:
		w.Fields = map[string]any{} // put requires fields
	}
	switch {
	case c.TTL > 0:
		ms := (c.TTL + time.Millisecond - 1).Milliseconds()
		w.TTLms = &ms
	case c.NoLease:
		w.TTLms = new(int64)
	}
	return json.Marshal(w)
}

// command is a decoded, validated command payload.
type command struct {
	op        Op
	fields    map[string]json.RawMessage // nil when absent; null values kept (merge removes)
	expectRev *uint64
	// ttl is nil when ttl_ms is absent; 0 means "no expiry".
	ttl *time.Duration
	// bind is nil when bind is absent.
	bind *bool
}

// decodeCommand parses and validates a command payload strictly
// (strictjson: UTF-8, at most strictjson.MaxDepth levels of nesting, no
// duplicate or unknown members, one object). Its errors become the detail
// of a bad_request rejection.
func decodeCommand(data []byte) (command, error) {
	if p, ok := parseCommand(data); ok {
		w := p.wire
		return commandWire{Op: w.Op, Fields: w.Fields, ExpectRev: w.ExpectRev, TTLms: w.TTLms, Bind: w.Bind}.validate(p.fields)
	}
	return decodeCommandReflect(data)
}

// decodeCommandReflect is decodeCommand by strictjson and encoding/json:
// the path parseCommand replaces, taken for anything outside its shape
// (and for every malformed payload, whose error it words).
func decodeCommandReflect(data []byte) (command, error) {
	var w commandWire
	if err := strictjson.Decode(data, &w); err != nil {
		return command{}, fmt.Errorf("command: %w", err)
	}
	return w.validate(nil)
}

// commandWire is a command payload as sent.
type commandWire struct {
	Op        *string         `json:"op"`
	Fields    json.RawMessage `json:"fields"`
	ExpectRev *int64          `json:"expect_rev"`
	TTLms     *int64          `json:"ttl_ms"`
	Bind      *bool           `json:"bind"`
}

// validate validates w. fields, when not nil, is w.Fields (an object)
// decoded already, as json.Unmarshal into it gives it.
func (w commandWire) validate(fields map[string]json.RawMessage) (command, error) {
	var c command
	if w.Op == nil {
		return command{}, errors.New("op is required")
	}
	switch op := Op(*w.Op); op {
	case OpPut, OpMerge, OpDelete:
		c.op = op
	default:
		return command{}, fmt.Errorf("unknown op %q", truncate(*w.Op, 64))
	}
	if f := bytes.TrimSpace(w.Fields); len(f) > 0 && !bytes.Equal(f, []byte("null")) {
		if f[0] != '{' {
			return command{}, errors.New("fields must be an object")
		}
		c.fields = fields
		if c.fields == nil {
			if err := json.Unmarshal(f, &c.fields); err != nil {
				return command{}, fmt.Errorf("fields: %w", err) // unreachable: checked above
			}
		}
	}
	if c.op == OpPut && c.fields == nil {
		return command{}, errors.New(`put needs fields, an object ({} for a record without fields)`)
	}
	if w.ExpectRev != nil {
		if *w.ExpectRev < 0 {
			return command{}, fmt.Errorf("expect_rev %d is negative", *w.ExpectRev)
		}
		r := uint64(*w.ExpectRev)
		c.expectRev = &r
	}
	if w.TTLms != nil {
		ttl := time.Duration(*w.TTLms) * time.Millisecond
		switch {
		case *w.TTLms < 0:
			return command{}, fmt.Errorf("ttl_ms %d is negative", *w.TTLms)
		case *w.TTLms > maxTTL.Milliseconds():
			return command{}, fmt.Errorf("ttl_ms %d is above %d", *w.TTLms, maxTTL.Milliseconds())
		}
		c.ttl = &ttl
	}
	c.bind = w.Bind
	if c.op == OpDelete && (c.fields != nil || c.ttl != nil || c.bind != nil) {
		return command{}, errors.New("delete takes no fields, no ttl_ms and no bind")
	}
	return c, nil
}

func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// truncate shortens s to at most n bytes for an error detail.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// auditRecord is the payload of the audit event of every command outcome and
// expiry, published to codi.audit.log.codi-state.state[.<kind>].
type auditRecord struct {
	Seq    uint64 `json:"seq"`
	Status Status `json:"status"`
	Kind   string `json:"kind"`
	ID     string `json:"id"`
	Actor  string `json:"actor"`
	Op     Op     `json:"op"`
	Rev    uint64 `json:"rev"`
	Reason Reason `json:"reason"`
	Detail string `json:"detail"`
	// Subject is the raw subject of a command whose subject did not parse.
	Subject string `json:"subject,omitempty"`
	// Txn is the id of the multi-record command the operation was part of.
	Txn string `json:"txn,omitempty"`
}

// watermark is the body of codi.state.committed and of the status reply.
type watermark struct {
	StreamSeq uint64 `json:"stream_seq"`
}

// getRequest is the body of a get request: wait until the watermark
// reaches MinSeq, for at most WaitMS milliseconds (absent: Config.GetWait;
// lowered to Config.MaxGetWait).
type getRequest struct {
	MinSeq uint64 `json:"min_seq"`
	WaitMS *int64 `json:"wait_ms,omitempty"`
}

// ListOptions is the body of a list request. Prefix and After apply to ids
// (escaped, as on the wire). It is a plain value, safe to share.
type ListOptions struct {
	// Prefix selects ids starting with it.
	Prefix string `json:"prefix"`
	// After starts the page after this id: pass the previous NextAfter.
	After string `json:"after"`
	// Limit is the page size: 0 means DefaultListLimit; the service lowers
	// it to its MaxListLimit.
	Limit int `json:"limit"`
}

// ListResult is a page of records in id order. It is a plain value, safe
// to share once no goroutine modifies it.
type ListResult struct {
	Records []Record `json:"records"`
	// NextAfter is the id to pass as After for the next page; empty on the
	// last page.
	NextAfter string `json:"next_after"`
}

// UnmarshalJSON decodes a page as encoding/json decodes it into a zero
// ListResult (which it replaces): the service's replies, whose records
// are in the codec's form, in one pass without reflection (parseListResult);
// anything else through encoding/json. A page of 1,000 records is most of
// a filtered list's time in the client otherwise.
func (r *ListResult) UnmarshalJSON(data []byte) error {
	if res, ok := parseListResult(data); ok {
		*r = res
		return nil
	}
	type plain ListResult // without this method
	var res plain
	if err := json.Unmarshal(data, &res); err != nil {
		return err
	}
	*r = ListResult(res)
	return nil
}
