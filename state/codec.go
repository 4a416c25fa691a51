package state

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/codi2/codi2/internal/jsonscan"
	"github.com/codi2/codi2/internal/strictjson"
)

// The JSON of the apply's hot path, written by hand: a stored record, an
// event, an audit record, a command and a multi-record command's payload,
// encoded and decoded in one pass over the bytes and without reflection;
// and, for the client, a list page's records decoded.
//
// Every function here is a fast path for one shape that encoding/json (or
// strictjson) handled before, and gives exactly what that gave: the same
// bytes out, the same value in, the same accept or reject. The encoders
// and decoders report ok false for anything outside the shape they know (an
// escape in a member name, a member they do not know, a value that does
// not encode, nesting deeper than strictjson.MaxDepth); their callers then
// take the encoding/json path, which also writes every error's text, so
// that errors read exactly as before. codec_test.go fuzzes each one
// against the encoding/json path it replaces.

// hexDigits are the lower-case hex digits encoding/json writes in \u
// escapes.
const hexDigits = "0123456789abcdef"

// jsonSafe[c] reports whether json.Marshal writes the ASCII byte c inside a
// string as itself: it escapes '"', '\\', control bytes, and (escaping
// HTML, as json.Marshal does) '<', '>' and '&'.
var jsonSafe = func() (safe [utf8.RuneSelf]bool) {
	for c := byte(0x20); c < utf8.RuneSelf; c++ {
		safe[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return safe
}()

// appendJSONString appends s as json.Marshal encodes a string: HTML
// characters, U+2028 and U+2029 escaped, invalid UTF-8 as \ufffd (the
// rules of encoding/json's appendString with escapeHTML).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendRawJSON appends raw as json.Marshal encodes a json.RawMessage:
// nil as null, otherwise compacted (whitespace outside strings dropped)
// with '<', '>', '&', U+2028 and U+2029 escaped. ok is false when raw is
// not one JSON value (json.Marshal fails) or nests deeper than
// strictjson.MaxDepth.
func appendRawJSON(b, raw []byte) ([]byte, bool) {
	if raw == nil {
		return append(b, "null"...), true
	}
	s := newScan(raw, false)
	end, ok := s.Value(s.Space(0), 1)
	if !ok || s.Space(end) != len(raw) {
		return b, false
	}
	return appendCompactJSON(b, raw), true
}

// appendCompactJSON appends src, which is valid JSON, compacted and escaped
// as encoding/json's appendCompact does it for json.Marshal.
func appendCompactJSON(b, src []byte) []byte {
	start, inString := 0, false
	for i := 0; i < len(src); i++ {
		switch c := src[i]; {
		case c == '<' || c == '>' || c == '&':
			b = append(b, src[start:i]...)
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			start = i + 1
		case c == 0xE2 && i+2 < len(src) && src[i+1] == 0x80 && src[i+2]&^1 == 0xA8: // U+2028, U+2029
			b = append(b, src[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[src[i+2]&0xF])
			i += 2
			start = i + 1
		case inString:
			if c == '\\' {
				i++ // the escaped byte is never one of the above in valid JSON
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			b = append(b, src[start:i]...)
			start = i + 1
		}
	}
	return append(b, src[start:]...)
}

// appendTimeJSON appends t as time.Time.MarshalJSON gives it (RFC 3339 with
// nanoseconds, quoted); ok is false where that fails (a year outside
// 0-9999).
func appendTimeJSON(b []byte, t time.Time) ([]byte, bool) {
	b = append(b, '"')
	out, err := t.AppendText(b)
	if err != nil {
		return b, false
	}
	return append(out, '"'), true
}

// appendFloatJSON appends f as encoding/json encodes a float of bits (32
// or 64) bits: like ES6, 'e' notation below 1e-6 and from 1e21, without
// the exponent's leading zero. ok is false for NaN and infinities, which
// json.Marshal refuses.
func appendFloatJSON(b []byte, f float64, bits int) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, false
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' { // e-07 -> e-7
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, true
}

// sortedKeys appends the keys of m to dst in the order json.Marshal writes
// a map's members (byte order).
func sortedKeys[V any](dst []string, m map[string]V) []string {
	for k := range m {
		dst = append(dst, k)
	}
	slices.Sort(dst)
	return dst
}

// appendObject appends m as json.Marshal encodes a map: members in key
// order, each value by value. ok is false when a value does not encode.
func appendObject[V any](b []byte, m map[string]V, value func([]byte, V) ([]byte, bool)) ([]byte, bool) {
	var buf [16]string
	b = append(b, '{')
	for i, k := range sortedKeys(buf[:0], m) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(appendJSONString(b, k), ':')
		var ok bool
		if b, ok = value(b, m[k]); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

// appendRecord appends r as json.Marshal(r) encodes it. ok is false when
// that fails (a field that is not JSON, a time outside years 0-9999) or a
// field nests deeper than strictjson.MaxDepth: the caller encodes r with
// json.Marshal then.
func appendRecord(b []byte, r *Record) ([]byte, bool) {
	b = append(b, `{"kind":`...)
	b = appendJSONString(b, r.Kind)
	b = append(b, `,"id":`...)
	b = appendJSONString(b, r.ID)
	b = append(b, `,"rev":`...)
	b = strconv.AppendUint(b, r.Rev, 10)
	b = append(b, `,"fields":`...)
	if r.Fields == nil {
		b = append(b, "null"...)
	} else {
		var ok bool
		if b, ok = appendObject(b, r.Fields, func(b []byte, v json.RawMessage) ([]byte, bool) { return appendRawJSON(b, v) }); !ok {
			return b, false
		}
	}
	b = append(b, `,"updated_by":`...)
	b = appendJSONString(b, r.UpdatedBy)
	b = append(b, `,"updated_at":`...)
	b, ok := appendTimeJSON(b, r.UpdatedAt)
	if !ok {
		return b, false
	}
	b = append(b, `,"expires_at":`...)
	if b, ok = appendTimePtrJSON(b, r.ExpiresAt); !ok {
		return b, false
	}
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	if r.BoundTo != "" {
		b = append(b, `,"bound_to":`...)
		b = appendJSONString(b, r.BoundTo)
	}
	return append(b, '}'), true
}

// recordSizeHint is about the size of r's JSON, for a buffer to encode it
// into.
func recordSizeHint(r *Record) int {
	n := 192 + len(r.Kind) + len(r.ID) + len(r.UpdatedBy) + len(r.BoundTo)
	for k, v := range r.Fields {
		n += len(k) + len(v) + 4
	}
	return n
}

// appendTimePtrJSON appends t, null when it is nil.
func appendTimePtrJSON(b []byte, t *time.Time) ([]byte, bool) {
	if t == nil {
		return append(b, "null"...), true
	}
	return appendTimeJSON(b, *t)
}

// appendEvent appends e as Event.MarshalJSON encodes it (and json.Marshal,
// which compacts that, as it is already). ok is false when its record or
// a time does not encode: the caller takes the encoding/json path.
func appendEvent(b []byte, e *Event) ([]byte, bool) {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, string(e.Status))
	ok := true
	if e.Status == StatusRejected {
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, string(e.Reason))
		b = appendActorOp(b, e)
		if e.Reason == ReasonConflict {
			b = append(b, `,"current_rev":`...)
			b = strconv.AppendUint(b, e.CurrentRev, 10)
		}
		b = appendStringMember(b, `,"detail":`, e.Detail)
		b = appendStringMember(b, `,"subject":`, e.Subject)
		b = appendStringMember(b, `,"updated_by":`, e.UpdatedBy)
		if e.ExpiresAt != nil {
			b = append(b, `,"expires_at":`...)
			if b, ok = appendTimeJSON(b, *e.ExpiresAt); !ok {
				return b, false
			}
		}
		b = appendStringMember(b, `,"holder":`, e.Holder)
		if e.Overlap != nil {
			b = append(b, `,"overlap":`...)
			if b, ok = appendOverlap(b, e.Overlap); !ok {
				return b, false
			}
		}
	} else {
		if e.Rev != 0 {
			b = append(b, `,"rev":`...)
			b = strconv.AppendUint(b, e.Rev, 10)
		}
		b = appendActorOp(b, e)
		if e.Record != nil {
			b = append(b, `,"record":`...)
			if b, ok = appendRecord(b, e.Record); !ok {
				return b, false
			}
		}
	}
	b = appendStringMember(b, `,"kind":`, e.Kind)
	b = appendStringMember(b, `,"id":`, e.ID)
	if len(e.Ops) > 0 {
		b = append(b, `,"ops":[`...)
		for i := range e.Ops {
			if i > 0 {
				b = append(b, ',')
			}
			if b, ok = appendEvent(b, &e.Ops[i]); !ok {
				return b, false
			}
		}
		b = append(b, ']')
	}
	return append(b, '}'), true
}

func appendActorOp(b []byte, e *Event) []byte {
	b = append(b, `,"actor":`...)
	b = appendJSONString(b, e.Actor)
	b = append(b, `,"op":`...)
	return appendJSONString(b, string(e.Op))
}

// appendStringMember appends member (`,"name":`) and s unless s is empty:
// a string member with omitempty.
func appendStringMember(b []byte, member, s string) []byte {
	if s == "" {
		return b
	}
	return appendJSONString(append(b, member...), s)
}

// appendOverlap appends o as json.Marshal encodes an Overlap.
func appendOverlap(b []byte, o *Overlap) ([]byte, bool) {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, o.ID)
	b = append(b, `,"rev":`...)
	b = strconv.AppendUint(b, o.Rev, 10)
	b = append(b, `,"holder":`...)
	b = appendJSONString(b, o.Holder)
	b = append(b, `,"pattern":`...)
	b = appendJSONString(b, o.Pattern)
	if o.Shared {
		b = append(b, `,"shared":true`...)
	}
	b = append(b, `,"expires_at":`...)
	b, ok := appendTimePtrJSON(b, o.ExpiresAt)
	if !ok {
		return b, false
	}
	b = append(b, `,"path":`...)
	b = appendJSONString(b, o.Path)
	return append(b, '}'), true
}

// appendAudit appends a as json.Marshal encodes an auditRecord, which
// cannot fail.
func appendAudit(b []byte, a *auditRecord) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, a.Seq, 10)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, string(a.Status))
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, a.Kind)
	b = append(b, `,"id":`...)
	b = appendJSONString(b, a.ID)
	b = append(b, `,"actor":`...)
	b = appendJSONString(b, a.Actor)
	b = append(b, `,"op":`...)
	b = appendJSONString(b, string(a.Op))
	b = append(b, `,"rev":`...)
	b = strconv.AppendUint(b, a.Rev, 10)
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, string(a.Reason))
	b = append(b, `,"detail":`...)
	b = appendJSONString(b, a.Detail)
	b = appendStringMember(b, `,"subject":`, a.Subject)
	b = appendStringMember(b, `,"txn":`, a.Txn)
	return append(b, '}')
}

