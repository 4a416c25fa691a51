package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/subjects"
)

// A bulk message's events are records of their own, in order, with their
// subjects, ids and payloads as if each had been published alone; their
// ids dedupe against single events of the source and within the message.
func TestService_Run_BulkEvents(t *testing.T) {
	h := newHarness(t, Config{})
	_, err := h.client.Log(context.Background(), "imp", "v1", []byte(`{"single":1}`), WithMsgID("id-2"))
	require.NoError(t, err)

	b, err := NewBulk("imp")
	require.NoError(t, err)
	require.NoError(t, b.Add("v1", "id-1", []byte(`{"a": 1}`), "TASK_ASSIGN"))
	require.NoError(t, b.Add("v1", "id-2", []byte(`{"dropped":"the single event had id-2"}`)))
	require.NoError(t, b.Add("v1", "", []byte("not json \xff\r\n"), "unparseable"))
	require.NoError(t, b.Add("v1", "id-1", []byte(`{"dropped":"id-1 again"}`)))
	require.NoError(t, b.Add("other", "id-3", nil))
	assert.Equal(t, 5, b.Len())
	assert.Equal(t, len(b.buf), b.Size())
	f, err := h.client.LogBulkAsync(b)
	require.NoError(t, err)
	b.Reset()
	assert.Zero(t, b.Len())
	var ack *jetstream.PubAck
	select {
	case ack = <-f.Ok():
	case err := <-f.Err():
		t.Fatal(err)
	}
	assert.Equal(t, "codi.audit.log.imp.bulk", f.Msg().Subject)
	h.waitCommitted(ack.Sequence)

	recs := h.wholeLog(4)
	assert.Equal(t, []string{"codi.audit.log.imp.v1", "codi.audit.log.imp.v1.TASK_ASSIGN", "codi.audit.log.imp.v1.unparseable",
		"codi.audit.log.imp.other"}, []string{recs[0].Subject, recs[1].Subject, recs[2].Subject, recs[3].Subject})
	assert.Equal(t, []string{"imp/id-2", "imp/id-1", "imp/", "imp/id-3"}, msgIDsOf(recs))
	assert.JSONEq(t, `{"a":1}`, string(recs[1].Data))
	assert.Equal(t, "v1", recs[1].Category)
	p, err := recs[2].Payload()
	require.NoError(t, err)
	assert.Equal(t, "not json \xff\r\n", string(p), "kept byte for byte")
	assert.Equal(t, EncodingBase64, recs[3].Encoding, "an empty payload, as alone")
	assert.Equal(t, recs[1].Time, recs[3].Time, "the message's stored time")
	assert.Empty(t, recs[1].Flags)
	assert.Equal(t, uint64(0), h.svc.Status().Flagged)

	// Published again (a retry): every id is taken, the id-less event
	// is a new one.
	require.NoError(t, b.Add("v1", "id-1", []byte(`{}`), "TASK_ASSIGN"))
	require.NoError(t, b.Add("v1", "", []byte(`{"again":true}`)))
	f, err = h.client.LogBulkAsync(b)
	require.NoError(t, err)
	ack = <-f.Ok()
	h.waitCommitted(ack.Sequence)
	recs = h.wholeLog(5)
	assert.JSONEq(t, `{"again":true}`, string(recs[4].Data))

	// A bulk message of one event, alone in its batch.
	b.Reset()
	require.NoError(t, b.Add("v1", "id-9", []byte(`{"one":1}`)))
	f, err = h.client.LogBulkAsync(b)
	require.NoError(t, err)
	ack = <-f.Ok()
	h.waitCommitted(ack.Sequence)
	recs = h.wholeLog(6)
	assert.JSONEq(t, `{"one":1}`, string(recs[5].Data))
	assert.Equal(t, "codi.audit.log.imp.v1", recs[5].Subject)
	assert.True(t, h.verify(VerifyRequest{}).OK)
}

