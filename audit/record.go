package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// GenesisPrev is the prev of the first record of a log: 64 zeros, the same
// length as every other prev.
const GenesisPrev = "0000000000000000000000000000000000000000000000000000000000000000"

// EncodingBase64 is the value of a record's "encoding" field when its payload
// was not JSON: "data" is then the payload in standard base64 (RFC 4648,
// with padding).
const EncodingBase64 = "base64"

// Record is one entry of the audit log as stored, answered by
// codi.audit.query and written by Export, one per line. Raw holds the exact
// stored bytes, which the hash covers; the other fields are decoded from it.
//
// A Record is a plain value: safe to share for reading, not for concurrent
// modification.
type Record struct {
	// Seq is the record's position in the log: dense, from 1, never reused.
	Seq uint64 `json:"seq"`
	// Time is when JetStream stored the event (never earlier than the
	// previous record's time; see the package documentation).
	Time time.Time `json:"time"`
	// Subject is the subject the event was published on.
	Subject string `json:"subject"`
	// Source and Category are the subject's source and category tokens, as
	// they appear in the subject (still escaped).
	Source   string `json:"source"`
	Category string `json:"category"`
	// Flags name what is wrong with the subject of an event the contract
	// does not allow but the stream accepted (FlagNoCategory, FlagBadSource,
	// FlagBadCategory, FlagBadToken); absent for every well-formed event.
	Flags []string `json:"flags,omitempty"`
	// MsgID is the event's Nats-Msg-Id, if it had one.
	MsgID string `json:"msg_id,omitempty"`
	// Encoding is EncodingBase64 when the payload was not JSON, else empty.
	Encoding string `json:"encoding,omitempty"`
	// Data is the payload: embedded JSON, or a base64 JSON string when
	// Encoding is EncodingBase64. Payload decodes it.
	Data json.RawMessage `json:"data"`
	// Prev is the hash of the previous record (GenesisPrev for seq 1).
	Prev string `json:"prev"`
	// Hash is hex(SHA-256(Prev || canonical bytes)), the canonical bytes
	// being the record without its hash member (see CheckRecordHash).
	Hash string `json:"hash"`
	// Raw is the record exactly as stored. It is set by ParseRecord and by
	// the client and is what Export writes.
	Raw []byte `json:"-"`
}

// Payload returns the event's payload: the base64-decoded bytes for a
// non-JSON payload (byte-exact as published), or the JSON value as stored
// (compacted: insignificant whitespace removed, nothing else changed). It
// only reads r.
func (r *Record) Payload() ([]byte, error) {
	if r.Encoding != EncodingBase64 {
		return r.Data, nil
	}
	var s string
	if err := json.Unmarshal(r.Data, &s); err != nil {
		return nil, fmt.Errorf("audit: record %d: base64 data: %w", r.Seq, err)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("audit: record %d: base64 data: %w", r.Seq, err)
	}
	return b, nil
}

// ParseRecord decodes a stored record. It checks the shape of the record
// (the JSON is valid, the hash member is last), not the hash itself: use
// CheckRecordHash for that. The returned Record's Raw aliases raw. Safe for
// concurrent use.
func ParseRecord(raw []byte) (Record, error) {
	if !json.Valid(raw) {
		return Record{}, fmt.Errorf("%w: not JSON", ErrBadRecord)
	}
	return parseValid(raw)
}

// parseValid decodes a record that is known to be valid JSON (a reply's
// envelope was checked as a whole). Records in the canonical layout take a
// single-pass path; anything else goes through encoding/json.
func parseValid(raw []byte) (Record, error) {
	if _, err := checkShape(raw); err != nil {
		return Record{}, err
	}
	if r, ok := parseCanonical(raw); ok {
		return r, nil
	}
	var r Record
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	r.Raw = raw
	return r, nil
}