// appendCommandMembers appends the members of c's JSON, as
// Command.MarshalJSON encodes them, without the braces. ok is false when a
// field's value does not encode (json.Marshal fails on it).
func appendCommandMembers(b []byte, c *Command) ([]byte, bool) {
	b = append(b, `"op":`...)
	b = appendJSONString(b, string(c.Op))
	switch {
	case c.Fields != nil:
		b = append(b, `,"fields":`...)
		var ok bool
		if b, ok = appendObject(b, c.Fields, appendAnyJSON); !ok {
			return b, false
		}
	case c.Op == OpPut:
		b = append(b, `,"fields":{}`...)
	}
	if c.ExpectRev != nil {
		b = append(b, `,"expect_rev":`...)
		b = strconv.AppendUint(b, *c.ExpectRev, 10)
	}
	switch {
	case c.TTL > 0:
		b = append(b, `,"ttl_ms":`...)
		b = strconv.AppendInt(b, (c.TTL + time.Millisecond - 1).Milliseconds(), 10)
	case c.NoLease:
		b = append(b, `,"ttl_ms":0`...)
	}
	if c.Bind != nil {
		b = append(b, `,"bind":`...)
		b = strconv.AppendBool(b, *c.Bind)
	}
	return b, true
}

// appendAnyJSON appends v as json.Marshal encodes it inside a map: the
// common types by hand, any other with json.Marshal of v alone, which
// encodes it the same (compact, HTML escaped). ok is false when that fails.
func appendAnyJSON(b []byte, v any) ([]byte, bool) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), true
	case string:
		return appendJSONString(b, v), true
	case bool:
		return strconv.AppendBool(b, v), true
	case int:
		return strconv.AppendInt(b, int64(v), 10), true
	case int64:
		return strconv.AppendInt(b, v, 10), true
	case int32:
		return strconv.AppendInt(b, int64(v), 10), true
	case uint64:
		return strconv.AppendUint(b, v, 10), true
	case uint:
		return strconv.AppendUint(b, uint64(v), 10), true
	case float64:
		return appendFloatJSON(b, v, 64)
	case float32:
		return appendFloatJSON(b, float64(v), 32)
	case json.RawMessage:
		return appendRawJSON(b, v)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return b, false
	}
	return append(b, data...), true
}