// A bulk message that cannot be expanded is kept whole as one flagged
// record of its own subject: it was acknowledged, so it is never dropped.
func TestService_Run_BadBulkKeptWhole(t *testing.T) {
	h := newHarness(t, Config{})
	bad := [][]byte{
		[]byte("codi.audit.log.other.v1 2\r\n{}\r\n"), // another source's event
		[]byte("codi.audit.log.imp.v1 5\r\n{}\r\n"),   // short
		[]byte(""),                                              // empty
		[]byte("codi.audit.log.imp 2\r\n{}\r\n"),                // no category
		[]byte("codi.audit.log.imp.v1 a b 2\r\n{}\r\n"),         // four fields
		[]byte("codi.audit.log.imp.v1 2\r\n{}\r\nnot an entry"), // trailing bytes
	}
	var last uint64
	for _, data := range bad {
		ack, err := h.js.PublishMsg(context.Background(), &nats.Msg{Subject: "codi.audit.log.imp.bulk", Data: data,
			Header: nats.Header{BulkHeader: []string{BulkVersion}}})
		require.NoError(t, err)
		last = ack.Sequence
	}
	ack, err := h.js.PublishMsg(context.Background(), &nats.Msg{Subject: "codi.audit.log.imp.bulk", Data: []byte("codi.audit.log.imp.v1 2\r\n{}\r\n"),
		Header: nats.Header{BulkHeader: []string{"2"}, jetstream.MsgIDHeader: []string{"b-1"}}})
	require.NoError(t, err)
	last = ack.Sequence
	h.waitCommitted(last)
	recs := h.wholeLog(len(bad) + 1)
	for i, r := range recs {
		assert.Equal(t, "codi.audit.log.imp.bulk", r.Subject)
		assert.Equal(t, []string{FlagBadBulk}, r.Flags)
		p, err := r.Payload()
		require.NoError(t, err)
		if i < len(bad) {
			assert.Equal(t, bad[i], p, "kept as it came")
		}
	}
	assert.Equal(t, "b-1", recs[len(bad)].MsgID, "an unknown format version: kept whole with its id")
	assert.Equal(t, uint64(len(bad)+1), h.svc.Status().Flagged)
}