// parseCanonical reads the members of a record in the order the service
// writes them. It reports false for anything it does not expect, so that
// the caller falls back to encoding/json.
func parseCanonical(raw []byte) (Record, bool) {
	if !utf8.Valid(raw) {
		return Record{}, false // encoding/json substitutes U+FFFD
	}
	p := recParser{b: raw}
	var r Record
	ok := p.lit(`{"seq":`)
	var t string
	r.Seq, ok = p.uint(ok)
	ok = p.lit(`,"time":`) && ok
	t, ok = p.str(ok)
	ok = p.lit(`,"subject":`) && ok
	r.Subject, ok = p.str(ok)
	ok = p.lit(`,"source":`) && ok
	r.Source, ok = p.str(ok)
	ok = p.lit(`,"category":`) && ok
	r.Category, ok = p.str(ok)
	if ok && p.lit(`,"flags":[`) {
		r.Flags, ok = p.strs()
	}
	if ok && p.lit(`,"msg_id":`) {
		r.MsgID, ok = p.str(ok)
	}
	if ok && p.lit(`,"encoding":`) {
		r.Encoding, ok = p.str(ok)
	}
	ok = p.lit(`,"data":`) && ok
	r.Data, ok = p.value(ok)
	ok = p.lit(`,"prev":`) && ok
	r.Prev, ok = p.str(ok)
	ok = p.lit(`,"hash":`) && ok
	r.Hash, ok = p.str(ok)
	if !ok || !p.lit(`}`) || p.i != len(raw) {
		return Record{}, false
	}
	ts, err := time.Parse(time.RFC3339Nano, t)
	if err != nil {
		return Record{}, false
	}
	r.Time, r.Raw = ts, raw
	return r, true
}

// recParser scans a record the service wrote. Its methods take and return
// ok so that a sequence of reads stops at the first failure.
type recParser struct {
	b []byte
	i int
}

func (p *recParser) lit(s string) bool {
	if !bytes.HasPrefix(p.b[p.i:], []byte(s)) {
		return false
	}
	p.i += len(s)
	return true
}

func (p *recParser) uint(ok bool) (uint64, bool) {
	j := p.i
	for j < len(p.b) && '0' <= p.b[j] && p.b[j] <= '9' {
		j++
	}
	if !ok || j == p.i {
		return 0, false
	}
	v, err := strconv.ParseUint(string(p.b[p.i:j]), 10, 64)
	p.i = j
	return v, err == nil
}

// str reads a JSON string; one with escapes is decoded by encoding/json.
func (p *recParser) str(ok bool) (string, bool) {
	if !ok || p.i >= len(p.b) || p.b[p.i] != '"' {
		return "", false
	}
	escaped := false
	for j := p.i + 1; j < len(p.b); j++ {
		switch p.b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			quoted := p.b[p.i : j+1]
			p.i = j + 1
			if !escaped {
				return string(quoted[1 : len(quoted)-1]), true
			}
			var s string
			return s, json.Unmarshal(quoted, &s) == nil
		}
	}
	return "", false
}

// strs reads the rest of an array of strings, after its '['.
func (p *recParser) strs() ([]string, bool) {
	out := []string{}
	for ok := true; ; {
		var v string
		if v, ok = p.str(ok); !ok {
			return nil, false
		}
		out = append(out, v)
		if !p.lit(",") {
			return out, p.lit("]")
		}
	}
}

// skipStr moves past a JSON string.
func (p *recParser) skipStr() bool {
	for j := p.i + 1; j < len(p.b); j++ {
		switch p.b[j] {
		case '\\':
			j++
		case '"':
			p.i = j + 1
			return true
		}
	}
	return false
}

