package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/internal/strictjson"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestService_Query_Filters checks every combination of time range, source
// and category against a filter over the whole log, reading in small pages
// so that paging resumes inside each index.
func TestService_Query_Filters(t *testing.T) {
	h := newHarness(t, Config{})
	sources := []string{"agent-1", "agent-2", "codi-state"}
	categories := []string{"file", "task"}
	var last uint64
	for i := range 60 {
		ack, err := h.client.Log(context.Background(), sources[i%3], categories[i%2], fmt.Appendf(nil, `{"i":%d}`, i))
		require.NoError(t, err)
		last = ack.Sequence
	}
	h.waitCommitted(last)
	all := h.all(Query{})
	require.Len(t, all, 60)
	from, to := all[13].Time, all[41].Time
	require.True(t, from.Before(to))

	type window struct {
		name     string
		from, to time.Time
	}
	windows := []window{
		{name: "any time"},
		{name: "from", from: from},
		{name: "to", to: to},
		{name: "from-to", from: from, to: to},
		{name: "empty range", from: to, to: to},
		{name: "after the log", from: all[59].Time.Add(time.Second)},
		// Issue 12, input 5: years beyond Unix nanoseconds.
		{name: "far bounds", from: time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC), to: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
		{name: "far to", to: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
		{name: "far from", from: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)},
		{name: "ancient to", to: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, w := range windows {
		for _, src := range []string{"", "agent-2", "nobody"} {
			for _, cat := range []string{"", "task"} {
				for _, limit := range []int{0, 4} {
					q := Query{From: w.from, To: w.to, Source: src, Category: cat, Limit: limit}
					t.Run(fmt.Sprintf("%s/source=%s/category=%s/limit=%d", w.name, src, cat, limit), func(t *testing.T) {
						var want []uint64
						for _, r := range all {
							if (w.from.IsZero() || !r.Time.Before(w.from)) && (w.to.IsZero() || r.Time.Before(w.to)) &&
								(src == "" || r.Source == src) && (cat == "" || r.Category == cat) {
								want = append(want, r.Seq)
							}
						}
						var got []uint64
						for _, r := range h.all(q) {
							got = append(got, r.Seq)
							assert.Equal(t, all[r.Seq-1].Raw, r.Raw)
						}
						assert.Equal(t, want, got)
						// Newest first: the same records, backwards.
						q.NewestFirst = true
						var desc []uint64
						for _, r := range h.allDesc(q) {
							desc = append(desc, r.Seq)
						}
						slices.Reverse(want)
						assert.Equal(t, want, desc, "newest first")
					})
				}
			}
		}
	}

	t.Run("after_seq outside the selection", func(t *testing.T) {
		res, err := h.client.Query(context.Background(), Query{Source: "agent-2", AfterSeq: 3, Limit: 2})
		require.NoError(t, err)
		require.Len(t, res.Records, 2)
		assert.Equal(t, []uint64{5, 8}, []uint64{res.Records[0].Seq, res.Records[1].Seq})
		assert.Equal(t, uint64(8), res.NextAfterSeq)
	})
	t.Run("last page ends with 0", func(t *testing.T) {
		res, err := h.client.Query(context.Background(), Query{AfterSeq: 57, Limit: 3})
		require.NoError(t, err)
		assert.Len(t, res.Records, 3)
		assert.Zero(t, res.NextAfterSeq)
	})
	t.Run("after the end", func(t *testing.T) {
		res, err := h.client.Query(context.Background(), Query{AfterSeq: 600})
		require.NoError(t, err)
		assert.Empty(t, res.Records)
		assert.Zero(t, res.NextAfterSeq)
	})
	t.Run("the last 5 events", func(t *testing.T) {
		res, err := h.client.Query(context.Background(), Query{NewestFirst: true, Limit: 5})
		require.NoError(t, err)
		require.Len(t, res.Records, 5)
		assert.Equal(t, uint64(60), res.Records[0].Seq)
		assert.Equal(t, uint64(56), res.NextBeforeSeq)
		res, err = h.client.Query(context.Background(), Query{NewestFirst: true, Source: "agent-2", BeforeSeq: 11, AfterSeq: 2, Limit: 5})
		require.NoError(t, err)
		require.Len(t, res.Records, 2)
		assert.Equal(t, []uint64{8, 5}, []uint64{res.Records[0].Seq, res.Records[1].Seq})
		assert.Zero(t, res.NextBeforeSeq)
	})
	t.Run("limit above the maximum", func(t *testing.T) {
		res, err := h.client.Query(context.Background(), Query{Limit: MaxQueryLimit * 10})
		require.NoError(t, err)
		assert.Len(t, res.Records, 60)
	})
}

// A query the service cannot answer as asked is a 400 that names the
// problem in the request's terms; none is widened to the whole log or
// answered with a silently empty page (issue 12, input 5).
func TestService_Query_BadRequest(t *testing.T) {
	h := newHarness(t, Config{})
	tests := []struct {
		name, body, wantMsg string
	}{
		{"not JSON", `{`, "invalid JSON"},
		{"bad from", `{"from":"yesterday"}`, `from: not a time: "yesterday": want an RFC 3339 time`},
		{"bad to", `{"to":"2026-13-01T00:00:00Z"}`, "to: not a time"},
		{"to before from", `{"from":"2026-01-02T00:00:00Z","to":"2026-01-01T00:00:00Z"}`, "is before from"},
		{"relative to before from", `{"from":"-1h","to":"-2h"}`, "is before from"},
		{"negative limit", `{"limit":-1}`, "negative limit"},
		{"negative part offset", `{"part_offset":-1}`, "negative part_offset"},
		{"part offset beyond the record", `{"part_offset":100000000}`, "beyond record"},
		{"huge after_seq", `{"after_seq":18446744073709551615}`, "out of range"},
		{"long source", fmt.Sprintf(`{"source":"%0*d"}`, 2000, 0), "no subject token is longer"},
		{"unknown member", `{"form":"2026-01-01T00:00:00Z"}`, `unknown member "form" (members: from, to, source, category, after_seq, before_seq, newest_first, limit, part_offset)`},
		{"duplicate member", `{"source":"a","source":"b"}`, `duplicate member "source"`},
		{"wrong type", `{"limit":"10"}`, "limit must be an integer, not string"},
		{"array", `[]`, "want an object, not array"},
		{"source with a dot", `{"source":"no.such"}`, `source "no.such" can never match: it is one subject token, without '.' (escape the name with subjects.Escape: "no%2Esuch")`},
		{"category with a space", `{"category":"a b"}`, "can never match"},
		{"source with a wildcard", `{"source":"agent-*"}`, "can never match"},
		{"not utf-8", "{\"source\":\"a\xff\"}", "not valid UTF-8"},
	}
	h.logN(1, "agent-1", "x")
	h.waitCommitted(1)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := h.nc.Request("codi.audit.query", []byte(tt.body), DefaultClientTimeout)
			require.NoError(t, err)
			msg := resp.Header.Get("Nats-Service-Error")
			assert.Equal(t, "400", resp.Header.Get("Nats-Service-Error-Code"), "%s", msg)
			assert.Contains(t, msg, tt.wantMsg)
			assert.NotContains(t, msg, "Go ")
		})
	}
	_, err := h.client.Query(context.Background(), Query{Limit: -1})
	assert.ErrorIs(t, err, ErrBadRequest)
	// An empty body is the zero query.
	resp, err := h.nc.Request("codi.audit.query", nil, DefaultClientTimeout)
	require.NoError(t, err)
	assert.Empty(t, resp.Header.Get("Nats-Service-Error-Code"))
	assert.Contains(t, string(resp.Data), `"seq":1`)
}

