package pathglob_test

import (
	"math/rand/v2"
	"path"
	"strings"
	"testing"

	"github.com/codi2/codi2/internal/pathglob"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustCompile(t testing.TB, s string) pathglob.Pattern {
	t.Helper()
	p, err := pathglob.Compile(s)
	require.NoError(t, err, s)
	return p
}

// refMatch is a reference matcher: path.Match per segment, "**" segments
// by recursion, a trailing "/" as "/**".
func refMatch(pattern, name string) bool {
	if strings.HasSuffix(pattern, "/") {
		pattern += "**"
	}
	return refSegs(strings.Split(pattern, "/"), strings.Split(name, "/"))
}

func refSegs(ps, ns []string) bool {
	if len(ps) == 0 {
		return len(ns) == 0
	}
	if ps[0] == "**" {
		for k := 0; k <= len(ns); k++ {
			if refSegs(ps[1:], ns[k:]) {
				return true
			}
		}
		return false
	}
	if len(ns) == 0 || ns[0] == "" {
		return false
	}
	ok, err := path.Match(strings.ReplaceAll(ps[0], "[!", "[^"), ns[0])
	return err == nil && ok && refSegs(ps[1:], ns[1:])
}

func TestOverlap_Table(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"src/main.go", "src/main.go", true},
		{"src/main.go", "src/other.go", false},
		{"src/main.go", "./src//main.go", true},
		{"src/y/../main.go", "src/main.go", true},
		{"src/*.go", "src/main.go", true},
		{"src/*.go", "src/sub/main.go", false},
		{"src/**/*.go", "src/sub/main.go", true},
		{"src/**/*.go", "src/main.go", true},
		{"src/**", "src/a/b/c", true},
		{"src/**", "src", true}, // ** matches zero segments too: conservative for a reservation
		{"src/", "src/x", true},
		{"src/", "docs/x", false},
		{"src/", "src/**/*.md", true},
		{"**", "anything/at/all", true},
		{"**/*.md", "docs/*.go", false},
		{"**/*.md", "docs/**", true},
		{"*.go", "*_test.go", true},
		{"*.go", "*.md", false},
		{"a*b", "*c*", true},
		{"a?", "?b", true},
		{"a?", "abc", false},
		{"[ab]x", "cx", false},
		{"[ab]x", "bx", true},
		{"[!a]x", "ax", false},
		{"[^a]x", "[a-c]x", true},
		{"[a-c]", "[d-f]", false},
		{"docs/*.md", "docs/**", true},
		{"a/**/b", "a/b", true},
		{"a/**/b", "a/x/y/b", true},
		{"a/**/b", "a/x/y/c", false},
		{"**/b/**", "a/**/c", true},
		{`\*`, "*", true},
		{`\*`, "x", false},
		{"*", "x/y", false},
		{"src/a*/**", "src/**/b*", true},
	}
	for _, tt := range tests {
		t.Run(tt.a+"~"+tt.b, func(t *testing.T) {
			a, b := mustCompile(t, tt.a), mustCompile(t, tt.b)
			w, ok := pathglob.Overlap(a, b)
			assert.Equal(t, tt.want, ok, "witness %q", w)
			w2, ok2 := pathglob.Overlap(b, a)
			assert.Equal(t, ok, ok2, "symmetric")
			if ok {
				assert.True(t, a.Match(w) && b.Match(w), "witness %q matches both", w)
				assert.True(t, refMatch(a.String(), w) && refMatch(b.String(), w), "the reference agrees on %q", w)
				assert.True(t, a.Match(w2) && b.Match(w2))
			}
		})
	}
}

