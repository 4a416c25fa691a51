// Package pathglob compiles file reservation patterns (paths and globs
// relative to a repository root) and decides whether two of them overlap:
// whether some path matches both. The state service uses it inside its
// transaction to refuse a reservation that overlaps another agent's.
//
// A pattern is a slash-separated path. In a segment, '*' matches any run of
// characters other than '/', '?' one such character, and "[...]" one
// character of a class ("[a-z]", "[!x]" or "[^x]" negated; "\" escapes the
// next character); a segment that is exactly "**" matches zero or more
// whole segments (so "src/**" covers "src" itself too, which errs on the
// side of a conflict); a trailing "/" means the directory and everything under
// it ("src/" is "src/**"). Anything else is literal. These are the rules of
// gitignore and of doublestar-style globs, minus gitignore's anchoring
// rules: every pattern is relative to the repository root.
package pathglob

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"
)

// ErrBadPattern is returned by Compile for a pattern it cannot read.
var ErrBadPattern = errors.New("pathglob: bad pattern")

// MaxPatternLen bounds a pattern, in bytes, so that an overlap check is
// cheap (it is quadratic in the patterns' lengths).
const MaxPatternLen = 1024

// Pattern is a compiled pattern. It is immutable and safe for concurrent use.
type Pattern struct {
	text string
	segs []segment
}

// segment is one path segment: globstar, or a sequence of tokens.
type segment struct {
	globstar bool
	toks     []token
}

// token is one character position in a segment: a star, or a set of runes
// (a literal is a set of one).
type token struct {
	star bool
	set  runeSet
}

// HasMeta reports whether s holds a character a pattern reads as a
// wildcard or escape.
func HasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// String is the pattern as compiled (normalized).
func (p Pattern) String() string { return p.text }

// Compile reads pattern after Normalize. It fails with ErrBadPattern for an
// empty pattern, one that leaves the repository (".."), an unterminated
// class or trailing escape, or one over MaxPatternLen.
func Compile(pattern string) (Pattern, error) {
	norm, err := Normalize(pattern)
	if err != nil {
		return Pattern{}, err
	}
	p := Pattern{text: norm}
	for _, s := range strings.Split(norm, "/") {
		if s == "**" {
			if n := len(p.segs); n > 0 && p.segs[n-1].globstar {
				continue // "**/**" is "**"
			}
			p.segs = append(p.segs, segment{globstar: true})
			continue
		}
		toks, err := compileSegment(s)
		if err != nil {
			return Pattern{}, fmt.Errorf("%w: %q: %v", ErrBadPattern, pattern, err)
		}
		p.segs = append(p.segs, segment{toks: toks})
	}
	return p, nil
}

// Normalize cleans a pattern as a path relative to the repository root:
// "./src//x", "src/y/../x" and "src/x" are one pattern; a trailing "/"
// becomes "/**"; "**/**" is "**". It refuses an empty pattern, an absolute one, and one that
// leaves the root.
func Normalize(pattern string) (string, error) {
	switch {
	case pattern == "":
		return "", fmt.Errorf("%w: empty", ErrBadPattern)
	case len(pattern) > MaxPatternLen:
		return "", fmt.Errorf("%w: %d bytes, at most %d", ErrBadPattern, len(pattern), MaxPatternLen)
	case !utf8.ValidString(pattern):
		return "", fmt.Errorf("%w: %q is not UTF-8", ErrBadPattern, pattern)
	case strings.HasPrefix(pattern, "/"):
		return "", fmt.Errorf("%w: %q is absolute; make it relative to the repository root", ErrBadPattern, pattern)
	}
	dir := strings.HasSuffix(pattern, "/")
	clean := path.Clean(pattern)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("%w: %q is outside the repository", ErrBadPattern, pattern)
	}
	if clean == "." {
		clean = "**"
	} else if dir {
		clean += "/**"
	}
	// "**/**" matches what "**" does: one spelling, so that unreserving
	// "src/**" releases what "src/**/**" or "src/**/" reserved.
	segs := strings.Split(clean, "/")
	out := segs[:0]
	for _, sg := range segs {
		if sg == "**" && len(out) > 0 && out[len(out)-1] == "**" {
			continue
		}
		out = append(out, sg)
	}
	return strings.Join(out, "/"), nil
}

func compileSegment(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch r {
		case '*':
			if n := len(toks); n == 0 || !toks[n-1].star {
				toks = append(toks, token{star: true})
			}
			i += size
		case '?':
			toks = append(toks, token{set: notSlash})
			i += size
		case '[':
			set, n, err := parseClass(s[i:])
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{set: set})
			i += n
		case '\\':
			if i+size >= len(s) {
				return nil, errors.New("trailing backslash")
			}
			r2, size2 := utf8.DecodeRuneInString(s[i+size:])
			toks = append(toks, token{set: single(r2)})
			i += size + size2
		default:
			toks = append(toks, token{set: single(r)})
			i += size
		}
	}
	return toks, nil
}

// parseClass reads a "[...]" class at the start of s and returns its set
// (never holding '/') and its length in bytes.
func parseClass(s string) (runeSet, int, error) {
	i := 1
	negate := false
	if i < len(s) && (s[i] == '!' || s[i] == '^') {
		negate = true
		i++
	}
	var set runeSet
	first := true
	for {
		if i >= len(s) {
			return nil, 0, errors.New("unterminated [ class")
		}
		if s[i] == ']' && !first {
			i++
			break
		}
		first = false
		lo, n, err := classRune(s[i:])
		if err != nil {
			return nil, 0, err
		}
		i += n
		hi := lo
		if i+1 < len(s) && s[i] == '-' && s[i+1] != ']' {
			if hi, n, err = classRune(s[i+1:]); err != nil {
				return nil, 0, err
			}
			if hi < lo {
				return nil, 0, fmt.Errorf("range %c-%c goes backwards", lo, hi)
			}
			i += 1 + n
		}
		set = set.union(runeSet{{lo, hi}})
	}
	if negate {
		set = set.complement()
	}
	return set.intersect(notSlash), i, nil
}

func classRune(s string) (rune, int, error) {
	r, n := utf8.DecodeRuneInString(s)
	if r != '\\' {
		return r, n, nil
	}
	if n >= len(s) {
		return 0, 0, errors.New("trailing backslash in class")
	}
	r2, n2 := utf8.DecodeRuneInString(s[n:])
	return r2, n + n2, nil
}

// Match reports whether path (cleaned like a pattern; "" never matches)
// matches p.
func (p Pattern) Match(name string) bool {
	if name == "" {
		return false
	}
	lit, err := Compile(escapeLiteral(name))
	if err != nil {
		return false
	}
	_, ok := Overlap(p, lit)
	return ok
}

// escapeLiteral turns a path into a pattern matching exactly it.
// QuoteMeta escapes the characters a pattern reads as wildcards ('*', '?',
// '[' and '\'), so that the result matches exactly the path s: how to
// reserve a file named "app/[id]/page.tsx". Safe for concurrent use.
func QuoteMeta(s string) string { return escapeLiteral(s) }

func escapeLiteral(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