// value skips one compact JSON value and returns it.
func (p *recParser) value(ok bool) (json.RawMessage, bool) {
	if !ok || p.i >= len(p.b) {
		return nil, false
	}
	start, depth := p.i, 0
	for p.i < len(p.b) {
		switch c := p.b[p.i]; c {
		case '"':
			if !p.skipStr() {
				return nil, false
			}
			if depth == 0 {
				return json.RawMessage(p.b[start:p.i]), true
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth < 0 {
				return nil, false
			}
			if depth == 0 {
				p.i++
				return json.RawMessage(p.b[start:p.i]), true
			}
		case ',':
			if depth == 0 {
				return json.RawMessage(p.b[start:p.i]), p.i > start
			}
		}
		p.i++
	}
	return nil, false
}

// hashSuffixLen is the length of `,"hash":"<64 hex>"}`, the end of every
// stored record.
const hashSuffixLen = len(`,"hash":"`) + 64 + len(`"}`)

// prevSuffixLen is the length of `,"prev":"<64 hex>"`, which comes right
// before the hash member.
const prevSuffixLen = len(`,"prev":"`) + 64 + len(`"`)

// checkShape checks that raw ends with the hash member and returns the hash.
func checkShape(raw []byte) (string, error) {
	n := len(raw)
	if n < len(`{"seq":1`)+prevSuffixLen+hashSuffixLen ||
		!bytes.HasPrefix(raw, []byte(`{"seq":`)) ||
		!bytes.HasPrefix(raw[n-hashSuffixLen:], []byte(`,"hash":"`)) ||
		!bytes.HasSuffix(raw, []byte(`"}`)) {
		return "", fmt.Errorf("%w: does not end with the hash member", ErrBadRecord)
	}
	hash := string(raw[n-hashSuffixLen+len(`,"hash":"`) : n-2])
	if !isHex64(hash) {
		return "", fmt.Errorf("%w: hash %q is not 64 lower-case hex digits", ErrBadRecord, hash)
	}
	return hash, nil
}

// splitStored splits a stored record into its canonical bytes (the record
// without the hash member) and the hash it claims. The canonical bytes are a
// new slice.
func splitStored(raw []byte) (canonical []byte, hash string, err error) {
	if hash, err = checkShape(raw); err != nil {
		return nil, "", err
	}
	n := len(raw) - hashSuffixLen
	canonical = make([]byte, 0, n+1)
	canonical = append(canonical, raw[:n]...)
	canonical = append(canonical, '}')
	return canonical, hash, nil
}

// recordPrev returns the prev member of a stored record whose shape
// splitStored accepted.
func recordPrev(raw []byte) (string, bool) {
	end := len(raw) - hashSuffixLen
	start := end - prevSuffixLen
	if start < 0 || !bytes.HasPrefix(raw[start:], []byte(`,"prev":"`)) || raw[end-1] != '"' {
		return "", false
	}
	prev := string(raw[start+len(`,"prev":"`) : end-1])
	return prev, isHex64(prev)
}

// recordSeq returns the seq member that every stored record starts with.
func recordSeq(raw []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(raw, []byte(`{"seq":`))
	if !ok {
		return 0, false
	}
	i := bytes.IndexByte(rest, ',')
	if i <= 0 {
		return 0, false
	}
	seq, err := strconv.ParseUint(string(rest[:i]), 10, 64)
	return seq, err == nil && seq > 0
}

// recordTime returns the time member, which follows seq in every stored
// record, in Unix nanoseconds. Only the first bytes of raw are needed.
func recordTime(raw []byte) (int64, bool) {
	i := bytes.Index(raw, []byte(`,"time":"`))
	if i < 0 || i > 32 {
		return 0, false
	}
	rest := raw[i+len(`,"time":"`):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return 0, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
	if err != nil {
		return 0, false
	}
	return t.UnixNano(), true
}

// CheckRecordHash reports whether raw, a stored record, hashes to the hash it
// claims, and returns that hash and the prev it names. This is the check a
// verifier repeats for every record: strip the final `,"hash":"<hex>"` member
// to get the canonical bytes, hash prev followed by them, compare. Safe for
// concurrent use.
func CheckRecordHash(raw []byte) (prev, hash string, ok bool, err error) {
	canonical, hash, err := splitStored(raw)
	if err != nil {
		return "", "", false, err
	}
	prev, okPrev := recordPrev(raw)
	if !okPrev {
		return "", hash, false, fmt.Errorf("%w: no prev member before the hash", ErrBadRecord)
	}
	return prev, hash, chainHash(prev, canonical) == hash, nil
}

// chainHash is hex(SHA-256(prev || canonical)).
func chainHash(prev string, canonical []byte) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write(canonical)
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0]))
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// encodeBody returns the members of a record that do not depend on its place
// in the log, in canonical order and form:
//
//	"subject":S,"source":S,"category":S[,"flags":[S,…]][,"msg_id":S][,"encoding":"base64"],"data":D
//
// D is the payload compacted when it is UTF-8 JSON, else its base64 string.
// It runs outside the store transaction.
func encodeBody(subject, source, category, msgID string, payload []byte) []byte {
	return encodeFlaggedBody(subject, source, category, nil, msgID, payload)
}

