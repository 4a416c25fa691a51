package subjects

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

const hexDigits = "0123456789ABCDEF"

// Escape turns any string (a file path, a URL) into a subject token: '.',
// '*', '>', '%', whitespace, control characters and bytes that are not UTF-8
// become '%' and two upper-case hex digits per byte; everything else is kept,
// so "src/main.go" becomes "src/main%2Ego". Unescape reverses it exactly.
// Every string has exactly one escaped spelling, and Unescape accepts only
// that one. The result may still be too long for a token; ValidToken tells.
func Escape(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if escapeRune(r, size) {
			appendEscaped(&b, s[i:i+size])
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func appendEscaped(b *strings.Builder, s string) {
	for j := 0; j < len(s); j++ {
		b.WriteByte('%')
		b.WriteByte(hexDigits[s[j]>>4])
		b.WriteByte(hexDigits[s[j]&0xF])
	}
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if escapeRune(r, size) {
			return true
		}
		i += size
	}
	return false
}

func escapeRune(r rune, size int) bool {
	switch {
	case r == utf8.RuneError && size == 1:
		return true // not UTF-8
	case r == '.', r == '*', r == '>', r == '%':
		return true
	default:
		return unicode.IsSpace(r) || unicode.IsControl(r)
	}
}

// Unescape reverses Escape. It accepts exactly the strings Escape returns,
// so that a string has one spelling as a token: it fails with ErrBadEscape
// on a '%' not followed by two upper-case hex digits ("%ZZ", "%2e"), on an
// escape of a character that needs none ("%61" for "a"), and on a character
// that must be escaped but is not ('.', whitespace, a byte that is not
// UTF-8). The error names the offending bytes and their offset.
func Unescape(tok string) (string, error) {
	if !needsEscape(tok) {
		return tok, nil // nothing escaped, nothing that should have been
	}
	out := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '%' {
			out = append(out, c)
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("%w: %q ends inside the escape %q at byte %d", ErrBadEscape, tok, tok[i:], i)
		}
		hi, lo := unhex(tok[i+1]), unhex(tok[i+2])
		if hi < 0 || lo < 0 {
			esc := tok[i : i+3]
			if up := strings.ToUpper(esc); unhex(up[1]) >= 0 && unhex(up[2]) >= 0 {
				return "", fmt.Errorf("%w: %q has %q at byte %d: the hex digits must be upper case (%s)", ErrBadEscape, tok, esc, i, up)
			}
			return "", fmt.Errorf("%w: %q has %q at byte %d: '%%' must be followed by two upper-case hex digits", ErrBadEscape, tok, esc, i)
		}
		out = append(out, byte(hi<<4|lo))
		i += 2
	}
	s := string(out)
	return s, canonical(tok, s)
}

// canonical reports how tok differs from Escape(s), if it does.
func canonical(tok, s string) error {
	pos := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		raw := s[i : i+size]
		if escapeRune(r, size) {
			var b strings.Builder
			appendEscaped(&b, raw)
			want := b.String()
			if !strings.HasPrefix(tok[pos:], want) {
				return fmt.Errorf("%w: %q has %q unescaped at byte %d: write it as %s", ErrBadEscape, tok, raw, pos, want)
			}
			pos += len(want)
		} else {
			if !strings.HasPrefix(tok[pos:], raw) {
				return fmt.Errorf("%w: %q has %q at byte %d, an escape of %q, which is written as is", ErrBadEscape, tok, spelling(tok[pos:], size), pos, raw)
			}
			pos += size
		}
		i += size
	}
	return nil
}

// spelling returns the prefix of tok that decodes to n bytes.
func spelling(tok string, n int) string {
	p := 0
	for ; n > 0 && p < len(tok); n-- {
		if tok[p] == '%' {
			p += 3
		} else {
			p++
		}
	}
	return tok[:min(p, len(tok))]
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
