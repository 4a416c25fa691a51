package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
)

// DefaultClientTimeout bounds a Client request whose ctx has no deadline.
const DefaultClientTimeout = time.Minute

// statusPoll is how often WaitCommitted asks codi.audit.status, in case a
// watermark message was lost (core NATS delivers at most once).
const statusPoll = 200 * time.Millisecond

// Client logs audit events and asks the audit service, using only what a
// NATS client sees: JetStream publishes to codi.audit.log.>, requests to
// codi.audit.query, codi.audit.verify and codi.audit.status, and the
// codi.audit.committed watermark. It does not own the connection. A Client
// is safe for concurrent use; Close it to drop its watermark subscription.
type Client struct {
	nc *nats.Conn
	js jetstream.JetStream

	mu      sync.Mutex
	sub     *nats.Subscription
	high    Watermark
	changed chan struct{} // closed and replaced when high grows
}

// NewClient returns a client over nc. It subscribes to nothing until
// LogAndWait or WaitCommitted is first called.
func NewClient(nc *nats.Conn) (*Client, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: nil connection", ErrBadRequest)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("audit: jetstream: %w", err)
	}
	return &Client{nc: nc, js: js, changed: make(chan struct{})}, nil
}

// Close drops the watermark subscription, if LogAndWait or WaitCommitted
// made one. The client stays usable for the other calls.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sub == nil {
		return nil
	}
	err := c.sub.Unsubscribe()
	c.sub = nil
	return err
}

// LogOption is a per-call option of Log and LogAndWait.
type LogOption func(*nats.Msg) error

// WithMsgID sets the event's Nats-Msg-Id. The log holds an event with a
// given id once, however often and however far apart it is published, so a
// producer that may publish an event again (after a crash, a timeout)
// should derive the id from the event. Without it, each Log call is a new
// event, and costs the log no id index entry.
func WithMsgID(id string) LogOption {
	return func(m *nats.Msg) error {
		m.Header.Set(jetstream.MsgIDHeader, id)
		return nil
	}
}

// WithTokens appends tokens after the category:
// codi.audit.log.<source>.<category>.<tokens…>.
func WithTokens(tokens ...string) LogOption {
	return func(m *nats.Msg) error {
		p, err := subjects.Parse(m.Subject)
		if err != nil {
			return err
		}
		m.Subject, err = subjects.AuditLog(p.Source, p.Category, append(p.Rest, tokens...)...)
		return err
	}
}

// WithHeader adds a header to the event. Headers are not part of the
// record, except Nats-Msg-Id.
func WithHeader(key, value string) LogOption {
	return func(m *nats.Msg) error {
		m.Header.Add(key, value)
		return nil
	}
}

// Log publishes an event on codi.audit.log.<source>.<category> and returns
// the PubAck: the event is stored in CODI_AUDIT and will be in the log.
// source and category must be subject tokens (see subjects.Escape). data
// is kept as JSON if it is JSON, else as bytes. Log does not retry on its
// own (nats.go retries only while the stream has no responders); a caller
// that retries should use WithMsgID so that the event is recorded once.
func (c *Client) Log(ctx context.Context, source, category string, data []byte, opts ...LogOption) (*jetstream.PubAck, error) {
	subj, err := subjects.AuditLog(source, category)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	m := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}
	for _, o := range opts {
		if err := o(m); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
	}
	ack, err := c.js.PublishMsg(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("audit: log %s: %w", m.Subject, err)
	}
	return ack, nil
}

// LogAndWait is Log, then waits until the event is committed to the log
// (the watermark reaches its PubAck sequence), so it survives power loss.
// On a wait error the PubAck is returned too: the event is stored, only
// its commit was not seen.
func (c *Client) LogAndWait(ctx context.Context, source, category string, data []byte, opts ...LogOption) (*jetstream.PubAck, error) {
	if err := c.watch(); err != nil {
		return nil, err
	}
	ack, err := c.Log(ctx, source, category, data, opts...)
	if err != nil {
		return nil, err
	}
	if _, err := c.wait(ctx, ack.Sequence); err != nil {
		return ack, err
	}
	return ack, nil
}

// WaitCommitted waits until every CODI_AUDIT event up to streamSeq is in the
// log and returns the watermark seen. It listens to codi.audit.committed
// and asks codi.audit.status now and then in case a watermark was lost.
func (c *Client) WaitCommitted(ctx context.Context, streamSeq uint64) (Watermark, error) {
	if err := c.watch(); err != nil {
		return Watermark{}, err
	}
	if st, err := c.Status(ctx); err == nil {
		c.observe(Watermark{StreamSeq: st.StreamSeq, Seq: st.Seq})
	}
	return c.wait(ctx, streamSeq)
}

func (c *Client) wait(ctx context.Context, streamSeq uint64) (Watermark, error) {
	var poll *time.Ticker
	for {
		c.mu.Lock()
		w, ch := c.high, c.changed
		c.mu.Unlock()
		if w.StreamSeq >= streamSeq {
			if poll != nil {
				poll.Stop()
			}
			return w, nil
		}
		if poll == nil {
			poll = time.NewTicker(statusPoll)
			defer poll.Stop()
		}
		select {
		case <-ch:
		case <-poll.C:
			st, err := c.Status(ctx)
			if err == nil {
				c.observe(Watermark{StreamSeq: st.StreamSeq, Seq: st.Seq})
			} else if c.nc.IsClosed() {
				// No watermark can come: the connection gave up
				// reconnecting (or was closed), as when the server
				// stopped for good.
				return w, fmt.Errorf("audit: wait for stream_seq %d (committed %d): %w", streamSeq, w.StreamSeq, nats.ErrConnectionClosed)
			}
		case <-ctx.Done():
			return w, fmt.Errorf("audit: wait for stream_seq %d (committed %d): %w", streamSeq, w.StreamSeq, ctx.Err())
		}
	}
}

