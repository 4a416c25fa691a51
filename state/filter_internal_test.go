package state

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzListQuery: a list request body either is refused or parses into
// filters that check any record without panicking, and a where value
// matches itself.
func FuzzListQuery(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"prefix":"T-","after":"T-1","limit":10}`, `{"updated_after":"1h","updated_before":"now"}`,
		`{"updated_after":"2026-11-30T18:00:00Z"}`, `{"where":{"status":"open","n":1.0,"o":{"a":[1]}}}`,
		`{"held":true}`, `{"held":null}`, `{"where":{"":1}}`, `{"where":[]}`, `{"updated_after":"+1h"}`,
		`{"where":{"a":1,"a":2}}`, `{"limit":-1}`, "{\"where\":{\"\xff\":1}}",
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 11, 30, 18, 0, 0, 0, time.UTC)
	exp := now.Add(time.Minute)
	recs := []Record{
		{Kind: "task", ID: "T-1", UpdatedAt: now.Add(-time.Minute), Fields: map[string]json.RawMessage{"status": json.RawMessage(`"open"`), "n": json.RawMessage(`1`)}},
		{Kind: "task", ID: "T-2", UpdatedAt: now, ExpiresAt: &exp, Fields: map[string]json.RawMessage{"o": json.RawMessage(`{"a":[1]}`)}},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var q ListQuery
		if decodeBody(data, &q) != nil {
			return
		}
		flt, err := parseFilter(q, now)
		if err != nil {
			return
		}
		for _, r := range recs {
			flt.match(r)
		}
		_ = flt.sources("task")
		_ = flt.covered(flt.sources("task"))
		if len(q.Where) > 0 {
			r := Record{UpdatedAt: now, Fields: q.Where}
			flt.from, flt.to, flt.held = time.Time{}, time.Time{}, nil
			if !flt.match(r) {
				t.Fatalf("a record whose fields are the where %s does not match it", data)
			}
		}
	})
}
