package pathglob

import (
	"errors"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// runeSet is a sorted list of disjoint, non-adjacent inclusive rune ranges.
type runeSet [][2]rune

// notSlash is every rune but '/': what '*', '?' and classes may match.
var notSlash = runeSet{{0, '/' - 1}, {'/' + 1, utf8.MaxRune}}

func single(r rune) runeSet { return runeSet{{r, r}} }

func (s runeSet) union(o runeSet) runeSet {
	all := append(slices.Clone(s), o...)
	slices.SortFunc(all, func(a, b [2]rune) int { return int(a[0]) - int(b[0]) })
	var out runeSet
	for _, r := range all {
		if n := len(out); n > 0 && r[0] <= out[n-1][1]+1 {
			out[n-1][1] = max(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}

func (s runeSet) complement() runeSet {
	var out runeSet
	next := rune(0)
	for _, r := range s {
		if r[0] > next {
			out = append(out, [2]rune{next, r[0] - 1})
		}
		next = r[1] + 1
	}
	if next <= utf8.MaxRune {
		out = append(out, [2]rune{next, utf8.MaxRune})
	}
	return out
}

func (s runeSet) intersect(o runeSet) runeSet {
	var out runeSet
	i, j := 0, 0
	for i < len(s) && j < len(o) {
		lo, hi := max(s[i][0], o[j][0]), min(s[i][1], o[j][1])
		if lo <= hi {
			out = append(out, [2]rune{lo, hi})
		}
		if s[i][1] < o[j][1] {
			i++
		} else {
			j++
		}
	}
	return out
}

// pick returns a printable member of s if it has one, else its least.
func (s runeSet) pick() rune {
	for _, r := range s {
		for c := max(r[0], 'a'); c <= r[1] && c <= 'z'; c++ {
			return c
		}
	}
	for _, r := range s {
		if r[1] >= '!' {
			return max(r[0], '!')
		}
	}
	return s[0][0]
}

// Overlap reports whether some path matches both a and b, and returns the
// shortest such path it found as a witness. It runs in time proportional to
// the product of the patterns' sizes: up to about a second for two patterns
// of MaxPatternLen made of stars. Where that matters, use OverlapWithin.
func Overlap(a, b Pattern) (witness string, ok bool) {
	budget := math.MaxInt
	witness, ok, _ = OverlapWithin(a, b, &budget)
	return witness, ok
}

// ErrBudget is returned by OverlapWithin when the check needed more steps
// than its budget allowed.
var ErrBudget = errors.New("pathglob: overlap check over its budget")

// OverlapWithin is Overlap doing at most *budget steps (one step is one
// state of the search, about a microsecond at worst), and taking the steps
// it did from *budget, so that one budget can bound many checks. When the
// budget runs out it fails with ErrBudget; the answer is then unknown. The
// count depends only on the patterns, so the outcome is the same on every
// machine. Simple patterns take a few steps; patterns that part on a
// literal directory before any wildcard take one.
func OverlapWithin(a, b Pattern, budget *int) (witness string, ok bool, err error) {
	if *budget <= 0 {
		return "", false, ErrBudget
	}
	*budget--
	// Leading literal segments decide most pairs at once: a different
	// directory on the way down means no path matches both.
	for i := 0; i < len(a.segs) && i < len(b.segs); i++ {
		la, lb := a.segs[i].literal(), b.segs[i].literal()
		if la == "" || lb == "" {
			break
		}
		if la != lb {
			return "", false, nil
		}
	}
	return overlap(a, b, budget)
}

// literal is the segment's text when it holds no wildcard, else "".
func (s segment) literal() string {
	if s.globstar {
		return ""
	}
	var b strings.Builder
	for _, t := range s.toks {
		if t.star || len(t.set) != 1 || t.set[0][0] != t.set[0][1] {
			return ""
		}
		b.WriteRune(t.set[0][0])
	}
	return b.String()
}

func overlap(a, b Pattern, budget *int) (witness string, ok bool, err error) {
	// States are positions (i, j) in the two segment lists; a globstar may
	// match zero segments or eat one segment the other side matches.
	type state struct{ i, j int }
	type step struct {
		from state
		seg  string // the segment this step adds ("" for a globstar skip)
	}
	start := state{}
	prev := map[state]step{start: {from: state{-1, -1}}}
	queue := []state{start}
	push := func(to, from state, seg string) {
		if _, seen := prev[to]; !seen {
			prev[to] = step{from: from, seg: seg}
			queue = append(queue, to)
		}
	}
	end := state{len(a.segs), len(b.segs)}
	for len(queue) > 0 {
		if *budget--; *budget < 0 {
			return "", false, ErrBudget
		}
		s := queue[0]
		queue = queue[1:]
		if s == end {
			var segs []string
			for cur := s; cur != start; cur = prev[cur].from {
				if seg := prev[cur].seg; seg != "" {
					segs = append(segs, seg)
				}
			}
			slices.Reverse(segs)
			return strings.Join(segs, "/"), true, nil
		}
		var sa, sb *segment
		if s.i < len(a.segs) {
			sa = &a.segs[s.i]
		}
		if s.j < len(b.segs) {
			sb = &b.segs[s.j]
		}
		if sa != nil && sa.globstar {
			push(state{s.i + 1, s.j}, s, "")
			if sb != nil {
				w, ok, err := segWitness(*sb, *sb, budget)
				if err != nil {
					return "", false, err
				}
				if ok {
					push(state{s.i, s.j + 1}, s, w)
				}
			}
		}
		if sb != nil && sb.globstar {
			push(state{s.i, s.j + 1}, s, "")
			if sa != nil {
				w, ok, err := segWitness(*sa, *sa, budget)
				if err != nil {
					return "", false, err
				}
				if ok {
					push(state{s.i + 1, s.j}, s, w)
				}
			}
		}
		if sa != nil && sb != nil {
			w, ok, err := segWitness(*sa, *sb, budget)
			if err != nil {
				return "", false, err
			}
			if ok {
				push(state{s.i + 1, s.j + 1}, s, w)
			}
		}
	}
	return "", false, nil
}

// segWitness returns a segment matched by both a and b, if there is one,
// taking its steps from *budget. A globstar stands for any segment. The
// segment is one a path can hold: non-empty, no '/', and neither "." nor
// ".." (a cleaned path has no such segment, so "*.*" and "**/0" overlap on
// "a.a/0", not on "./0", which is the path "0").
//
// The search tracks, beside the positions in both segments, what the
// segment built so far is: empty, ".", "..", or anything else (real).
func segWitness(a, b segment, budget *int) (string, bool, error) {
	if a.globstar {
		a = segment{toks: []token{{star: true}}}
	}
	if b.globstar {
		b = segment{toks: []token{{star: true}}}
	}
	type state struct {
		x, y int
		kind segKind
	}
	type step struct {
		from state
		r    rune // the character this step adds, or -1
	}
	start := state{}
	prev := map[state]step{start: {r: -1}}
	queue := []state{start}
	push := func(to, from state, r rune) {
		if _, seen := prev[to]; !seen {
			prev[to] = step{from: from, r: r}
			queue = append(queue, to)
		}
	}
	for len(queue) > 0 {
		if *budget--; *budget < 0 {
			return "", false, ErrBudget
		}
		s := queue[0]
		queue = queue[1:]
		if s.x == len(a.toks) && s.y == len(b.toks) && s.kind == segReal {
			var rs []rune
			for cur := s; cur != start; cur = prev[cur].from {
				if r := prev[cur].r; r >= 0 {
					rs = append(rs, r)
				}
			}
			slices.Reverse(rs)
			return string(rs), true, nil
		}
		var ta, tb *token
		if s.x < len(a.toks) {
			ta = &a.toks[s.x]
		}
		if s.y < len(b.toks) {
			tb = &b.toks[s.y]
		}
		// A star matches nothing more, or one more character.
		if ta != nil && ta.star {
			push(state{s.x + 1, s.y, s.kind}, s, -1)
		}
		if tb != nil && tb.star {
			push(state{s.x, s.y + 1, s.kind}, s, -1)
		}
		if ta == nil || tb == nil {
			continue
		}
		setA, setB := ta.set, tb.set
		if ta.star {
			setA = notSlash
		}
		if tb.star {
			setB = notSlash
		}
		both := setA.intersect(setB)
		if len(both) == 0 {
			continue
		}
		nx, ny := s.x+1, s.y+1
		if ta.star {
			nx = s.x
		}
		if tb.star {
			ny = s.y
		}
		// A dot and any other character lead to different kinds of
		// segment until it is real; try each the sets share.
		if s.kind == segReal {
			push(state{nx, ny, segReal}, s, both.pick())
			continue
		}
		if both.has('.') {
			push(state{nx, ny, s.kind.add('.')}, s, '.')
		}
		if other := both.intersect(notDot); len(other) > 0 {
			push(state{nx, ny, segReal}, s, other.pick())
		}
	}
	return "", false, nil
}

// segKind is what a segment built so far is, for segWitness.
type segKind uint8

const (
	segEmpty  segKind = iota
	segDot            // "."
	segDotDot         // ".."
	segReal           // anything a path can hold
)

// add is the kind after appending r.
func (k segKind) add(r rune) segKind {
	if r == '.' && k < segDotDot {
		return k + 1
	}
	return segReal
}

// notDot is every rune but '/' and '.'.
var notDot = notSlash.intersect(single('.').complement())

func (s runeSet) has(r rune) bool {
	for _, rg := range s {
		if rg[0] <= r && r <= rg[1] {
			return true
		}
	}
	return false
}