// Times in a query may be relative to now and may lie in any year: a bound
// beyond what Unix nanoseconds hold is as good as open (issue 12, input 5).
func TestService_Query_Times(t *testing.T) {
	h := newHarness(t, Config{})
	h.logN(3, "agent-1", "x")
	h.waitCommitted(3)
	tests := []struct {
		name, body string
		want       int
	}{
		{"last hour", `{"from":"-1h"}`, 3},
		{"last 15 minutes, unsigned", `{"from":"15m"}`, 3},
		{"until an hour ago", `{"to":"-1h"}`, 0},
		{"from now", `{"from":"now"}`, 0},
		{"until now", `{"to":"now"}`, 3},
		{"until in an hour", `{"to":"+1h"}`, 3},
		{"days", `{"from":"-2d","to":"+1d"}`, 3},
		{"until 9999", `{"to":"9999-12-31T23:59:59Z"}`, 3},
		{"from year 1 to 9999", `{"from":"0001-01-01T00:00:00Z","to":"9999-12-31T23:59:59Z"}`, 3},
		{"from 9999", `{"from":"9999-01-01T00:00:00Z"}`, 0},
		{"until year 1", `{"to":"0001-01-01T00:00:00Z"}`, 0},
		{"newest first, last hour", `{"from":"-1h","newest_first":true,"limit":2}`, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := h.nc.Request("codi.audit.query", []byte(tt.body), DefaultClientTimeout)
			require.NoError(t, err)
			require.Empty(t, resp.Header.Get("Nats-Service-Error"))
			var rep queryReply
			require.NoError(t, json.Unmarshal(resp.Data, &rep))
			assert.Len(t, rep.Records, tt.want)
		})
	}
}

