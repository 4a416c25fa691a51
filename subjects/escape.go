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
// The result may still be too long for a token; ValidToken tells.
func Escape(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if escapeRune(r, size) {
			for j := i; j < i+size; j++ {
				b.WriteByte('%')
				b.WriteByte(hexDigits[s[j]>>4])
				b.WriteByte(hexDigits[s[j]&0xF])
			}
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
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

// Unescape reverses Escape. It fails with ErrBadEscape on a '%' that is not
// followed by two upper-case hex digits.
func Unescape(tok string) (string, error) {
	if strings.IndexByte(tok, '%') < 0 {
		return tok, nil
	}
	out := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '%' {
			out = append(out, c)
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("%w: %q ends inside an escape", ErrBadEscape, tok)
		}
		hi, lo := unhex(tok[i+1]), unhex(tok[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("%w: %q at byte %d", ErrBadEscape, tok, i)
		}
		out = append(out, byte(hi<<4|lo))
		i += 2
	}
	return string(out), nil
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
