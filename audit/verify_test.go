package audit

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/strictjson"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestService_Verify_Tampering alters the store directly, one way at a time,
// and checks that verify names the first bad seq; each case is undone
// before the next.
func TestService_Verify_Tampering(t *testing.T) {
	h := newHarness(t, Config{VerifyBatch: 3}) // several read views
	acks := h.logN(10, "agent-1", "file")
	h.waitCommitted(acks[9].Sequence)
	require.True(t, h.verify(VerifyRequest{}).OK)
	ctx := context.Background()

	get := func(seq uint64) []byte {
		var v []byte
		require.NoError(t, h.store.View(ctx, func(tx kv.ReadTxn) error {
			var err error
			v, err = tx.Get(recordKey(seq))
			return err
		}))
		return v
	}
	set := func(seq uint64, v []byte) {
		require.NoError(t, h.store.Update(ctx, func(tx kv.Txn) error {
			if v == nil {
				return tx.Clear(recordKey(seq))
			}
			return tx.Set(recordKey(seq), v)
		}))
	}
	rehash := func(raw []byte) []byte {
		canonical, _, err := splitStored(raw)
		require.NoError(t, err)
		prev, _ := recordPrev(raw)
		h := chainHash(prev, canonical)
		return append(canonical[:len(canonical)-1], []byte(`,"hash":"`+h+`"}`)...)
	}

	tests := []struct {
		name    string
		seq     uint64
		tamper  func(raw []byte) []byte // nil clears the record
		wantBad uint64
		reason  string
	}{
		{name: "data changed", seq: 5, wantBad: 5, reason: "hash",
			tamper: func(raw []byte) []byte { return bytes.Replace(raw, []byte(`{"i":4}`), []byte(`{"i":9}`), 1) }},
		{name: "data changed and rehashed", seq: 5, wantBad: 6, reason: "prev",
			tamper: func(raw []byte) []byte { return rehash(bytes.Replace(raw, []byte(`{"i":4}`), []byte(`{"i":9}`), 1)) }},
		{name: "first record changed", seq: 1, wantBad: 1, reason: "hash",
			tamper: func(raw []byte) []byte { return bytes.Replace(raw, []byte(`agent-1`), []byte(`agent-2`), 1) }},
		{name: "record removed", seq: 4, wantBad: 4, reason: "missing"},
		{name: "last record removed", seq: 10, wantBad: 10, reason: "missing"},
		{name: "seq changed", seq: 7, wantBad: 7, reason: "seq",
			tamper: func(raw []byte) []byte {
				return rehash(bytes.Replace(raw, []byte(`{"seq":7,`), []byte(`{"seq":8,`), 1))
			}},
		{name: "not a record", seq: 3, wantBad: 3, reason: "hash member",
			tamper: func(raw []byte) []byte { return append(raw[:len(raw)-1:len(raw)-1], ',', '}') }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := get(tt.seq)
			var v []byte
			if tt.tamper != nil {
				v = tt.tamper(bytes.Clone(orig))
			}
			set(tt.seq, v)
			defer set(tt.seq, orig)
			res := h.verify(VerifyRequest{})
			assert.False(t, res.OK)
			assert.Equal(t, tt.wantBad, res.BadSeq, "%+v", res)
			assert.Contains(t, res.Reason, tt.reason)
			assert.Equal(t, tt.wantBad-1, res.Count, "records before the bad one are good")
		})
	}
	res := h.verify(VerifyRequest{})
	assert.True(t, res.OK, "%+v", res)

	t.Run("head changed", func(t *testing.T) {
		var orig []byte
		require.NoError(t, h.store.Update(ctx, func(tx kv.Txn) error {
			var err error
			if orig, err = tx.Get(keyHead); err != nil {
				return err
			}
			return tx.Set(keyHead, bytes.Replace(orig, []byte(res.Head), []byte(GenesisPrev), 1))
		}))
		defer func() {
			require.NoError(t, h.store.Update(ctx, func(tx kv.Txn) error { return tx.Set(keyHead, orig) }))
		}()
		got := h.verify(VerifyRequest{})
		assert.False(t, got.OK)
		assert.Equal(t, uint64(10), got.BadSeq)
		assert.Contains(t, got.Reason, "head")
	})
}

