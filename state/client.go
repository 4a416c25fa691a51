package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"

	"github.com/codi2/codi2/subjects"
)

// DefaultTimeout bounds a Client call whose context has no deadline. A
// constant, safe everywhere.
const DefaultTimeout = 10 * time.Second

// Client is an agent's client of the state service: it sends commands as
// that agent (the actor token of the command subject) and reads records.
// It needs only a NATS connection. A Client is safe for concurrent use; it
// does not own the connection.
//
// Kinds and ids are subject tokens as on the wire: turn a path or URL into
// an id with subjects.Escape first; records carry the escaped id.
type Client struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	agent string
	revs  revHints
}

// revHints remembers the revision at which this client last claimed,
// renewed or released a record, so that its next claim of it (a renewal, a claim
// after its own release) is a merge at that revision rather than a create
// that fails first. A hint is only a first guess: a stale one costs the
// conflict that a create would have cost. Bounded by maxRevHints.
type revHints struct {
	mu sync.Mutex
	m  map[string]uint64
}

// maxRevHints bounds a client's hints; when full, it forgets them all.
const maxRevHints = 4096

func revHintKey(kind, id string) string { return kind + "\x00" + id }

func (h *revHints) get(kind, id string) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[revHintKey(kind, id)]
}

func (h *revHints) set(kind, id string, rev uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil || len(h.m) >= maxRevHints {
		h.m = make(map[string]uint64)
	}
	h.m[revHintKey(kind, id)] = rev
}

// NewClient returns the client of agent over nc. agent must be a valid agent
// id (a subject token other than "all"); the error then wraps ErrConfig.
// NewClient does no I/O and is safe for concurrent use.
func NewClient(nc *nats.Conn, agent string) (*Client, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: a NATS connection is required", ErrConfig)
	}
	if err := subjects.ValidAgent(agent); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("state: jetstream: %w", err)
	}
	return &Client{nc: nc, js: js, agent: agent}, nil
}

// Agent is the agent id the client sends commands as. Safe for concurrent
// use.
func (c *Client) Agent() string { return c.agent }

