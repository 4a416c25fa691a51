package state

import (
	"math/big"
	"strings"
)

// canonicalNumber is the canonical form of the JSON number s (RFC 8259,
// section 6), exact whatever its size or precision: two numbers have one
// form when they are equal as decimals (1.0 and 1, -0 and 0, 1e2 and 100),
// and different forms otherwise (9007199254740993 is not
// 9007199254740992, which a float64 makes it). The form is the one
// encoding/json writes for a float64 of the same value where a float64
// holds it exactly ('f' notation from 1e-6 up to 1e21, 'e' outside, as
// "1e+21" and "1e-7"), so that the keys of the field index written before
// stay the same for such numbers. ok is false when s is not a JSON number.
func canonicalNumber(s string) (form string, ok bool) {
	neg := strings.HasPrefix(s, "-")
	rest := strings.TrimPrefix(s, "-")
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	intPart := rest[:i]
	if intPart == "" || len(intPart) > 1 && intPart[0] == '0' {
		return "", false
	}
	rest = rest[i:]
	frac := ""
	if strings.HasPrefix(rest, ".") {
		j := 1
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if j == 1 {
			return "", false
		}
		frac, rest = rest[1:j], rest[j:]
	}
	exp := new(big.Int)
	if rest != "" {
		if rest[0] != 'e' && rest[0] != 'E' {
			return "", false
		}
		e := rest[1:]
		if strings.HasPrefix(e, "+") {
			e = e[1:]
		}
		if e == "" || e[0] == '-' && len(e) == 1 {
			return "", false
		}
		for _, c := range strings.TrimPrefix(e, "-") {
			if c < '0' || c > '9' {
				return "", false
			}
		}
		if _, ok := exp.SetString(e, 10); !ok {
			return "", false
		}
	}
	// value = digits * 10^q
	digits := strings.TrimLeft(intPart+frac, "0")
	q := exp.Sub(exp, big.NewInt(int64(len(frac))))
	trimmed := strings.TrimRight(digits, "0")
	q.Add(q, big.NewInt(int64(len(digits)-len(trimmed))))
	digits = trimmed
	if digits == "" {
		return "0", true
	}
	// e is the exponent of the first digit: value = d.ddd * 10^e.
	n := len(digits)
	e := new(big.Int).Add(q, big.NewInt(int64(n-1)))
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	if e.Cmp(big.NewInt(-7)) <= 0 || e.Cmp(big.NewInt(21)) >= 0 {
		b.WriteByte(digits[0])
		if n > 1 {
			b.WriteByte('.')
			b.WriteString(digits[1:])
		}
		b.WriteByte('e')
		if e.Sign() > 0 {
			b.WriteByte('+')
		}
		b.WriteString(e.String())
		return b.String(), true
	}
	// -7 < e < 21: q is small.
	qi := int(q.Int64())
	switch {
	case qi >= 0:
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", qi))
	case n+qi > 0:
		b.WriteString(digits[:n+qi])
		b.WriteByte('.')
		b.WriteString(digits[n+qi:])
	default:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", -(n + qi)))
		b.WriteString(digits)
	}
	return b.String(), true
}
