package audit

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
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
	t.Run("limit above the maximum", func(t *testing.T) {
		res, err := h.client.Query(context.Background(), Query{Limit: MaxQueryLimit * 10})
		require.NoError(t, err)
		assert.Len(t, res.Records, 60)
	})
}

func TestService_Query_BadRequest(t *testing.T) {
	h := newHarness(t, Config{})
	tests := []struct {
		name string
		body string
	}{
		{name: "not JSON", body: `{`},
		{name: "bad from", body: `{"from":"yesterday"}`},
		{name: "bad to", body: `{"to":"2026-13-01T00:00:00Z"}`},
		{name: "to before from", body: `{"from":"2026-01-02T00:00:00Z","to":"2026-01-01T00:00:00Z"}`},
		{name: "negative limit", body: `{"limit":-1}`},
		{name: "negative part offset", body: `{"part_offset":-1}`},
		{name: "part offset beyond the record", body: `{"part_offset":100000000}`},
		{name: "huge after_seq", body: `{"after_seq":18446744073709551615}`},
		{name: "long source", body: fmt.Sprintf(`{"source":"%0*d"}`, 2000, 0)},
	}
	h.logN(1, "agent-1", "x")
	h.waitCommitted(1)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := h.nc.Request("codi.audit.query", []byte(tt.body), DefaultClientTimeout)
			require.NoError(t, err)
			assert.Equal(t, "400", resp.Header.Get("Nats-Service-Error-Code"), "%s", resp.Header.Get("Nats-Service-Error"))
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