func TestCompile_Errors(t *testing.T) {
	for _, bad := range []string{"", "/etc/passwd", "..", "../x", "a/../../x", "[ab", `x\`, "[b-a]", "\xff", strings.Repeat("a", pathglob.MaxPatternLen+1), `[a\`} {
		_, err := pathglob.Compile(bad)
		assert.ErrorIs(t, err, pathglob.ErrBadPattern, "%q", bad)
	}
	for in, want := range map[string]string{"./src//x": "src/x", "src/": "src/**", ".": "**", "a/**/**/b": "a/**/b", "src/y/../x": "src/x"} {
		got, err := pathglob.Normalize(in)
		require.NoError(t, err)
		assert.Equal(t, want, got, in)
	}
	p := mustCompile(t, "a/**/**/b")
	assert.True(t, p.Match("a/b"))
	assert.False(t, p.Match(""))
	assert.True(t, mustCompile(t, `[\]]`).Match("]"))
	assert.True(t, mustCompile(t, `[]a]`).Match("]"))
	assert.True(t, mustCompile(t, `[a-]`).Match("-"))
	assert.True(t, mustCompile(t, "ü*").Match("über"))
}

// genPattern draws a pattern over a small alphabet.
func genPattern(rng *rand.Rand) string {
	pieces := []string{"a", "b", "*", "?", "[ab]", "[!a]", "[b-c]"}
	n := 1 + rng.IntN(3)
	segs := make([]string, n)
	for i := range segs {
		if rng.IntN(5) == 0 {
			segs[i] = "**"
			continue
		}
		var s strings.Builder
		for range 1 + rng.IntN(3) {
			s.WriteString(pieces[rng.IntN(len(pieces))])
		}
		segs[i] = s.String()
	}
	return strings.Join(segs, "/")
}

// genPath draws a path matching pattern p (by the reference's rules).
func genPath(rng *rand.Rand, p string) string {
	var segs []string
	for _, seg := range strings.Split(p, "/") {
		if seg == "**" {
			for range rng.IntN(3) {
				segs = append(segs, randSeg(rng))
			}
			continue
		}
		var s strings.Builder
		for i := 0; i < len(seg); i++ {
			switch seg[i] {
			case '*':
				for range rng.IntN(3) {
					s.WriteByte("abc"[rng.IntN(3)])
				}
			case '?':
				s.WriteByte("abc"[rng.IntN(3)])
			case '[':
				end := strings.IndexByte(seg[i:], ']') + i
				cls := seg[i : end+1]
				for _, c := range []byte("abc") {
					if ok, _ := path.Match(strings.ReplaceAll(cls, "[!", "[^"), string(c)); ok && rng.IntN(2) == 0 {
						s.WriteByte(c)
						break
					}
				}
				i = end
			default:
				s.WriteByte(seg[i])
			}
		}
		if s.Len() == 0 {
			s.WriteByte('a')
		}
		segs = append(segs, s.String())
	}
	return strings.Join(segs, "/")
}

func randSeg(rng *rand.Rand) string {
	var s strings.Builder
	for range 1 + rng.IntN(3) {
		s.WriteByte("abc"[rng.IntN(3)])
	}
	return s.String()
}

// TestOverlap_BruteForce checks Overlap against the reference matcher on
// random pattern pairs: a witness always matches both; and when Overlap
// says no, none of many paths drawn to match one pattern matches the other.
func TestOverlap_BruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var yes, no int
	for range 3000 {
		as, bs := genPattern(rng), genPattern(rng)
		a, b := mustCompile(t, as), mustCompile(t, bs)
		w, ok := pathglob.Overlap(a, b)
		if ok {
			yes++
			require.True(t, refMatch(as, w) && refMatch(bs, w), "%q ~ %q: witness %q", as, bs, w)
			continue
		}
		no++
		for range 200 {
			for _, pair := range [][2]string{{as, bs}, {bs, as}} {
				p := genPath(rng, pair[0])
				if refMatch(pair[0], p) && refMatch(pair[1], p) {
					t.Fatalf("%q and %q both match %q, Overlap said no", as, bs, p)
				}
			}
		}
	}
	t.Logf("%d overlapping pairs, %d disjoint", yes, no)
	assert.Greater(t, yes, 300)
	assert.Greater(t, no, 300)
}

func FuzzOverlap(f *testing.F) {
	f.Add("src/**/*.go", "src/main.go")
	f.Add("[!a]x", "[a-c]?")
	f.Add("a/**/b", "**/c/**")
	f.Add("**/0", "**.***/")
	f.Fuzz(func(t *testing.T, as, bs string) {
		a, err1 := pathglob.Compile(as)
		b, err2 := pathglob.Compile(bs)
		if err1 != nil || err2 != nil || len(as)+len(bs) > 64 {
			return
		}
		w, ok := pathglob.Overlap(a, b)
		if _, ok2 := pathglob.Overlap(b, a); ok != ok2 {
			t.Fatalf("not symmetric: %q %q", as, bs)
		}
		if ok && !(a.Match(w) && b.Match(w)) {
			t.Fatalf("witness %q of %q ~ %q does not match both", w, as, bs)
		}
		if ok && path.Clean(w) != w {
			t.Fatalf("witness %q of %q ~ %q is not a clean path", w, as, bs)
		}
	})
}

// A witness is a path a tree can hold: no "." or ".." segment, which a
// cleaned path never has (found by FuzzOverlap: "**/0" and "**.***/"
// overlapped on "./0", which is the path "0", matched by only one). Patterns
// that match nothing but such segments overlap nothing.
func TestOverlap_WitnessIsACleanPath(t *testing.T) {
	for _, tc := range []struct {
		a, b    string
		overlap bool
	}{
		{"**/0", "**.***/", true},
		{"*.*", "**", true},
		{".*", "?", false},
		{".*", "??", true},
		{"*", "[.]*", true},
		{"x/*/y", "x/[.]?/y", true},
		{"x/*/y", "x/[.][.]/y", false},
		{"[.]", "**", false},
		{"[.][.]/a", "**/a", false},
		{"?", "[.]", false},
		{"a/[.]/b", "a/**", false},
	} {
		a, b := mustCompile(t, tc.a), mustCompile(t, tc.b)
		w, ok := pathglob.Overlap(a, b)
		require.Equal(t, tc.overlap, ok, "%q ~ %q: witness %q", tc.a, tc.b, w)
		if ok {
			assert.Equal(t, path.Clean(w), w, "%q ~ %q", tc.a, tc.b)
			assert.True(t, a.Match(w) && b.Match(w), "%q ~ %q: witness %q", tc.a, tc.b, w)
		}
	}
}

// Patterns that mean the same have one spelling (a breaker's input: "src/**"
// did not unreserve "src/**/**").
func TestNormalize_Globstars(t *testing.T) {
	for in, want := range map[string]string{
		"src/**/**": "src/**", "src/**/": "src/**", "**/": "**", "**/**/x": "**/x", "a/**/b/**/**": "a/**/b/**", "./": "**",
	} {
		got, err := pathglob.Normalize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
}

// OverlapWithin bounds the work of a check: two patterns of stars that
// took about a second now stop at the budget, with the same count of steps
// every time; patterns in different directories take one step.
func TestOverlapWithin_Budget(t *testing.T) {
	a, err := pathglob.Compile("a1/" + strings.Repeat("*a", 300))
	require.NoError(t, err)
	b, err := pathglob.Compile("**/b" + strings.Repeat("*b", 300))
	require.NoError(t, err)
	budget := 10_000
	_, _, err = pathglob.OverlapWithin(a, b, &budget)
	require.ErrorIs(t, err, pathglob.ErrBudget)
	assert.LessOrEqual(t, budget, 0)
	budget = 0
	_, _, err = pathglob.OverlapWithin(mustCompile(t, "x"), mustCompile(t, "x"), &budget)
	require.ErrorIs(t, err, pathglob.ErrBudget, "an empty budget refuses at once")

	src, docs := mustCompile(t, "src/deep/**/*.go"), mustCompile(t, "docs/*.md")
	budget = 100
	_, ok, err := pathglob.OverlapWithin(src, docs, &budget)
	require.NoError(t, err)
	assert.False(t, ok)
	assert.Equal(t, 99, budget, "different first directories: one step")

	for _, pair := range [][2]string{{"src/**", "src/main.go"}, {"**/main.go", "src/*.go"}, {"src/[lm]ain.go", "src/main.go"}} {
		x, y := mustCompile(t, pair[0]), mustCompile(t, pair[1])
		b1, b2 := 1000, 1000
		w1, ok1, err1 := pathglob.OverlapWithin(x, y, &b1)
		w2, ok2, err2 := pathglob.OverlapWithin(x, y, &b2)
		require.NoError(t, err1)
		require.NoError(t, err2)
		assert.True(t, ok1, pair)
		assert.Equal(t, ok1, ok2)
		assert.Equal(t, w1, w2)
		assert.Equal(t, b1, b2, "the count depends only on the patterns")
		assert.Greater(t, b1, 850, "simple patterns take a few steps: %v", pair)
	}
}