// watch subscribes to the watermark once.
func (c *Client) watch() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sub != nil {
		return nil
	}
	sub, err := c.nc.Subscribe(subjects.AuditCommitted, func(m *nats.Msg) {
		var w Watermark
		if json.Unmarshal(m.Data, &w) == nil {
			c.observe(w)
		}
	})
	if err != nil {
		return fmt.Errorf("audit: subscribe %s: %w", subjects.AuditCommitted, err)
	}
	c.sub = sub
	return nil
}

func (c *Client) observe(w Watermark) {
	c.mu.Lock()
	if w.StreamSeq > c.high.StreamSeq {
		c.high = w
		close(c.changed)
		c.changed = make(chan struct{})
	}
	c.mu.Unlock()
}

// request makes a micro request and maps its error headers.
func (c *Client) request(ctx context.Context, subject string, body any) ([]byte, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultClientTimeout)
		defer cancel()
	}
	resp, err := c.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return nil, fmt.Errorf("audit: %s: %w", subject, err)
	}
	if code := resp.Header.Get(micro.ErrorCodeHeader); code != "" {
		kind := ErrRemote
		if code == "400" {
			kind = ErrBadRequest
		}
		return nil, fmt.Errorf("%w: %s: %s %s", kind, subject, code, resp.Header.Get(micro.ErrorHeader))
	}
	return resp.Data, nil
}

// Query reads one page of records. A record larger than one reply is
// fetched in parts and returned whole, alone on its page. Queries only read,
// so retrying one is always safe.
func (c *Client) Query(ctx context.Context, q Query) (QueryResult, error) {
	req := struct {
		Query
		PartOffset int `json:"part_offset,omitempty"`
	}{Query: q}
	var (
		buf        []byte
		part       uint64
		nextBefore uint64 // a newest-first page's continuation, from the first part
	)
	for {
		data, err := c.request(ctx, subjects.AuditQuery, req)
		if err != nil {
			return QueryResult{}, err
		}
		var rep queryReply
		if err := json.Unmarshal(data, &rep); err != nil {
			return QueryResult{}, fmt.Errorf("audit: query reply: %w", err)
		}
		if p := rep.Part; p != nil {
			switch {
			case buf == nil && p.Offset == 0:
				buf, part, nextBefore = make([]byte, 0, p.Size), p.Seq, rep.NextBeforeSeq
			case p.Seq != part || p.Offset != len(buf):
				return QueryResult{}, fmt.Errorf("%w: record %d", ErrChanged, part)
			}
			buf = append(buf, p.Data...)
			if len(buf) < p.Size {
				req.AfterSeq, req.PartOffset = p.Seq-1, len(buf)
				if q.NewestFirst {
					req.BeforeSeq = p.Seq + 1
				}
				continue
			}
			r, err := ParseRecord(buf) // joined parts: not validated yet
			if err != nil {
				return QueryResult{}, err
			}
			res := QueryResult{Records: []Record{r}, NextAfterSeq: rep.NextAfterSeq}
			if q.NewestFirst {
				res.NextAfterSeq, res.NextBeforeSeq = 0, nextBefore
			}
			return res, nil
		}
		if buf != nil {
			return QueryResult{}, fmt.Errorf("%w: record %d", ErrChanged, part)
		}
		res := QueryResult{Records: make([]Record, 0, len(rep.Records)), NextAfterSeq: rep.NextAfterSeq, NextBeforeSeq: rep.NextBeforeSeq}
		for _, raw := range rep.Records {
			r, err := parseValid(raw) // the reply was validated as a whole
			if err != nil {
				return QueryResult{}, err
			}
			res.Records = append(res.Records, r)
		}
		return res, nil
	}
}

// Verify asks the service to check the hash chain over req's range. A
// whole-log verify reads every record: give ctx a deadline that fits the
// log (about two seconds per million records on the reference machine).
func (c *Client) Verify(ctx context.Context, req VerifyRequest) (VerifyResult, error) {
	var res VerifyResult
	data, err := c.request(ctx, subjects.AuditVerify, req)
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return res, fmt.Errorf("audit: verify reply: %w", err)
	}
	return res, nil
}

// Status asks the service for its watermark and log size.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	data, err := c.request(ctx, subjects.AuditStatus, struct{}{})
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("audit: status reply: %w", err)
	}
	return st, nil
}

// Export writes every record q selects to w, one JSON line each, byte for
// byte as stored, paging codi.audit.query from q.AfterSeq with q.Limit
// records per page, and returns the number written. It ends at the end of
// the log as it was when the last page was read. The output is what
// VerifyExport checks (export without Source and Category to verify it).
// Safe for concurrent use with distinct writers.
func Export(ctx context.Context, nc *nats.Conn, w io.Writer, q Query) (int, error) {
	c, err := NewClient(nc)
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	n := 0
	for {
		res, err := c.Query(ctx, q)
		if err != nil {
			return n, err
		}
		for _, r := range res.Records {
			bw.Write(r.Raw)
			if err := bw.WriteByte('\n'); err != nil {
				return n, fmt.Errorf("audit: export: %w", err)
			}
			n++
		}
		if res.NextAfterSeq == 0 {
			break
		}
		if res.NextAfterSeq <= q.AfterSeq {
			return n, fmt.Errorf("%w: export: query did not advance past seq %d", ErrRemote, q.AfterSeq)
		}
		q.AfterSeq = res.NextAfterSeq
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("audit: export: %w", err)
	}
	return n, nil
}
