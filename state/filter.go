package state

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/timeparse"
	"github.com/codi2/codi2/subjects"
)

// ListQuery is a list request (codi.state.list.<kind>): ListOptions and
// filters, all optional. A record is listed when it matches every filter
// given. A plain value.
type ListQuery struct {
	// Prefix, After and Limit are ListOptions'.
	Prefix string `json:"prefix,omitempty"`
	After  string `json:"after,omitempty"`
	Limit  int    `json:"limit,omitempty"`
	// UpdatedAfter and UpdatedBefore select records with UpdatedAfter <=
	// updated_at < UpdatedBefore: RFC 3339, "now", or a duration before
	// the service's now ("1h", "-15m"; "+1h" is after), see timeparse.
	UpdatedAfter  string `json:"updated_after,omitempty"`
	UpdatedBefore string `json:"updated_before,omitempty"`
	// Where selects records whose field has this JSON value, for every
	// member (equal as JSON values: 1.0 is 1, member order does not count).
	Where map[string]json.RawMessage `json:"where,omitempty"`
	// Held, when set, selects records whose lease is live (true: expires_at
	// is after the service's now) or not (false: no lease, or one that has
	// run out and awaits its expiry).
	Held *bool `json:"held,omitempty"`
}

// options is q's ListOptions.
func (q ListQuery) options() ListOptions {
	return ListOptions{Prefix: q.Prefix, After: q.After, Limit: q.Limit}
}

// filtered reports whether q has a filter.
func (q ListQuery) filtered() bool {
	return q.UpdatedAfter != "" || q.UpdatedBefore != "" || len(q.Where) > 0 || q.Held != nil
}

// filter is a ListQuery's filters, parsed.
type filter struct {
	from, to time.Time // zero: open
	where    map[string]string
	held     *bool
	now      time.Time
}

// parseFilter reads q's filters at now. The error names the member.
func parseFilter(q ListQuery, now time.Time) (filter, error) {
	f := filter{held: q.Held, now: now, where: map[string]string{}}
	var err error
	if q.UpdatedAfter != "" {
		if f.from, err = timeparse.Parse(q.UpdatedAfter, now); err != nil {
			return f, fmt.Errorf("updated_after: %w", err)
		}
	}
	if q.UpdatedBefore != "" {
		if f.to, err = timeparse.Parse(q.UpdatedBefore, now); err != nil {
			return f, fmt.Errorf("updated_before: %w", err)
		}
	}
	for k, v := range q.Where {
		if k == "" {
			return f, fmt.Errorf("where: an empty field name")
		}
		c, _ := canonical(v)
		if c == "" {
			return f, fmt.Errorf("where %q: not a JSON value", k)
		}
		f.where[k] = c
	}
	return f, nil
}

// match reports whether r passes every filter.
func (f filter) match(r Record) bool {
	ns := r.UpdatedAt.UnixNano()
	if !f.from.IsZero() && ns < f.from.UnixNano() || !f.to.IsZero() && ns >= f.to.UnixNano() {
		return false
	}
	if f.held != nil && (r.ExpiresAt != nil && r.ExpiresAt.After(f.now)) != *f.held {
		return false
	}
	for k, want := range f.where {
		v, ok := r.Fields[k]
		if !ok {
			return false
		}
		if c, _ := canonical(v); c != want {
			return false
		}
	}
	return true
}

// maxIndexScan bounds the index entries a filtered list reads to pick a
// source: past it, an index is no better than reading the kind in id order.
const maxIndexScan = 20_000

// source is a range of one index: every live record that matches the
// filter it comes from has an entry in it. idAt is the id's position in the
// key tuple.
type source struct {
	begin, end []byte
	idAt       int
}

// sources are the index ranges the filter can read instead of the kind.
func (f filter) sources(kind string) []source {
	var out []source
	if !f.from.IsZero() || !f.to.IsZero() {
		begin, end := kv.Tuple{prefixByTime, kind}.Range()
		if !f.from.IsZero() {
			begin = kv.Tuple{prefixByTime, kind, f.from.UnixNano()}.Pack()
		}
		if !f.to.IsZero() {
			end = kv.Tuple{prefixByTime, kind, f.to.UnixNano()}.Pack()
		}
		out = append(out, source{begin: begin, end: end, idAt: 3})
	}
	for k, c := range f.where {
		if len(c) <= maxIndexedValue && len(k) <= maxIndexedValue && !strings.HasPrefix(c, "{") && !strings.HasPrefix(c, "[") {
			begin, end := kv.Tuple{prefixByField, kind, k, c}.Range()
			out = append(out, source{begin: begin, end: end, idAt: 4})
		}
	}
	return out
}

