package v1import

import (
	"unicode/utf8"

	"github.com/codi2/codi2/internal/jsonscan"
)

// decodeFast is Decode's one pass for the lines v1 wrote: an object whose
// member names are plain ASCII and whose values are strings without
// escapes, numbers, true, false or null. handled is false for anything
// else (an escape, a nested value, a name that differs from one of the
// six only in case, which encoding/json would match, invalid UTF-8 it
// would replace, a syntax error), which Decode then gives to
// encoding/json: whatever decodeFast answers, encoding/json answers the
// same (FuzzDecode).
func decodeFast(raw []byte) (e Event, handled bool) {
	s := jsonscan.Scanner{Data: raw}
	i := s.Space(0)
	if !s.At(i, '{') {
		return Event{}, false
	}
	if i = s.Space(i + 1); s.At(i, '}') {
		return e, s.Space(i+1) == len(raw)
	}
	for {
		name, end, ok := plainString(&s, i)
		if !ok {
			return Event{}, false
		}
		if i = s.Space(end); !s.At(i, ':') {
			return Event{}, false
		}
		var val []byte
		if i = s.Space(i + 1); s.At(i, '"') {
			val, i, ok = plainString(&s, i)
		} else {
			i, ok = scalar(&s, i)
		}
		if !ok {
			return Event{}, false
		}
		switch string(name) {
		case "ts":
			e.TS = string(val)
		case "action":
			e.Action = string(val)
		case "from":
			e.From = string(val)
		case "to":
			e.To = string(val)
		case "task":
			e.Task = string(val)
		case "status":
			e.Status = string(val)
		default:
			if foldsToMember(name) {
				return Event{}, false
			}
		}
		switch i = s.Space(i); {
		case s.At(i, '}'):
			return e, s.Space(i+1) == len(raw)
		case !s.At(i, ','):
			return Event{}, false
		}
		i = s.Space(i + 1)
	}
}

// plainString reads the string at i if it holds no escapes and is valid
// UTF-8 (encoding/json would replace invalid bytes), and returns its
// contents.
func plainString(s *jsonscan.Scanner, i int) (v []byte, end int, ok bool) {
	v, end, ok = s.PlainStr(i)
	return v, end, ok && utf8.Valid(v)
}

// scalar reads true, false, null or a number at i: a nested value is not
// a v1 member's.
func scalar(s *jsonscan.Scanner, i int) (int, bool) {
	switch {
	case s.At(i, 't'):
		return s.Literal(i, "true")
	case s.At(i, 'f'):
		return s.Literal(i, "false")
	case s.At(i, 'n'):
		return s.Literal(i, "null")
	}
	end, _, ok := s.Number(i)
	return end, ok
}

// foldsToMember: name may be one of Event's member names in another case,
// which encoding/json matches case-insensitively (bytes.EqualFold: also
// "ſ" for "s"; so any name with a byte beyond ASCII may).
func foldsToMember(name []byte) bool {
	for _, c := range name {
		if c >= utf8.RuneSelf {
			return true
		}
	}
	for _, m := range [...]string{"ts", "action", "from", "to", "task", "status"} {
		if len(name) == len(m) && asciiFold(name, m) {
			return true
		}
	}
	return false
}

func asciiFold(a []byte, b string) bool {
	for i := range a {
		c := a[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != b[i] {
			return false
		}
	}
	return true
}
