package audit

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/codi2/codi2/subjects"
)

// Bulk events (a proposed contract addition, see the README's "Bulk
// events"): one CODI_AUDIT message that carries up to MaxBulkEntries
// events of one source, which the service appends as one record each, in
// order, in the transaction that appends the message. A bulk writer (codi2
// import v1) then costs JetStream, the consumer and the acks one message
// per hundreds of events instead of one per event.
const (
	// BulkHeader marks a bulk message; its value is the format version,
	// BulkVersion. A message without it is one event, whatever its subject.
	BulkHeader = "Codi-Audit-Bulk"
	// BulkVersion is the one format version: the payload is a sequence of
	// entries, each
	//
	//	<subject> [<msg-id>] <#bytes>\r\n<payload>\r\n
	//
	// the shape of the NATS protocol's PUB: the event's subject, its
	// Nats-Msg-Id (optional), and its payload's length in bytes.
	BulkVersion = "1"
	// BulkCategory is the category token of a bulk message's own subject,
	// codi.audit.log.<source>.bulk. Its entries' subjects name their own
	// categories.
	BulkCategory = "bulk"
	// MaxBulkEntries bounds the entries of one bulk message, so that its
	// records fit in one store transaction.
	MaxBulkEntries = 1024
	// FlagBadBulk flags the record of a bulk message that could not be
	// expanded (a malformed payload, an entry of another source or with a
	// subject the contract does not allow, too many entries): the message is
	// kept whole, as one record of its own subject, never dropped.
	FlagBadBulk = "bad_bulk"
)

// Bulk builds a bulk message of one source's events, for
// Client.LogBulkAsync. The zero value is not usable: use NewBulk. Not safe
// for concurrent use.
type Bulk struct {
	source string
	prefix string // codi.audit.log.<source>.
	buf    []byte
	n      int
}

// NewBulk returns an empty Bulk for events of source, which must be a
// subject token. Errors wrap ErrBadRequest.
func NewBulk(source string) (*Bulk, error) {
	subj, err := subjects.AuditLog(source, BulkCategory)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return &Bulk{source: source, prefix: strings.TrimSuffix(subj, BulkCategory)}, nil
}

// Add appends the event codi.audit.log.<source>.<category>[.<more>…] with
// payload data and Nats-Msg-Id msgID ("" for none): the log holds it as if
// it had been published alone with that id. msgID may not hold white space
// or control characters. It fails, wrapping ErrBadRequest, for a bad token
// or id, and when the Bulk holds MaxBulkEntries events; b is unchanged
// then.
func (b *Bulk) Add(category, msgID string, data []byte, more ...string) error {
	if b.n >= MaxBulkEntries {
		return fmt.Errorf("%w: a bulk message holds at most %d events", ErrBadRequest, MaxBulkEntries)
	}
	if !validBulkID(msgID) {
		return fmt.Errorf("%w: bulk event id %q: white space or control characters", ErrBadRequest, msgID)
	}
	subj, err := subjects.AuditLog(b.source, category, more...)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	b.buf = appendBulkEntry(b.buf, subj, msgID, data)
	b.n++
	return nil
}

// AddSubject is Add for an event whose whole subject is known already
// (an outbox entry): subject must be an event of b's source,
// codi.audit.log.<source>.<category>[.<more>…], with valid tokens. It
// fails, wrapping ErrBadRequest, as Add does; b is unchanged then.
func (b *Bulk) AddSubject(subject, msgID string, data []byte) error {
	if b.n >= MaxBulkEntries {
		return fmt.Errorf("%w: a bulk message holds at most %d events", ErrBadRequest, MaxBulkEntries)
	}
	if !validBulkID(msgID) {
		return fmt.Errorf("%w: bulk event id %q: white space or control characters", ErrBadRequest, msgID)
	}
	rest, ok := strings.CutPrefix(subject, b.prefix)
	if !ok {
		return fmt.Errorf("%w: %q is not an event of %s", ErrBadRequest, subject, b.source)
	}
	for _, tok := range strings.Split(rest, ".") {
		if err := subjects.ValidToken(tok); err != nil {
			return fmt.Errorf("%w: %q: %v", ErrBadRequest, subject, err)
		}
	}
	b.buf = appendBulkEntry(b.buf, subject, msgID, data)
	b.n++
	return nil
}

// EntrySize is the bytes an event adds to a bulk message's payload.
func EntrySize(subject, msgID string, data []byte) int {
	n := len(subject) + 1 + len(strconv.Itoa(len(data))) + 2 + len(data) + 2
	if msgID != "" {
		n += 1 + len(msgID)
	}
	return n
}

// appendBulkEntry appends one entry in the BulkVersion format.
func appendBulkEntry(dst []byte, subject, msgID string, data []byte) []byte {
	dst = append(dst, subject...)
	if msgID != "" {
		dst = append(dst, ' ')
		dst = append(dst, msgID...)
	}
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(len(data)), 10)
	dst = append(dst, "\r\n"...)
	dst = append(dst, data...)
	return append(dst, "\r\n"...)
}