// encodeFlaggedBody is encodeBody with the subject's flags.
func encodeFlaggedBody(subject, source, category string, flags []string, msgID string, payload []byte) []byte {
	return appendBody(make([]byte, 0, bodySize(subject, msgID, payload)), subject, source, category, flags, msgID, payload)
}

// bodySize is the room appendBody takes for a body without flags in the
// common cases (no escapes; a JSON payload, or base64 of one up to 3/4 of
// the rest); append grows dst for anything else.
func bodySize(subject, msgID string, payload []byte) int {
	return 128 + len(subject) + len(msgID) + len(payload)*4/3
}

// appendBody is encodeFlaggedBody appending to dst.
func appendBody(b []byte, subject, source, category string, flags []string, msgID string, payload []byte) []byte {
	b = append(b, `"subject":`...)
	b = appendString(b, subject)
	b = append(b, `,"source":`...)
	b = appendString(b, source)
	b = append(b, `,"category":`...)
	b = appendString(b, category)
	if len(flags) > 0 {
		b = append(b, `,"flags":[`...)
		for i, f := range flags {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, f)
		}
		b = append(b, ']')
	}
	if msgID != "" {
		b = append(b, `,"msg_id":`...)
		b = appendString(b, msgID)
	}
	if len(payload) > 0 && utf8.Valid(payload) {
		if isCompactJSON(payload) {
			// What json.Compact would copy unchanged, found in one
			// pass without its scanner (a third of the intake's work).
			b = append(b, `,"data":`...)
			return append(b, payload...)
		}
		// Compact validates as it copies, appending to b in place, and
		// does not escape HTML; on invalid JSON it appends nothing.
		n := len(b)
		buf := bytes.NewBuffer(append(b, `,"data":`...))
		if json.Compact(buf, payload) == nil {
			return buf.Bytes()
		}
		b = buf.Bytes()[:n]
	}
	b = append(b, `,"encoding":"base64","data":"`...)
	b = base64.StdEncoding.AppendEncode(b, payload)
	return append(b, '"')
}

// maxCompactDepth is the deepest nesting isCompactJSON follows; deeper
// payloads go through json.Compact.
const maxCompactDepth = 64

// isCompactJSON reports whether b is one JSON value, as encoding/json
// accepts it, with no whitespace outside its strings: a payload that
// json.Compact would copy unchanged. It answers false for anything else,
// valid or not, including values nested deeper than maxCompactDepth; the
// caller then runs json.Compact, which decides. Bytes of 0x80 and above
// are not checked here (the caller checks UTF-8).
func isCompactJSON(b []byte) bool {
	var open [maxCompactDepth]byte // '{' or '[' of each open container
	depth, i := 0, 0
	for {
		// A value starts at i.
		if i >= len(b) {
			return false
		}
		switch c := b[i]; c {
		case '{', '[':
			if depth == len(open) {
				return false
			}
			open[depth] = c
			depth++
			i++
			if i < len(b) && b[i] == c+2 { // '}' and ']' follow '{' and '[' by two
				depth--
				i++
				break
			}
			if c == '{' {
				i = skipKey(b, i)
			}
			if i < 0 {
				return false
			}
			continue
		case '"':
			i = skipJSONString(b, i)
		case 't':
			i = skipLiteral(b, i, "true")
		case 'f':
			i = skipLiteral(b, i, "false")
		case 'n':
			i = skipLiteral(b, i, "null")
		default:
			i = skipNumber(b, i)
		}
		if i < 0 {
			return false
		}
		// A value ended at i: close containers until a comma starts the
		// next value, or the input ends.
		for {
			if depth == 0 {
				return i == len(b)
			}
			if i >= len(b) {
				return false
			}
			c := b[i]
			i++
			if c == ',' {
				if open[depth-1] == '{' {
					if i = skipKey(b, i); i < 0 {
						return false
					}
				}
				break
			}
			if c != open[depth-1]+2 {
				return false
			}
			depth--
		}
	}
}

// skipKey returns the index after an object member's `"key":` that starts
// at i, or -1.
func skipKey(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	if i = skipJSONString(b, i); i < 0 || i >= len(b) || b[i] != ':' {
		return -1
	}
	return i + 1
}