func TestService_Verify_Ranges(t *testing.T) {
	h := newHarness(t, Config{})
	// An empty log has nothing to verify, and says so rather than ok.
	res := h.verify(VerifyRequest{})
	assert.False(t, res.OK)
	assert.True(t, res.Empty)
	assert.Equal(t, "nothing to verify: the log holds no records", res.Reason)
	acks := h.logN(10, "agent-1", "file")
	h.waitCommitted(acks[9].Sequence)
	all := h.all(Query{})
	tests := []struct {
		name      string
		req       VerifyRequest
		wantCount uint64
		wantHead  string
	}{
		{name: "whole log", req: VerifyRequest{}, wantCount: 10, wantHead: all[9].Hash},
		{name: "middle", req: VerifyRequest{FromSeq: 3, ToSeq: 6}, wantCount: 4, wantHead: all[5].Hash},
		{name: "from only", req: VerifyRequest{FromSeq: 8}, wantCount: 3, wantHead: all[9].Hash},
		{name: "to only", req: VerifyRequest{ToSeq: 2}, wantCount: 2, wantHead: all[1].Hash},
		{name: "one record", req: VerifyRequest{FromSeq: 10, ToSeq: 10}, wantCount: 1, wantHead: all[9].Hash},
		{name: "to past the end", req: VerifyRequest{FromSeq: 9, ToSeq: 99}, wantCount: 2, wantHead: all[9].Hash},
		// Issue 12, input 6: past the end is nothing to verify, not ok
		// with the all-zero hash; head is the log's real head.
		{name: "past the end", req: VerifyRequest{FromSeq: 11}, wantCount: 0, wantHead: all[9].Hash},
		{name: "far past the end", req: VerifyRequest{FromSeq: 500, ToSeq: 600}, wantCount: 0, wantHead: all[9].Hash},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := h.verify(tt.req)
			assert.Equal(t, tt.wantCount, res.Count)
			assert.Equal(t, tt.wantHead, res.Head)
			if tt.wantCount == 0 {
				assert.False(t, res.OK, "%+v", res)
				assert.True(t, res.Empty)
				assert.Contains(t, res.Reason, "nothing to verify: from_seq")
				return
			}
			assert.True(t, res.OK, "%+v", res)
			assert.False(t, res.Empty)
		})
	}
}

// ExpectHead notices what chaining cannot: records missing at the end.
func TestVerifyResult_ExpectHead(t *testing.T) {
	rec1, h1 := encodeRecord(1, 0, encodeBody("codi.audit.log.a.b", "a", "b", "", []byte(`1`)), GenesisPrev)
	rec2, h2 := encodeRecord(2, 0, encodeBody("codi.audit.log.a.b", "a", "b", "", []byte(`2`)), h1)
	whole := string(rec1) + "\n" + string(rec2) + "\n"
	res, err := VerifyExport(strings.NewReader(whole))
	require.NoError(t, err)
	res.ExpectHead(h2)
	assert.True(t, res.OK, "%+v", res)

	res, err = VerifyExport(strings.NewReader(string(rec1) + "\n")) // the tail is gone
	require.NoError(t, err)
	require.True(t, res.OK)
	res.ExpectHead(h2)
	assert.False(t, res.OK)
	assert.Equal(t, uint64(1), res.BadSeq)
	assert.Contains(t, res.Reason, "is not the expected head "+h2)

	bad := VerifyResult{OK: false, BadSeq: 7, Reason: "prev"}
	bad.ExpectHead(h2)
	assert.Equal(t, "prev", bad.Reason, "a failure stays the first failure")
}

