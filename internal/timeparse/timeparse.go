package timeparse

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Example is the help text that lists the accepted forms, for flag usage
// and error messages.
const Example = `an RFC 3339 time (2026-11-26T21:00:00Z), "now", or a duration before now ("15m", "-1h", "2d"; "+1h" is after)`

// Parse reads s as a time, relative to now:
//
//   - an RFC 3339 time, with or without fractional seconds
//     ("2026-11-26T21:00:00Z", "2026-11-26T22:00:00.5+01:00");
//   - "now";
//   - a duration as Go writes it ("90s", "1h30m", "1.5h", units ns, us, ms,
//     s, m, h) or a whole number of days ("2d"), at most a hundred years
//     (36500d): without a sign, or with
//     "-", that long before now ("15m" and "-15m" are both a quarter of an
//     hour ago: the way "since" reads); with "+", that long after now.
//
// The result is in UTC for relative forms and keeps the offset written in
// an RFC 3339 time. It fails with ErrBadTime naming the accepted forms.
// Safe for concurrent use.
func Parse(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "now" {
		return now.UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	sign, body := time.Duration(-1), s
	switch {
	case strings.HasPrefix(s, "+"):
		sign, body = 1, s[1:]
	case strings.HasPrefix(s, "-"):
		body = s[1:]
	}
	d, ok := duration(body)
	if !ok || body == "" || body[0] == '+' || body[0] == '-' {
		return time.Time{}, fmt.Errorf("%w: %q: want %s", ErrBadTime, s, Example)
	}
	return now.Add(sign * d).UTC(), nil
}

// maxRelative bounds a relative time: a hundred years either way.
const maxRelative = 100 * 365 * 24 * time.Hour

// duration reads a Go duration or a whole number of days, up to
// maxRelative.
func duration(s string) (time.Duration, bool) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		d := time.Duration(n) * 24 * time.Hour
		return d, err == nil && d <= maxRelative
	}
	d, err := time.ParseDuration(s)
	return d, err == nil && d >= 0 && d <= maxRelative
}