// skipJSONString returns the index after the JSON string that starts at i
// (b[i] is '"'), or -1 when it is not one: unterminated, a control
// character, or an escape JSON does not have.
func skipJSONString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < 0x20:
			return -1
		case c == '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return -1
				}
				i += 4
			default:
				return -1
			}
		}
	}
	return -1
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// skipLiteral returns the index after lit at i, or -1.
func skipLiteral(b []byte, i int, lit string) int {
	if !bytes.HasPrefix(b[i:], []byte(lit)) {
		return -1
	}
	return i + len(lit)
}

// skipNumber returns the index after the JSON number at i (RFC 8259:
// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?), or -1.
func skipNumber(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		if i = skipDigits(b, i+1); i < 0 {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		return skipDigits(b, i)
	}
	return i
}

// skipDigits returns the index after one or more digits at i, or -1.
func skipDigits(b []byte, i int) int {
	start := i
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	if i == start {
		return -1
	}
	return i
}

// encodeRecord returns the stored bytes and hash of the record at seq with
// the given time and prev, whose other members are body (from encodeBody):
//
//	canonical = {"seq":N,"time":"T",<body>,"prev":"P"}
//	hash      = hex(SHA-256(P || canonical))
//	stored    = canonical without its final '}' + ,"hash":"H"}
func encodeRecord(seq uint64, t int64, body []byte, prev string) (stored []byte, hash string) {
	stored = appendRecord(nil, seq, t, body, []byte(prev), new(timeText))
	return stored, string(storedHash(stored))
}

// appendRecord is encodeRecord appending to dst, with the record's time
// written by tt; storedHash(stored) is the hash. It builds prev ||
// canonical in dst so that the hash is one pass over contiguous bytes,
// then moves the record over prev.
func appendRecord(dst []byte, seq uint64, t int64, body, prev []byte, tt *timeText) (stored []byte) {
	b := slices.Grow(dst, len(prev)+len(body)+64+prevSuffixLen+hashSuffixLen)
	start := len(b)
	b = append(b, prev...)
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"time":"`...)
	b = tt.append(b, t)
	b = append(b, `",`...)
	b = append(b, body...)
	b = append(b, `,"prev":"`...)
	b = append(b, prev...)
	b = append(b, `"}`...)
	sum := sha256.Sum256(b[start:])
	b = b[:len(b)-1]
	b = append(b, `,"hash":"`...)
	b = hex.AppendEncode(b, sum[:])
	b = append(b, `"}`...)
	n := copy(b[start:], b[start+len(prev):])
	return b[start : start+n]
}

// timeText writes records' times as time.RFC3339Nano writes them in UTC,
// keeping the text of the last second it wrote: the records of a batch
// mostly share their second (a bulk message's entries share their time),
// and then only the fraction is new. The zero value is ready; not safe for
// concurrent use.
type timeText struct {
	sec  int64  // the second text holds
	text []byte // sec as RFC 3339 without its "Z"; nil before the first
}

// append appends t, Unix nanoseconds, in RFC 3339 with up to nine
// fraction digits, trailing zeros dropped, and "Z".
func (tt *timeText) append(b []byte, t int64) []byte {
	sec, ns := t/1e9, t%1e9
	if ns < 0 {
		sec, ns = sec-1, ns+1e9
	}
	if tt.text == nil || sec != tt.sec {
		tt.text = time.Unix(sec, 0).UTC().AppendFormat(tt.text[:0], time.RFC3339)
		tt.text = tt.text[:len(tt.text)-1]
		tt.sec = sec
	}
	b = append(b, tt.text...)
	if ns != 0 {
		var frac [10]byte // '.' and nine digits
		frac[0] = '.'
		for i := 9; i > 0; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := len(frac)
		for frac[n-1] == '0' {
			n--
		}
		b = append(b, frac[:n]...)
	}
	return append(b, 'Z')
}

// storedHash returns the hash member's hex digits of a record appendRecord
// wrote, aliasing it.
func storedHash(stored []byte) []byte {
	return stored[len(stored)-hashSuffixLen+len(`,"hash":"`) : len(stored)-2]
}

// appendString appends s as a JSON string: '"' and '\\' escaped, control
// characters as \n, \r, \t or \u00XX, invalid UTF-8 as \ufffd, everything
// else as is (no HTML escaping).
func appendString(b []byte, s string) []byte {
	const hexd = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexd[c>>4], hexd[c&0xF])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