// FuzzParseQuery checks that parseQuery never panics and that what it
// accepts is a consistent query: strict JSON, bounds in order, filters that
// can match a subject token.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{`{}`, `{"from":"-1h","to":"now"}`, `{"from":"0001-01-01T00:00:00Z","to":"9999-12-31T23:59:59Z"}`,
		`{"form":"x"}`, `{"source":"no.such"}`, `{"newest_first":true,"before_seq":10,"limit":20}`, `{"limit":-1}`,
		`{"source":"a","source":"b"}`, `{"to":"1000-01-01T00:00:00Z"}`, `[]`} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := parseQuery(data, now)
		if err != nil {
			return
		}
		if len(bytes.TrimSpace(data)) > 0 {
			if err := strictjson.Check(data, strictjson.MaxDepth); err != nil {
				t.Fatalf("accepted %q that strictjson refuses: %v", data, err)
			}
		}
		if q.hasFrom && q.hasTo && q.to < q.from {
			t.Fatalf("%q: to %d before from %d", data, q.to, q.from)
		}
		if q.limit < 1 || q.limit > MaxQueryLimit || q.partOffset < 0 {
			t.Fatalf("%q: limit %d, part_offset %d", data, q.limit, q.partOffset)
		}
		for _, v := range []string{q.source, q.category} {
			if strings.ContainsAny(v, ". *>") || !utf8.ValidString(v) {
				t.Fatalf("%q: filter %q accepted", data, v)
			}
		}
	})
}

// TestRecordReader_Read reads consecutive records, some split over several
// values, across range reads that stop inside a record.
func TestRecordReader_Read(t *testing.T) {
	store := kvtest.NewBolt(t)
	want := map[uint64][]byte{}
	var seqs []uint64
	require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error {
		w := writer{tx: tx}
		prev := GenesisPrev
		for seq := uint64(1); seq <= 300; seq++ {
			payload := []byte(`{}`)
			if seq%97 == 0 || seq == recordReadPairs {
				payload = bytes.Repeat([]byte{0xab}, 250_000) // three values
			}
			raw, hash := encodeRecord(seq, int64(seq), encodeBody("codi.audit.log.a.b", "a", "b", "", payload), prev)
			putRecord(&w, seq, raw)
			want[seq], prev = raw, hash
			seqs = append(seqs, seq)
		}
		return w.err
	}))
	require.NoError(t, store.View(context.Background(), func(tx kv.ReadTxn) error {
		for _, page := range [][]uint64{seqs, seqs[5:200], {3, 7, 9}} {
			rr := recordReader{tx: tx, seqs: page}
			for _, seq := range page {
				raw, err := rr.read(seq)
				require.NoError(t, err)
				require.Equal(t, want[seq], raw, "record %d", seq)
			}
		}
		rr := recordReader{tx: tx, seqs: []uint64{400, 401}}
		_, err := rr.read(400)
		assert.ErrorIs(t, err, kv.ErrNotFound)
		return nil
	}))
}
