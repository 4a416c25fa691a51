package v1import

import "unicode/utf8"

// decodeFast is Decode's one pass for the lines v1 wrote: an object whose
// member names are plain ASCII and whose values are strings without
// escapes, numbers, true, false or null. handled is false for anything
// else (an escape, a nested value, a name that differs from one of the
// six only in case, which encoding/json would match, invalid UTF-8 it
// would replace, a syntax error), which Decode then gives to
// encoding/json: whatever decodeFast answers, encoding/json answers the
// same (FuzzDecode).
func decodeFast(raw []byte) (e Event, handled bool) {
	p := parser{b: raw}
	p.space()
	if !p.eat('{') {
		return Event{}, false
	}
	p.space()
	if p.eat('}') {
		return e, p.end()
	}
	for {
		p.space()
		name, ok := p.plainString()
		if !ok {
			return Event{}, false
		}
		p.space()
		if !p.eat(':') {
			return Event{}, false
		}
		p.space()
		var val string
		if p.peek() == '"' {
			s, ok := p.plainString()
			if !ok {
				return Event{}, false
			}
			val = string(s)
		} else if !p.scalar() {
			return Event{}, false
		}
		switch string(name) {
		case "ts":
			e.TS = val
		case "action":
			e.Action = val
		case "from":
			e.From = val
		case "to":
			e.To = val
		case "task":
			e.Task = val
		case "status":
			e.Status = val
		default:
			if foldsToMember(name) {
				return Event{}, false
			}
		}
		p.space()
		if p.eat('}') {
			return e, p.end()
		}
		if !p.eat(',') {
			return Event{}, false
		}
	}
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

// parser reads JSON from b at i.
type parser struct {
	b []byte
	i int
}

func (p *parser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

// eat consumes c if it is next.
func (p *parser) eat(c byte) bool {
	if p.peek() == c && p.i < len(p.b) {
		p.i++
		return true
	}
	return false
}

// space skips JSON white space.
func (p *parser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// end: nothing but white space is left.
func (p *parser) end() bool {
	p.space()
	return p.i == len(p.b)
}

// plainString reads a string without escapes or control bytes whose bytes
// are valid UTF-8, and returns its contents.
func (p *parser) plainString() ([]byte, bool) {
	if !p.eat('"') {
		return nil, false
	}
	start := p.i
	ascii := true
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return s, ascii || utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		p.i++
	}
	return nil, false
}

// scalar reads true, false, null or a number (RFC 8259, section 6).
func (p *parser) scalar() bool {
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(p.b)-p.i >= len(lit) && string(p.b[p.i:p.i+len(lit)]) == lit {
			p.i += len(lit)
			return true
		}
	}
	p.eat('-')
	switch c := p.peek(); {
	case c == '0':
		p.i++
	case '1' <= c && c <= '9':
		p.digits()
	default:
		return false
	}
	if p.eat('.') && !p.digits() {
		return false
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		p.i++
		if !p.eat('+') {
			p.eat('-')
		}
		if !p.digits() {
			return false
		}
	}
	return true
}

// digits reads one or more digits.
func (p *parser) digits() bool {
	start := p.i
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i > start
}