// jsonScan reads a state payload's JSON in one pass (internal/jsonscan,
// MaxDepth strictjson.MaxDepth) and decodes the members the codec knows.
type jsonScan struct{ jsonscan.Scanner }

// newScan scans data; strict refuses a member named twice, as strictjson
// does.
func newScan(data []byte, strict bool) jsonScan {
	return jsonScan{jsonscan.Scanner{Data: data, Strict: strict, MaxDepth: strictjson.MaxDepth}}
}

// rawFields scans the object at i (nesting level depth) into the map
// json.Unmarshal into map[string]json.RawMessage makes of it: each value's
// exact bytes (a copy; whitespace inside kept, around dropped). A name
// with an escape, or one named twice, is not on the fast path.
func (s *jsonScan) rawFields(i, depth int) (map[string]json.RawMessage, int, bool) {
	if depth > strictjson.MaxDepth || !s.At(i, '{') {
		return nil, 0, false
	}
	type member struct{ name, value [2]int }
	d, start := s.Data, i
	members := make([]member, 0, 16)
	if i = s.Space(i + 1); !s.At(i, '}') {
		for {
			end, escaped, ok := s.Str(i)
			if !ok || escaped {
				return nil, 0, false
			}
			m := member{name: [2]int{i + 1, end - 1}}
			if i = s.Space(end); !s.At(i, ':') {
				return nil, 0, false
			}
			m.value[0] = s.Space(i + 1)
			if m.value[1], ok = s.Value(m.value[0], depth+1); !ok {
				return nil, 0, false
			}
			members = append(members, m)
			if i = s.Space(m.value[1]); s.At(i, '}') {
				break
			}
			if !s.At(i, ',') {
				return nil, 0, false
			}
			i = s.Space(i + 1)
		}
	}
	end := i + 1
	// One copy holds every value; each is capped so that an append to one
	// cannot write over the next.
	buf := bytes.Clone(d[start:end])
	fields := make(map[string]json.RawMessage, len(members))
	for _, m := range members {
		v0, v1 := m.value[0]-start, m.value[1]-start
		fields[string(d[m.name[0]:m.name[1]])] = buf[v0:v1:v1]
	}
	if len(fields) != len(members) { // a name given twice
		return nil, 0, false
	}
	return fields, end, true
}

