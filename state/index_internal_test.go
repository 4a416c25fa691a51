package state

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzCanonical: canonical's fast path for scalars that are canonical
// already gives exactly what the round trip through encoding/json gives,
// for any input (valid JSON or not).
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{
		`"open"`, `"a<b"`, `"\u00e9"`, `"é"`, `"tab\t"`, `"q\"x"`, `""`, `"`, `"a"b"`,
		`0`, `-0`, `01`, `-`, `7`, `-12`, `1.0`, `1e3`, `123456789012345`, `1234567890123456`, `99999999999999999999`,
		`true`, `false`, `null`, `tru`, ` 1`, `1 `, `{"a":1}`, `[1]`, ``, "\"\xff\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, ok := canonical(raw)
		wc, wok := canonicalSlow(raw)
		require.Equal(t, wc, c, "canonical of %q", raw)
		require.Equal(t, wok, ok, "indexed of %q", raw)
	})
}

// TestCanonicalScalars: the values the fast path takes, and some it leaves
// to the round trip, with their canonical forms.
func TestCanonicalScalars(t *testing.T) {
	for raw, want := range map[string]string{
		`"open"`: `"open"`, `7`: `7`, `-12`: `-12`, `true`: `true`, `null`: `null`,
		`1.0`: `1`, `-0`: `-0`, `"a<b"`: `"a\u003cb"`, `"\u0041"`: `"A"`, `1234567890123456789`: `1234567890123456800`,
	} {
		c, ok := canonical(json.RawMessage(raw))
		require.Equal(t, want, c, raw)
		require.True(t, ok, raw)
	}
}