// Len is the number of events in b.
func (b *Bulk) Len() int { return b.n }

// Size is the payload's length in bytes, what the stream's message size
// limit applies to.
func (b *Bulk) Size() int { return len(b.buf) }

// Reset empties b for reuse; a message published before keeps its bytes.
func (b *Bulk) Reset() {
	b.buf = nil
	b.n = 0
}

// LogBulkAsync publishes b as one bulk message on
// codi.audit.log.<source>.bulk (BulkHeader set) and returns the PubAck's
// future, as LogAsync does: once stored, every event in b will be in the
// log, each its own record with the message's stored time, in order; an
// event whose id its source used before is skipped, as it would be alone.
// b's bytes are handed to the connection: Reset b, do not Add to it, before
// building the next message. The message has no Nats-Msg-Id of its own
// (its events' ids dedupe them). Errors wrap ErrBadRequest for an empty b.
// Safe for concurrent use with different Bulks.
func (c *Client) LogBulkAsync(b *Bulk) (jetstream.PubAckFuture, error) {
	if b.n == 0 {
		return nil, fmt.Errorf("%w: an empty bulk message", ErrBadRequest)
	}
	m := b.Msg()
	f, err := c.js.PublishMsgAsync(m)
	if err != nil {
		return nil, fmt.Errorf("audit: log %s: %w", m.Subject, err)
	}
	return f, nil
}

// Msg is b as the message LogBulkAsync publishes: subject
// codi.audit.log.<source>.bulk, BulkHeader set, b's bytes as its data
// (Reset b before adding to it again).
func (b *Bulk) Msg() *nats.Msg {
	return &nats.Msg{Subject: b.prefix + BulkCategory, Data: b.buf, Header: nats.Header{BulkHeader: []string{BulkVersion}}}
}

// validBulkID: no white space or control characters (the entry's header
// line separates its fields with spaces).
func validBulkID[T string | []byte](id T) bool {
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// BulkEntry is one event of a bulk message, as ParseBulk returns it; Data
// aliases the payload.
type BulkEntry struct {
	Subject, MsgID string
	Data           []byte
}

// ParseBulk returns the events of the payload of a bulk message of source
// (codi.audit.log.<source>.bulk, BulkHeader set), in order, as the audit
// service expands them; for a reader of CODI_AUDIT other than the service.
// An error says why the service keeps the message whole instead
// (FlagBadBulk). Safe for concurrent use.
func ParseBulk(source string, data []byte) ([]BulkEntry, error) {
	entries, err := parseBulk(source, data)
	if err != nil {
		return nil, err
	}
	out := make([]BulkEntry, len(entries))
	for i, e := range entries {
		out[i] = BulkEntry{Subject: e.subject, MsgID: e.msgID, Data: e.data}
	}
	return out, nil
}

// bulkEntry is one event of a bulk message; the slices alias the payload.
type bulkEntry struct {
	subject string
	msgID   string
	data    []byte
}

// parseBulk reads the entries of a bulk message of source. Every entry
// must be an event of that source on a subject the contract allows (so
// that permissions on the message's subject cover its events); the
// error says what is wrong otherwise. The entries' subjects and ids are
// cut from one string built for the message, not allocated one by one;
// their data alias data. Safe for concurrent use.
func parseBulk(source string, data []byte) ([]bulkEntry, error) {
	prefix := "codi.audit.log." + source + "."
	// Every entry holds two "\r\n": the count of '\n' (a vectorised
	// scan) bounds the entries, so out is allocated once.
	out := make([]bulkEntry, 0, min(bytes.Count(data, []byte("\n"))/2, MaxBulkEntries))
	var names strings.Builder // every entry's subject and id, back to back
	// Headers are a fifth of a typical entry (see BenchmarkBulkEvent).
	names.Grow(len(data) / 4)
	for off := 0; off < len(data); {
		if len(out) == MaxBulkEntries {
			return nil, fmt.Errorf("more than %d entries", MaxBulkEntries)
		}
		eol := bytes.Index(data[off:], []byte("\r\n"))
		if eol < 0 {
			return nil, fmt.Errorf("entry %d at byte %d: no \\r\\n after its header", len(out)+1, off)
		}
		subject, id, length, fields := splitBulkHeader(data[off : off+eol])
		if fields != 2 && fields != 3 {
			return nil, fmt.Errorf("entry %d at byte %d: the header is not <subject> [<msg-id>] <#bytes>", len(out)+1, off)
		}
		n, ok := parseBulkLength(length)
		start := off + eol + 2
		switch {
		case !ok:
			return nil, fmt.Errorf("entry %d at byte %d: length %q is not a decimal number", len(out)+1, off, length)
		case n > len(data)-start-2 || !bytes.HasPrefix(data[start+n:], []byte("\r\n")):
			return nil, fmt.Errorf("entry %d at byte %d: %d bytes of payload and \\r\\n do not follow", len(out)+1, off, n)
		case len(id) == 0 && fields == 3 || !validBulkID(id):
			return nil, fmt.Errorf("entry %d at byte %d: bad msg id", len(out)+1, off)
		case !bytes.HasPrefix(subject, []byte(prefix)):
			return nil, fmt.Errorf("entry %d at byte %d: subject %q is not an event of %s (codi.audit.log.%s.<category>…)",
				len(out)+1, off, subject, source, source)
		}
		var e bulkEntry
		e.subject, e.msgID = appendName(&names, subject), appendName(&names, id)
		if _, detail := subjectFlags(e.subject, source, bulkCategory(e.subject, len(prefix))); detail != "" {
			return nil, fmt.Errorf("entry %d at byte %d: subject %q: %s", len(out)+1, off, e.subject, detail)
		}
		e.data = data[start : start+n]
		out = append(out, e)
		off = start + n + 2
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no entries")
	}
	return out, nil
}

// splitBulkHeader splits an entry's header line at its spaces, as
// <subject> [<msg-id>] <#bytes>; fields is how many fields the line has
// (any number: the caller refuses all but 2 and 3), id is nil for 2.
func splitBulkHeader(line []byte) (subject, id, length []byte, fields int) {
	subject, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok {
		return subject, nil, nil, 1
	}
	id, length, ok = bytes.Cut(rest, []byte(" "))
	if !ok {
		return subject, nil, id, 2
	}
	return subject, id, length, 3 + bytes.Count(length, []byte(" "))
}

// parseBulkLength reads an entry's payload length: a decimal number
// without sign or leading zeros, as strconv.Itoa writes it, that fits an
// int.
func parseBulkLength(b []byte) (int, bool) {
	if len(b) == 0 || b[0] == '0' && len(b) > 1 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		d := int(c - '0')
		if c < '0' || c > '9' || n > (math.MaxInt-d)/10 {
			return 0, false
		}
		n = 10*n + d
	}
	return n, true
}