func TestService_Verify_BadRequest(t *testing.T) {
	h := newHarness(t, Config{})
	_, err := h.client.Verify(context.Background(), VerifyRequest{FromSeq: 5, ToSeq: 2})
	assert.ErrorIs(t, err, ErrBadRequest)
	for _, tt := range []struct{ body, wantMsg string }{
		{"{", "invalid JSON"},
		{`{"from":1}`, `unknown member "from" (members: from_seq, to_seq)`},
		{`{"from_seq":1,"from_seq":2}`, `duplicate member "from_seq"`},
		{`{"from_seq":-1}`, "from_seq must be a non-negative integer, not number -1"},
		{`{"to_seq":"9"}`, "to_seq must be a non-negative integer, not string"},
	} {
		resp, err := h.nc.Request("codi.audit.verify", []byte(tt.body), DefaultClientTimeout)
		require.NoError(t, err)
		assert.Equal(t, "400", resp.Header.Get("Nats-Service-Error-Code"), tt.body)
		assert.Contains(t, resp.Header.Get("Nats-Service-Error"), tt.wantMsg)
	}
}

// FuzzParseVerify checks that a verify request is read strictly and never
// accepted with its range backwards.
func FuzzParseVerify(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"from_seq":3,"to_seq":9}`, `{"from_seq":9,"to_seq":3}`, `{"from":1}`,
		`{"from_seq":1,"from_seq":2}`, `{"to_seq":-1}`, `null`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := parseVerify(data)
		if err != nil {
			return
		}
		if req.ToSeq != 0 && req.ToSeq < req.FromSeq {
			t.Fatalf("%q: backwards range accepted", data)
		}
		if len(bytes.TrimSpace(data)) > 0 && strictjson.Check(data, strictjson.MaxDepth) != nil {
			t.Fatalf("%q accepted", data)
		}
	})
}

func TestVerifyExport_Errors(t *testing.T) {
	rec1, h1 := encodeRecord(1, 0, encodeBody("codi.audit.log.a.b", "a", "b", "", []byte(`1`)), GenesisPrev)
	rec2, _ := encodeRecord(2, 0, encodeBody("codi.audit.log.a.b", "a", "b", "", []byte(`2`)), h1)
	rec2bad, _ := encodeRecord(2, 0, encodeBody("codi.audit.log.a.b", "a", "b", "", []byte(`2`)), GenesisPrev)
	tests := []struct {
		name     string
		in       string
		ok       bool
		count    uint64
		line     int
		badSeq   uint64
		inReason string
	}{
		{name: "empty", in: "", inReason: "nothing to verify: the export holds no records"},
		{name: "blank lines only", in: "\n\r\n\n", inReason: "nothing to verify"},
		{name: "two records CRLF and blank lines", in: string(rec1) + "\r\n\n" + string(rec2) + "\n", ok: true, count: 2},
		{name: "no trailing newline", in: string(rec1) + "\n" + string(rec2), ok: true, count: 2},
		{name: "garbage", in: "hello\n", line: 1, inReason: "no seq"},
		{name: "broken link", in: string(rec1) + "\n" + string(rec2bad) + "\n", count: 1, line: 2, badSeq: 2, inReason: "prev"},
		{name: "gap", in: string(rec2) + "\n" + string(rec1) + "\n", count: 1, line: 2, badSeq: 1, inReason: "where 3 belongs"},
		{name: "truncated line", in: string(rec1[:len(rec1)-5]) + "\n", line: 1, badSeq: 1, inReason: "hash member"},
		{name: "bad hash hex", in: string(rec1[:len(rec1)-3]) + "X\"}\n", line: 1, badSeq: 1, inReason: "hex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := VerifyExport(strings.NewReader(tt.in))
			require.NoError(t, err)
			assert.Equal(t, tt.ok, res.OK, "%+v", res)
			assert.Equal(t, tt.count, res.Count)
			assert.Equal(t, tt.line, res.Line)
			assert.Equal(t, tt.badSeq, res.BadSeq)
			assert.Contains(t, res.Reason, tt.inReason)
		})
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, assert.AnError }

func TestVerifyExport_ReadError(t *testing.T) {
	_, err := VerifyExport(failingReader{})
	assert.ErrorIs(t, err, assert.AnError)
}