// int64Value scans the integer or null at i as json.Unmarshal into *int64
// takes it: nil for null. A fraction, an exponent or a number out of range
// is not on the fast path (json.Unmarshal refuses it).
func (s *jsonScan) int64Value(i int) (*int64, int, bool) {
	if s.At(i, 'n') {
		end, ok := s.Literal(i, "null")
		return nil, end, ok
	}
	end, integer, ok := s.Number(i)
	if !ok || !integer {
		return nil, 0, false
	}
	text, neg := s.Data[i:end], s.Data[i] == '-'
	if neg {
		text = text[1:]
	}
	if len(text) > 19 { // at least 10^19, above math.MaxInt64
		return nil, 0, false
	}
	var u uint64
	for _, c := range text {
		u = u*10 + uint64(c-'0')
	}
	var v int64
	switch {
	case !neg && u <= math.MaxInt64:
		v = int64(u)
	case neg && u <= -math.MinInt64:
		v = -int64(u) // also math.MinInt64: the conversion wraps to it
	default:
		return nil, 0, false
	}
	return &v, end, true
}

// uint64Value scans the non-negative integer at i as json.Unmarshal into
// uint64 takes it.
func (s *jsonScan) uint64Value(i int) (uint64, int, bool) {
	end, integer, ok := s.Number(i)
	if !ok || !integer || s.Data[i] == '-' || end-i > 20 {
		return 0, 0, false
	}
	v, err := strconv.ParseUint(string(s.Data[i:end]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return v, end, true
}

// boolValue scans true, false or null as json.Unmarshal into *bool takes
// them: nil for null.
func (s *jsonScan) boolValue(i int) (*bool, int, bool) {
	var v bool
	switch {
	case s.At(i, 'n'):
		end, ok := s.Literal(i, "null")
		return nil, end, ok
	case s.At(i, 't'):
		v = true
		end, ok := s.Literal(i, "true")
		return &v, end, ok
	}
	end, ok := s.Literal(i, "false")
	return &v, end, ok
}

// stringPtr scans a string without escapes, or null, as json.Unmarshal into
// *string takes it: nil for null.
func (s *jsonScan) stringPtr(i int) (*string, int, bool) {
	if s.At(i, 'n') {
		end, ok := s.Literal(i, "null")
		return nil, end, ok
	}
	raw, end, ok := s.PlainStr(i)
	if !ok {
		return nil, 0, false
	}
	var v string
	switch string(raw) { // the ops the service knows, without a copy
	case string(OpPut):
		v = string(OpPut)
	case string(OpMerge):
		v = string(OpMerge)
	case string(OpDelete):
		v = string(OpDelete)
	default:
		v = string(raw)
	}
	return &v, end, true
}

// parsedOp is a command, or an operation of a multi-record command, as the
// fast path read it: its members, and fields decoded when it is an object.
type parsedOp struct {
	wire   txnOpWire
	fields map[string]json.RawMessage
}

// Member bits of a command or operation object, to refuse one named twice.
const (
	memberOp = 1 << iota
	memberFields
	memberExpectRev
	memberTTL
	memberBind
	memberKind
	memberID
)

// op scans the command object at i (nesting level depth) as
// strictjson.Decode into commandWire (withRecord: txnOpWire) takes it. A
// member it does not know, a name in another case or with an escape, and
// a string with an escape are not on the fast path.
func (s *jsonScan) op(i, depth int, withRecord bool) (p parsedOp, end int, ok bool) {
	if depth > strictjson.MaxDepth || !s.At(i, '{') {
		return p, 0, false
	}
	seen := 0
	if i = s.Space(i + 1); s.At(i, '}') {
		return p, i + 1, true
	}
	for {
		name, end, ok := s.PlainStr(i)
		if !ok {
			return p, 0, false
		}
		var member int
		switch string(name) {
		case "op":
			member = memberOp
		case "fields":
			member = memberFields
		case "expect_rev":
			member = memberExpectRev
		case "ttl_ms":
			member = memberTTL
		case "bind":
			member = memberBind
		case "kind":
			member = memberKind
		case "id":
			member = memberID
		}
		if member == 0 || seen&member != 0 || !withRecord && member >= memberKind {
			return p, 0, false
		}
		seen |= member
		if i = s.Space(end); !s.At(i, ':') {
			return p, 0, false
		}
		i = s.Space(i + 1)
		w := &p.wire
		switch member {
		case memberOp:
			w.Op, end, ok = s.stringPtr(i)
		case memberKind:
			w.Kind, end, ok = s.stringPtr(i)
		case memberID:
			w.ID, end, ok = s.stringPtr(i)
		case memberFields:
			if s.At(i, '{') {
				p.fields, end, ok = s.rawFields(i, depth+1)
			} else {
				end, ok = s.Value(i, depth+1)
			}
			if ok {
				w.Fields = s.Data[i:end:end]
			}
		case memberExpectRev:
			w.ExpectRev, end, ok = s.int64Value(i)
		case memberTTL:
			w.TTLms, end, ok = s.int64Value(i)
		case memberBind:
			w.Bind, end, ok = s.boolValue(i)
		}
		if !ok {
			return p, 0, false
		}
		switch i = s.Space(end); {
		case s.At(i, '}'):
			return p, i + 1, true
		case !s.At(i, ','):
			return p, 0, false
		}
		i = s.Space(i + 1)
	}
}

// parseCommand is the fast path of decodeCommand: ok is true when data is
// a command object that strictjson.Decode into commandWire accepts, and p
// is what it gives.
func parseCommand(data []byte) (p parsedOp, ok bool) {
	if !utf8.Valid(data) {
		return p, false
	}
	s := newScan(data, true)
	p, end, ok := s.op(s.Space(0), 1, false)
	if !ok || s.Space(end) != len(data) {
		return p, false
	}
	return p, true
}

// parseTxn is the fast path of decodeTxn: ok is true when data is
// {"ops":[…]} with 1 to MaxTxnOps operation objects that strictjson.Decode
// accepts, as txnWire and then each as txnOpWire.
func parseTxn(data []byte) ([]parsedOp, bool) {
	if !utf8.Valid(data) {
		return nil, false
	}
	s := newScan(data, true)
	i := s.Space(0)
	if !s.At(i, '{') {
		return nil, false
	}
	name, end, ok := s.PlainStr(s.Space(i + 1))
	if !ok || string(name) != "ops" {
		return nil, false
	}
	if i = s.Space(end); !s.At(i, ':') {
		return nil, false
	}
	if i = s.Space(i + 1); !s.At(i, '[') {
		return nil, false
	}
	ops := make([]parsedOp, 0, 16)
	for i = s.Space(i + 1); ; {
		var p parsedOp
		if p, i, ok = s.op(i, 3, true); !ok || len(ops) == MaxTxnOps {
			return nil, false
		}
		ops = append(ops, p)
		if i = s.Space(i); s.At(i, ']') {
			break
		}
		if !s.At(i, ',') {
			return nil, false
		}
		i = s.Space(i + 1)
	}
	if i = s.Space(i + 1); !s.At(i, '}') || s.Space(i+1) != len(data) {
		return nil, false
	}
	return ops, true
}

// Member bits of a stored record, to refuse one named twice.
const (
	recKind = 1 << iota
	recID
	recRev
	recFields
	recUpdatedBy
	recUpdatedAt
	recExpiresAt
	recSeq
	recBoundTo
)

// parseRecord is the fast path of decodeStored: ok is true when body is a
// record object whose members are those of Record, each once, with names
// and strings without escapes; r is then what json.Unmarshal into a zero
// Record gives.
func parseRecord(body []byte) (r Record, ok bool) {
	if !utf8.Valid(body) {
		return Record{}, false
	}
	s := newScan(body, false)
	r, end, ok := s.record(s.Space(0))
	return r, ok && s.Space(end) == len(body)
}

// record scans the record object at i (parseRecord's rules; the data is
// valid UTF-8) and returns the index after it.
func (s *jsonScan) record(i int) (r Record, end int, ok bool) {
	body := s.Data
	if !s.At(i, '{') {
		return Record{}, 0, false
	}
	seen := 0
	if i = s.Space(i + 1); s.At(i, '}') {
		return r, i + 1, true
	}
	for {
		var name []byte
		if name, end, ok = s.PlainStr(i); !ok {
			return Record{}, 0, false
		}
		member := recordMember(name)
		if member == 0 || seen&member != 0 {
			return Record{}, 0, false
		}
		seen |= member
		if i = s.Space(end); !s.At(i, ':') {
			return Record{}, 0, false
		}
		i = s.Space(i + 1)
		switch member {
		case recKind, recID, recUpdatedBy, recBoundTo:
			var v []byte
			if v, end, ok = s.PlainStr(i); ok {
				*recordString(&r, member) = string(v)
			}
		case recRev:
			r.Rev, end, ok = s.uint64Value(i)
		case recSeq:
			r.Seq, end, ok = s.uint64Value(i)
		case recFields:
			if s.At(i, 'n') {
				end, ok = s.Literal(i, "null")
			} else {
				r.Fields, end, ok = s.rawFields(i, 2)
			}
		case recUpdatedAt:
			if end, _, ok = s.Str(i); ok {
				ok = r.UpdatedAt.UnmarshalJSON(body[i:end]) == nil
			}
		case recExpiresAt:
			if s.At(i, 'n') {
				end, ok = s.Literal(i, "null")
			} else if end, _, ok = s.Str(i); ok {
				r.ExpiresAt = new(time.Time)
				ok = r.ExpiresAt.UnmarshalJSON(body[i:end]) == nil
			}
		}
		if !ok {
			return Record{}, 0, false
		}
		switch i = s.Space(end); {
		case s.At(i, '}'):
			return r, i + 1, true
		case !s.At(i, ','):
			return Record{}, 0, false
		}
		i = s.Space(i + 1)
	}
}

// parseListResult is the fast path of ListResult.UnmarshalJSON: ok is true
// when data is an object of the members records (an array of objects
// parseRecord takes, or null) and next_after (a string without escapes),
// each at most once, and valid UTF-8; res is then what json.Unmarshal into
// a zero ListResult gives.
func parseListResult(data []byte) (res ListResult, ok bool) {
	if !utf8.Valid(data) {
		return ListResult{}, false
	}
	s := newScan(data, false)
	i := s.Space(0)
	if !s.At(i, '{') {
		return ListResult{}, false
	}
	var seenRecords, seenNext bool
	if i = s.Space(i + 1); s.At(i, '}') {
		return res, s.Space(i+1) == len(data)
	}
	for {
		name, end, ok := s.PlainStr(i)
		if !ok {
			return ListResult{}, false
		}
		if i = s.Space(end); !s.At(i, ':') {
			return ListResult{}, false
		}
		i = s.Space(i + 1)
		switch string(name) {
		case "records":
			if seenRecords {
				return ListResult{}, false
			}
			seenRecords = true
			if res.Records, end, ok = s.records(i); !ok {
				return ListResult{}, false
			}
		case "next_after":
			if seenNext {
				return ListResult{}, false
			}
			seenNext = true
			var v []byte
			if v, end, ok = s.PlainStr(i); !ok {
				return ListResult{}, false
			}
			res.NextAfter = string(v)
		default:
			return ListResult{}, false
		}
		switch i = s.Space(end); {
		case s.At(i, '}'):
			return res, s.Space(i+1) == len(data)
		case !s.At(i, ','):
			return ListResult{}, false
		}
		i = s.Space(i + 1)
	}
}

// records scans the array of records (or null) at i, each element decoded
// by parseRecord.
func (s *jsonScan) records(i int) ([]Record, int, bool) {
	if s.At(i, 'n') {
		end, ok := s.Literal(i, "null")
		return nil, end, ok
	}
	if !s.At(i, '[') {
		return nil, 0, false
	}
	recs := make([]Record, 0, bytes.Count(s.Data[i:], []byte(`{"kind":`)))
	if i = s.Space(i + 1); s.At(i, ']') {
		return recs, i + 1, true
	}
	for {
		r, end, ok := s.record(i)
		if !ok {
			return nil, 0, false
		}
		recs = append(recs, r)
		switch i = s.Space(end); {
		case s.At(i, ']'):
			return recs, i + 1, true
		case !s.At(i, ','):
			return nil, 0, false
		}
		i = s.Space(i + 1)
	}
}

func recordMember(name []byte) int {
	switch string(name) {
	case "kind":
		return recKind
	case "id":
		return recID
	case "rev":
		return recRev
	case "fields":
		return recFields
	case "updated_by":
		return recUpdatedBy
	case "updated_at":
		return recUpdatedAt
	case "expires_at":
		return recExpiresAt
	case "seq":
		return recSeq
	case "bound_to":
		return recBoundTo
	}
	return 0
}

// recordString is r's string member of the bit member.
func recordString(r *Record, member int) *string {
	switch member {
	case recKind:
		return &r.Kind
	case recID:
		return &r.ID
	case recUpdatedBy:
		return &r.UpdatedBy
	}
	return &r.BoundTo
}