func withDefault(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

// Err returns nil for an applied event, and for a rejected one an error
// wrapping ErrConflict, ErrBadRequest or ErrCorrupt with the details. It only reads e;
// safe for concurrent use.
func (e Event) Err() error {
	switch {
	case e.Status == StatusApplied:
		return nil
	case e.Reason == ReasonConflict:
		return fmt.Errorf("%w: seq %d: current rev %d", ErrConflict, e.Seq, e.CurrentRev)
	case e.Reason == ReasonBadRequest:
		return fmt.Errorf("%w: seq %d: %s", ErrBadRequest, e.Seq, e.Detail)
	case e.Reason == ReasonCorrupt:
		return fmt.Errorf("%w: seq %d: %s", ErrCorrupt, e.Seq, e.Detail)
	}
	return fmt.Errorf("%w: seq %d: status %q reason %q", ErrRemote, e.Seq, e.Status, e.Reason)
}

// Apply sends cmd for kind/id to CODI_STATE and waits for its outcome
// event. It subscribes to codi.state.evt.<kind>.<id> before publishing, so
// the event cannot be missed, and matches it by the PubAck sequence. It
// returns the event and, for a rejection, an error wrapping ErrConflict or
// ErrBadRequest. When the context ends after the PubAck but before the
// event, the command is stored and will be applied: the error wraps
// ErrTimeout and names the sequence, and Get with that min_seq reads the
// result. Each call publishes with a fresh Nats-Msg-Id, so JetStream's own
// publish retries store the command once; a caller that retries Apply after
// ErrTimeout sends a second command (use expect_rev to make that safe). Safe
// for concurrent use, also on one kind/id: each call has its own
// subscription and matches its own sequence.
func (c *Client) Apply(ctx context.Context, kind, id string, cmd Command) (Event, error) {
	ctx, cancel := withDefault(ctx)
	defer cancel()
	subj, err := subjects.StateCmd(kind, id, c.agent)
	if err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	evtSubj, _ := subjects.StateEvt(kind, id)
	data, err := cmd.MarshalJSON()
	if err != nil {
		return Event{}, fmt.Errorf("%w: %s: %w", ErrBadRequest, subj, err)
	}
	ev, err := c.publish(ctx, subj, evtSubj, nuid.Next(), data, func(ev Event) bool { return ev.Op != OpExpire && ev.Op != OpRelease })
	if err != nil {
		return Event{}, err
	}
	return ev, ev.Err()
}

// publish stores data on subj with Nats-Msg-Id msgID and waits for its
// outcome event on evtSubj: the first whose seq is the PubAck's and that
// mine accepts. It subscribes before publishing, so the event cannot be
// missed. A context that ends after the PubAck is ErrTimeout naming the
// sequence.
//
// The events wait in a small channel of the call's own (outcomeBuffer)
// rather than a SubscribeSync, whose 65,536-slot channel (nats.go's
// DefaultSubChanLen) was half a megabyte allocated, and scanned by the
// garbage collector, per command.
func (c *Client) publish(ctx context.Context, subj, evtSubj, msgID string, data []byte, mine func(Event) bool) (Event, error) {
	events := make(chan *nats.Msg, outcomeBuffer)
	sub, err := c.nc.ChanSubscribe(evtSubj, events)
	if err != nil {
		return Event{}, fmt.Errorf("state: subscribe %s: %w", evtSubj, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	msg := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, msgID)
	ack, err := c.js.PublishMsg(ctx, msg)
	if err != nil {
		return Event{}, fmt.Errorf("state: publish %s: %w", subj, err)
	}
	for {
		select {
		case m := <-events:
			var ev Event
			if json.Unmarshal(m.Data, &ev) == nil && ev.Seq == ack.Sequence && mine(ev) {
				return ev, nil
			}
		case <-ctx.Done():
			if n, _ := sub.Dropped(); n > 0 {
				return Event{}, fmt.Errorf("%w: no outcome for %s seq %d: %d events of %s arrived faster than they were read and were dropped: %w",
					ErrTimeout, subj, ack.Sequence, n, evtSubj, context.Cause(ctx))
			}
			return Event{}, fmt.Errorf("%w: no outcome for %s seq %d: %w", ErrTimeout, subj, ack.Sequence, context.Cause(ctx))
		}
	}
}

// notFoundError is ErrNotFound as the service words it: "state: task
// NOPE not found".
type notFoundError string

func (e notFoundError) Error() string { return "state: " + string(e) }

// Unwrap makes errors.Is(err, ErrNotFound) true.
func (e notFoundError) Unwrap() error { return ErrNotFound }

// outcomeBuffer is how many events of the record a command waits on are
// held for it: those of other commands on the same record that arrive
// before its own, while it waits for its PubAck. nats.go drops what does
// not fit (a slow consumer), which publish reports at its timeout.
const outcomeBuffer = 1024

// HolderField is the field Claim sets to the claiming agent and Release
// clears (null): who holds a record's lease. Refresh and Release refuse a
// lease held by another agent. A record leased without it (a plain command
// with ttl_ms) is held by its updated_by.
const HolderField = "holder"

// Holder returns the agent holding r's lease, or "" when r has none.
func (r Record) Holder() string {
	if r.ExpiresAt == nil {
		return ""
	}
	var h string
	if raw, ok := r.Fields[HolderField]; ok && json.Unmarshal(raw, &h) == nil && h != "" {
		return h
	}
	return r.UpdatedBy
}

// Claim takes a lease of ttl on kind/id for this agent if nobody else holds
// one, setting HolderField to this agent and merging fields: when the record
// does not exist it is created (expect_rev 0); when it exists without a
// lease (released, or never leased) it is taken at its revision; when this
// agent already holds it the lease is renewed. It returns the record, whose
// Rev is the fencing token for Refresh and Release. When another agent's
// lease is live it fails with a *HeldError (wrapping ErrConflict) naming the
// holder. ttl must be positive. Safe for concurrent use: of concurrent
// claims on one kind/id exactly one wins, since each goes through
// expect_rev.
func (c *Client) Claim(ctx context.Context, kind, id string, ttl time.Duration, fields map[string]any) (Record, error) {
	return c.ClaimWith(ctx, kind, id, ClaimOptions{TTL: ttl, Fields: fields})
}

// ClaimOptions are the options of ClaimWith. A plain value.
type ClaimOptions struct {
	// TTL is the lease's length; it must be positive.
	TTL time.Duration
	// Fields are merged into the record (HolderField is always this agent).
	Fields map[string]any
	// Bind binds the claim to this agent's presence (KindAgent): when the
	// presence ends, the service releases it (Command.Bind).
	Bind bool
}

// ClaimWith is Claim with options: the same rules, and the claim bound to
// this agent's presence when o.Bind is set, unbound otherwise (also when it
// was bound before: a renewal by claim says what it wants). Safe for
// concurrent use.
func (c *Client) ClaimWith(ctx context.Context, kind, id string, o ClaimOptions) (Record, error) {
	ttl, fields := o.TTL, o.Fields
	bind := Unbound() // explicit: re-claiming with Bind false unbinds
	if o.Bind {
		bind = Bound()
	}
	if ttl <= 0 {
		return Record{}, fmt.Errorf("%w: a claim needs a positive ttl, got %v", ErrBadRequest, ttl)
	}
	f := map[string]any{HolderField: c.agent}
	for k, v := range fields {
		if k != HolderField {
			f[k] = v
		}
	}
	// No read first: of racing claims on a new record exactly one create
	// is applied, and each loser learns the holder from its conflict event
	// (CONTRACT.md section 2: a conflict names the current holder), so a
	// claim on a new or held record is one command. A record that exists
	// without another agent's live lease (released, never leased, or this
	// agent's own) takes a second one: the merge at the revision the
	// conflict named; unless this client claimed or released it last (a
	// renewal, a claim after its own release), when the merge at that
	// revision goes first. Each attempt is a command in the audit log, the
	// lost ones included.
	cmd := Command{Op: OpPut, Fields: f, ExpectRev: Expect(0), TTL: ttl, Bind: bind}
	if rev := c.revs.get(kind, id); rev > 0 {
		cmd.Op, cmd.ExpectRev = OpMerge, Expect(rev)
	}
	for attempt := 1; ; attempt++ {
		ev, err := c.Apply(ctx, kind, id, cmd)
		switch {
		case err == nil && ev.Record == nil:
			return Record{}, fmt.Errorf("%w: applied event without a record", ErrRemote)
		case err == nil:
			c.revs.set(kind, id, ev.Record.Rev)
			return *ev.Record, nil
		case ev.Status != StatusRejected || ev.Reason != ReasonConflict:
			return Record{}, err
		case ev.Holder != "" && ev.Holder != c.agent:
			return Record{}, &HeldError{Record: heldRecord(kind, id, ev)}
		case attempt == maxClaimAttempts:
			return Record{}, err
		case ev.CurrentRev == 0:
			cmd.Op, cmd.ExpectRev = OpPut, Expect(0) // gone since: create it
		default:
			cmd.Op, cmd.ExpectRev = OpMerge, Expect(ev.CurrentRev) // free, or ours: take it
		}
	}
}

// maxClaimAttempts bounds the commands of one claim: the create, the
// merge at the revision its conflict named, and one more should the
// record change in between (released, expired or renewed again).
const maxClaimAttempts = 3

// heldRecord is the record a conflict event describes: kind, id, its
// revision (the holder's fencing token), last writer, lease end and
// holder. The other fields are not in the event and stay empty.
func heldRecord(kind, id string, ev Event) Record {
	r := Record{Kind: kind, ID: id, Rev: ev.CurrentRev, UpdatedBy: ev.UpdatedBy, ExpiresAt: ev.ExpiresAt}
	if h, err := json.Marshal(ev.Holder); err == nil {
		r.Fields = map[string]json.RawMessage{HolderField: h}
	}
	return r
}

// HeldError is the ErrConflict of a lease operation that found another
// agent's lease live: Record is the record as read (Refresh, Release) or
// as the lost claim's conflict event named it (Claim: Kind, ID, Rev,
// UpdatedBy, ExpiresAt and the holder field only), Record.Holder() the
// holder, Rev the fencing token the holder has and ExpiresAt when the
// lease ends unless renewed.
type HeldError struct {
	Record Record
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("%s: %s/%s is held by %s at rev %d until %s", ErrConflict, e.Record.Kind, e.Record.ID,
		e.Record.Holder(), e.Record.Rev, e.Record.ExpiresAt.UTC().Format(time.RFC3339))
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *HeldError) Unwrap() error { return ErrConflict }

// ErrNoLease is the ErrConflict of Refresh or Release on a record that has
// no live lease: there is nothing to renew or release (claim it first).
var ErrNoLease = fmt.Errorf("%w: no live lease", ErrConflict)

// mine reads kind/id and checks that this agent holds its lease: ErrNotFound
// when it does not exist, ErrNoLease when it has no lease, a *HeldError
// when another agent holds it.
func (c *Client) mine(ctx context.Context, kind, id string) (Record, error) {
	cur, err := c.Get(ctx, kind, id, 0)
	if err != nil {
		return Record{}, err
	}
	switch h := cur.Holder(); {
	case h == "":
		return Record{}, fmt.Errorf("%w on %s/%s (rev %d): claim it first", ErrNoLease, kind, id, cur.Rev)
	case h != c.agent:
		return Record{}, &HeldError{Record: cur}
	}
	return cur, nil
}

// Refresh extends this agent's lease on kind/id to ttl from now, if the
// record is still at rev (the claim has not expired or been taken). It
// returns the record with its new Rev; it fails with ErrNotFound, ErrNoLease,
// a *HeldError when another agent holds it, or ErrConflict when the record
// moved on. Safe for concurrent use; expect_rev makes a retried refresh
// harmless.
func (c *Client) Refresh(ctx context.Context, kind, id string, rev uint64, ttl time.Duration) (Record, error) {
	if ttl <= 0 {
		return Record{}, fmt.Errorf("%w: refresh needs a positive ttl, got %v", ErrBadRequest, ttl)
	}
	if _, err := c.mine(ctx, kind, id); err != nil {
		return Record{}, err
	}
	rec, err := c.applyRecord(ctx, kind, id, Command{Op: OpMerge, ExpectRev: Expect(rev), TTL: ttl})
	if err == nil {
		c.revs.set(kind, id, rec.Rev)
	}
	return rec, err
}

// Release ends this agent's lease on kind/id if the record is still at rev
// (the caller's claim), clearing HolderField and any presence binding and
// keeping the record's other fields (status, assignee): the record is free
// to claim again. It returns
// the record with its new Rev, or fails as Refresh does. Safe for
// concurrent use.
func (c *Client) Release(ctx context.Context, kind, id string, rev uint64) (Record, error) {
	if _, err := c.mine(ctx, kind, id); err != nil {
		return Record{}, err
	}
	rec, err := c.applyRecord(ctx, kind, id, Command{Op: OpMerge, Fields: map[string]any{HolderField: nil}, ExpectRev: Expect(rev), NoLease: true,
		Bind: Unbound()})
	if err == nil {
		c.revs.set(kind, id, rec.Rev)
	}
	return rec, err
}

// ReleaseDelete ends this agent's lease on kind/id by removing the record,
// if it is still at rev (the caller's claim): Release's checks, Delete's
// effect. It fails as Release does: ErrNotFound, ErrNoLease, a *HeldError
// when another agent holds it, or ErrConflict when the record moved on.
// Safe for concurrent use.
func (c *Client) ReleaseDelete(ctx context.Context, kind, id string, rev uint64) error {
	if _, err := c.mine(ctx, kind, id); err != nil {
		return err
	}
	return c.Delete(ctx, kind, id, rev)
}

// Delete removes kind/id if it is still at rev (its tombstone keeps the
// revision, so a re-created record goes on from it). It fails with
// ErrConflict when the record moved on or is gone. Safe for concurrent use.
func (c *Client) Delete(ctx context.Context, kind, id string, rev uint64) error {
	_, err := c.Apply(ctx, kind, id, Command{Op: OpDelete, ExpectRev: Expect(rev)})
	return err
}

func (c *Client) applyRecord(ctx context.Context, kind, id string, cmd Command) (Record, error) {
	ev, err := c.Apply(ctx, kind, id, cmd)
	if err != nil {
		return Record{}, err
	}
	if ev.Record == nil {
		return Record{}, fmt.Errorf("%w: applied event without a record", ErrRemote)
	}
	return *ev.Record, nil
}

// Get reads kind/id. With minSeq > 0 the service first waits until it has
// applied CODI_STATE up to minSeq (pass a PubAck sequence to read your own
// write). It fails with ErrNotFound, or ErrTimeout when the watermark did
// not get there in time. Reads have no effects, so Get may be retried
// freely; safe for concurrent use.
func (c *Client) Get(ctx context.Context, kind, id string, minSeq uint64) (Record, error) {
	subj, err := subjects.StateGet(kind, id)
	if err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	ctx, cancel := withDefault(ctx)
	defer cancel()
	var body []byte
	if minSeq > 0 {
		req := getRequest{MinSeq: minSeq}
		if deadline, ok := ctx.Deadline(); ok {
			// Ask to wait about as long as this call may, so that a slow
			// watermark is a 504 (ErrTimeout) rather than no reply.
			ms := max(0, time.Until(deadline)*9/10).Milliseconds()
			ms = min(ms, DefaultMaxGetWait.Milliseconds())
			req.WaitMS = &ms
		}
		body = mustJSON(req)
	}
	var rec Record
	return rec, c.request(ctx, subj, body, &rec)
}

// List reads a page of kind's records in id order. Pass NextAfter as
// opts.After to read the next page; pages are separate reads, so a record
// written between two of them may or may not show. Safe for concurrent use.
func (c *Client) List(ctx context.Context, kind string, opts ListOptions) (ListResult, error) {
	subj, err := subjects.StateList(kind)
	if err != nil {
		return ListResult{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	var res ListResult
	return res, c.request(ctx, subj, mustJSON(opts), &res)
}

// Status returns the service's watermark: every command up to this
// CODI_STATE sequence is applied and durable in the store. Safe for
// concurrent use.
func (c *Client) Status(ctx context.Context) (uint64, error) {
	var w watermark
	err := c.request(ctx, subjects.StateStatus, nil, &w)
	return w.StreamSeq, err
}

// request makes a request to the service and decodes its JSON reply into v,
// mapping micro error replies onto the package's errors.
func (c *Client) request(ctx context.Context, subj string, body []byte, v any) error {
	ctx, cancel := withDefault(ctx)
	defer cancel()
	resp, err := c.nc.RequestWithContext(ctx, subj, body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, subj, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %s: %w", ErrTimeout, subj, err)
	case err != nil:
		return fmt.Errorf("state: request %s: %w", subj, err)
	}
	if code := resp.Header.Get(micro.ErrorCodeHeader); code != "" {
		msg := resp.Header.Get(micro.ErrorHeader)
		sentinel := ErrRemote
		switch code {
		case codeNotFound:
			sentinel = ErrNotFound
		case codeBadRequest:
			sentinel = ErrBadRequest
		case codeTimeout:
			sentinel = ErrTimeout
		case codeUnavailable:
			sentinel = ErrUnavailable
		}
		if sentinel == ErrNotFound && msg != "" {
			// The service names what it did not find ("task NOPE not
			// found"): the request's subject and code add nothing a
			// user of the CLI or MCP tools can act on, and "not found"
			// twice reads badly.
			return notFoundError(msg)
		}
		return fmt.Errorf("%w: %s: %s %s", sentinel, subj, code, msg)
	}
	if err := decodeReply(resp.Data, v); err != nil {
		return fmt.Errorf("%w: %s: bad reply: %w", ErrRemote, subj, err)
	}
	return nil
}

// decodeReply decodes a reply into v: straight through v's own decoder when
// it has one (ListResult's one pass, which falls back to encoding/json and
// its checks), since json.Unmarshal would first scan the whole reply twice,
// to check it and to find its end.
func decodeReply(data []byte, v any) error {
	if u, ok := v.(json.Unmarshaler); ok {
		return u.UnmarshalJSON(data)
	}
	return json.Unmarshal(data, v)
}
