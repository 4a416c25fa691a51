package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The differential fuzz tests of codec.go: each fast path against the
// encoding/json (and strictjson) path it replaces, which stays as its
// fallback. Their seed corpora are in testdata/fuzz/FuzzCodec*.

// errText is err's text, "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// FuzzCodecDecodeCommand: decodeCommand decides every payload as
// strictjson and encoding/json did (decodeCommandReflect): the same
// command, or the same error text.
func FuzzCodecDecodeCommand(f *testing.F) {
	f.Add([]byte(`{"op":"merge","fields":{"status":"open","n":1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, gotErr := decodeCommand(data)
		want, wantErr := decodeCommandReflect(data)
		require.Equal(t, errText(wantErr), errText(gotErr), "payload %q", data)
		require.Equal(t, want, got, "payload %q", data)
	})
}

// FuzzCodecDecodeTxn: decodeTxn decides every payload as strictjson and
// encoding/json did (decodeTxnReflect).
func FuzzCodecDecodeTxn(f *testing.F) {
	f.Add([]byte(`{"ops":[{"kind":"task","id":"T-1","op":"merge","fields":{"a":1}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, gotErr := decodeTxn(data)
		want, wantErr := decodeTxnReflect(data)
		require.Equal(t, errText(wantErr), errText(gotErr), "payload %q", data)
		require.Equal(t, want, got, "payload %q", data)
	})
}

// FuzzCodecDecodeStored: what parseRecord accepts, json.Unmarshal into a
// Record accepts too, giving the same record; decodeStored gives what it
// gave before.
func FuzzCodecDecodeStored(f *testing.F) {
	f.Add([]byte(`{"kind":"task","id":"T-1","rev":1,"fields":{"a":1},"updated_by":"a","updated_at":"2026-01-02T03:04:05.5Z","expires_at":null,"seq":7}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var want Record
		wantErr := json.Unmarshal(body, &want)
		if got, ok := parseRecord(body); ok {
			require.NoError(t, wantErr, "body %q", body)
			require.Equal(t, want, got, "body %q", body)
		}
		key := stateKey("task", "T-1")
		st, err := decodeStored(key, sealStored(key, false, body))
		if wantErr != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			return
		}
		require.NoError(t, err)
		require.Equal(t, stored{Record: want}, st)
	})
}

// FuzzCodecListResult: ListResult.UnmarshalJSON decodes a page as
// encoding/json decodes it into the plain struct, and fails where it
// fails; its fast path, when it takes a body, gives the same value.
func FuzzCodecListResult(f *testing.F) {
	f.Add([]byte(`{"records":[{"kind":"task","id":"T-1","rev":1,"fields":{"a":1},"updated_by":"a","updated_at":"2026-01-02T03:04:05.5Z","expires_at":null,"seq":7}],"next_after":"T-1"}`))
	f.Add([]byte(`{"records":[],"next_after":""}`))
	f.Add([]byte(`{"records":null}`))
	f.Add([]byte(` { "next_after" : "T-2" , "records" : [ {"kind":"task"} , {"id":"x","fields":null} ] } `))
	f.Fuzz(func(t *testing.T, body []byte) {
		type plain ListResult
		var want plain
		wantErr := json.Unmarshal(body, &want)
		if got, ok := parseListResult(body); ok {
			require.NoError(t, wantErr, "body %q", body)
			require.Equal(t, ListResult(want), got, "body %q", body)
		}
		var got ListResult
		err := json.Unmarshal(body, &got)
		if wantErr != nil {
			require.Error(t, err, "body %q", body)
			return
		}
		require.NoError(t, err, "body %q", body)
		require.Equal(t, ListResult(want), got, "body %q", body)
	})
}

// The fast path takes the service's pages, and what it leaves to
// encoding/json still decodes the same.
func TestListResult_UnmarshalJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	page := ListResult{NextAfter: "T-2", Records: []Record{
		{Kind: "task", ID: "T-1", Rev: 3, Fields: map[string]json.RawMessage{"status": json.RawMessage(`"open"`)}, UpdatedBy: "a", UpdatedAt: at, Seq: 9},
		{Kind: "task", ID: "T-2", Rev: 1, UpdatedBy: "b", UpdatedAt: at, ExpiresAt: &at, Seq: 10, BoundTo: "b"},
	}}
	body, err := json.Marshal(page)
	require.NoError(t, err)
	fast, ok := parseListResult(body)
	require.True(t, ok, "a page as the service encodes it is on the fast path: %s", body)
	assert.Equal(t, page, fast)
	for _, tc := range []struct {
		body string
		want ListResult
	}{
		{`{"records":[]}`, ListResult{Records: []Record{}}},
		{`{"Records":[{"kind":"k"}],"extra":1}`, ListResult{Records: []Record{{Kind: "k"}}}}, // fallback: a name in other case, an unknown member
		{`{"records":[{"kind":"k\u0041"}],"next_after":"a\"b"}`, ListResult{Records: []Record{{Kind: "kA"}}, NextAfter: `a"b`}},
		{`{"records":[null]}`, ListResult{Records: []Record{{}}}},
	} {
		var got ListResult
		require.NoError(t, json.Unmarshal([]byte(tc.body), &got), tc.body)
		assert.Equal(t, tc.want, got, tc.body)
	}
	var got ListResult
	assert.Error(t, json.Unmarshal([]byte(`{"records":[{"rev":"x"}]}`), &got))
	assert.Error(t, json.Unmarshal([]byte(`{"records":[`), &got))
}

// FuzzCodecRawJSON: appendRawJSON encodes a json.RawMessage as json.Marshal
// does, and fails only where json.Marshal fails or nesting is deeper than
// the fast path goes.
func FuzzCodecRawJSON(f *testing.F) {
	f.Add([]byte(` { "a" : [1, "<&>\u2028"] } `))
	f.Fuzz(func(t *testing.T, raw []byte) {
		want, err := json.Marshal(json.RawMessage(raw))
		got, ok := appendRawJSON([]byte("x"), raw)
		switch {
		case err != nil:
			require.False(t, ok, "raw %q: %v", raw, err)
		case ok:
			require.Equal(t, string(want), string(got[1:]), "raw %q", raw)
		default:
			require.Greater(t, nesting(raw), 60, "raw %q refused", raw)
		}
	})
}

// nesting is the deepest nesting of brackets in raw outside strings.
func nesting(raw []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// fuzzFields splits b at zero bytes into names and raw values, alternately.
// A leading 0xff makes a nil map.
func fuzzFields(b []byte) map[string]json.RawMessage {
	if len(b) > 0 && b[0] == 0xff {
		return nil
	}
	fields := map[string]json.RawMessage{}
	parts := bytes.Split(b, []byte{0})
	for i := 0; i < len(parts); i += 2 {
		var v json.RawMessage
		if i+1 < len(parts) {
			v = parts[i+1]
		}
		fields[string(parts[i])] = v
	}
	return fields
}

// fuzzTime is a time of nanoseconds ns in a zone min minutes east of UTC
// (UTC for 0).
func fuzzTime(ns int64, min int16) time.Time {
	t := time.Unix(0, ns).UTC()
	if min != 0 {
		t = t.In(time.FixedZone("", int(min)*60))
	}
	return t
}

// FuzzCodecRecordJSON: encodeStoredBody encodes a record (live and
// tombstone) byte for byte as json.Marshal did, or fails with the same
// error; and what it encodes decodes to what json.Unmarshal gives.
func FuzzCodecRecordJSON(f *testing.F) {
	f.Add("task", "T-1", "agent-1", "", uint64(3), uint64(9), int64(1767225600123456789), int64(0), int16(0), []byte("status\x00\"open\""))
	f.Fuzz(func(t *testing.T, kind, id, by, bound string, rev, seq uint64, at, exp int64, zone int16, fields []byte) {
		r := Record{Kind: kind, ID: id, Rev: rev, Fields: fuzzFields(fields), UpdatedBy: by, UpdatedAt: fuzzTime(at, zone), Seq: seq, BoundTo: bound}
		if exp != 0 {
			e := fuzzTime(exp, -zone)
			r.ExpiresAt = &e
		}
		for _, tombstone := range []bool{false, true} {
			ref := r
			if tombstone {
				ref.Fields = nil
			}
			want, wantErr := json.Marshal(ref)
			v, body, err := encodeStoredBody(r, tombstone)
			if wantErr != nil {
				require.EqualError(t, err, wantErr.Error())
				continue
			}
			require.NoError(t, err)
			require.Equal(t, string(want), string(body))
			require.Equal(t, sealStored(stateKey(kind, id), tombstone, want), v)

			var back Record
			require.NoError(t, json.Unmarshal(body, &back))
			if got, ok := parseRecord(body); ok {
				require.Equal(t, back, got)
			}
			ev := Event{Seq: seq, Status: StatusApplied, Rev: rev, Actor: by, Op: OpMerge, Record: &ref}
			checkEventJSON(t, ev)
		}
	})
}

// refEvent is Event encoded by encoding/json alone: Event.MarshalJSON as
// it was before codec.go, operations included, the reference of
// appendEvent.
type refEvent Event

func (e refEvent) MarshalJSON() ([]byte, error) {
	ops := make([]refEvent, len(e.Ops))
	for i, op := range e.Ops {
		ops[i] = refEvent(op)
	}
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
			Ops        []refEvent `json:"ops,omitempty"`
		}
		r := rejected{Seq: e.Seq, Status: e.Status, Reason: e.Reason, Actor: e.Actor, Op: e.Op, Detail: e.Detail, Subject: e.Subject,
			UpdatedBy: e.UpdatedBy, ExpiresAt: e.ExpiresAt, Holder: e.Holder, Overlap: e.Overlap, Kind: e.Kind, ID: e.ID, Ops: ops}
		if e.Reason == ReasonConflict {
			r.CurrentRev = &e.CurrentRev
		}
		return json.Marshal(r)
	}
	type applied struct {
		Seq    uint64     `json:"seq"`
		Status Status     `json:"status"`
		Rev    uint64     `json:"rev,omitempty"`
		Actor  string     `json:"actor"`
		Op     Op         `json:"op"`
		Record *Record    `json:"record,omitempty"`
		Kind   string     `json:"kind,omitempty"`
		ID     string     `json:"id,omitempty"`
		Ops    []refEvent `json:"ops,omitempty"`
	}
	return json.Marshal(applied{Seq: e.Seq, Status: e.Status, Rev: e.Rev, Actor: e.Actor, Op: e.Op, Record: e.Record,
		Kind: e.Kind, ID: e.ID, Ops: ops})
}

// checkEventJSON checks that ev encodes as refEvent does through
// Event.MarshalJSON, eventJSON and mustJSON.
func checkEventJSON(t *testing.T, ev Event) {
	t.Helper()
	want, wantErr := json.Marshal(refEvent(ev))
	got, err := ev.MarshalJSON()
	if wantErr != nil {
		require.Error(t, err)
		return
	}
	require.NoError(t, err)
	require.Equal(t, string(want), string(got))
	require.Equal(t, string(want), string(eventJSON(ev)))
	require.Equal(t, string(want), string(mustJSON(ev)))
}

// FuzzCodecEventJSON: Event.MarshalJSON, eventJSON and mustJSON encode
// events as encoding/json did, and mustJSON audit records and strings.
func FuzzCodecEventJSON(f *testing.F) {
	f.Add("applied", "conflict", "agent-1", "merge", "detail <&>", "task", uint64(1), uint64(2), uint64(0), uint8(0), int64(1767225600123456789))
	f.Fuzz(func(t *testing.T, status, reason, actor, op, detail, s string, seq, rev, cur uint64, flags uint8, at int64) {
		ev := Event{Seq: seq, Status: []Status{StatusApplied, StatusRejected, Status(status)}[int(flags>>6)%3],
			Reason: Reason(reason), Rev: rev, CurrentRev: cur, Actor: actor, Op: Op(op), Detail: detail, Subject: s, UpdatedBy: s, Holder: actor}
		if flags&1 != 0 {
			ev.Reason = ReasonConflict
		}
		if flags&2 != 0 {
			e := fuzzTime(at, int16(rev%1000))
			ev.ExpiresAt = &e
		}
		if flags&4 != 0 {
			ev.Overlap = &Overlap{ID: s, Rev: rev, Holder: actor, Pattern: detail, Shared: flags&8 != 0, ExpiresAt: ev.ExpiresAt, Path: status}
		}
		if flags&16 != 0 {
			ev.Record = &Record{Kind: s, ID: actor, Rev: rev, Fields: map[string]json.RawMessage{detail: json.RawMessage(s)},
				UpdatedBy: actor, UpdatedAt: fuzzTime(at, 0), Seq: seq, BoundTo: detail}
		}
		if flags&32 != 0 {
			ev.Kind, ev.ID = s, detail
			ev.Ops = []Event{{Seq: seq, Status: StatusApplied, Rev: rev, Actor: actor, Op: Op(op), Record: ev.Record, Kind: s, ID: actor},
				{Seq: seq, Status: StatusRejected, Reason: Reason(reason), Actor: actor, Op: Op(op), Detail: detail, Kind: s, ID: op}}
		}
		checkEventJSON(t, ev)

		a := auditRecord{Seq: seq, Status: ev.Status, Kind: s, ID: actor, Actor: actor, Op: ev.Op, Rev: rev, Reason: ev.Reason,
			Detail: detail}
		if flags&8 != 0 {
			a.Subject, a.Txn = status, reason
		}
		want, err := json.Marshal(a)
		require.NoError(t, err)
		require.Equal(t, string(want), string(mustJSON(a)))
		want, err = json.Marshal(detail)
		require.NoError(t, err)
		require.Equal(t, string(want), string(mustJSON(detail)))
	})
}

// fuzzAnyFields makes a command's fields from b, split at zero bytes into
// names and values, each value of a type picked by its position, from v,
// n and the bytes.
func fuzzAnyFields(b []byte, v float64, n int64) map[string]any {
	fields := map[string]any{}
	parts := bytes.Split(b, []byte{0})
	for i := 0; i+1 < len(parts); i += 2 {
		raw := parts[i+1]
		var val any
		switch (i / 2) % 12 {
		case 0:
			val = string(raw)
		case 1:
			val = json.RawMessage(raw)
		case 2:
			val = nil
		case 3:
			val = v
		case 4:
			val = float32(v)
		case 5:
			val = n
		case 6:
			val = int(n)
		case 7:
			val = uint64(n)
		case 8:
			val = len(raw)%2 == 0
		case 9:
			val = map[string]any{string(raw): []any{v, string(raw), nil}}
		case 10:
			val = Status(raw)
		case 11:
			val = int32(n)
		}
		fields[string(parts[i])] = val
	}
	return fields
}

// FuzzCodecCommandJSON: Command.MarshalJSON and TxnOp.MarshalJSON encode
// as encoding/json did (marshalReflect), or fail with the same error.
func FuzzCodecCommandJSON(f *testing.F) {
	f.Add("merge", []byte("status\x00open"), uint64(3), int64(1500000), uint8(0xff), 1.5)
	f.Fuzz(func(t *testing.T, op string, fields []byte, expect uint64, ttl int64, flags uint8, v float64) {
		c := Command{Op: Op(op), TTL: time.Duration(ttl), NoLease: flags&4 != 0}
		if flags&1 != 0 {
			c.Fields = fuzzAnyFields(fields, v, ttl)
		}
		if flags&2 != 0 {
			c.ExpectRev = &expect
		}
		if flags&8 != 0 {
			b := flags&16 != 0
			c.Bind = &b
		}
		want, wantErr := c.marshalReflect()
		got, err := c.MarshalJSON()
		require.Equal(t, errText(wantErr), errText(err))
		require.Equal(t, string(want), string(got))
		viaJSON, err := json.Marshal(c)
		if wantErr == nil {
			require.NoError(t, err)
			require.Equal(t, string(want), string(viaJSON))
		}

		o := TxnOp{Kind: op, ID: string(fields), Command: c}
		want, wantErr = refTxnOp(o)
		got, err = o.MarshalJSON()
		require.Equal(t, wantErr != nil, err != nil)
		require.Equal(t, string(want), string(got))
	})
}

// refTxnOp is TxnOp.MarshalJSON by encoding/json alone, as it was before
// codec.go.
func refTxnOp(o TxnOp) ([]byte, error) {
	cmd, err := o.Command.marshalReflect()
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
	return append(append(head[:len(head)-1:len(head)-1], ','), cmd[1:]...), nil
}

// The fast paths take the shapes the service and its clients use: a
// fallback there would be correct but slow, which the fuzz tests above do
// not see.
func TestCodec_FastPathsTaken(t *testing.T) {
	for _, data := range []string{
		`{"op":"merge","fields":{"status":"in_progress","assignee":"agent-1","priority":2,"blocked":false}}`,
		` { "op" : "put" , "fields" : { "a" : [ 1 , { "b" : null } ] , "c" : "<\u2028>" } , "expect_rev" : 0 , "ttl_ms" : 60000 , "bind" : true } `,
		`{"op":"delete","expect_rev":-0}`, `{"op":null}`, `{"op":"merge","fields":null}`, `{"op":"merge","fields":[]}`, `{}`,
	} {
		_, ok := parseCommand([]byte(data))
		assert.True(t, ok, "command %s", data)
	}
	for _, data := range []string{
		`{"op":"put","op":"merge"}`, `{"Op":"put"}`, `{"op":"p\u0075t"}`, `{"op":"put","fields":{"a":1,"a":2}}`,
		`{"op":"put","fields":{"a":{"b":1,"b":2}}}`, `{"op":"put","expect_rev":1.0}`, `{"op":"put","ttl_ms":1e400}`,
		"{\"op\":\"put\",\"fields\":{\"x\":\"\xff\"}}", `{"op":"put"} {}`, `null`, `{"op":"put","expect_rev":99999999999999999999}`,
		`{"op":"put","fields":{"a\u0062":1}}`, `{"op":"put","extra":1}`,
	} {
		_, ok := parseCommand([]byte(data))
		assert.False(t, ok, "command %s", data)
	}
	ops := make([]string, MaxTxnOps)
	for i := range ops {
		ops[i] = `{"kind":"task","id":"T-1","op":"merge","fields":{"n":1}}`
	}
	_, ok := parseTxn([]byte(`{"ops":[` + strings.Join(ops, ",") + `]}`))
	assert.True(t, ok, "a multi-record command of MaxTxnOps operations")
	_, ok = parseTxn([]byte(`{"ops":[` + strings.Join(append(ops, ops[0]), ",") + `]}`))
	assert.False(t, ok, "a multi-record command above MaxTxnOps operations")

	at := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	r := Record{Kind: "task", ID: "T-1", Rev: 2, Fields: map[string]json.RawMessage{"a": json.RawMessage(`{"b":[1,2]}`)},
		UpdatedBy: "agent-1", UpdatedAt: at, ExpiresAt: &at, Seq: 5, BoundTo: "agent-1"}
	body, ok := appendRecord(nil, &r)
	require.True(t, ok)
	back, ok := parseRecord(body)
	require.True(t, ok, "record %s", body)
	assert.Equal(t, r.Fields, back.Fields)
	assert.True(t, back.UpdatedAt.Equal(at) && back.ExpiresAt.Equal(at))
	for _, body := range []string{`{}`, `{"kind":"task","fields":null}`} {
		_, ok = parseRecord([]byte(body))
		assert.True(t, ok, "record %s", body)
	}
	for _, body := range []string{`{"kind":"a\u0026b"}`, `{"kind":"\u0061"}`, `{"Kind":"a"}`, `{"other":1}`, `{"rev":-1}`, `{"kind":null}`} {
		_, ok = parseRecord([]byte(body))
		assert.False(t, ok, "record %s", body)
	}
}

// A Command the fast path cannot encode (a NaN field) fails as it did:
// json.Marshal's error.
func TestCommand_MarshalJSON_Unencodable(t *testing.T) {
	c := Command{Op: OpMerge, Fields: map[string]any{"x": func() {}}}
	_, want := c.marshalReflect()
	require.Error(t, want)
	_, err := c.MarshalJSON()
	require.EqualError(t, err, want.Error())
	_, err = TxnOp{Kind: "task", ID: "T-1", Command: c}.MarshalJSON()
	require.Error(t, err)
}

// BenchmarkCodec compares each fast path of codec.go with the encoding/json
// path it replaces, on the shapes BenchmarkApplyCPU applies:
//
//	go test -run XXX -bench Codec -benchmem ./state
func BenchmarkCodec(b *testing.B) {
	cmd := benchMerge(3)
	ops := make([]string, 63)
	for i := range ops {
		ops[i] = `{"kind":"task","id":"T-1",` + string(benchMerge(i)[1:])
	}
	txn := []byte(`{"ops":[` + strings.Join(ops, ",") + `]}`)
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	c, err := decodeCommand(cmd)
	require.NoError(b, err)
	r := Record{Kind: "task", ID: "T-1", Rev: 7, Fields: c.fields, UpdatedBy: "agent-1", UpdatedAt: at, Seq: 42}
	_, body, err := encodeStoredBody(r, false)
	require.NoError(b, err)
	ev := Event{Seq: 42, Status: StatusApplied, Rev: 7, Actor: "agent-1", Op: OpMerge, Record: &r}
	client := Command{Op: OpMerge, Fields: map[string]any{"v1_ts": "2026-01-02T03:04:05Z", "v1_from": "agent-1", "status": "done"}}
	op := TxnOp{Kind: "task", ID: "T-1", Command: client}
	// A filtered list's page of 1,000 records (BenchmarkListWhere's).
	recs := make([]Record, 1000)
	for i := range recs {
		recs[i] = r
		recs[i].ID = fmt.Sprintf("T-%07d", i)
	}
	page, err := json.Marshal(ListResult{Records: recs, NextAfter: "T-0000999"})
	require.NoError(b, err)
	type plainPage ListResult
	for _, bc := range []struct {
		name       string
		fast, json func() error
	}{
		{"decode_command", func() error { _, err := decodeCommand(cmd); return err },
			func() error { _, err := decodeCommandReflect(cmd); return err }},
		{"decode_txn63", func() error { _, err := decodeTxn(txn); return err },
			func() error { _, err := decodeTxnReflect(txn); return err }},
		{"decode_record", func() error { _, _ = parseRecord(body); return nil },
			func() error { var r Record; return json.Unmarshal(body, &r) }},
		{"decode_page1000", func() error { var p ListResult; return p.UnmarshalJSON(page) }, // as Client.List does
			func() error { var p plainPage; return json.Unmarshal(page, &p) }},
		{"encode_record", func() error { _, _, err := encodeStoredBody(r, false); return err },
			func() error { _, err := json.Marshal(r); return err }},
		{"encode_event", func() error { _, err := ev.MarshalJSON(); return err },
			func() error { _, err := ev.marshalReflect(); return err }},
		{"encode_audit", func() error {
			_ = mustJSON(auditRecord{Seq: 42, Status: StatusApplied, Kind: "task", ID: "T-1", Actor: "a", Op: OpMerge, Rev: 7})
			return nil
		},
			func() error {
				_, err := json.Marshal(auditRecord{Seq: 42, Status: StatusApplied, Kind: "task", ID: "T-1", Actor: "a", Op: OpMerge, Rev: 7})
				return err
			}},
		{"encode_command", func() error { _, err := client.MarshalJSON(); return err },
			func() error { _, err := client.marshalReflect(); return err }},
		{"encode_txnop", func() error { _, err := op.MarshalJSON(); return err },
			func() error { _, err := op.marshalReflect(); return err }},
	} {
		for _, path := range []struct {
			name string
			fn   func() error
		}{{"codec", bc.fast}, {"encoding_json", bc.json}} {
			b.Run(bc.name+"/"+path.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := path.fn(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
