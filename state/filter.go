package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
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

// minNano and maxNano are the first and last times a Unix nanosecond count
// holds.
var minNano, maxNano = time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)

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
	// The time index and match compare Unix nanoseconds, which hold the
	// years 1678 to 2262 (time.Time.UnixNano): a bound beyond them is no
	// bound on its side and excludes everything on the other.
	switch {
	case f.from.Before(minNano):
		f.from = time.Time{}
	case f.from.After(maxNano):
		f.from = maxNano
	}
	switch {
	case f.to.After(maxNano):
		f.to = time.Time{}
	case !f.to.IsZero() && f.to.Before(minNano):
		f.to = minNano
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

// matchBody decodes what the filters need of the record JSON body and
// checks it: the times and lease always, the fields only with where.
func (f filter) matchBody(key, body []byte) (bool, error) {
	var r struct {
		UpdatedAt time.Time                  `json:"updated_at"`
		ExpiresAt *time.Time                 `json:"expires_at"`
		Fields    map[string]json.RawMessage `json:"fields"`
	}
	var head struct {
		UpdatedAt time.Time  `json:"updated_at"`
		ExpiresAt *time.Time `json:"expires_at"`
	}
	var err error
	if len(f.where) > 0 {
		err = json.Unmarshal(body, &r)
	} else {
		err = json.Unmarshal(body, &head)
		r.UpdatedAt, r.ExpiresAt = head.UpdatedAt, head.ExpiresAt
	}
	if err != nil {
		return false, fmt.Errorf("%w: record %s: %v", ErrCorrupt, recordName(key), err)
	}
	return f.match(Record{UpdatedAt: r.UpdatedAt, ExpiresAt: r.ExpiresAt, Fields: r.Fields}), nil
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
		if string(v) == want {
			continue // already canonical, as most stored values are
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
	// wideBegin and wideEnd are a second range of a field's source: the
	// records of too many fields to index each (index.go).
	wideBegin, wideEnd []byte
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
			wb, we := kv.Tuple{prefixByField, kind, "", ""}.Range()
			out = append(out, source{begin: begin, end: end, idAt: 4, wideBegin: wb, wideEnd: we})
		}
	}
	return out
}

// covered reports whether the sources answer every filter: no held, and
// every where value indexed.
func (f filter) covered(srcs []source) bool {
	return f.held == nil && len(srcs) == len(f.where)+btoi(!f.from.IsZero() || !f.to.IsZero())
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// listFiltered answers a list request with filters: from the index ranges
// the filters name, when at least one holds at most maxIndexScan entries
// (the ids in every such range, sorted, so pages are in id order as without
// filters), else by reading the kind in id order and checking every
// record. A record the indexes alone prove a match (every filter has its
// range, every range was read) is not decoded; any other is checked. Only
// live records that match every filter are listed, Limit per page,
// NextAfter as in list.
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
	// add takes the record id at key if it matches; done when the page is
	// full. proven: the indexes show that it matches.
	add := func(key, v []byte, id string, proven bool, size *int) (done bool, err error) {
		body, live, err := openStored(key, v)
		if err != nil || !live {
			return false, err
		}
		if !proven {
			ok, err := f.matchBody(key, body)
			if err != nil || !ok {
				return false, err
			}
		}
		if len(recs) == limit || *size+len(body) > maxBytes {
			more = true
			return true, nil
		}
		recs, lastID = append(recs, body), id
		*size += len(body)
		return false, nil
	}
	err := s.store.View(ctx, func(tx kv.ReadTxn) error {
		recs, lastID, more = recs[:0], "", false
		srcs := f.sources(kind)
		ids, all, err := intersect(tx, srcs)
		if err != nil {
			return err
		}
		size := 0
		if ids != nil {
			proven := all && f.covered(srcs)
			for _, id := range ids {
				if !strings.HasPrefix(id, q.Prefix) || q.After != "" && id <= q.After {
					continue
				}
				key := stateKey(kind, id)
				v, err := tx.Get(key)
				if errors.Is(err, kv.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if done, err := add(key, v, id, proven, &size); done || err != nil {
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
				t, err := kv.Unpack(p.Key)
				if err != nil || len(t) != 3 {
					return fmt.Errorf("state: corrupt record key: %v", err)
				}
				id, _ := t[2].(string)
				if done, err := add(p.Key, p.Value, id, false, &size); done || err != nil {
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

// intersect reads each source's entries up to maxIndexScan and returns
// the ids found in every source that fits, sorted; all says every source
// fit and proves its filter of every id. ids is nil when none fits (or there is none): read the kind instead.
func intersect(tx kv.ReadTxn, srcs []source) (ids []string, all bool, err error) {
	var in map[string]bool
	all = true
	for _, src := range srcs {
		kvs, err := tx.GetRange(src.begin, src.end, kv.RangeOptions{Limit: maxIndexScan + 1})
		if err != nil {
			return nil, false, err
		}
		if src.wideBegin != nil && len(kvs) <= maxIndexScan {
			wide, err := tx.GetRange(src.wideBegin, src.wideEnd, kv.RangeOptions{Limit: maxIndexScan + 1 - len(kvs)})
			if err != nil {
				return nil, false, err
			}
			if len(wide) > 0 {
				all = false // those records' fields are not proven
				kvs = append(kvs, wide...)
			}
		}
		if len(kvs) > maxIndexScan {
			all = false
			continue
		}
		got := make(map[string]bool, len(kvs))
		for _, p := range kvs {
			t, err := kv.Unpack(p.Key)
			if err != nil || len(t) <= src.idAt {
				return nil, false, fmt.Errorf("%w: index key: %v", ErrCorrupt, err)
			}
			id, _ := t[src.idAt].(string)
			if in == nil || in[id] {
				got[id] = true
			}
		}
		in = got
	}
	if in == nil {
		return nil, false, nil
	}
	ids = slices.Sorted(maps.Keys(in))
	if ids == nil {
		ids = []string{}
	}
	return ids, all, nil
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
