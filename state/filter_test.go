package state_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/state"
)

// ids lists a page's ids.
func ids(res state.ListResult) []string {
	var out []string
	for _, r := range res.Records {
		out = append(out, r.ID)
	}
	return out
}

// listAll reads every page of q, limit per page, and returns the ids and
// the pages' sizes.
func listAll(t *testing.T, c *state.Client, kind string, q state.ListQuery) (all []string, pages []int) {
	t.Helper()
	for range 100 {
		res, err := c.ListWhere(ctxT(t), kind, q)
		require.NoError(t, err)
		all = append(all, ids(res)...)
		pages = append(pages, len(res.Records))
		if res.NextAfter == "" {
			return all, pages
		}
		q.After = res.NextAfter
	}
	t.Fatal("no last page")
	return nil, nil
}

func merge(t *testing.T, c *state.Client, id string, fields map[string]any, ttl time.Duration) state.Record {
	t.Helper()
	ev, err := c.Apply(ctxT(t), "task", id, state.Command{Op: state.OpMerge, Fields: fields, TTL: ttl})
	require.NoError(t, err)
	return *ev.Record
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func TestClient_ListWhere_Filters(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	c := e.client("agent-1")
	old := merge(t, c, "T-1", map[string]any{"status": "open", "n": 1}, 0)
	merge(t, c, "T-2", map[string]any{"status": "in_progress", "assignee": "agent-1"}, 0)
	cut := merge(t, c, "T-3", map[string]any{"status": "in_progress", "assignee": "agent-2", "meta": map[string]any{"a": 1}}, time.Hour).UpdatedAt
	merge(t, c, "T-4", map[string]any{"status": "in_progress", "assignee": "agent-1", "n": 2.0}, time.Hour)
	merge(t, c, "T-5", map[string]any{"status": "done", "assignee": "agent-1"}, 0)
	merge(t, c, "T-6", map[string]any{"status": "open"}, 0)
	// A change and a delete leave no stale match.
	merge(t, c, "T-6", map[string]any{"status": "done"}, 0)
	_, err := c.Apply(ctxT(t), "task", "T-5", state.Command{Op: state.OpDelete})
	require.NoError(t, err)
	yes, no := true, false
	rfc := func(t time.Time) string { return t.Format(time.RFC3339Nano) }

	for _, tc := range []struct {
		name string
		q    state.ListQuery
		want []string
	}{
		{"where one field", state.ListQuery{Where: map[string]json.RawMessage{"status": raw(`"in_progress"`)}}, []string{"T-2", "T-3", "T-4"}},
		{"where two fields", state.ListQuery{Where: map[string]json.RawMessage{"status": raw(`"in_progress"`), "assignee": raw(`"agent-1"`)}}, []string{"T-2", "T-4"}},
		{"where a changed field", state.ListQuery{Where: map[string]json.RawMessage{"status": raw(`"open"`)}}, []string{"T-1"}},
		{"where a deleted record's field", state.ListQuery{Where: map[string]json.RawMessage{"status": raw(`"done"`)}}, []string{"T-6"}},
		{"where numbers as JSON values", state.ListQuery{Where: map[string]json.RawMessage{"n": raw(`2`)}}, []string{"T-4"}},
		{"where 1.0 is 1", state.ListQuery{Where: map[string]json.RawMessage{"n": raw(`1.0`)}}, []string{"T-1"}},
		{"where an object", state.ListQuery{Where: map[string]json.RawMessage{"meta": raw(`{ "a" : 1 }`)}}, []string{"T-3"}},
		{"where nothing matches", state.ListQuery{Where: map[string]json.RawMessage{"assignee": raw(`"nobody"`)}}, nil},
		{"updated after", state.ListQuery{UpdatedAfter: rfc(cut)}, []string{"T-3", "T-4", "T-6"}},
		{"updated before", state.ListQuery{UpdatedBefore: rfc(cut)}, []string{"T-1", "T-2"}},
		{"updated in a range", state.ListQuery{UpdatedAfter: rfc(old.UpdatedAt.Add(time.Nanosecond)), UpdatedBefore: rfc(cut.Add(time.Nanosecond))}, []string{"T-2", "T-3"}},
		{"updated in the last hour", state.ListQuery{UpdatedAfter: "1h", Where: map[string]json.RawMessage{"assignee": raw(`"agent-1"`)}}, []string{"T-2", "T-4"}},
		{"updated in the future", state.ListQuery{UpdatedAfter: "+1h"}, nil},
		// A breaker's inputs: bounds beyond the years Unix nanoseconds
		// hold (1678-2262) overflowed and matched nothing.
		{"updated before 3000", state.ListQuery{UpdatedBefore: "3000-01-01T00:00:00Z"}, []string{"T-1", "T-2", "T-3", "T-4", "T-6"}},
		{"updated after 1600", state.ListQuery{UpdatedAfter: "1600-01-01T00:00:00Z", Held: &yes}, []string{"T-3", "T-4"}},
		{"updated after 1600, before 2263", state.ListQuery{UpdatedAfter: "1600-01-01T00:00:00Z", UpdatedBefore: "2263-01-01T00:00:00Z", Prefix: "T-1"}, []string{"T-1"}},
		{"updated before 1600", state.ListQuery{UpdatedBefore: "1600-01-01T00:00:00Z"}, nil},
		{"updated after 3000", state.ListQuery{UpdatedAfter: "3000-01-01T00:00:00Z"}, nil},
		{"held", state.ListQuery{Held: &yes}, []string{"T-3", "T-4"}},
		{"not held", state.ListQuery{Held: &no}, []string{"T-1", "T-2", "T-6"}},
		{"held, with prefix and a field", state.ListQuery{Held: &yes, Prefix: "T-", Where: map[string]json.RawMessage{"assignee": raw(`"agent-2"`)}}, []string{"T-3"}},
		{"prefix excludes", state.ListQuery{Prefix: "X", Where: map[string]json.RawMessage{"status": raw(`"in_progress"`)}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := listAll(t, c, "task", tc.q)
			assert.Equal(t, tc.want, got)
		})
	}

	for _, tc := range []struct {
		name string
		body string
	}{
		{"bad time", `{"updated_after":"yesterday"}`},
		{"bad before", `{"updated_before":"soon"}`},
		{"empty field", `{"where":{"":1}}`},
		{"where not an object", `{"where":[1]}`},
		{"held not a bool", `{"held":"yes"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := e.nc.Request("codi.state.list.task", []byte(tc.body), 2*time.Second)
			require.NoError(t, err)
			assert.Equal(t, "400", m.Header.Get("Nats-Service-Error-Code"), m.Header.Get("Nats-Service-Error"))
		})
	}
}

// Pages of a filtered list are in id order and continue with next_after,
// from an index and without one alike.
func TestClient_ListWhere_Paging(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	c := e.client("agent-1")
	var want []string
	for i := range 50 {
		id := fmt.Sprintf("T-%02d", 49-i) // written in reverse id order: the time index's order is not the ids'
		status := "open"
		if i%2 == 0 {
			status = "in_progress"
			want = append([]string{id}, want...)
		}
		merge(t, c, id, map[string]any{"status": status, "meta": map[string]any{"s": status}}, 0)
	}
	for name, q := range map[string]state.ListQuery{
		"indexed field":    {Limit: 10, Where: map[string]json.RawMessage{"status": raw(`"in_progress"`)}},
		"indexed time":     {Limit: 10, UpdatedAfter: "1h", Where: map[string]json.RawMessage{"status": raw(`"in_progress"`)}},
		"scan (an object)": {Limit: 10, Where: map[string]json.RawMessage{"meta": raw(`{"s":"in_progress"}`)}},
	} {
		t.Run(name, func(t *testing.T) {
			got, pages := listAll(t, c, "task", q)
			assert.Equal(t, want, got)
			assert.Equal(t, []int{10, 10, 5}, pages)
		})
	}
}

// A store written before the indexes existed is indexed when the service
// starts.
func TestService_Run_BuildsTheIndexes(t *testing.T) {
	e := newEnv(t)
	r := e.start(fastConfig())
	c := e.client("agent-1")
	for i := range 5 {
		merge(t, c, fmt.Sprintf("T-%d", i), map[string]any{"status": "open"}, 0)
	}
	r.stop(t)
	// Drop the indexes and their mark, as an older codi2 left the store.
	require.NoError(t, e.store.Update(context.Background(), func(tx kv.Txn) error {
		for _, p := range []kv.Tuple{{"state-by-time"}, {"state-by-field"}, {"state-index-of"}} {
			b, end := p.Range()
			kvs, err := tx.GetRange(b, end, kv.RangeOptions{})
			if err != nil {
				return err
			}
			for _, p := range kvs {
				if err := tx.Clear(p.Key); err != nil {
					return err
				}
			}
		}
		return tx.Clear(kv.Tuple{"meta", "index", "state-by-time,state-by-field", "2"}.Pack())
	}))
	e.start(fastConfig())
	got, _ := listAll(t, c, "task", state.ListQuery{Where: map[string]json.RawMessage{"status": raw(`"open"`)}})
	assert.Len(t, got, 5)
}

// Numbers are compared exactly, not as float64s (a breaker's inputs:
// where uid=9007199254740993 also listed 9007199254740992, -0 did not match
// 0, 1e-400 matched 0, and 1e400 could not be asked for). A store indexed
// by the float64 forms (index version 1) is indexed again at the next
// start.
func TestClient_ListWhere_ExactNumbers(t *testing.T) {
	e := newEnv(t)
	r := e.start(fastConfig())
	c := e.client("agent-1")
	for id, n := range map[string]string{"a": "9007199254740992", "b": "9007199254740993", "z": "-0", "tiny": "1e-400", "huge": "1e400"} {
		merge(t, c, id, map[string]any{"uid": json.Number(n)}, 0)
	}
	check := func() {
		t.Helper()
		for q, want := range map[string][]string{
			"9007199254740993": {"b"}, "9007199254740992": {"a"}, "0": {"z"}, "-0.0": {"z"}, "1e-400": {"tiny"}, "1E+400": {"huge"},
		} {
			got, _ := listAll(t, c, "task", state.ListQuery{Where: map[string]json.RawMessage{"uid": raw(q)}})
			assert.Equal(t, want, got, "where uid=%s", q)
		}
	}
	check()

	// As a store indexed by version 1 was left: its entries, its mark.
	r.stop(t)
	require.NoError(t, e.store.Update(context.Background(), func(tx kv.Txn) error {
		if err := tx.Clear(kv.Tuple{"meta", "index", "state-by-time,state-by-field", "2"}.Pack()); err != nil {
			return err
		}
		return tx.Set(kv.Tuple{"meta", "index", "state-by-time,state-by-field", "1"}.Pack(), []byte{})
	}))
	e.start(fastConfig())
	check()
}

// A record with too many fields to index each is still found by a field
// filter, and checked.
func TestClient_ListWhere_WideRecord(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	c := e.client("agent-1")
	wide := map[string]any{"status": "open"}
	for i := range 300 {
		wide[fmt.Sprintf("f%03d", i)] = i
	}
	merge(t, c, "W-1", wide, 0)
	merge(t, c, "W-2", map[string]any{"status": "open"}, 0)
	wide["status"] = "done"
	merge(t, c, "W-3", wide, 0)
	got, _ := listAll(t, c, "task", state.ListQuery{Where: map[string]json.RawMessage{"status": raw(`"open"`)}})
	assert.Equal(t, []string{"W-1", "W-2"}, got)
	got, _ = listAll(t, c, "task", state.ListQuery{Where: map[string]json.RawMessage{"f007": raw(`7`)}})
	assert.Equal(t, []string{"W-1", "W-3"}, got)
	// Narrowed to few fields again, it is indexed field by field.
	_, err := c.Apply(ctxT(t), "task", "W-3", state.Command{Op: state.OpPut, Fields: map[string]any{"status": "open"}})
	require.NoError(t, err)
	got, _ = listAll(t, c, "task", state.ListQuery{Where: map[string]json.RawMessage{"status": raw(`"open"`)}})
	assert.Equal(t, []string{"W-1", "W-2", "W-3"}, got)
	got, _ = listAll(t, c, "task", state.ListQuery{Where: map[string]json.RawMessage{"f007": raw(`7`)}})
	assert.Equal(t, []string{"W-1"}, got)
}