// appendName writes b to names and returns it as a string that shares
// names' memory: a strings.Builder never changes the bytes it holds, so
// the string stays valid whatever is written after it.
func appendName(names *strings.Builder, b []byte) string {
	if len(b) == 0 {
		return ""
	}
	n := names.Len()
	names.Write(b)
	return names.String()[n:]
}

// bulkCategory is the category token of subject, an event of the source
// whose prefix codi.audit.log.<source>. is n bytes long.
func bulkCategory(subject string, n int) string {
	category, _, _ := strings.Cut(subject[n:], ".")
	return category
}

// newBulkEvent is the event of a bulk message (BulkHeader set): its
// entries as events that share its stream seq and stored time, or, when
// it cannot be expanded, the message itself flagged FlagBadBulk. The
// entries' record bodies and dedupe keys share one allocation.
func newBulkEvent(streamSeq uint64, t time.Time, subject string, hdr nats.Header, data []byte) event {
	source, category := splitSubject(subject)
	entries, err := parseBulk(source, data)
	if err == nil && hdr.Get(BulkHeader) != BulkVersion {
		err = fmt.Errorf("format %q, not %q", hdr.Get(BulkHeader), BulkVersion)
	}
	if err != nil {
		flags, _ := subjectFlags(subject, source, category)
		return messageEvent(streamSeq, t, subject, source, category, hdr.Get(jetstream.MsgIDHeader),
			append(flags, FlagBadBulk), "bulk message not expanded: "+err.Error(), data)
	}
	size := 0
	for _, be := range entries {
		size += bodySize(be.subject, be.msgID, be.data) + msgIDKeySize(source, be.msgID)
	}
	// Each body and key is cut from buf, capped so that appending to one
	// cannot reach the next; when an estimate falls short, append moves on
	// to a new array and the slices cut before stay valid.
	buf := make([]byte, 0, size)
	prefix := len("codi.audit.log.") + len(source) + 1 // what parseBulk checked
	e := event{streamSeq: streamSeq, t: t.UnixNano(), source: source, category: category, bulk: make([]event, len(entries))}
	for i, be := range entries {
		x := &e.bulk[i]
		*x = event{
			streamSeq: streamSeq,
			t:         e.t,
			source:    source,
			category:  bulkCategory(be.subject, prefix),
			msgID:     be.msgID,
			size:      estimate(be.subject, len(be.data)),
		}
		n := len(buf)
		buf = appendBody(buf, be.subject, source, x.category, nil, be.msgID, be.data)
		x.body = buf[n:len(buf):len(buf)]
		if be.msgID != "" {
			n = len(buf)
			buf = appendMsgIDKey(buf, source, be.msgID)
			x.msgKey = buf[n:len(buf):len(buf)]
		}
		e.size += x.size
	}
	return e
}

// expand returns chunk with each bulk event replaced by its entries, in
// order; chunk itself when it holds none.
func expand(chunk []*event) []*event {
	n, bulk := 0, false
	for _, e := range chunk {
		n += max(len(e.bulk), 1)
		bulk = bulk || e.bulk != nil
	}
	if !bulk {
		return chunk
	}
	out := make([]*event, 0, n)
	for _, e := range chunk {
		if e.bulk == nil {
			out = append(out, e)
			continue
		}
		for i := range e.bulk {
			out = append(out, &e.bulk[i])
		}
	}
	return out
}