func TestParseBulk(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    []bulkEntry
		wantErr string
	}{
		{"one", "codi.audit.log.s.c 2\r\n{}\r\n", []bulkEntry{{subject: "codi.audit.log.s.c", data: []byte("{}")}}, ""},
		{"id and tokens", "codi.audit.log.s.c.d.e id-1 0\r\n\r\ncodi.audit.log.s.x 3\r\na\r\n\r\n",
			[]bulkEntry{{subject: "codi.audit.log.s.c.d.e", msgID: "id-1", data: []byte{}}, {subject: "codi.audit.log.s.x", data: []byte("a\r\n")}}, ""},
		{"empty", "", nil, "no entries"},
		{"no eol", "codi.audit.log.s.c 2", nil, "no \\r\\n after its header"},
		{"one field", "codi.audit.log.s.c\r\n", nil, "the header is not"},
		{"negative", "codi.audit.log.s.c -1\r\n\r\n", nil, "not a decimal number"},
		{"plus sign", "codi.audit.log.s.c +1\r\nx\r\n", nil, "not a decimal number"},
		{"leading zero", "codi.audit.log.s.c 01\r\nx\r\n", nil, "not a decimal number"},
		{"too long", "codi.audit.log.s.c 9\r\nx\r\n", nil, "9 bytes of payload"},
		{"no eol after payload", "codi.audit.log.s.c 1\r\nxy", nil, "1 bytes of payload"},
		{"empty id", "codi.audit.log.s.c  1\r\nx\r\n", nil, "bad msg id"},
		{"other source", "codi.audit.log.t.c 1\r\nx\r\n", nil, `subject "codi.audit.log.t.c" is not an event of s`},
		{"bad token", "codi.audit.log.s.c.%zz 1\r\nx\r\n", nil, `subject "codi.audit.log.s.c.%zz"`},
		{"no category", "codi.audit.log.s. 1\r\nx\r\n", nil, `subject "codi.audit.log.s."`},
		{"too many", strings.Repeat("codi.audit.log.s.c 0\r\n\r\n", MaxBulkEntries+1), nil, "more than 1024 entries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseBulk("s", []byte(tt.data))
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestBulk_Add_Refusals(t *testing.T) {
	_, err := NewBulk("a.b")
	require.ErrorIs(t, err, ErrBadRequest)
	b, err := NewBulk("s")
	require.NoError(t, err)
	require.ErrorIs(t, b.Add("c", "an id", nil), ErrBadRequest)
	require.ErrorIs(t, b.Add("c", "id\x7f", nil), ErrBadRequest)
	require.ErrorIs(t, b.Add("c.d", "", nil), ErrBadRequest)
	require.ErrorIs(t, b.Add("c", "", nil, "a b"), ErrBadRequest)
	assert.Zero(t, b.Len(), "nothing added")
	for range MaxBulkEntries {
		require.NoError(t, b.Add("c", "", nil))
	}
	require.ErrorIs(t, b.Add("c", "", nil), ErrBadRequest)
	entries, err := parseBulk("s", b.buf)
	require.NoError(t, err)
	assert.Len(t, entries, MaxBulkEntries)

	c := &Client{}
	_, err = c.LogBulkAsync(&Bulk{})
	require.ErrorIs(t, err, ErrBadRequest)
}

// AddSubject takes whole subjects of the bulk's source only, writes what
// Add writes for them, and EntrySize is the bytes each adds.
func TestBulk_AddSubject(t *testing.T) {
	b, err := NewBulk("s")
	require.NoError(t, err)
	for _, bad := range []string{"codi.audit.log.t.c", "codi.audit.log.s", "codi.audit.log.s.", "codi.audit.log.s.c..d", "codi.audit.log.s.c d", "codi.audit.log.s.%zz"} {
		require.ErrorIs(t, b.AddSubject(bad, "", nil), ErrBadRequest, bad)
	}
	require.ErrorIs(t, b.AddSubject("codi.audit.log.s.c", "an id", nil), ErrBadRequest)
	assert.Zero(t, b.Len(), "nothing added")
	size := 0
	for i, e := range []bulkEntry{{"codi.audit.log.s.c", "id-1", []byte("{}")}, {"codi.audit.log.s.c.d", "", []byte{}}, {"codi.audit.log.s.x", "i", make([]byte, 1234)}} {
		require.NoError(t, b.AddSubject(e.subject, e.msgID, e.data))
		size += EntrySize(e.subject, e.msgID, e.data)
		assert.Equal(t, size, b.Size(), "entry %d", i)
	}
	entries, err := parseBulk("s", b.Msg().Data)
	require.NoError(t, err)
	assert.Len(t, entries, 3)
	assert.Equal(t, "codi.audit.log.s.bulk", b.Msg().Subject)
	assert.Equal(t, BulkVersion, b.Msg().Header.Get(BulkHeader))
	for range MaxBulkEntries - 3 {
		require.NoError(t, b.AddSubject("codi.audit.log.s.c", "", nil))
	}
	require.ErrorIs(t, b.AddSubject("codi.audit.log.s.c", "", nil), ErrBadRequest)
}

// FuzzParseBulk: parseBulk never panics, and what it accepts is exactly
// what Bulk.Add writes for its entries (one spelling per message).
func FuzzParseBulk(f *testing.F) {
	f.Add([]byte("codi.audit.log.s.c 2\r\n{}\r\n"))
	f.Add([]byte("codi.audit.log.s.c.d id-1 3\r\na\r\n\r\ncodi.audit.log.s.x 0\r\n\r\n"))
	f.Add([]byte("codi.audit.log.s.c 5\r\n{}\r\n"))
	f.Add([]byte(base64.StdEncoding.EncodeToString([]byte("codi.audit.log.s.c 2\r\n{}\r\n"))))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parseBulk("s", data)
		if err != nil {
			return
		}
		b, err := NewBulk("s")
		require.NoError(t, err)
		for _, e := range entries {
			require.NotEmpty(t, e.subject)
			b.buf = appendBulkEntry(b.buf, e.subject, e.msgID, e.data)
		}
		assert.Equal(t, data, b.buf)
	})
}