// listFiltered answers a list request with filters: from the smallest index
// range when one holds at most maxIndexScan entries (its ids sorted, so
// pages are in id order as without filters), else by reading the kind in
// id order and checking every record. Either way only live records that
// match every filter are listed, Limit per page, NextAfter as in list.
func (s *Service) listFiltered(kind string, q ListQuery, f filter) ([]byte, error) {
	limit := q.Limit
	if limit == 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, s.cfg.MaxListLimit)
	maxBytes := int(s.nc.MaxPayload()) - 1024
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	var (
		recs   [][]byte
		lastID string
		more   bool
	)
	// add takes the record at key if it matches; done when the page is full.
	add := func(key, v []byte, size *int) (done bool, err error) {
		st, err := decodeStored(key, v)
		if err != nil {
			return false, err
		}
		if st.tombstone || !f.match(st.Record) {
			return false, nil
		}
		body, _, _ := openStored(key, v)
		if len(recs) == limit || *size+len(body) > maxBytes {
			more = true
			return true, nil
		}
		recs, lastID = append(recs, body), st.ID
		*size += len(body)
		return false, nil
	}
	err := s.store.View(ctx, func(tx kv.ReadTxn) error {
		recs, lastID, more = recs[:0], "", false
		ids, indexed, err := pickSource(tx, f.sources(kind))
		if err != nil {
			return err
		}
		size := 0
		if indexed {
			for _, id := range ids {
				if !strings.HasPrefix(id, q.Prefix) || q.After != "" && id <= q.After {
					continue
				}
				key := stateKey(kind, id)
				v, err := tx.Get(key)
				if err != nil {
					continue // a stale entry
				}
				if done, err := add(key, v, &size); done || err != nil {
					return err
				}
			}
			return nil
		}
		begin, end := s.listRange(kind, q.options())
		for {
			kvs, err := tx.GetRange(begin, end, kv.RangeOptions{Limit: 1000})
			if err != nil {
				return err
			}
			for _, p := range kvs {
				if done, err := add(p.Key, p.Value, &size); done || err != nil {
					return err
				}
			}
			if len(kvs) < 1000 {
				return nil
			}
			begin = append(bytes.Clone(kvs[len(kvs)-1].Key), 0x00)
		}
	})
	if err != nil {
		return nil, err
	}
	return encodeList(recs, lastID, more), nil
}

// pickSource counts each source's entries up to maxIndexScan and returns
// the ids of the smallest, sorted, with indexed true; indexed is false when
// there is no source or every one is too large.
func pickSource(tx kv.ReadTxn, srcs []source) (ids []string, indexed bool, err error) {
	var best []kv.KeyValue
	bestAt := 0
	for _, src := range srcs {
		lim := maxIndexScan + 1
		if indexed {
			lim = len(best) // only a smaller one is worth it
		}
		kvs, err := tx.GetRange(src.begin, src.end, kv.RangeOptions{Limit: lim})
		if err != nil {
			return nil, false, err
		}
		if len(kvs) <= maxIndexScan && (!indexed || len(kvs) < len(best)) {
			best, bestAt, indexed = kvs, src.idAt, true
		}
	}
	for _, p := range best {
		t, err := kv.Unpack(p.Key)
		if err != nil || len(t) <= bestAt {
			continue
		}
		if id, ok := t[bestAt].(string); ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, indexed, nil
}

// listRange is the key range a list request reads without an index: the
// kind, or its ids with Prefix, after After.
func (s *Service) listRange(kind string, o ListOptions) (begin, end []byte) {
	begin, end = kv.Tuple{prefixState, kind}.Range()
	if o.Prefix != "" {
		pk := kv.Tuple{prefixState, kind, o.Prefix}.Pack()
		begin = pk[:len(pk)-1] // the id without its terminator: a raw prefix
		end = kv.PrefixEnd(begin)
	}
	if o.After != "" {
		if ak := append(kv.Tuple{prefixState, kind, o.After}.Pack(), 0x00); bytes.Compare(ak, begin) > 0 {
			begin = ak
		}
	}
	return begin, end
}

// encodeList is a list reply.
func encodeList(recs [][]byte, lastID string, more bool) []byte {
	var b bytes.Buffer
	b.WriteString(`{"records":[`)
	for i, r := range recs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(r)
	}
	b.WriteString(`],"next_after":`)
	next := ""
	if more {
		next = lastID
	}
	b.Write(mustJSON(next))
	b.WriteByte('}')
	return b.Bytes()
}

// ListWhere is List with filters (see ListQuery): one page, in id order;
// pass NextAfter as After for the next. Errors as List. Safe for
// concurrent use.
func (c *Client) ListWhere(ctx context.Context, kind string, q ListQuery) (ListResult, error) {
	ctx, cancel := withDefault(ctx)
	defer cancel()
	subj, err := subjects.StateList(kind)
	if err != nil {
		return ListResult{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	body, err := json.Marshal(q)
	if err != nil {
		return ListResult{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	var res ListResult
	if err := c.request(ctx, subj, body, &res); err != nil {
		return ListResult{}, err
	}
	return res, nil
}
