// Package jsonscan walks JSON text (RFC 8259) in place: it checks a value
// as encoding/json's scanner does and returns where it ends, without
// allocating, so that a decoder written for one known shape (a state
// command, a CODI v1 log line) can read the members it knows straight from
// the bytes and hand anything else to encoding/json.
//
// Every method takes the index of a value's first byte in Scanner.Data and
// returns the index after it, with ok false for text that is not valid
// JSON, or that the Scanner's options put off the fast path. UTF-8 is not
// checked: encoding/json accepts invalid UTF-8 inside strings (and decodes
// it to U+FFFD), so callers that copy strings out check it themselves.
package jsonscan

import "bytes"

// maxSmallObject is how many member names a Strict object compares one by
// one before it keeps them in a map.
const maxSmallObject = 16

// Scanner reads the JSON text in Data. The zero value of the options takes
// any valid JSON.
type Scanner struct {
	Data []byte
	// Strict refuses an object that names a member twice, and member names
	// with escapes (which could spell a name twice), as
	// internal/strictjson does.
	Strict bool
	// MaxDepth, when positive, refuses objects and arrays nested deeper:
	// the top-level value is at depth 1.
	MaxDepth int
}

// Space returns the index of the first byte at or after i that is not
// JSON white space (RFC 8259, section 2: space, tab, line feed, carriage
// return).
func (s *Scanner) Space(i int) int {
	for ; i < len(s.Data); i++ {
		if c := s.Data[i]; c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			break
		}
	}
	return i
}

// At reports whether Data[i] is c (false past the end).
func (s *Scanner) At(i int, c byte) bool { return i < len(s.Data) && s.Data[i] == c }

// Str scans the string at i; escaped reports whether it holds escapes.
func (s *Scanner) Str(i int) (end int, escaped, ok bool) {
	d := s.Data
	if !s.At(i, '"') {
		return 0, false, false
	}
	for i++; i < len(d); i++ {
		switch c := d[i]; {
		case c == '"':
			return i + 1, escaped, true
		case c < 0x20:
			return 0, false, false
		case c == '\\':
			escaped = true
			if i++; i >= len(d) {
				return 0, false, false
			}
			switch d[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+5 > len(d) {
					return 0, false, false
				}
				for _, h := range d[i+1 : i+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return 0, false, false
					}
				}
				i += 4
			default:
				return 0, false, false
			}
		}
	}
	return 0, false, false
}

// PlainStr scans the string at i, which must hold no escapes, and returns
// its contents: a slice of Data, not a copy.
func (s *Scanner) PlainStr(i int) (v []byte, end int, ok bool) {
	end, escaped, ok := s.Str(i)
	if !ok || escaped {
		return nil, 0, false
	}
	return s.Data[i+1 : end-1], end, true
}

// digits returns the index after the digits at i.
func digits(d []byte, i int) int {
	for i < len(d) && '0' <= d[i] && d[i] <= '9' {
		i++
	}
	return i
}

// Number scans the number at i (RFC 8259, section 6); integer reports
// whether it has neither a fraction nor an exponent.
func (s *Scanner) Number(i int) (end int, integer, ok bool) {
	d := s.Data
	if s.At(i, '-') {
		i++
	}
	switch {
	case s.At(i, '0'):
		i++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		i = digits(d, i+1)
	default:
		return 0, false, false
	}
	integer = true
	if s.At(i, '.') {
		j := digits(d, i+1)
		if j == i+1 {
			return 0, false, false
		}
		i, integer = j, false
	}
	if s.At(i, 'e') || s.At(i, 'E') {
		i++
		if s.At(i, '+') || s.At(i, '-') {
			i++
		}
		j := digits(d, i)
		if j == i {
			return 0, false, false
		}
		i, integer = j, false
	}
	return i, integer, true
}

// Literal scans lit (true, false or null) at i.
func (s *Scanner) Literal(i int, lit string) (int, bool) {
	if len(s.Data)-i >= len(lit) && string(s.Data[i:i+len(lit)]) == lit {
		return i + len(lit), true
	}
	return 0, false
}

// Value scans the value at i, which is at nesting level depth (the
// top-level value's is 1).
func (s *Scanner) Value(i, depth int) (int, bool) {
	if i >= len(s.Data) {
		return 0, false
	}
	switch c := s.Data[i]; {
	case c == '"':
		end, _, ok := s.Str(i)
		return end, ok
	case c == '{':
		return s.object(i, depth)
	case c == '[':
		return s.array(i, depth)
	case c == 't':
		return s.Literal(i, "true")
	case c == 'f':
		return s.Literal(i, "false")
	case c == 'n':
		return s.Literal(i, "null")
	case c == '-' || '0' <= c && c <= '9':
		end, _, ok := s.Number(i)
		return end, ok
	}
	return 0, false
}

// tooDeep reports whether a container at depth is past MaxDepth.
func (s *Scanner) tooDeep(depth int) bool { return s.MaxDepth > 0 && depth > s.MaxDepth }

func (s *Scanner) object(i, depth int) (int, bool) {
	if s.tooDeep(depth) {
		return 0, false
	}
	d := s.Data
	var (
		names [maxSmallObject][2]int // the names so far, as offsets in d
		n     int
		many  map[string]struct{}
	)
	if i = s.Space(i + 1); s.At(i, '}') {
		return i + 1, true
	}
	for {
		end, escaped, ok := s.Str(i)
		if !ok || escaped && s.Strict {
			return 0, false
		}
		if s.Strict {
			name := d[i+1 : end-1]
			for _, o := range names[:n] {
				if bytes.Equal(d[o[0]:o[1]], name) {
					return 0, false
				}
			}
			switch {
			case n < maxSmallObject:
				names[n] = [2]int{i + 1, end - 1}
				n++
			case many == nil:
				many = make(map[string]struct{})
				fallthrough
			default:
				if _, dup := many[string(name)]; dup {
					return 0, false
				}
				many[string(name)] = struct{}{}
			}
		}
		if i = s.Space(end); !s.At(i, ':') {
			return 0, false
		}
		if i, ok = s.Value(s.Space(i+1), depth+1); !ok {
			return 0, false
		}
		switch i = s.Space(i); {
		case s.At(i, '}'):
			return i + 1, true
		case !s.At(i, ','):
			return 0, false
		}
		i = s.Space(i + 1)
	}
}

func (s *Scanner) array(i, depth int) (int, bool) {
	if s.tooDeep(depth) {
		return 0, false
	}
	if i = s.Space(i + 1); s.At(i, ']') {
		return i + 1, true
	}
	for {
		var ok bool
		if i, ok = s.Value(i, depth+1); !ok {
			return 0, false
		}
		switch i = s.Space(i); {
		case s.At(i, ']'):
			return i + 1, true
		case !s.At(i, ','):
			return 0, false
		}
		i = s.Space(i + 1)
	}
}