// The entries of a bulk message cost the intake no allocation each (it
// made five per entry before: the header's fields, the length check, the
// body and the dedupe key): their subjects and ids come from one string,
// their bodies and keys from one buffer. Each entry's event is what the
// entry alone, published with its id, would have made.
func TestNewBulkEvent_Allocs(t *testing.T) {
	for _, outcomes := range []bool{false, true} {
		const n = 256
		subj, hdr, data := importBulk(t, outcomes, 1, n)
		at := time.Now()
		e := newEvent(7, at, subj, hdr, data)
		require.Len(t, e.bulk, n)
		entries, err := parseBulk(e.source, data)
		require.NoError(t, err)
		size := 0
		for i, be := range entries {
			alone := newEvent(7, at, be.subject, nats.Header{jetstream.MsgIDHeader: []string{be.msgID}}, be.data)
			assert.Equal(t, alone, e.bulk[i], "entry %d", i)
			size += alone.size
		}
		assert.Equal(t, size, e.size)
		allocs := testing.AllocsPerRun(20, func() { newEvent(7, at, subj, hdr, data) })
		assert.LessOrEqual(t, allocs, 6.0, "allocations per bulk message of %d entries", n)
	}
}

// parseBulkSplit is parseBulk as it was before the intake stopped
// allocating per entry (strings.Split of each header, strconv.Itoa to
// check the length, subjects.Token and the full subject checks): the
// reference FuzzParseBulk_AsSplit holds parseBulk to.
func parseBulkSplit(source string, data []byte) ([]bulkEntry, error) {
	prefix := "codi.audit.log." + source + "."
	var out []bulkEntry
	for off := 0; off < len(data); {
		if len(out) == MaxBulkEntries {
			return nil, fmt.Errorf("more than %d entries", MaxBulkEntries)
		}
		eol := bytes.Index(data[off:], []byte("\r\n"))
		if eol < 0 {
			return nil, fmt.Errorf("entry %d at byte %d: no \\r\\n after its header", len(out)+1, off)
		}
		fields := strings.Split(string(data[off:off+eol]), " ")
		var e bulkEntry
		switch len(fields) {
		case 2:
		case 3:
			e.msgID = fields[1]
		default:
			return nil, fmt.Errorf("entry %d at byte %d: the header is not <subject> [<msg-id>] <#bytes>", len(out)+1, off)
		}
		e.subject = fields[0]
		n, err := strconv.Atoi(fields[len(fields)-1])
		start := off + eol + 2
		switch {
		case err != nil || n < 0 || fields[len(fields)-1] != strconv.Itoa(n):
			return nil, fmt.Errorf("entry %d at byte %d: length %q is not a decimal number", len(out)+1, off, fields[len(fields)-1])
		case n > len(data)-start-2 || !bytes.HasPrefix(data[start+n:], []byte("\r\n")):
			return nil, fmt.Errorf("entry %d at byte %d: %d bytes of payload and \\r\\n do not follow", len(out)+1, off, n)
		case e.msgID == "" && len(fields) == 3 || !validBulkID(e.msgID):
			return nil, fmt.Errorf("entry %d at byte %d: bad msg id", len(out)+1, off)
		case !strings.HasPrefix(e.subject, prefix):
			return nil, fmt.Errorf("entry %d at byte %d: subject %q is not an event of %s (codi.audit.log.%s.<category>…)",
				len(out)+1, off, e.subject, source, source)
		}
		if _, detail := checkSubject(e.subject, source, subjects.Token(e.subject, 4)); detail != "" {
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

// FuzzParseBulk_AsSplit: parseBulk accepts what parseBulkSplit accepts,
// with the same entries, and refuses the rest with the same error.
func FuzzParseBulk_AsSplit(f *testing.F) {
	f.Add([]byte("codi.audit.log.s.c 2\r\n{}\r\n"))
	f.Add([]byte("codi.audit.log.s.c.d id-1 3\r\na\r\n\r\ncodi.audit.log.s.x 0\r\n\r\n"))
	f.Add([]byte("codi.audit.log.s.c a b 0\r\n\r\n"))
	f.Add([]byte("codi.audit.log.s.c 99999999999999999999\r\n\r\n"))
	f.Add([]byte("codi.audit.log.s.c 9223372036854775807\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		want, wantErr := parseBulkSplit("s", data)
		got, err := parseBulk("s", data)
		if wantErr != nil {
			require.Error(t, err)
			assert.Equal(t, wantErr.Error(), err.Error())
			return
		}
		require.NoError(t, err)
		assert.Equal(t, want, got)
	})
}
