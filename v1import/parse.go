package v1import

import (
	"bytes"
	"encoding/json"

	"github.com/codi2/codi2/internal/jsonscan"
)

// maxSuffixTries bounds the places Split tries for a complete event at the
// end of a torn line, so a hostile line full of `{"` costs O(n), not O(n²).
const maxSuffixTries = 16

// Piece is one part of a v1 line: a complete JSON object (Event) or a
// fragment that is not one. Raw aliases the line.
type Piece struct {
	// Off is Raw's offset in the line, in bytes.
	Off int
	// Raw is the piece's bytes.
	Raw []byte
	// Event says Raw is one complete JSON object.
	Event bool
}

// Split returns the pieces of one v1 line (without its newline), in order:
// the whole line when it is one JSON object; else a complete object at its
// start (a newline lost after it), a complete object at its end (another
// writer's whole line after a torn head), and what lies between as a
// fragment. A blank line has no pieces. Split never fails: every byte that
// is not blank is in a piece. Safe for concurrent use.
func Split(line []byte) []Piece {
	if len(bytes.TrimSpace(line)) == 0 {
		return nil
	}
	if isObject(line) {
		return []Piece{{Raw: line, Event: true}}
	}
	var out []Piece
	start := 0
	if n := objectPrefix(line); n > 0 {
		out = append(out, Piece{Raw: line[:n], Event: true})
		start = n
	}
	end := len(line)
	from := start
	if start == 0 {
		from = 1 // the whole line is not an object
	}
	for tries := 0; from < len(line) && tries < maxSuffixTries; tries++ {
		j := bytes.Index(line[from:], []byte(`{"`))
		if j < 0 {
			break
		}
		if isObject(line[from+j:]) {
			end = from + j
			break
		}
		from += j + 1
	}
	if frag := line[start:end]; len(bytes.TrimSpace(frag)) > 0 {
		out = append(out, Piece{Off: start, Raw: frag})
	}
	if end < len(line) {
		out = append(out, Piece{Off: end, Raw: line[end:], Event: true})
	}
	return out
}

// isObject: b is one JSON object, nothing else but white space (what
// json.Valid takes, starting with '{'; internal/jsonscan).
func isObject(b []byte) bool {
	s := jsonscan.Scanner{Data: b}
	i := s.Space(0)
	if !s.At(i, '{') {
		return false
	}
	end, ok := s.Value(i, 1)
	return ok && s.Space(end) == len(b)
}

// objectPrefix returns the length of a complete JSON object at the start
// of b, or 0.
func objectPrefix(b []byte) int {
	s := jsonscan.Scanner{Data: b}
	if !s.At(0, '{') {
		return 0
	}
	end, ok := s.Value(0, 1)
	if !ok {
		return 0
	}
	return end
}

// Event is what the importer reads of a v1 event: its string members
// (others, and members of other types, are kept only in the audit event).
type Event struct {
	TS, Action, From, To, Task, Status string
}

// Decode reads raw, one JSON object from Split, as a v1 event. Members that
// are missing or not strings are "". ok is false when raw is not a JSON
// object. Safe for concurrent use.
func Decode(raw []byte) (e Event, ok bool) {
	if e, ok := decodeFast(raw); ok {
		return e, true
	}
	return decodeJSON(raw)
}

// decodeJSON is Decode by encoding/json, for what decodeFast leaves.
func decodeJSON(raw []byte) (e Event, ok bool) {
	var v struct {
		TS     any `json:"ts"`
		Action any `json:"action"`
		From   any `json:"from"`
		To     any `json:"to"`
		Task   any `json:"task"`
		Status any `json:"status"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return Event{}, false
	}
	str := func(x any) string { s, _ := x.(string); return s }
	return Event{TS: str(v.TS), Action: str(v.Action), From: str(v.From), To: str(v.To),
		Task: str(v.Task), Status: str(v.Status)}, true
}
