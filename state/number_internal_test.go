package state

import (
	"encoding/json"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCanonicalNumber(t *testing.T) {
	for in, want := range map[string]string{
		"0": "0", "-0": "0", "0.0": "0", "-0.000e5": "0",
		"1": "1", "1.0": "1", "1.50": "1.5", "10e-1": "1", "100": "100", "1e2": "100", "-12.5e1": "-125",
		"0.000001": "0.000001", "1e-6": "0.000001", "1e-7": "1e-7", "1.25e-10": "1.25e-10",
		"1e20": "100000000000000000000", "1e21": "1e+21", "12e20": "1.2e+21",
		// Beyond a float64: exact, not rounded (a breaker's inputs).
		"9007199254740993": "9007199254740993", "9007199254740992": "9007199254740992",
		"1e400": "1e+400", "1e-400": "1e-400", "-1.000000000000000000001": "-1.000000000000000000001",
		"123456789012345678901234567890": "1.2345678901234567890123456789e+29",
	} {
		got, ok := canonicalNumber(in)
		require.True(t, ok, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "-", "01", "1.", ".5", "1e", "1e+", "1e-", "+1", "1x", "0x10", "1.5.5", "1e5e5", "NaN", "--1"} {
		_, ok := canonicalNumber(bad)
		assert.False(t, ok, bad)
	}
}

// bigExponent matches a number whose exponent has more than 3 digits.
var bigExponent = regexp.MustCompile(`[eE][+-]?0*[0-9]{4,}$`)

// jsonNumber matches RFC 8259's number grammar.
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// FuzzCanonicalNumber checks canonicalNumber against two references: for
// a float64 written any way, the form is what encoding/json writes for
// it (so the field index's keys of such numbers do not change); for two
// JSON numbers, the forms are equal exactly when the numbers are
// (math/big rationals).
func FuzzCanonicalNumber(f *testing.F) {
	f.Add(1.5, "1.0", "1")
	f.Add(1e21, "9007199254740993", "9007199254740992")
	f.Add(-1e-7, "-0", "0e5")
	f.Add(123456.789, "1e400", "10e399")
	f.Fuzz(func(t *testing.T, x float64, a, b string) {
		if !math.IsInf(x, 0) && !math.IsNaN(x) {
			want, err := json.Marshal(x)
			require.NoError(t, err)
			if x == 0 {
				want = []byte("0") // -0 is 0
			}
			g := strconv.FormatFloat(x, 'g', -1, 64)
			for _, spelling := range []string{
				g, strconv.FormatFloat(x, 'e', -1, 64), strconv.FormatFloat(x, 'f', -1, 64),
				strings.Replace(strings.Replace(strconv.FormatFloat(x, 'e', -1, 64), "e", "E", 1), "E-", "E-0", 1),
				strings.Replace(g, "e+", "e", 1),
			} {
				got, ok := canonicalNumber(spelling)
				require.True(t, ok, spelling)
				require.Equal(t, string(want), got, "%v spelled %s", x, spelling)
			}
		}
		// big.Rat computes 10^exponent: keep exponents small.
		if !jsonNumber.MatchString(a) || !jsonNumber.MatchString(b) || len(a) > 40 || len(b) > 40 || bigExponent.MatchString(a) || bigExponent.MatchString(b) {
			return
		}
		ca, okA := canonicalNumber(a)
		cb, okB := canonicalNumber(b)
		require.True(t, okA && okB, "%q %q", a, b)
		ra, _ := new(big.Rat).SetString(a)
		rb, _ := new(big.Rat).SetString(b)
		if ra == nil || rb == nil {
			return // exponents big.Rat refuses
		}
		require.Equal(t, ra.Cmp(rb) == 0, ca == cb, "%q (%s) and %q (%s)", a, ca, b, cb)
	})
}
